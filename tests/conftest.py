"""Shared fixtures and independent reference computations (plain autograd, dense Hessians)."""

from __future__ import annotations

import math
import os

import torch

if not torch.cuda.is_available():  # Triton kernels run in the CPU interpreter; must precede their import
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

import innerloop as il


@pytest.fixture
def cpu64():
    return il.backends.get("cpu", dtype=torch.float64)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def replay_by_rerunning(fn, device):
    """A CPU stand-in for ``cuda_graphed`` with a CUDA graph's semantics: the outputs are fixed
    tensors, and every replay recomputes ``fn`` on the static inputs and writes into them."""
    outputs = fn()

    def replay():
        for static, fresh in zip(outputs, fn()):
            static.copy_(fresh)
        return outputs

    return replay


def rel_err(a: dict, b: dict) -> float:
    """‖a − b‖ / ‖b‖ over all parameters."""
    num = sum(float(((a[k] - b[k]) ** 2).sum()) for k in b) ** 0.5
    den = sum(float((b[k] ** 2).sum()) for k in b) ** 0.5
    return num / den


def task_loss(model, loss_name: str, params: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if loss_name == "free_energy":
        return free_energy_by_hand(model, params, x, y)
    if loss_name == "predictive_log_loss":
        return predictive_log_loss_by_hand(model, params, x, y)
    if loss_name == getattr(model, "objective_name", None):  # checked by hand in the model's own tests
        return model.objective(params, x, y)
    out = model.apply(params, x)
    if loss_name == "mse":
        return ((out - y) ** 2).mean()
    return torch.nn.functional.cross_entropy(out, y)


def free_energy_by_hand(model, params: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Monograph eq. 2.32 for a variational family over binary weights, written out independently:
    Σ_φ q(φ)·[Σ_i (y_i − f_φ(x_i))²/(2σ²) + K·log(σ√2π)] + α·Σ_φ q(φ)·log(q(φ)·2ⁿ)."""
    lik, n = model.likelihood, model.bits
    q = model.probabilities(params)
    total = 0.0
    for index in range(2 ** n):
        signs = torch.tensor([2.0 * ((index >> k) & 1) - 1 for k in range(n)], dtype=torch.float64)
        f = (torch.cos(x.double() * lik.omega + lik.phase) / n ** 0.5 * signs).sum(-1, keepdim=True)
        nll = ((y.double() - f) ** 2).sum() / (2 * lik.noise ** 2) + x.shape[0] * math.log(
            lik.noise * math.sqrt(2 * math.pi))
        total = total + q[index] * (nll + model.temperature * torch.log(q[index].clamp_min(1e-300) * 2 ** n))
    return total


def predictive_log_loss_by_hand(model, params: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Monograph eq. 2.35 written out: −log Σ_φ q(φ)·Π_i N(y_i; f_φ(x_i), σ²), the sum taken in log space."""
    lik, n = model.likelihood, model.bits
    q = model.probabilities(params)
    terms = []
    for index in range(2 ** n):
        signs = torch.tensor([2.0 * ((index >> k) & 1) - 1 for k in range(n)], dtype=torch.float64)
        f = (torch.cos(x.double() * lik.omega + lik.phase) / n ** 0.5 * signs).sum(-1, keepdim=True)
        log_likelihood = -((y.double() - f) ** 2).sum() / (2 * lik.noise ** 2) - x.shape[0] * math.log(
            lik.noise * math.sqrt(2 * math.pi))
        terms.append(torch.log(q[index]) + log_likelihood)
    return -torch.logsumexp(torch.stack(terms), dim=0)


def unrolled_maml_gradient(model, params, batch, lr, steps, loss_name="mse", first_order=False, query_loss_name=None):
    """Mean meta-gradient by autograd through the unrolled inner loop (create_graph=True), one task at a time;
    the query term uses ``query_loss_name`` (default: the inner loss)."""
    theta = {k: v.detach().double().requires_grad_() for k, v in params.items()}
    b = batch.to(torch.float64, "cpu")
    total = 0.0
    for i in range(b.num_tasks):
        q = dict(theta)
        for _ in range(steps):
            loss = task_loss(model, loss_name, q, b.support_x[i], b.support_y[i])
            grads = torch.autograd.grad(loss, list(q.values()), create_graph=not first_order)
            q = {k: v - lr * g for (k, v), g in zip(q.items(), grads)}
        total = total + task_loss(model, query_loss_name or loss_name, q, b.query_x[i], b.query_y[i]) / b.num_tasks
    grads = torch.autograd.grad(total, list(theta.values()))
    return dict(zip(theta, grads))


def flat_hessian(model, loss_name, params, x, y) -> torch.Tensor:
    """Dense Hessian of one task's loss w.r.t. all parameters (flattened in dict order)."""
    names = list(params)
    shapes = [params[k].shape for k in names]
    sizes = [params[k].numel() for k in names]

    def f(flat):
        parts = torch.split(flat, sizes)
        p = {k: t.reshape(s) for k, t, s in zip(names, parts, shapes)}
        return task_loss(model, loss_name, p, x, y)

    flat = torch.cat([params[k].reshape(-1) for k in names]).double()
    return torch.autograd.functional.hessian(f, flat)


def flatten(params: dict) -> torch.Tensor:
    return torch.cat([v.reshape(-1) for v in params.values()])


def unflatten(flat: torch.Tensor, like: dict) -> dict:
    out, i = {}, 0
    for k, v in like.items():
        out[k] = flat[i : i + v.numel()].reshape(v.shape)
        i += v.numel()
    return out
