"""Double descent of minimum-norm least squares, the overparameterized regime of monograph §7.2.1.

When the parameters outnumber the equations, least squares has many interpolating solutions and
the meta-learners of :mod:`~innerloop.engine.theory.meta_linear_regression` take the one of
minimum norm. For one linear-regression problem with isotropic Gaussian inputs x ∼ N(0, I_d),
n points, targets y = θᵀx + ε, ε ∼ N(0, σ²), the expected test risk σ² + E‖θ̂ − θ‖² of the
minimum-norm estimate θ̂ = X⁺y is known exactly at every finite (n, d):

* d < n − 1 (under-parameterized): σ² + σ²·d/(n − d − 1)   (E tr (XᵀX)⁻¹ of a Wishart matrix);
* d > n + 1 (over-parameterized):  σ² + ‖θ‖²·(1 − n/d) + σ²·n/(d − n − 1)
  — the part of θ outside the row space of X, a uniformly random n-dimensional subspace, is lost
  (bias), and the noise enters through E tr (XXᵀ)⁻¹ = n/(d − n − 1) (variance);
* |d − n| ≤ 1: infinite (the smallest singular value of X has no finite inverse moment).

The risk peaks at the interpolation threshold d = n and falls again beyond it: the "double
descent" behind the benign overfitting that §7.2.1 asks about for meta-learning. With isotropic
inputs the second descent only reaches the null risk ‖θ‖² + σ². Overfitting turns benign with a
spiked input covariance (:func:`spiked_variances`): the weights live in s strong directions and
the d − s weak ones share a small total variance, so an interpolating solution parks the noise in
weak directions, which the test inputs barely excite ([187]–[190]).

:func:`spiked_meta_risks` runs meta linear regression in that regime: tasks ϕ_k = θ* + δ_k in the
strong directions, K tasks of N points, and the minimum-norm joint learner and one-step MAML.
"""

from __future__ import annotations

import math

import torch

from innerloop.engine.errors import ConfigError
from innerloop.engine.theory.meta_linear_regression import least_squares


def min_norm_risk(dim: int, points: int, signal: float, noise_var: float) -> float:
    """σ² + E‖θ̂ − θ‖² of θ̂ = X⁺y for d = ``dim`` features, n = ``points``, ‖θ‖² = ``signal``
    (see the module docstring); ``inf`` within one of the threshold d = n."""
    for name, value in (("dim", dim), ("points", points)):
        if int(value) != value or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value}", "e.g. dim=30 points=20")
    if signal < 0 or not noise_var > 0:
        raise ConfigError(f"need signal >= 0 and noise_var > 0, got {signal} and {noise_var}", "e.g. 1.0 and 0.25")
    if dim < points - 1:
        return noise_var + noise_var * dim / (points - dim - 1)
    if dim > points + 1:
        return noise_var + signal * (1 - points / dim) + noise_var * points / (dim - points - 1)
    return math.inf


def spiked_variances(dim: int, strong: int, weak_total: float) -> torch.Tensor:
    """Input variances [d]: 1 in the first ``strong`` directions, ``weak_total``/(d − s) in each other."""
    if int(strong) != strong or strong < 1 or int(dim) != dim or dim < strong:
        raise ConfigError(f"need integers dim >= strong >= 1, got dim={dim}, strong={strong}", "e.g. dim=100 strong=3")
    if not weak_total > 0:
        raise ConfigError(f"weak_total must be > 0, got {weak_total}", "e.g. weak_total=1.0")
    variances = torch.ones(dim, dtype=torch.float64)
    if dim > strong:
        variances[strong:] = weak_total / (dim - strong)
    return variances


def one_step_maml_rows(support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor,
                       query_y: torch.Tensor, inner_lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The least-squares rows of one-step MAML without d × d matrices: with c = 2α/|S|, the adapted
    weights are ϕ̂ = θ − c·X_Sᵀ(X_Sθ − y_S), so the query residual is R·θ − t with
    R = X_Q − c·(X_Q X_Sᵀ)X_S and t = y_Q − c·X_Q X_Sᵀ y_S; rows [..., K·Q, d], targets [..., K·Q]
    for K tasks on axis −3."""
    scale = 2 * inner_lr / support_x.shape[-2]
    cross = query_x @ support_x.transpose(-1, -2)  # [..., K, Q, S]
    rows = query_x - scale * cross @ support_x
    targets = query_y - scale * (cross @ support_y[..., None])[..., 0]
    return rows.flatten(-3, -2), targets.flatten(-2)


def one_step_adapt(theta: torch.Tensor, design: torch.Tensor, targets: torch.Tensor, inner_lr: float) -> torch.Tensor:
    """ϕ̂ = θ − (2α/N)·Xᵀ(Xθ − y): one GD step on L = (1/N)‖y − Xϕ‖² from θ [..., d]."""
    residual = (design @ theta[..., None])[..., 0] - targets
    return theta - 2 * inner_lr / design.shape[-2] * (design.transpose(-1, -2) @ residual[..., None])[..., 0]


def spiked_meta_risks(dim: int, strong: int, weak_total: float, tasks: int, points: int, draws: int,
                      generator: torch.Generator, signal: float = 1.0, spread: float = 0.2,
                      noise_var: float = 0.25, inner_lr: float = 0.1) -> dict[str, torch.Tensor]:
    """Per-draw meta-test risks σ² + (ϕ̂ − ϕ_T)ᵀΣ(ϕ̂ − ϕ_T) [draws] of the minimum-norm ``joint``
    learner (no adaptation), ``joint-gd`` (one GD step on the new task's N points) and one-step
    ``maml`` (support and query halves), with Σ = :func:`spiked_variances`; θ* ∼ N(0, (signal/s)I_s)
    and δ_k ∼ N(0, (spread/s)I_s) in the strong directions, zero elsewhere."""
    variances = spiked_variances(dim, strong, weak_total)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    theta = torch.zeros(draws, dim, dtype=torch.float64)
    theta[:, :strong] = math.sqrt(signal / strong) * normal(draws, strong)
    phis = theta[:, None].repeat(1, tasks + 1, 1)
    phis[..., :strong] += math.sqrt(spread / strong) * normal(draws, tasks + 1, strong)
    designs = normal(draws, tasks + 1, points, dim) * variances.sqrt()
    targets = (designs @ phis[..., None])[..., 0] + math.sqrt(noise_var) * normal(draws, tasks + 1, points)
    x, y, test_x, test_y = designs[:, :-1], targets[:, :-1], designs[:, -1], targets[:, -1]
    half = points // 2
    joint = least_squares(x.flatten(1, 2), y.flatten(1))
    maml = least_squares(*one_step_maml_rows(x[..., :half, :], y[..., :half], x[..., half:, :], y[..., half:],
                                             inner_lr))
    estimates = {"joint": joint, "joint-gd": one_step_adapt(joint, test_x, test_y, inner_lr),
                 "maml": one_step_adapt(maml, test_x, test_y, inner_lr)}
    return {name: noise_var + ((estimate - phis[:, -1]) ** 2 * variances).sum(-1)
            for name, estimate in estimates.items()}
