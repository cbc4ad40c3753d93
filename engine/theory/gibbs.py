"""Information risk minimization on a finite model space (monograph §4.1.2 and §4.4).

For a base-learner p(ϕ|D) over M models with prior q(ϕ), the IRM objective (monograph eq. 4.10)

    J(p) = E_p[L_D(ϕ)] + KL(p ‖ q)/β

is minimized by the Gibbs posterior p(ϕ|D) ∝ q(ϕ)·exp(−β·L_D(ϕ)) (eq. 4.11), at the value
−(1/β)·log E_q[exp(−β·L_D(ϕ))] (the free energy). The same holds one level up for the Gibbs
meta-learner p(θ|D_{1:K}) ∝ q(θ)·exp(−β_meta·L_IMRM(θ)) (eq. 4.33) over a finite set of
hyperparameters: pass the IMRM meta-loss (eq. 4.34) as ``losses``. With L_D the log-loss averaged
over N points, β = N gives the Bayesian posterior (the monograph's β = 1 is for the summed loss).

Distributions live on the last axis; leading axes are batch axes (datasets, hyperparameters).
"""

from __future__ import annotations

import torch

from innerloop.engine.errors import ConfigError, ShapeError


def _check(log_prior: torch.Tensor, losses: torch.Tensor, beta: float) -> None:
    if not beta > 0:
        raise ConfigError(f"the inverse temperature β must be > 0, got {beta}",
                          "with the log-loss averaged over N points, β = N gives the Bayesian posterior "
                          "(monograph §4.1.2)")
    try:
        torch.broadcast_shapes(log_prior.shape, losses.shape)
    except RuntimeError:
        raise ShapeError(f"log-prior {tuple(log_prior.shape)} and losses {tuple(losses.shape)} do not broadcast",
                         "put the models on the last axis of both") from None


def gibbs_posterior(log_prior: torch.Tensor, losses: torch.Tensor, beta: float) -> torch.Tensor:
    """Eq. 4.11: softmax(log q(ϕ) − β·L_D(ϕ)) over the last axis (the models)."""
    _check(log_prior, losses, beta)
    return torch.softmax(log_prior - beta * losses, dim=-1)


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) = Σ p·log(p/q) over the last axis, with 0·log 0 = 0."""
    ratio = torch.where(p > 0, torch.log(p) - torch.log(q), torch.zeros_like(p))
    return (p * ratio).sum(-1)


def irm_objective(posterior: torch.Tensor, log_prior: torch.Tensor, losses: torch.Tensor,
                  beta: float) -> torch.Tensor:
    """Eq. 4.10: E_p[L_D(ϕ)] + KL(p ‖ q)/β for the base-learner ``posterior`` p(ϕ|D)."""
    _check(log_prior, losses, beta)
    return (posterior * losses).sum(-1) + kl_divergence(posterior, torch.exp(log_prior)) / beta


def free_energy(log_prior: torch.Tensor, losses: torch.Tensor, beta: float) -> torch.Tensor:
    """The minimum of eq. 4.10 over all p: −(1/β)·log Σ_ϕ q(ϕ)·exp(−β·L_D(ϕ)), reached by eq. 4.11."""
    _check(log_prior, losses, beta)
    return -torch.logsumexp(log_prior - beta * losses, dim=-1) / beta
