"""PAC-Bayes generalization bounds for meta-learning (seed 000 §7).

* :func:`gaussian_kl` — KL(N(μ₁, diag σ₁²) ‖ N(μ₂, diag σ₂²)), the closed form of §7.5;
* :func:`mcallester_bound` — the single-task bound R(Q) ≤ R̂(Q) + √((KL(Q‖P) + log(2√n/δ))/(2n))
  (eq. 7.1);
* :func:`amit_meir_bound` — the meta-bound of Theorem 3 (eq. 7.2), returned term by term:
  R_meta ≤ R̂_meta + √((KL(𝒬‖P₀) + log(4T/δ))/(2(T − 1)))
                    + E_{P∼𝒬} (1/T)·Σ_k √((KL(Q_k^P‖P) + log(4Tn/δ))/(2(n − 1))).

Losses are bounded in [0, 1] (e.g. the 0-1 error of a classifier). A point-mass posterior (plain
MAML) has an infinite KL; :mod:`innerloop.engine.theory.pac_bayes_maml` softens it as in §7.5.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from innerloop.engine.errors import ConfigError, ShapeError


def gaussian_kl(mean_q: torch.Tensor, var_q: torch.Tensor | float, mean_p: torch.Tensor,
                var_p: torch.Tensor | float) -> torch.Tensor:
    """½·Σ_d [σ_q²/σ_p² + (μ_q − μ_p)²/σ_p² − 1 + log(σ_p²/σ_q²)] over the last axis (§7.5, diagonal
    covariances; a float variance is isotropic). Leading axes are batch axes."""
    var_q = torch.as_tensor(var_q, dtype=mean_q.dtype, device=mean_q.device).expand_as(mean_q)
    var_p = torch.as_tensor(var_p, dtype=mean_q.dtype, device=mean_q.device).expand_as(mean_q)
    if mean_q.shape != torch.broadcast_shapes(mean_q.shape, mean_p.shape):
        raise ShapeError(f"posterior mean {tuple(mean_q.shape)} and prior mean {tuple(mean_p.shape)} do not match",
                         "flatten both to [..., D]")
    if bool((var_q <= 0).any()) or bool((var_p <= 0).any()):
        raise ConfigError("Gaussian variances must be > 0", "a zero variance (point mass) has an infinite KL: "
                          "soften it with a small posterior variance (seed 000 §7.5)")
    ratio = var_q / var_p
    return 0.5 * (ratio + (mean_q - mean_p) ** 2 / var_p - 1 - torch.log(ratio)).sum(-1)


def _check_bound_inputs(empirical_risk: float, delta: float, **counts: int) -> None:
    if not 0 <= empirical_risk <= 1:
        raise ConfigError(f"the empirical risk must lie in [0, 1], got {empirical_risk}",
                          "PAC-Bayes bounds need a loss bounded in [0, 1], e.g. the 0-1 error")
    if not 0 < delta < 1:
        raise ConfigError(f"the confidence parameter δ must lie in (0, 1), got {delta}", "e.g. delta=0.05")
    for name, (value, least) in counts.items():
        if int(value) != value or value < least:
            raise ConfigError(f"{name} must be an integer >= {least}, got {value}", f"use {name} >= {least}")


def mcallester_bound(empirical_risk: float, kl: float, n: int, delta: float = 0.05) -> float:
    """Eq. 7.1: the risk of the Gibbs posterior Q bounded from its empirical risk on n iid points."""
    _check_bound_inputs(empirical_risk, delta, n=(n, 1))
    return empirical_risk + math.sqrt((kl + math.log(2 * math.sqrt(n) / delta)) / (2 * n))


@dataclass(frozen=True)
class MetaBound:
    """The terms of eq. 7.2: ``bound`` = ``empirical`` + ``across_task`` + ``within_task``."""

    empirical: float
    across_task: float
    within_task: float
    hyper_kl: float
    mean_task_kl: float
    tasks: int
    points: int
    delta: float

    @property
    def bound(self) -> float:
        return self.empirical + self.across_task + self.within_task

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "bound": self.bound}


def amit_meir_bound(empirical_risk: float, hyper_kl: float, task_kls: torch.Tensor, points: int,
                    delta: float = 0.05) -> MetaBound:
    """Theorem 3 (eq. 7.2). ``task_kls`` holds KL(Q_k^P ‖ P) for the T observed tasks, shape [T],
    or [S, T] for S draws of the prior P ∼ 𝒬 (the expectation over 𝒬 is their mean);
    ``points`` is n, the sample size of each task; ``empirical_risk`` is R̂_meta(𝒬)."""
    task_kls = torch.as_tensor(task_kls, dtype=torch.float64)
    if task_kls.ndim == 1:
        task_kls = task_kls[None]
    if task_kls.ndim != 2 or task_kls.numel() == 0:
        raise ShapeError(f"task_kls must have shape [T] or [prior draws, T], got {tuple(task_kls.shape)}",
                         "give one KL(Q_k ‖ P) per observed task")
    tasks = task_kls.shape[1]
    _check_bound_inputs(empirical_risk, delta, tasks=(tasks, 2), points=(points, 2))
    if hyper_kl < 0 or bool((task_kls < 0).any()):
        raise ConfigError("KL divergences are >= 0", "check how the KL terms were computed")
    across = math.sqrt((hyper_kl + math.log(4 * tasks / delta)) / (2 * (tasks - 1)))
    within = float(torch.sqrt((task_kls + math.log(4 * tasks * points / delta)) / (2 * (points - 1))).mean())
    return MetaBound(float(empirical_risk), across, within, float(hyper_kl), float(task_kls.mean()), tasks,
                     int(points), float(delta))
