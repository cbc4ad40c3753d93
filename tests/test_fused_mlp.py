"""Fused closed-form MLP passes (kernels/) against the torch.func oracle, finite differences
and autograd unrolls, in float64 (issue 5, acceptance 1 and 4)."""

from __future__ import annotations

import pytest
import torch

import innerloop as il
from conftest import gen, rel_err, unrolled_maml_gradient
from innerloop.engine.config import TrainConfig
from innerloop.engine.context_model import ContextModel
from innerloop.engine.learner import Learner
from innerloop.engine.models import MLP
from innerloop.engine.tasks import TaskBatch
from innerloop.engine.trainer import train
from innerloop.kernels.fused_maml import trajectory_buffers
from innerloop.kernels.mlp_layout import MLPSpec
from innerloop.kernels.mlp_primitives import mlp_hvp, mlp_loss, mlp_loss_and_grad

ACTIVATIONS = ["relu", "tanh", "gelu", "silu"]
LOSSES = ["mse", "cross_entropy"]
# depth 1–4 (number of weight layers), widths 1–256
ARCHITECTURES = [(3, (), 2), (1, (1,), 1), (2, (40,), 3), (1, (40, 40), 1), (5, (256, 7), 4), (4, (9, 1, 6), 2)]
TOL = 1e-10


@pytest.fixture(scope="module")
def oracle():
    return il.backends.get("cpu", dtype=torch.float64, fused=False)


def _problem(in_dim, hidden, out, activation, loss, tasks=3, points=6, seed=0):
    g = gen(seed)
    out = max(out, 2) if loss == "cross_entropy" else out  # one class has a zero gradient
    model = MLP(in_dim, hidden, out, activation=activation)
    learner = Learner(model, loss)
    theta = model.init(g, dtype=torch.float64)
    params = {k: v + 0.3 * torch.randn(tasks, *v.shape, generator=g, dtype=torch.float64) for k, v in theta.items()}
    x = torch.randn(tasks, points, in_dim, generator=g, dtype=torch.float64)
    y = (torch.randn(tasks, points, out, generator=g, dtype=torch.float64) if loss == "mse"
         else torch.randint(0, out, (tasks, points), generator=g))
    vector = {k: torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in params.items()}
    return model, learner, theta, params, x, y, vector


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: f"{a[0]}-{'-'.join(map(str, a[1]))}-{a[2]}")
def test_primitives_equal_torch_func(oracle, activation, loss, arch):
    _, learner, _, params, x, y, vector = _problem(*arch, activation, loss)
    spec = MLPSpec.of(learner)
    loss_f, grad_f = mlp_loss_and_grad(spec, params, x, y)
    loss_o, grad_o = oracle.loss_and_grad(learner, params, x, y)
    assert torch.allclose(loss_f, loss_o, rtol=TOL, atol=0)
    assert torch.allclose(mlp_loss(spec, params, x, y), loss_o, rtol=TOL, atol=0)
    assert rel_err(grad_f, grad_o) < TOL
    assert rel_err(mlp_hvp(spec, params, x, y, vector), oracle.hvp(learner, params, x, y, vector)) < TOL


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
def test_hvp_matches_finite_differences_of_the_gradient(activation, loss):
    _, learner, _, params, x, y, vector = _problem(2, (8, 5), 3, activation, loss)
    spec = MLPSpec.of(learner)
    eps = 1e-5
    plus = mlp_loss_and_grad(spec, {k: p + eps * vector[k] for k, p in params.items()}, x, y)[1]
    minus = mlp_loss_and_grad(spec, {k: p - eps * vector[k] for k, p in params.items()}, x, y)[1]
    finite = {k: (plus[k] - minus[k]) / (2 * eps) for k in plus}
    assert rel_err(mlp_hvp(spec, params, x, y, vector), finite) < 1e-7


@pytest.mark.parametrize("loss", LOSSES)
def test_masked_points_equal_the_unpadded_tasks(oracle, loss):
    """Ragged task batches: padded points (mask 0) change nothing; each task equals its own unpadded data."""
    _, learner, _, params, x, y, vector = _problem(2, (6, 4), 3, "tanh", loss, tasks=4, points=7)
    spec = MLPSpec.of(learner)
    lengths = [7, 3, 1, 5]
    mask = torch.arange(7).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    x = x.masked_fill(~mask.unsqueeze(-1), 123.0)  # garbage in the padding must not leak
    loss_f, grad_f = mlp_loss_and_grad(spec, params, x, y, mask)
    hvp_f = mlp_hvp(spec, params, x, y, vector, mask)
    for b, n in enumerate(lengths):
        one = {k: v[b:b + 1] for k, v in params.items()}
        xb, yb = x[b:b + 1, :n], y[b:b + 1, :n]
        loss_o, grad_o = oracle.loss_and_grad(learner, one, xb, yb)
        assert torch.allclose(loss_f[b], loss_o[0], rtol=TOL, atol=0)
        assert rel_err({k: v[b] for k, v in grad_f.items()}, {k: v[0] for k, v in grad_o.items()}) < TOL
        hvp_o = oracle.hvp(learner, one, xb, yb, {k: v[b:b + 1] for k, v in vector.items()})
        assert rel_err({k: v[b] for k, v in hvp_f.items()}, {k: v[0] for k, v in hvp_o.items()}) < TOL


