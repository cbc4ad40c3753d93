"""Prox-MAML (monograph eqs. 2.24–2.29) and ES-MAML (Algorithm 4, eqs. 2.18–2.21): closed forms,
finite differences of the Moreau envelope, unbiasedness of the ES estimators on quadratics, and
ES-MAML on a backend that offers nothing but ``loss``."""

from __future__ import annotations

import pytest
import torch

import innerloop as il
from conftest import flat_hessian, flatten, gen, rel_err
from innerloop.engine.algorithms import ESMAML, ProxMAML
from innerloop.engine.learner import Learner


def _linear(dim=4, shots=6, queries=5, tasks=3):
    model = il.models.MLP(dim, (), 1, bias=False)
    batch = il.tasks.LinearRegression(shots=shots, queries=queries, dim=dim).sample(tasks, gen(2))
    return model, batch.to(torch.float64, "cpu")


def test_prox_maml_gradient_is_the_moreau_envelope_gradient(cpu64):
    """λ(θ − φ*) (eq. 2.28) against central differences of the envelope min_φ L(φ) + λ/2‖φ − θ‖² (eq. 2.24)."""
    model = il.models.MLP(1, (6,), 1, activation="tanh")
    batch = il.tasks.Sinusoid(shots=5, queries=5).sample(2, gen(1)).to(torch.float64, "cpu")
    algo = ProxMAML(model, cpu64, inner_lr=0.05, inner_steps=3000, lam=4.0, inner_tol=1e-11)
    theta = model.init(gen(0), dtype=torch.float64)
    result = algo.compute(theta, batch)
    assert not result.warnings
    direction = {k: torch.randn(v.shape, generator=gen(3), dtype=torch.float64) for k, v in theta.items()}

    def envelope(step):
        shifted = {k: v + step * direction[k] for k, v in theta.items()}
        return float(algo.compute(shifted, batch).task_losses.mean())

    fd = (envelope(1e-5) - envelope(-1e-5)) / 2e-5
    analytic = float(sum((result.grad[k] * direction[k]).sum() for k in theta))
    assert abs(fd - analytic) < 1e-6 * max(1.0, abs(fd))


def test_prox_maml_on_linear_regression_matches_the_closed_form_prox(cpu64):
    """For L(φ) = (1/n)‖Xφ − y‖², prox_λ(θ) = (2XᵀX/n + λI)⁻¹(2Xᵀy/n + λθ)."""
    model, batch = _linear()
    algo = ProxMAML(model, cpu64, inner_lr=0.05, inner_steps=4000, lam=3.0, inner_tol=1e-12)
    theta = model.init(gen(0), dtype=torch.float64)
    grad = algo.meta_gradient(theta, batch)["layer0.weight"][0]
    expected = torch.zeros(4, dtype=torch.float64)
    for b in range(3):
        x = torch.cat([batch.support_x[b], batch.query_x[b]])
        y = torch.cat([batch.support_y[b], batch.query_y[b]])[:, 0]
        n = x.shape[0]
        phi = torch.linalg.solve(2 * x.T @ x / n + 3.0 * torch.eye(4, dtype=torch.float64),
                                 2 * x.T @ y / n + 3.0 * theta["layer0.weight"][0])
        expected += 3.0 * (theta["layer0.weight"][0] - phi) / 3
    assert torch.allclose(grad, expected, atol=1e-9)


@pytest.mark.parametrize("antithetic, orthogonal", [(True, False), (False, False), (True, True)])
def test_es_estimators_are_unbiased_on_a_quadratic(cpu64, antithetic, orthogonal):
    """For a quadratic loss the smoothed gradient/Hessian are the exact ones (eqs. 2.20, 2.21)."""
    model, batch = _linear(dim=3, tasks=2)
    learner = Learner(model, "mse")
    directions = 40_000 if antithetic else 400_000
    algo = ESMAML(model, cpu64, directions=directions, delta=1.0, antithetic=antithetic, orthogonal=orthogonal)
    params = {k: v.expand(2, *v.shape) for k, v in model.init(gen(0), dtype=torch.float64).items()}
    probe = algo.probe(learner, params, batch.support_x, batch.support_y, gen(4))
    true_loss, true_grad = cpu64.loss_and_grad(learner, params, batch.support_x, batch.support_y)
    assert torch.allclose(probe.center, true_loss)
    tol = 0.03 if antithetic else 0.05
    assert rel_err(algo.gradient(probe), true_grad) < tol
    vector = {k: torch.randn(v.shape, generator=gen(5), dtype=torch.float64) for k, v in params.items()}
    true_hv = cpu64.hvp(learner, params, batch.support_x, batch.support_y, vector)
    assert rel_err(algo.hessian_vector(probe, vector), true_hv) < (0.05 if antithetic else 0.15)
    dense = flat_hessian(model, "mse", {k: v[0] for k, v in params.items()}, batch.support_x[0], batch.support_y[0])
    assert torch.allclose(dense @ flatten({k: v[0] for k, v in vector.items()}), flatten(true_hv)[:3], atol=1e-10)


