"""Convergence constants of one-step stochastic MAML (seed 000 §8, Fallah–Mokhtari–Ozdaglar).

Formulas:

* :func:`meta_smoothness` — L_F = (1 + αL)²L + αρG_Q (Lemma 1, eq. 8.4; needs α <= 1/L);
* :func:`variance_bound` — V = σ_g² + α²σ_H²G_Q² + α²σ_g²σ_H² (Lemma 2, eq. 8.5);
* :func:`sgd_bound` — min_{k<K} E‖∇F(θ_k)‖² <= 2(F(θ₀) − F*)/(Kβ) + L_F·β·V for constant steps
  β <= 1/L_F (the proof of Theorem 4), which at β = 1/(L_F√K) is (2L_F(F(θ₀) − F*) + V)/√K
  (eq. 8.3);
* :func:`fmo_meta_gradients` — the per-task stochastic meta-gradient (I − αH̃_S)·g̃_Q(θ − αg̃_S) of eq. 8.2
  from three independent batches (the structural assumption of §8.1).

Estimators of the constants from data (:mod:`innerloop.engine.theory.constants`) give lower
estimates of the suprema the assumptions name.
"""

from __future__ import annotations

import math

import torch

from innerloop.backends.base import Backend
from innerloop.engine.errors import ConfigError
from innerloop.engine.learner import Learner
from innerloop.engine.params import Params, add_scaled


def _non_negative(**values: float) -> None:
    for name, value in values.items():
        if not value >= 0:
            raise ConfigError(f"{name} must be >= 0, got {value}", "constants of assumptions 8.1–8.4 are norms")


def meta_smoothness(lipschitz_gradient: float, lipschitz_hessian: float, query_gradient_bound: float,
                    inner_lr: float) -> float:
    """Eq. 8.4: L_F = (1 + αL)²·L + α·ρ·G_Q, for α <= 1/L (Lemma 1)."""
    _non_negative(L=lipschitz_gradient, rho=lipschitz_hessian, G_Q=query_gradient_bound)
    if not 0 < inner_lr <= 1 / lipschitz_gradient:
        raise ConfigError(f"Lemma 1 needs 0 < α <= 1/L = {1 / lipschitz_gradient:.4g}, got α = {inner_lr}",
                          "use a smaller inner step size")
    return (1 + inner_lr * lipschitz_gradient) ** 2 * lipschitz_gradient + inner_lr * lipschitz_hessian * \
        query_gradient_bound


def variance_bound(gradient_std: float, hessian_std: float, query_gradient_bound: float, inner_lr: float) -> float:
    """Eq. 8.5: V = σ_g² + α²σ_H²G_Q² + α²σ_g²σ_H² bounds E‖g̃ − ∇F‖² (Lemma 2)."""
    _non_negative(sigma_g=gradient_std, sigma_H=hessian_std, G_Q=query_gradient_bound)
    a2 = inner_lr ** 2
    return gradient_std ** 2 + a2 * hessian_std ** 2 * query_gradient_bound ** 2 + a2 * gradient_std ** 2 * \
        hessian_std ** 2


def sgd_bound(smoothness: float, gap: float, variance: float, outer_lr: float, iterations: int) -> float:
    """min_{k<K} E‖∇F(θ_k)‖² <= 2·gap/(Kβ) + L_F·β·V after K SGD steps of size β <= 1/L_F, with
    gap = F(θ₀) − F* (proof of Theorem 4)."""
    _non_negative(gap=gap, V=variance)
    if not 0 < outer_lr <= 1 / smoothness:
        raise ConfigError(f"the proof of Theorem 4 needs 0 < β <= 1/L_F = {1 / smoothness:.4g}, got β = {outer_lr}",
                          "use fmo_outer_lr(L_F, K)")
    if int(iterations) != iterations or iterations < 1:
        raise ConfigError(f"iterations must be an integer >= 1, got {iterations}", "e.g. 1000")
    return 2 * gap / (iterations * outer_lr) + smoothness * outer_lr * variance


def fmo_outer_lr(smoothness: float, iterations: int) -> float:
    """β = 1/(L_F·√K), Theorem 4's step size for a run of K meta-iterations."""
    return 1.0 / (smoothness * math.sqrt(iterations))


def fmo_meta_gradients(backend: Backend, learner: Learner, params: Params, grad_batch, hessian_batch, query_batch,
                       inner_lr: float) -> tuple[torch.Tensor, Params]:
    """Eq. 8.2 per task: (query losses [B], (I − αH̃_S)·g̃_Q(θ − αg̃_S) [B, ...]). ``params`` are
    per-task copies of θ [B, ...]; each batch is an (x, y) pair [B, ·, ·] drawn independently
    from the same tasks (g̃_S from the first, H̃_S from the second, g̃_Q from the third)."""
    _, inner_grad = backend.loss_and_grad(learner, params, *grad_batch)
    adapted = add_scaled(params, inner_grad, -inner_lr)
    query_loss, query_grad = backend.loss_and_grad(learner, adapted, *query_batch)
    curvature = backend.hvp(learner, params, *hessian_batch, query_grad)
    return query_loss, add_scaled(query_grad, curvature, -inner_lr)


def squared_norm_of_mean(per_task: torch.Tensor) -> tuple[float, float]:
    """An unbiased estimate of ‖E g‖² from B iid rows g_b of ``per_task`` [B, D] — the U-statistic
    (‖Σ g_b‖² − Σ‖g_b‖²)/(B(B − 1)) — and its standard error; ‖mean‖² would be biased up by tr Cov/B."""
    count = per_task.shape[0]
    if count < 3:
        raise ConfigError(f"need at least 3 tasks to estimate ‖∇F‖² and its error, got {count}", "use more tasks")
    total = per_task.sum(0)
    estimate = float((total @ total - (per_task * per_task).sum()) / (count * (count - 1)))
    mean = total / count
    projections = per_task @ mean  # the estimate's influence function is 2⟨g_b, E g⟩
    return estimate, float(2 * projections.std(unbiased=True) / math.sqrt(count))