def test_a_task_with_no_points_is_refused():
    _, learner, _, params, x, y, _ = _problem(2, (4,), 1, "relu", "mse")
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1] = False
    with pytest.raises(ValueError, match="no unmasked points"):
        mlp_loss(MLPSpec.of(learner), params, x, y, mask)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("steps,first_order", [(0, False), (1, False), (3, False), (1, True), (3, True)])
def test_fused_meta_gradient_equals_the_oracle_and_the_unroll(oracle, activation, loss, steps, first_order):
    model, learner, theta, _, x, y, _ = _problem(2, (12, 9), 3, activation, loss, tasks=4)
    g = gen(9)
    qx = torch.randn(4, 5, 2, generator=g, dtype=torch.float64)
    qy = (torch.randn(4, 5, 3, generator=g, dtype=torch.float64) if loss == "mse"
          else torch.randint(0, 3, (4, 5), generator=g))
    batch = TaskBatch(x, y, qx, qy)
    fused = il.backends.get("cpu", dtype=torch.float64)
    losses, meta = fused.meta_gradient(learner, theta, x, y, qx, qy, 0.3, steps, first_order)
    algo = il.algorithms.MAML(model, oracle, inner_lr=0.3, inner_steps=steps, first_order=first_order)
    reference = algo.compute(theta, batch)
    assert rel_err(meta, reference.grad) < TOL
    assert torch.allclose(losses, reference.task_losses, rtol=TOL, atol=0)
    unrolled = unrolled_maml_gradient(model, theta, batch, 0.3, steps, loss_name=loss, first_order=first_order)
    assert rel_err(meta, unrolled) < 1e-9


def test_cpu_backend_fuses_mlps_by_default_and_maml_dispatches_to_it(monkeypatch):
    cpu, oracle = il.backends.get("cpu"), il.backends.get("cpu", fused=False)
    assert cpu.supports("meta_gradient") and not oracle.supports("meta_gradient")
    model = MLP(1, (8,), 1)
    assert cpu.fuses(Learner(model, "mse")) and not oracle.fuses(Learner(model, "mse"))
    calls = []
    original = type(cpu).meta_gradient
    monkeypatch.setattr(type(cpu), "meta_gradient", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    family = il.tasks.Sinusoid(shots=5, queries=5)
    il.algorithms.MAML(model, cpu).compute(model.init(gen(0)), family.sample(4, gen(1)))
    assert calls == [1]
    # partial adaptation composes the (fused) primitives instead
    il.algorithms.ANIL(model, cpu).compute(model.init(gen(0)), family.sample(4, gen(1)))
    assert calls == [1]


def test_fused_option_errors_are_clear():
    with pytest.raises(il.ConfigError, match="only with fused=True"):
        il.backends.get("cpu", fused=False, capabilities="loss,meta_gradient")
    cpu = il.backends.get("cpu")
    with pytest.raises(il.ConfigError, match="cannot fuse"):
        learner = Learner(ContextModel(MLP(1, (4,), 1), 2), "mse")
        z = torch.zeros(2, 3, 1)
        cpu.meta_gradient(learner, {}, z, z, z, z, 0.1, 1)


def test_snapshot_memory_grows_by_one_parameter_copy_per_task_per_step():
    spec = MLPSpec((1, 40, 40, 1), "relu", True, "mse")
    size = [trajectory_buffers(spec, 32, steps, torch.float32, torch.device("cpu")).nbytes for steps in (2, 3, 4)]
    assert size[1] - size[0] == size[2] - size[1] == 32 * spec.num_params * 4


def test_meta_training_with_the_fused_path_follows_the_oracle_path(tmp_path):
    """Acceptance 4: same seed, float64, 100 iterations — parameters equal to 1e-9."""
    base = dict(algo="maml", task="sinusoid", hidden=(40, 40), meta_batch=8, inner_steps=3, iters=100,
                checkpoint_every=100, eval_every=1000, eval_tasks=4, dtype="float64", seed=5)
    fused = train(TrainConfig(**base), tmp_path / "fused", progress=False)
    oracle = train(TrainConfig(**base, backend_options={"fused": False}), tmp_path / "oracle", progress=False)
    assert rel_err(fused.params, oracle.params) < 1e-9
    assert max(float((fused.params[k] - oracle.params[k]).abs().max()) for k in fused.params) < 1e-9
