"""Backend primitives against independent computations; registry and capability handling."""

from __future__ import annotations

import pytest
import torch

import innerloop as il
from conftest import flat_hessian, flatten, gen, rel_err
from innerloop.engine.learner import Learner
from innerloop.engine.params import expand_to_tasks


def _setup(activation="tanh", tasks=3):
    fam = il.tasks.Sinusoid(shots=8, queries=8)
    batch = fam.sample(tasks, generator=gen(0)).to(torch.float64, "cpu")
    model = il.models.MLP(1, (10, 10), 1, activation=activation)
    base = model.init(gen(1), dtype=torch.float64)
    # distinct per-task parameters, as after adaptation
    params = {k: v + 0.1 * torch.randn((tasks, *v.shape), generator=gen(2), dtype=torch.float64)
              for k, v in base.items()}
    return model, Learner(model, "mse"), batch, params


def test_loss_and_grad_match_autograd(cpu64):
    model, learner, batch, params = _setup()
    losses, grads = cpu64.loss_and_grad(learner, params, batch.support_x, batch.support_y)
    for i in range(batch.num_tasks):
        p = {k: v[i].clone().requires_grad_() for k, v in params.items()}
        loss = ((model.apply(p, batch.support_x[i]) - batch.support_y[i]) ** 2).mean()
        ref = torch.autograd.grad(loss, list(p.values()))
        assert torch.allclose(losses[i], loss, rtol=1e-13)
        for k, r in zip(p, ref):
            assert torch.allclose(grads[k][i], r, rtol=1e-12, atol=1e-14)
    assert torch.allclose(cpu64.loss(learner, params, batch.support_x, batch.support_y), losses, rtol=1e-14)

def test_targets_that_would_broadcast_or_hold_no_point_are_clear_errors():
    """The torch.func path refuses a target [K] against predictions [K, 1] (a broadcast to [K, K]
    would be a wrong loss, not an error) and an empty point set (a NaN)."""
    _, learner, batch, params = _setup()
    oracle = il.backends.get("cpu", dtype=torch.float64, fused=False)
    x, y = batch.support_x, batch.support_y
    with pytest.raises(il.ShapeError, match=r"mse targets have shape \(8,\) but the predictions \(8, 1\)"):
        oracle.loss(learner, params, x, y[..., 0])
    with pytest.raises(il.ShapeError, match="at least one point per task"):
        oracle.loss_and_grad(learner, params, x[:, :0], y[:, :0])
    with pytest.raises(il.ShapeError, match="zero points"):  # the per-task loss itself, called directly
        learner.task_loss({k: v[0] for k, v in params.items()}, x[0, :0], y[0, :0])


def test_the_torch_func_path_names_a_tensor_without_the_task_axis():
    """Primitives take [B, K, ...] data and one parameter row per task; a tensor that breaks this
    is named (vmap's own error lists sizes, not tensors)."""
    _, learner, batch, params = _setup()
    oracle = il.backends.get("cpu", dtype=torch.float64, fused=False)
    x, y = batch.support_x, batch.support_y
    with pytest.raises(il.ShapeError, match=r"x has shape \(3, 8, 1\) and y \(2, 8, 1\)"):
        oracle.loss(learner, params, x, y[:2])
    with pytest.raises(il.ShapeError, match=r"parameter 'layer0.weight' has shape \(10, 1\); .* leading axis of 3"):
        oracle.loss_and_grad(learner, {**params, "layer0.weight": params["layer0.weight"][0]}, x, y)
    with pytest.raises(il.ShapeError, match=r"the direction has entries"):
        oracle.hvp(learner, params, x, y, {k: v for k, v in params.items() if k != "layer1.bias"})


@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu", "silu"])
def test_hvp_matches_central_finite_differences(cpu64, activation):
    """Acceptance 1: Hv equals (∇L(θ + εv) − ∇L(θ − εv)) / 2ε in float64."""
    _, learner, batch, params = _setup(activation)
    v = {k: torch.randn(p.shape, generator=gen(3), dtype=torch.float64) for k, p in params.items()}
    hv = cpu64.hvp(learner, params, batch.support_x, batch.support_y, v)
    eps = 1e-6
    plus = {k: p + eps * v[k] for k, p in params.items()}
    minus = {k: p - eps * v[k] for k, p in params.items()}
    _, g_plus = cpu64.loss_and_grad(learner, plus, batch.support_x, batch.support_y)
    _, g_minus = cpu64.loss_and_grad(learner, minus, batch.support_x, batch.support_y)
    fd = {k: (g_plus[k] - g_minus[k]) / (2 * eps) for k in params}
    assert rel_err(hv, fd) < 1e-6


