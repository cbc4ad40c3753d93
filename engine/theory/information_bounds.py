"""Information-theoretic and PAC-Bayes generalization bounds of monograph ch. 4, as formulas.

Every bound takes the quantities it is a function of (mutual informations in nats, sample counts,
sub-Gaussian constants) and returns the bound or its terms; :mod:`bernoulli_environment` and
:mod:`excess_meta_risk` compute those quantities exactly for environments where that is possible.
A loss with values in [0, 1] is ¼-sub-Gaussian under any distribution (Hoeffding's lemma), hence
the default ``sub_gaussian=0.25``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from innerloop.engine.errors import ConfigError

BOUNDED_LOSS_SUB_GAUSSIAN = 0.25


def _check(**values: float) -> None:
    for name, value in values.items():
        if name in ("points", "tasks"):
            if int(value) != value or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value}", f"pass the number of {name}")
        elif name == "delta":
            if not 0 < value < 1:
                raise ConfigError(f"δ must lie in (0, 1), got {value}", "e.g. delta=0.05")
        elif name in ("beta", "sub_gaussian", "meta_sub_gaussian"):
            if not value > 0:
                raise ConfigError(f"{name} must be > 0, got {value}", "a loss in [0, 1] has sub_gaussian = 0.25")
        elif not value >= -1e-12:
            raise ConfigError(f"{name} must be >= 0 (an information or divergence), got {value}",
                              "check how it was computed")


def xu_raginsky_bound(mutual_information: float, points: int,
                      sub_gaussian: float = BOUNDED_LOSS_SUB_GAUSSIAN) -> float:
    """Theorem 4.1 (eq. 4.7): |E[ΔL]| ≤ √(2σ²·I(ϕ; D)/N)."""
    _check(mutual_information=mutual_information, points=points, sub_gaussian=sub_gaussian)
    return math.sqrt(2 * sub_gaussian * max(mutual_information, 0.0) / points)


def irm_bound(regularized_loss: float, beta: float, points: int,
              sub_gaussian: float = BOUNDED_LOSS_SUB_GAUSSIAN) -> float:
    """Eq. 4.9: E[L_T(ϕ)] ≤ E[L_D(ϕ) + KL(p(ϕ|D) ‖ q)/β] + βσ²/(2N); ``regularized_loss`` is the
    first expectation (over datasets and the base-learner)."""
    _check(beta=beta, points=points, sub_gaussian=sub_gaussian)
    return regularized_loss + beta * sub_gaussian / (2 * points)


def pac_bayes_bound(regularized_loss: float, beta: float, points: int, delta: float = 0.05,
                    sub_gaussian: float = BOUNDED_LOSS_SUB_GAUSSIAN) -> float:
    """Theorem 4.2 (eq. 4.12), for one dataset D, with probability >= 1 − δ over D:
    E_{p(ϕ|D)}[L_T(ϕ)] ≤ E_{p(ϕ|D)}[L_D(ϕ)] + KL(p(ϕ|D) ‖ q)/β + log(1/δ)/β + βσ²/(2N)."""
    _check(beta=beta, points=points, delta=delta, sub_gaussian=sub_gaussian)
    return regularized_loss + math.log(1 / delta) / beta + beta * sub_gaussian / (2 * points)


@dataclass(frozen=True)
class MetaInformationBound:
    """A two-term meta-generalization bound: ``environment`` (the meta-learner's sensitivity to the
    K meta-training tasks) + ``within_task`` (the base-learner's sensitivity to N points)."""

    environment: float
    within_task: float

    @property
    def bound(self) -> float:
        return self.environment + self.within_task

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "bound": self.bound}


def _within_task(task_informations: list[float], task_probs: list[float], points: int, sub_gaussian: float) -> float:
    if len(task_informations) != len(task_probs) or not math.isclose(sum(task_probs), 1.0, abs_tol=1e-9):
        raise ConfigError("give one mutual information per task and task probabilities that sum to 1",
                          f"got {len(task_informations)} informations and probabilities summing to {sum(task_probs)}")
    return sum(p * xu_raginsky_bound(i, points, sub_gaussian) for i, p in zip(task_informations, task_probs))


def meta_information_bound(environment_information: float, tasks: int, task_informations: list[float],
                           task_probs: list[float], points: int,
                           meta_sub_gaussian: float = BOUNDED_LOSS_SUB_GAUSSIAN,
                           sub_gaussian: float = BOUNDED_LOSS_SUB_GAUSSIAN) -> MetaInformationBound:
    """Theorem 4.3 (eq. 4.24): |ΔL_avg| ≤ √(2δ²·I(θ; D_{1:K})/K) + E_T[√(2σ_T²·I(ϕ; D_T | T)/N)];
    ``task_informations[t]`` is I(ϕ; D_T | T = t) under the task probabilities ``task_probs``."""
    _check(environment_information=environment_information, tasks=tasks, meta_sub_gaussian=meta_sub_gaussian)
    return MetaInformationBound(math.sqrt(2 * meta_sub_gaussian * max(environment_information, 0.0) / tasks),
                                _within_task(task_informations, task_probs, points, sub_gaussian))


def task_similarity_bound(conditional_environment_information: float, tasks: int, relatedness: float,
                          task_informations: list[float], task_probs: list[float], points: int,
                          meta_sub_gaussian: float = BOUNDED_LOSS_SUB_GAUSSIAN,
                          sub_gaussian: float = BOUNDED_LOSS_SUB_GAUSSIAN) -> MetaInformationBound:
    """Theorem 4.4 (eq. 4.30) for an ε-KL related environment:
    |ΔL|_avg ≤ √(2δ²·(I(θ; D_{1:K} | T_{1:K})/K + ε)) + E_{T'}[√(2σ²·I(ϕ; D_{T'} | T_{1:K})/N)]."""
    _check(conditional_environment_information=conditional_environment_information, tasks=tasks,
           relatedness=relatedness, meta_sub_gaussian=meta_sub_gaussian)
    environment = math.sqrt(2 * meta_sub_gaussian * (max(conditional_environment_information, 0.0) / tasks
                                                     + relatedness))
    return MetaInformationBound(environment, _within_task(task_informations, task_probs, points, sub_gaussian))


def excess_meta_risk_bound(environment_information: float, tasks: int, task_information: float,
                           points: int) -> MetaInformationBound:
    """Eq. 4.45: MEMR = I(Y; ϕ | X, D) ≤ I(θ; D_{1:K})/(KN) + I(ϕ; D_T | θ)/N (log-loss, nats)."""
    _check(environment_information=environment_information, task_information=task_information, tasks=tasks,
           points=points)
    return MetaInformationBound(environment_information / (tasks * points), task_information / points)
