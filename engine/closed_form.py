"""Closed-form references for linear-regression tasks (monograph §2.2.3, eqs. 2.9–2.12).

With the monograph's loss L_D(ϕ) = ‖Xϕ − y‖² (a sum), iMAML's inner problem (2.4b) has the
solution (eq. 2.11)

    ϕ(θ) = (XᵀX + (λ/2)I)⁻¹ (Xᵀy + (λ/2)θ)

and the meta-training problem (2.4) is a least-squares problem in θ (eq. 2.12): θ̂ = X̃⁺ỹ, where
task k contributes rows (λ/2)(A_k⁻¹x)ᵀ with A_k = X_kᵀX_k + (λ/2)I and targets
y_va − y_trᵀX_k A_k⁻¹x_va for every validation input x_va.

innerloop's MSE is a mean, (1/K)‖Xϕ − y‖²; minimizing (1/K)‖Xϕ − y‖² + (λ/2)‖ϕ − θ‖² is the
sum-loss problem with λ·K in place of λ, which ``reduction="mean"`` applies. The outer
minimizer is the same for both reductions when every task has the same number of queries.
"""

from __future__ import annotations

import torch

from innerloop.engine.errors import ConfigError


def _effective_lambda(lam: float, shots: int, reduction: str) -> float:
    if reduction not in ("sum", "mean"):
        raise ConfigError(f"reduction must be 'sum' or 'mean', got '{reduction}'", "use 'mean' for innerloop's MSE")
    return lam * shots if reduction == "mean" else lam


def ridge_adapted(
    support_x: torch.Tensor, support_y: torch.Tensor, theta: torch.Tensor, lam: float, reduction: str = "mean"
) -> torch.Tensor:
    """Per-task ϕ(θ) of eq. 2.11 for support_x [B, K, d], support_y [B, K, 1]; returns [B, d]."""
    shots, dim = support_x.shape[1], support_x.shape[2]
    half = _effective_lambda(lam, shots, reduction) / 2
    xt = support_x.transpose(1, 2)
    a = xt @ support_x + half * torch.eye(dim, dtype=support_x.dtype)
    return torch.linalg.solve(a, xt @ support_y + half * theta.reshape(1, dim, 1)).squeeze(-1)


def imaml_ridge_meta_solution(
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    query_x: torch.Tensor,
    query_y: torch.Tensor,
    lam: float,
    reduction: str = "mean",
) -> torch.Tensor:
    """θ̂ = X̃⁺ỹ of monograph eq. 2.12 for the tasks of a batch; returns [d]."""
    shots, dim = support_x.shape[1], support_x.shape[2]
    half = _effective_lambda(lam, shots, reduction) / 2
    xt = support_x.transpose(1, 2)
    a = xt @ support_x + half * torch.eye(dim, dtype=support_x.dtype)  # A_k
    a_inv_xva = torch.linalg.solve(a, query_x.transpose(1, 2))  # A_k⁻¹ x_va, [B, d, M]
    x_tilde = half * a_inv_xva.transpose(1, 2)  # rows (λ/2)(A_k⁻¹ x_va)ᵀ
    y_tilde = query_y.squeeze(-1) - (query_x @ torch.linalg.solve(a, xt @ support_y)).squeeze(-1)
    return torch.linalg.lstsq(x_tilde.reshape(-1, dim), y_tilde.reshape(-1, 1)).solution.squeeze(-1)
