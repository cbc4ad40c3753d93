"""Exact meta-test risks of joint learning, MAML, iMAML and Bayesian meta-learning in meta linear
regression (monograph §4.6).

Tasks follow :class:`~innerloop.engine.theory.excess_meta_risk.HierarchicalLinearModel`: weights
ϕ ∼ N(θ*, s_ϕ²I) around a shared θ* ∼ N(0, s_θ²I), inputs x ∼ N(0, I_d), y = ϕᵀx + ε. On the
linear model every base-learner below is affine in its initialization, ϕ̂(θ; S) = A_S·θ + b_S, so
each meta-learner's θ̂ on K tasks is a least-squares problem, solved exactly:

* ``joint``: θ̂ fits all K·N points pooled (monograph ch. 1); at test ϕ̂ = θ̂, no adaptation;
* ``joint-gd``: the same θ̂, adapted at test by the MAML inner loop;
* ``maml``: n GD steps ϕ ← ϕ − α∇L_S(ϕ), L_S = (1/|S|)‖y − Xϕ‖² (Alg. 1): A = M^n,
  b = Σ_{j<n} M^j·c with M = I − (2α/|S|)XᵀX, c = (2α/|S|)Xᵀy; θ̂ minimizes the query loss after
  adaptation on the support (each task's N points split in halves);
* ``imaml``: the proximal solution argmin L_S(ϕ) + (λ/2)‖ϕ − θ‖² (eq. 2.8):
  A = λ(2XᵀX/|S| + λI)⁻¹, b = (2XᵀX/|S| + λI)⁻¹·2Xᵀy/|S|, θ̂ as for MAML;
* ``bayes``: the posterior mean of ϕ_T under the hierarchical model given all the data (eq. 4.37),
  which minimizes the expected squared error over every function of the data — Bayesian
  meta-learning's meta-risk is the lowest, the result §4.6 cites [22];
* ``oracle``: the posterior mean given the true θ*, a lower bound no meta-learner can reach.

At test each method adapts on the N points of a new task. With x ∼ N(0, I) the meta-test risk of an
estimate is E[(y − ϕ̂ᵀx)²] = σ² + ‖ϕ̂ − ϕ_T‖², exact given ϕ̂; the average over tasks and datasets is
a Monte Carlo mean over ``replicates`` draws shared by all methods (paired comparisons).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from innerloop.engine.errors import ConfigError
from innerloop.engine.theory.excess_meta_risk import HierarchicalLinearModel

METHODS = ("joint", "joint-gd", "maml", "imaml", "bayes", "oracle")
Affine = tuple[torch.Tensor, torch.Tensor]
Risks = dict[float | None, torch.Tensor]  # hyperparameter (α, λ or None) -> per-replicate risks


def gd_adaptation(design: torch.Tensor, targets: torch.Tensor, inner_lr: float, steps: int) -> Affine:
    """The n-step GD base-learner on L_S = (1/|S|)‖y − Xϕ‖² as (A, b) with ϕ̂ = Aθ + b;
    design [..., S, d], targets [..., S]."""
    if not inner_lr > 0 or int(steps) != steps or steps < 1:
        raise ConfigError(f"need inner_lr > 0 and steps >= 1, got {inner_lr} and {steps}", "e.g. 0.1 and 1")
    scale = 2 * inner_lr / design.shape[-2]
    eye = torch.eye(design.shape[-1], dtype=design.dtype).expand(*design.shape[:-2], -1, -1)
    step = eye - scale * design.transpose(-1, -2) @ design
    shift = scale * (design.transpose(-1, -2) @ targets[..., None])[..., 0]
    matrix, offset = eye, torch.zeros_like(shift)
    for _ in range(steps):
        matrix, offset = step @ matrix, (step @ offset[..., None])[..., 0] + shift
    return matrix, offset


def proximal_adaptation(design: torch.Tensor, targets: torch.Tensor, strength: float) -> Affine:
    """The iMAML base-learner argmin (1/|S|)‖y − Xϕ‖² + (λ/2)‖ϕ − θ‖² (eq. 2.8) as (A, b)."""
    if not strength > 0:
        raise ConfigError(f"the proximal strength λ must be > 0, got {strength}", "e.g. 1.0")
    points, dim = design.shape[-2:]
    system = 2 * design.transpose(-1, -2) @ design / points + strength * torch.eye(dim, dtype=design.dtype)
    offset = torch.linalg.solve(system, 2 * (design.transpose(-1, -2) @ targets[..., None])[..., 0] / points)
    return strength * torch.linalg.inv(system), offset


def fit_through_adaptation(adaptation: Affine, query_design: torch.Tensor, query_targets: torch.Tensor) -> torch.Tensor:
    """θ̂ = argmin Σ_k ‖y_Q,k − X_Q,k(A_k θ + b_k)‖² over K tasks (axis −3 of the design), by least
    squares (minimum-norm when under-determined)."""
    matrix, offset = adaptation
    rows = (query_design @ matrix).flatten(-3, -2)
    return least_squares(rows, (query_targets - (query_design @ offset[..., None])[..., 0]).flatten(-2))


def least_squares(rows: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The minimum-norm argmin_θ ‖targets − rows·θ‖² for rows [..., M, d] (= pinv(R)·t), through the
    smaller of the two normal matrices: pinv(RᵀR)·Rᵀt (d × d) when M ≥ d, Rᵀ·pinv(RRᵀ)·t (M × M)
    when the problem is wide."""
    transposed = rows.transpose(-1, -2)
    if rows.shape[-2] >= rows.shape[-1]:
        return (torch.linalg.pinv(transposed @ rows, hermitian=True) @ (transposed @ targets[..., None]))[..., 0]
    return (transposed @ (torch.linalg.pinv(rows @ transposed, hermitian=True) @ targets[..., None]))[..., 0]


