"""The two reference implementations every speed-up is measured against.

* ``torch.func`` — the idiom of seed 000 §2.5/§10.2: an ``nn.Module`` called through
  ``functional_call``, ``grad`` inside ``vmap`` over tasks (HVPs as grad-of-grad·v), and for MAML the outer
  ``autograd.grad`` through the unrolled functional inner loop (grad-of-grad);
* ``loop`` — one task at a time: MAML clones the module per task and adapts the clone with
  ``torch.autograd.grad(create_graph=True)``, the way the most used PyTorch meta-learning
  libraries (learn2learn's clone_module/update_module) do it.

Any implementation can also be timed as a CUDA graph (``NAME+graph``,
:func:`innerloop.backends.cuda_graphs.cuda_graphed`): the whole call captured once and replayed,
which removes the host's per-op dispatch and launch cost and leaves the device work.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from innerloop.engine.models import ACTIVATIONS, MLP

Params = dict[str, torch.Tensor]


class TorchMLP(nn.Module):
    """The engine MLP as an nn.Module whose parameter names match (``layer{layer}.weight``/``.bias``)."""

    def __init__(self, model: MLP) -> None:
        super().__init__()
        self.activation = ACTIVATIONS[model.activation]
        self.num_layers = model.num_layers
        for layer, (fan_in, fan_out) in enumerate(zip(model.widths[:-1], model.widths[1:])):
            setattr(self, f"layer{layer}", nn.Linear(fan_in, fan_out, bias=model.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in range(self.num_layers):
            x = getattr(self, f"layer{layer}")(x)
            if layer < self.num_layers - 1:
                x = self.activation(x)
        return x


def _loss(loss: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return F.mse_loss if loss == "mse" else F.cross_entropy


def torch_func_idiom(module: TorchMLP, loss: str) -> dict[str, Callable]:
    """grad / hvp / meta_gradient in the seed's torch.func idiom."""
    criterion = _loss(loss)

    def loss_fn(p: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return criterion(functional_call(module, p, (x,)), y)

    def grads(params: Params, x: torch.Tensor, y: torch.Tensor) -> Params:
        return vmap(grad(loss_fn))(params, x, y)

    def task_hvp(p: Params, xb: torch.Tensor, yb: torch.Tensor, vb: Params) -> Params:
        # reverse-over-reverse, ∇(∇L·v) (seed 000 eq. 2.7); jvp-of-grad through nn.Linear trips a
        # functorch ZeroTensor error in torch 2.13
        return grad(lambda q: sum((gk * vb[k]).sum() for k, gk in grad(loss_fn)(q, xb, yb).items()))(p)

    def hvp(params: Params, x: torch.Tensor, y: torch.Tensor, v: Params) -> Params:
        return vmap(task_hvp)(params, x, y, v)

    def meta_gradient(theta: Params, sx, sy, qx, qy, lr: float, steps: int, first_order: bool) -> tuple:
        leaves = {k: v.detach().requires_grad_(True) for k, v in theta.items()}

        def task(p: Params, sxb, syb, qxb, qyb) -> torch.Tensor:
            for _ in range(steps):
                g = grad(loss_fn)(p, sxb, syb)
                if first_order:
                    g = {k: v.detach() for k, v in g.items()}
                p = {k: v - lr * g[k] for k, v in p.items()}
            return loss_fn(p, qxb, qyb)

        losses = vmap(task, in_dims=(None, 0, 0, 0, 0))(leaves, sx, sy, qx, qy)
        return losses.detach(), dict(zip(leaves, torch.autograd.grad(losses.mean(), list(leaves.values()))))

    return {"grad": grads, "hvp": hvp, "meta_gradient": meta_gradient}


def _clone(module: nn.Module) -> nn.Module:
    """A shallow copy of ``module`` (and its children) whose parameters are differentiable clones
    of the originals — learn2learn's ``clone_module`` idea, written out."""
    twin = copy.copy(module)
    twin._parameters = {k: (None if p is None else p.clone()) for k, p in module._parameters.items()}
    twin._modules = {k: _clone(m) for k, m in module._modules.items()}
    return twin


def _sgd_update(module: nn.Module, grads: list[torch.Tensor], lr: float) -> None:
    """θ ← θ − α∇ on a clone, in place of its parameters (keeping the graph for create_graph)."""
    tensors = iter(grads)
    for m in module.modules():
        for k, p in m._parameters.items():
            m._parameters[k] = p - lr * next(tensors)


def per_task_loop(module: TorchMLP, loss: str) -> dict[str, Callable]:
    """grad / hvp / meta_gradient one task at a time with plain autograd; MAML clones the module
    per task, adapts the clone with ``autograd.grad(create_graph=True)`` and backpropagates the
    query loss into the original's ``.grad``."""
    criterion = _loss(loss)

    def loss_fn(p: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return criterion(functional_call(module, p, (x,)), y)

    def grads(params: Params, x, y) -> list:
        out = []
        for b in range(x.shape[0]):
            p = {k: v[b].detach().requires_grad_(True) for k, v in params.items()}
            out.append(torch.autograd.grad(loss_fn(p, x[b], y[b]), list(p.values())))
        return out

    def hvp(params: Params, x, y, v: Params) -> list:
        out = []
        for b in range(x.shape[0]):
            p = {k: t[b].detach().requires_grad_(True) for k, t in params.items()}
            g = torch.autograd.grad(loss_fn(p, x[b], y[b]), list(p.values()), create_graph=True)
            dot = sum((gi * v[k][b]).sum() for gi, k in zip(g, p))
            out.append(torch.autograd.grad(dot, list(p.values())))
        return out

    def meta_gradient(theta: Params, sx, sy, qx, qy, lr: float, steps: int, first_order: bool) -> tuple:
        with torch.no_grad():
            for k, p in module.named_parameters():
                p.copy_(theta[k])
        module.zero_grad(set_to_none=True)
        losses = []
        for b in range(sx.shape[0]):
            learner = _clone(module)
            for _ in range(steps):
                support = criterion(learner(sx[b]), sy[b])
                step = torch.autograd.grad(support, list(learner.parameters()), create_graph=not first_order)
                _sgd_update(learner, step, lr)
            query = criterion(learner(qx[b]), qy[b]) / sx.shape[0]
            query.backward()
            losses.append(query.detach() * sx.shape[0])
        return torch.stack(losses), {k: p.grad for k, p in module.named_parameters()}

    return {"grad": grads, "hvp": hvp, "meta_gradient": meta_gradient}