def test_orthogonal_directions_are_orthogonal_gaussian_and_cut_the_gradient_error(cpu64):
    """Orthogonal ES: rows of a block orthogonal, each row marginally N(0, I) (second moment I), and
    on a quadratic with n = d antithetic directions the squared error ≈ 2/d·‖∇L‖² against the
    (d + 1)/n·‖∇L‖² of i.i.d. directions."""
    from innerloop.engine.algorithms.es_maml import orthogonal_gaussian

    block = orthogonal_gaussian(4, 6, 6, gen(0))  # [n, B, d]
    for task in range(4):
        rows = block[:, task]
        gram = rows @ rows.T
        assert torch.allclose(gram - torch.diag(torch.diagonal(gram)), torch.zeros(6, 6, dtype=gram.dtype), atol=1e-12)
    many = orthogonal_gaussian(20_000, 7, 5, gen(1))  # a block of 5 and a block of 2 per task
    second_moment = torch.einsum("nbi,nbj->ij", many, many) / (7 * 20_000)
    assert torch.allclose(second_moment, torch.eye(5, dtype=torch.float64), atol=0.03)
    assert abs(float(many.norm(dim=-1).pow(2).var()) - 2 * 5) < 0.5  # chi²_5 lengths: variance 2d

    model = il.models.MLP(5, (4,), 1)
    batch = il.tasks.LinearRegression(shots=8, queries=2, dim=5).sample(64, gen(2)).to(torch.float64, "cpu")
    learner = Learner(model, "mse")
    params = {k: v.expand(64, *v.shape) for k, v in model.init(gen(3), dtype=torch.float64).items()}
    _, true_grad = cpu64.loss_and_grad(learner, params, batch.support_x, batch.support_y)
    dim = sum(v[0].numel() for v in params.values())
    errors = {}
    for orthogonal in (False, True):
        algo = ESMAML(model, cpu64, directions=dim, delta=1e-4, orthogonal=orthogonal)
        estimate = algo.gradient(algo.probe(learner, params, batch.support_x, batch.support_y, gen(4)))
        squared = sum((estimate[k] - true_grad[k]).flatten(1).pow(2).sum(1) for k in params)
        errors[orthogonal] = float((squared / sum(g.flatten(1).pow(2).sum(1) for g in true_grad.values())).mean())
    assert 0.6 < errors[False] < 1.6  # (d + 1)/n ≈ 1
    assert errors[True] < 6 / dim  # ≈ 2/d, plus the curvature of the ReLU net within δ


def test_es_maml_meta_gradient_matches_maml_on_a_quadratic(cpu64):
    """eq. 2.18 with many directions ≈ MAML's exact (I − αH)∇L_Q on linear regression (N = 1)."""
    model, batch = _linear(dim=3)
    theta = model.init(gen(0), dtype=torch.float64)
    maml = il.algorithms.MAML(model, cpu64, inner_lr=0.1, inner_steps=1).meta_gradient(theta, batch)
    es = ESMAML(model, cpu64, inner_lr=0.1, inner_steps=1, directions=20000, delta=0.5, hessian=True)
    es.seed(0)
    assert rel_err(es.meta_gradient(theta, batch), maml) < 0.05
    first = ESMAML(model, cpu64, inner_lr=0.1, inner_steps=1, directions=20000, delta=0.5, hessian=False)
    fomaml = il.algorithms.FOMAML(model, cpu64, inner_lr=0.1, inner_steps=1).meta_gradient(theta, batch)
    assert rel_err(first.meta_gradient(theta, batch), fomaml) < 0.05


def test_es_maml_runs_on_a_loss_only_backend_and_maml_is_refused(tmp_path, capsys):
    from innerloop.cli import main

    loss_only = il.backends.get("cpu", capabilities="loss")
    model = il.models.MLP(1, (8,), 1)
    batch = il.tasks.Sinusoid().sample(4, gen(0))
    algo = ESMAML(model, loss_only, directions=8)
    assert algo.meta_gradient(model.init(gen(1)), batch)["layer0.weight"].shape == (8, 1)
    with pytest.raises(il.CapabilityError, match="MAML needs hvp, loss_and_grad, which backend 'cpu' does not offer"):
        il.algorithms.MAML(model, loss_only)
    out = tmp_path / "es"
    assert main(["train", "--algo", "es-maml", "--backend-option", "capabilities=loss", "--hidden", "8",
                 "--meta-batch", "4", "--iters", "10", "--eval-every", "5", "--eval-tasks", "6", "--out", str(out),
                 "--quiet"]) == 0
    assert main(["eval", str(out), "--tasks", "8", "--steps", "0,1", "--joint-iters", "3", "--quiet"]) == 0
    capsys.readouterr()
    code = main(["train", "--algo", "maml", "--backend-option", "capabilities=loss", "--out", str(tmp_path / "m"),
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "algorithms that run on this backend: es-maml" in err and "Traceback" not in err


def test_prox_maml_trains_from_the_cli(tmp_path):
    from innerloop.cli import main

    out = tmp_path / "prox"
    assert main(["train", "--algo", "prox-maml", "--hidden", "16", "--meta-batch", "4", "--iters", "10",
                 "--eval-every", "5", "--eval-tasks", "6", "--inner-steps", "10", "--out", str(out), "--quiet"]) == 0
    assert (out / "adaptation.png").is_file()