def _apply(adaptation: Affine, theta: torch.Tensor) -> torch.Tensor:
    matrix, offset = adaptation
    return (matrix @ theta[..., None])[..., 0] + offset


def meta_test_risks(model: HierarchicalLinearModel, tasks: int, points: int, replicates: int,
                    generator: torch.Generator, inner_lrs: Sequence[float] = (0.1,),
                    strengths: Sequence[float] = (1.0,), inner_steps: int = 1) -> dict[str, Risks]:
    """Per-replicate meta-test risk σ² + ‖ϕ̂_T − ϕ_T‖² [replicates] of every method in :data:`METHODS`,
    as {method: {hyperparameter: risks}}: keyed by α for ``joint-gd`` and ``maml``, by λ for ``imaml``
    and by None for the rest; every setting sees the same draws."""
    if int(points) != points or points < 2:
        raise ConfigError(f"points must be an integer >= 2, got {points}", "MAML and iMAML split each task in halves")
    if not inner_lrs or not strengths:
        raise ConfigError("give at least one inner step size and one proximal strength", "e.g. (0.1,) and (1.0,)")
    data = model.sample(replicates, tasks, points, generator)
    x, y, test_x, test_y = data["meta_designs"], data["meta_targets"], data["test_design"], data["test_targets"]
    support, query = (x[..., : points // 2, :], y[..., : points // 2]), (x[..., points // 2:, :], y[..., points // 2:])
    joint = least_squares(x.flatten(1, 2), y.flatten(1))
    _, bayes = model.test_task_posterior(x, test_x, y, test_y)
    genie = (model.task_var * test_x.transpose(-1, -2) @ test_x / model.noise_var
             + torch.eye(model.dim, dtype=torch.float64))
    oracle = torch.linalg.solve(genie, data["theta"] + model.task_var
                                * (test_x.transpose(-1, -2) @ test_y[..., None])[..., 0] / model.noise_var)
    estimates: dict[str, Risks] = {
        "joint": {None: joint}, "joint-gd": {}, "maml": {}, "imaml": {}, "bayes": {None: bayes},
        "oracle": {None: oracle}}
    for lr in inner_lrs:
        test_gd = gd_adaptation(test_x, test_y, lr, inner_steps)
        estimates["joint-gd"][lr] = _apply(test_gd, joint)
        theta = fit_through_adaptation(gd_adaptation(*support, lr, inner_steps), *query)
        estimates["maml"][lr] = _apply(test_gd, theta)
    for strength in strengths:
        theta = fit_through_adaptation(proximal_adaptation(*support, strength), *query)
        estimates["imaml"][strength] = _apply(proximal_adaptation(test_x, test_y, strength), theta)
    return {method: {key: model.noise_var + ((estimate - data["phi"]) ** 2).sum(-1) for key, estimate in rows.items()}
            for method, rows in estimates.items()}
