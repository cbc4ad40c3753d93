"""The implicit Gaussian prior of early-stopped gradient descent (seed 000 §6.2, Theorem 2).

N steps of θ ← θ − α∇L_S(θ) from θ₀ on a quadratic support loss with Hessian H land exactly on
the MAP estimate (eq. 6.4) under the Gaussian prior N(θ₀, Λ⁻¹) whose precision has, along each
eigenvector of H with eigenvalue λ, the eigenvalue (eq. 6.5)

    p(λ) = λ·(1 − αλ)^N / (1 − (1 − αλ)^N),            p(0) = 1/(Nα) (the limit),

≈ 1/(Nα) when Nαλ ≪ 1 (eq. 6.6). The seed's next term, 1/(Nα) − λ, is exact for N = 1 only;
expanding numerator and denominator to the same order gives 1/(Nα) − (N + 1)λ/(2N) + O(α)
(:func:`small_step_precision`). For a nonlinear model the same holds for the second-order
Taylor model of L_S at θ₀ (:func:`quadratic_model_step`), so the distance between the true
iterate and that step measures how far Theorem 2 is from exact.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from innerloop.engine.errors import ConfigError, ShapeError
from innerloop.engine.params import Params, add_scaled


def _check_schedule(inner_lr: float, inner_steps: int) -> None:
    if not inner_lr > 0:
        raise ConfigError(f"the inner step size α must be > 0, got {inner_lr}", "e.g. inner_lr=0.01")
    if int(inner_steps) != inner_steps or inner_steps < 1:
        raise ConfigError(f"the number of inner steps N must be an integer >= 1, got {inner_steps}",
                          "N = 0 steps is no adaptation: the prior is a point mass at θ₀")


def implicit_prior_precision(curvature: torch.Tensor, inner_lr: float, inner_steps: int) -> torch.Tensor:
    """Eq. 6.5 elementwise: the prior precision that makes the N-th GD iterate the MAP estimate,
    for each curvature (Hessian eigenvalue) λ with αλ < 2; λ = 0 gives the limit 1/(Nα).

    Curvatures with αλ >= 2 make gradient descent diverge and are refused. Negative λ (a concave
    direction of a nonlinear loss) gives the precision of the stationary point GD reaches along it."""
    _check_schedule(inner_lr, inner_steps)
    scaled = inner_lr * curvature
    if bool((scaled >= 2).any()):
        raise ConfigError(f"α·λ reaches {float(scaled.max()):.3g}: gradient descent diverges along that curvature "
                          "(Theorem 2 needs αλ < 2)", f"use an inner step size below {2 / float(curvature.max()):.3g}")
    power = (1 - scaled) ** inner_steps
    # 1 − (1 − αλ)^N without cancellation when αλ is small: −expm1(N·log1p(−αλ)) (αλ < 1 only)
    stable = -torch.expm1(inner_steps * torch.log1p(-scaled.clamp(max=0.5)))
    shortfall = torch.where(scaled < 0.5, stable, 1 - power)
    tiny = scaled.abs() < 1e-12
    limit = torch.full_like(curvature, 1.0 / (inner_steps * inner_lr))
    return torch.where(tiny, limit, curvature * power / torch.where(tiny, torch.ones_like(shortfall), shortfall))


def small_step_precision(curvature: torch.Tensor, inner_lr: float, inner_steps: int) -> torch.Tensor:
    """Eq. 6.6 to first order in α: 1/(Nα) − (N + 1)λ/(2N).

    With x = αλ, (1 − x)^N = 1 − Nx + N(N − 1)x²/2 + O(x³), so (1 − x)^N / (1 − (1 − x)^N) =
    1/(Nx) − 1 + (N − 1)/(2N) + O(x). The seed prints 1/(Nα) − λ, which drops the (N − 1)/(2N) and
    is exact only for N = 1."""
    _check_schedule(inner_lr, inner_steps)
    return 1.0 / (inner_steps * inner_lr) - (inner_steps + 1) * curvature / (2 * inner_steps)


def implicit_prior_matrix(hessian: torch.Tensor, inner_lr: float, inner_steps: int) -> torch.Tensor:
    """The multivariate precision Λ = V·diag(p(λᵢ))·Vᵀ for H = V·diag(λᵢ)·Vᵀ (Theorem 2, the
    eigendirection-wise generalization after its proof)."""
    if hessian.ndim != 2 or hessian.shape[0] != hessian.shape[1]:
        raise ShapeError(f"the Hessian must be a square matrix, got shape {tuple(hessian.shape)}",
                         "flatten the parameters and pass ∇²L_S as [D, D]")
    if not torch.allclose(hessian, hessian.T, rtol=1e-6, atol=1e-8 * float(hessian.abs().max().clamp_min(1e-30))):
        raise ShapeError("the Hessian is not symmetric", "symmetrize it: (H + Hᵀ)/2")
    eigenvalues, vectors = torch.linalg.eigh(hessian)
    return vectors @ torch.diag(implicit_prior_precision(eigenvalues, inner_lr, inner_steps)) @ vectors.T


def map_step(hessian: torch.Tensor, gradient: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """θ_MAP − θ₀ = −(H + Λ)⁻¹·g: the minimizer of eq. 6.4 when the support loss is the quadratic
    L(θ₀) + gᵀ(θ − θ₀) + ½(θ − θ₀)ᵀH(θ − θ₀) and the prior is N(θ₀, Λ⁻¹)."""
    return -torch.linalg.solve(hessian + precision, gradient)


def quadratic_model_step(hvp: Callable[[Params], Params], gradient: Params, inner_lr: float,
                         inner_steps: int) -> Params:
    """θ^(N) − θ₀ of N GD steps on the second-order Taylor model of L_S at θ₀:
    −α·Σ_{n<N} (I − αH)ⁿ·g, with ``hvp(v)`` = H·v at θ₀ (batched over tasks like the backend
    primitive). Equal to :func:`map_step` with Λ from eq. 6.5 (Theorem 2's proof, (‡))."""
    _check_schedule(inner_lr, inner_steps)
    term, total = gradient, {k: torch.zeros_like(v) for k, v in gradient.items()}
    for n in range(inner_steps):
        total = add_scaled(total, term, -inner_lr)
        if n < inner_steps - 1:
            term = add_scaled(term, hvp(term), -inner_lr)
    return total
