"""The exact GP posterior predictive: the reference Neural Processes are measured against.

For a task drawn from GP(0, k_ℓ) observed with noise σ_n (:class:`GaussianProcess1D`), the
Bayes-optimal prediction at x* given the context (X, y) is Gaussian (Rasmussen & Williams
eq. 2.25–2.26, with the observation noise added to the predictive):

    μ(x*) = k*ᵀ (K + σ_n² I)⁻¹ y,     σ²(x*) = k(x*, x*) − k*ᵀ (K + σ_n² I)⁻¹ k* + σ_n²,

computed by a Cholesky factorization in float64, batched over tasks. With the task's true
lengthscale this is the ceiling on held-out predictive log-likelihood (seed 000 §4.5, Fig. 9).
"""

from __future__ import annotations

import torch

from innerloop.engine.neural_processes import gaussian_log_prob
from innerloop.engine.tasks.gp import rbf_kernel


def gp_predictive(
    context_x: torch.Tensor,
    context_y: torch.Tensor,
    target_x: torch.Tensor,
    lengthscale: torch.Tensor,
    output_scale: float,
    noise: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictive mean and std [B, M, 1] at ``target_x`` [B, M, 1] given context [B, K, 1]."""
    cx, cy, tx = (t.double() for t in (context_x, context_y, target_x))
    ell = lengthscale.double()
    gram = rbf_kernel(cx, cx, ell, output_scale) + noise**2 * torch.eye(cx.shape[1], dtype=torch.float64)
    chol = torch.linalg.cholesky(gram)
    cross = rbf_kernel(cx, tx, ell, output_scale)  # [B, K, M]
    alpha = torch.cholesky_solve(cy, chol)  # (K + σ²I)⁻¹ y
    mean = cross.transpose(1, 2) @ alpha
    v = torch.linalg.solve_triangular(chol, cross, upper=False)
    var = output_scale**2 - (v**2).sum(dim=1) + noise**2  # [B, M]
    return mean, var.clamp_min(1e-12).sqrt().unsqueeze(-1)


def gp_nll(
    context_x: torch.Tensor,
    context_y: torch.Tensor,
    target_x: torch.Tensor,
    target_y: torch.Tensor,
    lengthscale: torch.Tensor,
    output_scale: float,
    noise: float,
) -> torch.Tensor:
    """Per-task predictive NLL per target point [B] under the exact GP posterior."""
    mean, std = gp_predictive(context_x, context_y, target_x, lengthscale, output_scale, noise)
    return -gaussian_log_prob(target_y.double(), mean, std).sum(dim=-1).mean(dim=-1)