def test_hvp_matches_dense_hessian(cpu64):
    model, learner, batch, params = _setup("tanh")
    v = {k: torch.randn(p.shape, generator=gen(4), dtype=torch.float64) for k, p in params.items()}
    hv = cpu64.hvp(learner, params, batch.support_x, batch.support_y, v)
    for i in range(batch.num_tasks):
        task = {k: p[i] for k, p in params.items()}
        dense = flat_hessian(model, "mse", task, batch.support_x[i], batch.support_y[i])
        expected = dense @ flatten({k: x[i] for k, x in v.items()})
        assert torch.allclose(flatten({k: x[i] for k, x in hv.items()}), expected, rtol=1e-11, atol=1e-12)


def test_torch_backend_matches_cpu_reference(cpu64):
    _, learner, batch, params = _setup()
    other = il.backends.get("torch", device="cpu", dtype="float64")
    v = expand_to_tasks({k: torch.ones(p.shape[1:], dtype=torch.float64) for k, p in params.items()}, 3)
    assert rel_err(other.hvp(learner, params, batch.support_x, batch.support_y, v),
                   cpu64.hvp(learner, params, batch.support_x, batch.support_y, v)) < 1e-14


def test_registry_and_dtype():
    assert {"cpu", "torch"} <= set(il.backends.available())
    assert il.backends.get("cpu").dtype == torch.float32
    assert il.backends.get("cpu", dtype="float64").dtype == torch.float64
    info = il.backends.describe("cpu")
    assert info.available and {"loss", "loss_and_grad", "hvp"} <= info.capabilities
    with pytest.raises(il.ConfigError, match="(?s)unknown backend 'cpuu'.*did you mean 'cpu'"):
        il.backends.get("cpuu")
    with pytest.raises(il.ConfigError, match="unknown dtype"):
        il.backends.get("cpu", dtype="float17")
    with pytest.raises(il.ConfigError, match="does not take option"):
        il.backends.get("cpu", device="cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error path")
def test_cuda_request_without_gpu_is_a_clear_error():
    with pytest.raises(il.BackendUnavailableError, match="no CUDA GPU"):
        il.backends.get("torch", device="cuda")


def test_restricted_capabilities_and_capability_error(cpu64):
    restricted = il.backends.get("cpu", capabilities="loss,loss_and_grad")
    assert restricted.capabilities == {"loss", "loss_and_grad"}
    model = il.models.MLP(1, (8,), 1)
    with pytest.raises(il.CapabilityError) as err:
        il.algorithms.MAML(model, backend=restricted)
    text = str(err.value)
    assert "needs hvp" in text and "fomaml" in text and "reptile" in text and "first_order=True" in text
    # the first-order family runs
    il.algorithms.FOMAML(model, backend=restricted)
    il.algorithms.MAML(model, backend=restricted, first_order=True)
    loss_only = il.backends.get("cpu", capabilities=["loss"])
    with pytest.raises(il.CapabilityError, match="algorithms that run on this backend: es-maml$"):
        il.algorithms.Reptile(model, backend=loss_only)
    _, learner, batch, params = _setup()
    with pytest.raises(il.CapabilityError, match="'hvp'"):
        restricted.hvp(learner, params, batch.support_x, batch.support_y, params)
    with pytest.raises(il.ConfigError, match="unknown capabilities"):
        il.backends.get("cpu", capabilities="loss,telepathy")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_backend_on_cuda_matches_cpu(cpu64):
    _, learner, batch, params = _setup()
    gpu = il.backends.get("torch", device="cuda", dtype="float64")
    moved = {k: v.cuda() for k, v in params.items()}
    _, g_gpu = gpu.loss_and_grad(learner, moved, batch.support_x.cuda(), batch.support_y.cuda())
    _, g_cpu = cpu64.loss_and_grad(learner, params, batch.support_x, batch.support_y)
    assert rel_err({k: v.cpu() for k, v in g_gpu.items()}, g_cpu) < 1e-12
