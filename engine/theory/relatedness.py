"""Task relatedness of an environment (monograph §4.3.2, Definition 4.1, Example 4.1).

An environment is ε-related under a divergence D if E_{T,T'∼p(T)}[D(p(D_T) ‖ p(D_T'))] ≤ ε
(eq. 4.25), with D_T the N-point training set of task T. The KL version tensorizes and grows with N;
the Jensen–Shannon version (eq. 4.26) stays below log 2.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from innerloop.engine.errors import ConfigError, ShapeError
from innerloop.engine.theory.gibbs import kl_divergence


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Eq. 4.26: ½·KL(p ‖ m) + ½·KL(q ‖ m), m = (p + q)/2, over the last axis."""
    middle = (p + q) / 2
    return 0.5 * kl_divergence(p, middle) + 0.5 * kl_divergence(q, middle)


def environment_relatedness(dataset_distributions: torch.Tensor, task_probs: torch.Tensor,
                            divergence: str = "kl") -> float:
    """Eq. 4.25 for a finite environment: Σ_{t,t'} p(t)·p(t')·D(P_t ‖ P_t').

    ``dataset_distributions[t]`` is task t's distribution over the values of a statistic of D_T that
    is sufficient for every pair of tasks (for Bernoulli data: the count of ones, since the likelihood
    ratio of two tasks depends on D_T only through it), so D of the statistic equals D of D_T."""
    if dataset_distributions.ndim != 2 or task_probs.shape != dataset_distributions.shape[:1]:
        raise ShapeError(f"dataset distributions {tuple(dataset_distributions.shape)} and task probabilities "
                         f"{tuple(task_probs.shape)} do not match", "pass [tasks, values] and [tasks]")
    measures = {"kl": kl_divergence, "js": js_divergence}
    if divergence not in measures:
        raise ConfigError(f"unknown divergence {divergence!r}", f"choose one of {sorted(measures)}")
    pairwise = measures[divergence](dataset_distributions[:, None], dataset_distributions[None])
    return float(task_probs @ pairwise @ task_probs)


def _check_gaussian(points: int, task_var: float, data_var: float) -> None:
    if int(points) != points or points < 1:
        raise ConfigError(f"points must be an integer >= 1, got {points}", "N is the training-set size")
    if not (task_var > 0 and data_var > 0):
        raise ConfigError(f"variances must be > 0, got task_var={task_var}, data_var={data_var}",
                          "ν̄² is the spread of task means, ν² the per-point noise")


def gaussian_mean_kl_relatedness(points: int, task_var: float, data_var: float) -> float:
    """Example 4.1 (eq. 4.27): tasks τ ∼ N(μ̄, ν̄²), data Z ∼ N(τ, ν²): ε_KL = N·ν̄²/ν²."""
    _check_gaussian(points, task_var, data_var)
    return points * task_var / data_var


def unit_gaussian_js(separation: torch.Tensor) -> torch.Tensor:
    """JS(N(0, 1) ‖ N(d, 1)) = log 2 − E_{x∼N(0,1)}[softplus(d·x − d²/2)], by the trapezoid rule
    on a grid fine enough for 1e-9 accuracy at any d (the integrand is smooth, the tails Gaussian)."""
    d = torch.as_tensor(separation, dtype=torch.float64).abs()
    x = torch.linspace(-14.0, 14.0, 28001, dtype=torch.float64)
    density = torch.exp(-x ** 2 / 2) / math.sqrt(2 * math.pi)
    integrand = torch.nn.functional.softplus(d[..., None] * x - d[..., None] ** 2 / 2) * density
    return math.log(2) - torch.trapezoid(integrand, x, dim=-1)


def gaussian_mean_js_relatedness(points: int, task_var: float, data_var: float, nodes: int = 80) -> float:
    """ε_JS of Example 4.1: two N-point datasets differ by a mean shift (τ − τ')·1, so their JS is
    that of unit Gaussians at distance d = √N·|τ − τ'|/ν; τ − τ' ∼ N(0, 2ν̄²) is integrated by
    Gauss–Hermite quadrature with ``nodes`` nodes."""
    _check_gaussian(points, task_var, data_var)
    u, weights = np.polynomial.hermite_e.hermegauss(nodes)
    scale = math.sqrt(points * 2 * task_var / data_var)
    values = unit_gaussian_js(torch.as_tensor(scale * u))
    return float((torch.as_tensor(weights) * values).sum() / math.sqrt(2 * math.pi))
