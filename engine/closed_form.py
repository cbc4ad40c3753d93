"""Closed-form references for linear-regression tasks (monograph §2.2.3, eqs. 2.9–2.12; §5.4).

With the monograph's loss L_D(ϕ) = ‖Xϕ − y‖² (a sum), iMAML's inner problem (2.4b) has the
solution (eq. 2.11)

    ϕ(θ) = (XᴴX + (λ/2)I)⁻¹ (Xᴴy + (λ/2)θ)

and the meta-training problem (2.4) is a least-squares problem in θ (eq. 2.12): θ̂ = X̃⁺ỹ, where
task k contributes rows (λ/2)·x_vaᵀA_k⁻¹ with A_k = X_kᴴX_k + (λ/2)I and targets
y_va − x_vaᵀA_k⁻¹X_kᴴy_k for every validation input x_va.

Both hold for real and complex data (ᴴ is the transpose for real data) and for S outputs at once:
targets y of shape [K, S] and θ of shape [d, S], each output column its own problem with the same
A_k — the linear channel predictors of monograph eqs. 5.21–5.23 (complex, S antennas).

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


def _regularized_gram(support_x: torch.Tensor, lam: float, reduction: str) -> tuple[float, torch.Tensor]:
    """(λ/2 with the reduction applied, A_k = X_kᴴX_k + (λ/2)I) for support_x [B, K, d]."""
    half = _effective_lambda(lam, support_x.shape[1], reduction) / 2
    eye = torch.eye(support_x.shape[2], dtype=support_x.dtype, device=support_x.device)
    return half, support_x.mH @ support_x + half * eye


def ridge_adapted(
    support_x: torch.Tensor, support_y: torch.Tensor, theta: torch.Tensor, lam: float, reduction: str = "mean"
) -> torch.Tensor:
    """Per-task ϕ(θ) of eq. 2.11 for support_x [B, K, d] and support_y [B, K, S] with θ [d] (S = 1)
    or [d, S]; returns [B, d] for θ [d], else [B, d, S]."""
    half, a = _regularized_gram(support_x, lam, reduction)
    bias = theta.reshape(1, support_x.shape[2], support_y.shape[2])
    adapted = torch.linalg.solve(a, support_x.mH @ support_y + half * bias)
    return adapted.squeeze(-1) if theta.ndim == 1 else adapted


def imaml_ridge_meta_solution(
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    query_x: torch.Tensor,
    query_y: torch.Tensor,
    lam: float,
    reduction: str = "mean",
) -> torch.Tensor:
    """θ̂ = X̃⁺Ỹ of monograph eq. 2.12 for the tasks of a batch (targets [B, ·, S]); returns [d] for
    one output, [d, S] for several."""
    half, a = _regularized_gram(support_x, lam, reduction)
    dim, outputs = support_x.shape[2], support_y.shape[2]
    x_tilde = half * torch.linalg.solve(a, query_x.mH).mH  # rows (λ/2)·x_vaᵀA_k⁻¹ (A_k Hermitian)
    y_tilde = query_y - query_x @ torch.linalg.solve(a, support_x.mH @ support_y)
    theta = torch.linalg.lstsq(x_tilde.reshape(-1, dim), y_tilde.reshape(-1, outputs)).solution
    return theta.squeeze(-1) if outputs == 1 else theta
