"""iMAML against closed forms (monograph eqs. 2.11–2.12) and the dense implicit-function formula (3.9)."""

from __future__ import annotations

import torch

import innerloop as il
from conftest import flat_hessian, flatten, gen, rel_err, unflatten
from innerloop.engine.cg import conjugate_gradient
from innerloop.engine.closed_form import imaml_ridge_meta_solution, ridge_adapted
from innerloop.engine.learner import Learner


def _linear_setup(lam=2.0):
    fam = il.tasks.LinearRegression(shots=10, queries=10, dim=5)
    batch = fam.sample(20, generator=gen(0)).to(torch.float64, "cpu")
    model = il.models.MLP(5, (), 1, bias=False)  # ŷ = ϕᵀx, monograph eq. 2.9
    backend = il.backends.get("cpu", dtype=torch.float64)
    algo = il.algorithms.iMAML(model, backend=backend, inner_lr=0.1, inner_steps=3000, lam=lam,
                               inner_tol=1e-13, cg_steps=50, cg_tol=1e-14)
    return batch, model, algo


def test_inner_solution_is_eq_2_11():
    batch, model, algo = _linear_setup()
    theta = model.init(gen(1), dtype=torch.float64)
    phi = algo.adapt(theta, batch)["layer0.weight"][:, 0, :]
    expected = ridge_adapted(batch.support_x, batch.support_y, theta["layer0.weight"][0], lam=2.0)
    assert torch.allclose(phi, expected, rtol=1e-10, atol=1e-12)


def test_closed_form_meta_solution_is_a_stationary_point():
    """Independent check of eq. 2.12: autograd of the meta-objective through eq. 2.11 vanishes at θ̂."""
    batch, _, _ = _linear_setup()
    theta_hat = imaml_ridge_meta_solution(batch.support_x, batch.support_y, batch.query_x, batch.query_y, lam=2.0)
    theta = theta_hat.clone().requires_grad_()
    phi = ridge_adapted(batch.support_x, batch.support_y, theta, lam=2.0)
    meta_loss = ((batch.query_x @ phi[..., None] - batch.query_y) ** 2).mean()
    (grad,) = torch.autograd.grad(meta_loss, theta)
    assert grad.norm() < 1e-12
    # and with the monograph's sum-of-squares convention the formula differs only by λ → λK
    assert torch.allclose(
        imaml_ridge_meta_solution(batch.support_x, batch.support_y, batch.query_x, batch.query_y,
                                  lam=20.0, reduction="sum"), theta_hat, rtol=1e-12)


def test_imaml_training_reaches_the_closed_form_meta_solution():
    """Acceptance 2: outer optimization with iMAML meta-gradients converges to θ̂ of eq. 2.12 (< 1e-4)."""
    batch, model, algo = _linear_setup()
    theta_hat = imaml_ridge_meta_solution(batch.support_x, batch.support_y, batch.query_x, batch.query_y, lam=2.0)
    w = torch.zeros(1, 5, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w], lr=1.0, max_iter=100, tolerance_grad=1e-13, tolerance_change=1e-16,
                                  line_search_fn="strong_wolfe")

    def closure():
        result = algo.compute({"layer0.weight": w.detach()}, batch)
        w.grad = result.grad["layer0.weight"].clone()
        return result.task_losses.mean()

    for _ in range(5):
        optimizer.step(closure)
    error = float((w.detach()[0] - theta_hat).norm() / theta_hat.norm())
    assert error < 1e-4, error
    diag = algo.compute({"layer0.weight": w.detach()}, batch).diagnostics
    assert diag["cg_residual"] < 1e-10 and diag["inner_residual"] < 1e-12


def test_meta_gradient_matches_dense_implicit_function_formula():
    """Acceptance 2: (I + H/λ)⁻¹∇L_Q(φ*) with the dense Hessian of a small MLP, per task, averaged."""
    fam = il.tasks.Sinusoid(shots=10, queries=10)
    batch = fam.sample(4, generator=gen(2)).to(torch.float64, "cpu")
    model = il.models.MLP(1, (8, 8), 1, activation="tanh")
    params = model.init(gen(3), dtype=torch.float64)
    backend = il.backends.get("cpu", dtype=torch.float64)
    lam = 10.0
    algo = il.algorithms.iMAML(model, backend=backend, inner_lr=0.01, inner_steps=5000, lam=lam,
                               inner_tol=1e-12, cg_steps=200, cg_tol=1e-13)
    result = algo.compute(params, batch)
    assert result.diagnostics["cg_indefinite_tasks"] == 0
    phi = algo.adapt(params, batch)
    expected = torch.zeros(model.num_params(), dtype=torch.float64)
    for i in range(batch.num_tasks):
        task = {k: v[i].clone().requires_grad_() for k, v in phi.items()}
        query = ((model.apply(task, batch.query_x[i]) - batch.query_y[i]) ** 2).mean()
        g_q = flatten(dict(zip(task, torch.autograd.grad(query, list(task.values())))))
        hessian = flat_hessian(model, "mse", {k: v.detach() for k, v in task.items()},
                               batch.support_x[i], batch.support_y[i])
        eye = torch.eye(len(g_q), dtype=torch.float64)
        expected += torch.linalg.solve(eye + hessian / lam, g_q) / batch.num_tasks
    assert rel_err(result.grad, unflatten(expected, params)) < 1e-8


def test_conjugate_gradient_solves_spd_systems_per_task():
    torch.manual_seed(0)
    mats = []
    for _ in range(3):
        a = torch.randn(6, 6, dtype=torch.float64)
        mats.append(a @ a.T + 0.5 * torch.eye(6, dtype=torch.float64))
    mats = torch.stack(mats)
    rhs = {"v": torch.randn(3, 6, dtype=torch.float64)}
    result = conjugate_gradient(lambda p: {"v": (mats @ p["v"][..., None])[..., 0]}, rhs, max_iter=50, tol=1e-14)
    expected = torch.linalg.solve(mats, rhs["v"])
    assert torch.allclose(result.solution["v"], expected, rtol=1e-9)
    assert result.relative_residual.max() < 1e-12 and not result.indefinite.any()


def test_conjugate_gradient_flags_indefinite_tasks_instead_of_dividing_by_zero():
    mats = torch.stack([torch.eye(2, dtype=torch.float64), -torch.eye(2, dtype=torch.float64)])
    rhs = {"v": torch.ones(2, 2, dtype=torch.float64)}
    result = conjugate_gradient(lambda p: {"v": (mats @ p["v"][..., None])[..., 0]}, rhs, max_iter=10, tol=1e-12)
    assert result.indefinite.tolist() == [False, True]
    assert torch.isfinite(result.solution["v"]).all()
    assert torch.allclose(result.solution["v"][0], torch.ones(2, dtype=torch.float64))


def test_imaml_reports_unconverged_inner_solves():
    batch, model, _ = _linear_setup()
    backend = il.backends.get("cpu", dtype=torch.float64)
    algo = il.algorithms.iMAML(model, backend=backend, inner_lr=0.01, inner_steps=2, lam=2.0, inner_tol=1e-10)
    diag = algo.compute(model.init(gen(4), dtype=torch.float64), batch).diagnostics
    assert diag["inner_steps_run"] == 2 and diag["inner_residual"] > 1e-3
    learner = Learner(model, "mse")
    assert learner.loss_name == "mse"
