"""Bilevel meta-learning when the lower level has many solutions (monograph §7.1.4, eqs. 7.1–7.2).

An over-parameterized task: lower level g(ϕ) = (1/2n)‖Xϕ − y‖² with X [n, d], n < d, so its
solutions form the affine set S = X⁺y + null(X) and ∇²g = H = XᵀX/n is singular; upper level
f(ϕ) = (1/2m)‖X_Qϕ − y_Q‖² on the query points. Everything below is in closed form:

* **GD selection** — T gradient steps of size β from ϕ = θ (MAML's inner loop):
  ϕ_T(θ) = Mᵀθ + (I − Mᵀ)·X⁺y with M = I − βH, and as T → ∞ ϕ_∞(θ) = P·θ + X⁺y, P the projector
  on null(X): the solution nearest to θ. Its exact (unrolled) hypergradient is Mᵀ∇f(ϕ_T) → P∇f(ϕ_∞).
* **Implicit differentiation** (eq. 3.6, what ALSET estimates): g does not depend on θ, so
  ∇²_θϕ g = 0 and the formula returns 0 — and its Neumann series for H⁻¹ (eq. 3.7) grows without
  bound along null(X): (1/L)·Σ_{k<N}(I − H/L)^k ∇f has null-space part N/L·P∇f.
* **Proximal regularization** (iMAML's lower level g + (λ/2)‖ϕ − θ‖², eq. 2.8): strongly convex
  again, hypergradient λ(H + λI)⁻¹∇f, which tends to the GD selection's P∇f as λ → 0.
* **Optimistic and pessimistic solutions** (eqs. 7.1–7.2): min and sup of f over S. The optimistic
  value is a least-squares problem in the null-space coordinates; the pessimistic one is +∞ unless
  X_Q is blind to null(X). Because θ ↦ ϕ_∞(θ) reaches every point of S, minimizing F(θ) = f(ϕ_∞(θ))
  over θ — MAML with many inner steps — attains the optimistic value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from innerloop.engine.errors import ConfigError, ShapeError


@dataclass(frozen=True)
class DegenerateBilevel:
    """One over-parameterized task: support (X [n, d], y [n]) and query (X_Q [m, d], y_Q [m]), float64."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor

    def __post_init__(self) -> None:
        points, dim = self.support_x.shape
        if self.support_y.shape != (points,) or self.query_x.ndim != 2 or self.query_x.shape[1] != dim \
                or self.query_y.shape != (self.query_x.shape[0],):
            raise ShapeError("need support X [n, d], y [n] and query X_Q [m, d], y_Q [m]",
                             "pass one task's tensors without a task axis")
        if points >= dim:
            raise ConfigError(f"the lower level is degenerate only with fewer points than parameters, got n = {points} "
                              f">= d = {dim}", "use n < d")

    @property
    def hessian(self) -> torch.Tensor:
        """H = XᵀX/n, singular (rank n < d)."""
        return self.support_x.T @ self.support_x / self.support_x.shape[0]

    @property
    def null_projector(self) -> torch.Tensor:
        """P = I − X⁺X, the projector on null(X)."""
        return torch.eye(self.support_x.shape[1], dtype=self.support_x.dtype) - torch.linalg.pinv(self.support_x) \
            @ self.support_x

    @property
    def min_norm_solution(self) -> torch.Tensor:
        """X⁺y, the point of S nearest the origin."""
        return torch.linalg.pinv(self.support_x) @ self.support_y

    def upper_loss(self, phi: torch.Tensor) -> torch.Tensor:
        """f(ϕ) = (1/2m)‖X_Qϕ − y_Q‖²."""
        residual = self.query_x @ phi - self.query_y
        return residual @ residual / (2 * self.query_x.shape[0])

    def upper_gradient(self, phi: torch.Tensor) -> torch.Tensor:
        """∇f(ϕ) = X_Qᵀ(X_Qϕ − y_Q)/m."""
        return self.query_x.T @ (self.query_x @ phi - self.query_y) / self.query_x.shape[0]

    def gd_solution(self, theta: torch.Tensor, inner_lr: float, steps: int | None) -> torch.Tensor:
        """ϕ_T(θ) after ``steps`` GD steps of size β from θ; ``steps=None``: the limit P·θ + X⁺y."""
        if steps is None:
            return self.null_projector @ theta + self.min_norm_solution
        phi = theta
        for _ in range(steps):
            phi = phi - inner_lr * self.support_x.T @ (self.support_x @ phi - self.support_y) / self.support_x.shape[0]
        return phi

    def unrolled_hypergradient(self, theta: torch.Tensor, inner_lr: float, steps: int | None) -> torch.Tensor:
        """d f(ϕ_T(θ))/dθ = (I − βH)^T ∇f(ϕ_T); ``steps=None``: P∇f(ϕ_∞)."""
        phi = self.gd_solution(theta, inner_lr, steps)
        if steps is None:
            return self.null_projector @ self.upper_gradient(phi)
        contraction = torch.eye(theta.shape[0], dtype=theta.dtype) - inner_lr * self.hessian
        return torch.linalg.matrix_power(contraction, steps) @ self.upper_gradient(phi)

    def neumann_inverse_gradient(self, phi: torch.Tensor, terms: int, lipschitz: float) -> torch.Tensor:
        """(1/L)·Σ_{k<N}(I − H/L)^k ∇f(ϕ): eq. 3.7's estimate of H⁻¹∇f, which diverges along null(X)."""
        gradient = self.upper_gradient(phi)
        term, total = gradient, torch.zeros_like(gradient)
        for _ in range(terms):
            total = total + term
            term = term - self.hessian @ term / lipschitz
        return total / lipschitz

    def proximal_solution(self, theta: torch.Tensor, strength: float) -> torch.Tensor:
        """ϕ_λ(θ) = argmin g(ϕ) + (λ/2)‖ϕ − θ‖² = (H + λI)⁻¹(Xᵀy/n + λθ) (eq. 2.8)."""
        if not strength > 0:
            raise ConfigError(f"the proximal strength λ must be > 0, got {strength}", "e.g. 1e-3")
        system = self.hessian + strength * torch.eye(theta.shape[0], dtype=theta.dtype)
        return torch.linalg.solve(system, self.support_x.T @ self.support_y / self.support_x.shape[0]
                                  + strength * theta)

    def proximal_hypergradient(self, theta: torch.Tensor, strength: float) -> torch.Tensor:
        """λ(H + λI)⁻¹∇f(ϕ_λ(θ)), iMAML's hypergradient."""
        system = self.hessian + strength * torch.eye(theta.shape[0], dtype=theta.dtype)
        return strength * torch.linalg.solve(system, self.upper_gradient(self.proximal_solution(theta, strength)))

    def optimistic_value(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(min over S of f, its minimizer with the least norm): ϕ = X⁺y + B·z with B a basis of null(X),
        z the minimum-norm least-squares solution of X_Q B z = y_Q − X_Q X⁺y (eq. 7.1)."""
        _, singular, vh = torch.linalg.svd(self.support_x)
        basis = vh[singular.shape[0]:].T  # [d, d − n], orthonormal basis of null(X) (X has full row rank)
        offset = self.min_norm_solution
        coordinates = torch.linalg.pinv(self.query_x @ basis) @ (self.query_y - self.query_x @ offset)
        phi = offset + basis @ coordinates
        return self.upper_loss(phi), phi

    def pessimistic_is_unbounded(self, tolerance: float = 1e-10) -> bool:
        """Whether sup over S of f is +∞ (eq. 7.2): X_Q is not blind to null(X)."""
        return bool(torch.linalg.matrix_norm(self.query_x @ self.null_projector, ord=2) > tolerance)
