"""A meta-learner that minimizes the Amit–Meir bound itself (seed 000 §7; Amit & Meir 2018).

Softening MAML after the fact (:mod:`pac_bayes_maml`) gives a vacuous bound; Amit and Meir instead
train every distribution the bound names to make it small. A prior is P_ψ = N(u, diag e^{2ρ}),
with ψ = (u, ρ) a mean and a log-std per weight; on T observed tasks of n points each:

* hyperprior P₀ = N(θ_ref, κ₀²I) × N(log σ_p, κ_ρ₀²I) over ψ, around a data-independent
  reference θ_ref (the seed's random initialization) and a prior width σ_p (fixed, not trained);
* hyperposterior 𝒬 = N(θ, κ_u²I) × N(r, κ_ρ²I) — trained θ, r, κ_u and κ_ρ; a prior P ∼ 𝒬 is P_ψ
  with ψ ∼ 𝒬. The two widths are separate because they pull apart: noise on a prior *mean* costs
  D·κ_u²/(2σ²) in every task's KL, so κ_u must stay far below σ_p, while the log-widths ρ have to
  move far from log σ_p (wide on the weights a task must change, narrow elsewhere) at a price
  (r − log σ_p)²/(2κ_ρ₀²) that only a wide κ_ρ₀ makes affordable;
* per-task posteriors Q_k = N(φ_k, diag s_k²) — trained φ_k and s_k.

Training minimizes the bound of eq. 7.2 with the cross-entropy in place of the 0-1 loss (a
differentiable surrogate) and E_{P∼𝒬} inside the square roots, where it has a closed form
(:func:`expected_task_kl`). By Jensen's inequality E√(·) ≤ √E(·), so the bound evaluated this way
with the 0-1 loss is still a valid upper bound. Every step uses all T tasks, so no posterior
drifts on stale optimizer momentum.

The bound is then *evaluated* with the Gibbs 0-1 error of the Q_k on their own tasks (a Monte Carlo
mean). As in the published algorithm, each Q_k is fitted jointly with 𝒬, i.e. it sees the other
tasks through (θ, r) — the bound is stated for a base-learner Q(S_k, P) of the task's own data and
the prior; that gap is the algorithm's, and is reported, not closed. A new task is learned by the
same per-task objective from a prior drawn from 𝒬 (:func:`meta_test_error`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from innerloop.engine.errors import ConfigError
from innerloop.engine.learner import Learner
from innerloop.engine.params import Params, expand_to_tasks
from innerloop.engine.progress import Progress
from innerloop.engine.theory.pac_bayes import MetaBound, amit_meir_bound, gaussian_kl
from innerloop.engine.theory.pac_bayes_maml import flatten


@dataclass(frozen=True)
class BoundSettings:
    """κ₀ and κ_ρ₀ (hyperprior widths of prior means and log-widths), σ_p (the hyperprior's prior width),
    δ, and the optimizer's settings."""

    hyperprior_std: float = 0.03
    scale_hyperprior_std: float = 1.0
    prior_std: float = 0.3
    delta: float = 0.05
    steps: int = 2000
    lr: float = 0.01
    initial_std_ratio: float = 0.1  # κ_u, κ_ρ and s_k start at this fraction of κ₀, κ_ρ₀ and the prior width

    def __post_init__(self) -> None:
        for name in ("hyperprior_std", "scale_hyperprior_std", "prior_std", "lr", "initial_std_ratio"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}", "use a positive value")
        if not 0 < self.delta < 1:
            raise ConfigError(f"δ must lie in (0, 1), got {self.delta}", "e.g. delta=0.05")
        if int(self.steps) != self.steps or self.steps < 0:
            raise ConfigError(f"steps must be an integer >= 0, got {self.steps}", "e.g. 2000")


@dataclass
class MetaPosterior:
    """The trained distributions: 𝒬 = N(θ, κ_u²I) × N(r, κ_ρ²I) over prior means and log-stds
    (``hyper_log_std`` = (log κ_u, log κ_ρ)), and the per-task Q_k = N(φ_k, diag s_k²) [T, ...]."""

    hyper_mean: Params
    hyper_log_scale: Params
    hyper_log_std: torch.Tensor
    task_means: Params
    task_log_stds: Params

    def parameters(self) -> list[torch.Tensor]:
        return [*self.hyper_mean.values(), *self.hyper_log_scale.values(), self.hyper_log_std,
                *self.task_means.values(), *self.task_log_stds.values()]

    def flat_hyper(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(θ, r) flattened to [1, D] each."""
        return flatten(expand_to_tasks(self.hyper_mean, 1)), flatten(expand_to_tasks(self.hyper_log_scale, 1))


def expected_task_kl(means: torch.Tensor, log_stds: torch.Tensor, hyper_mean: torch.Tensor,
                     hyper_log_scale: torch.Tensor, hyper_log_std: torch.Tensor) -> torch.Tensor:
    """E_{ψ∼𝒬} KL(N(φ_k, diag s_k²) ‖ N(u, diag e^{2ρ})) per task, for u ∼ N(θ, κ_u²I) and
    ρ ∼ N(r, κ_ρ²I) (``hyper_log_std`` = (log κ_u, log κ_ρ)); flattened [T, D] inputs -> [T]. Per
    weight, with E[e^{−2ρ}] = e^{−2r + 2κ_ρ²} (log-normal), E[(φ − u)²] = (φ − θ)² + κ_u², E[ρ] = r:
    ½·[(s² + (φ − θ)² + κ_u²)·e^{−2r + 2κ_ρ²} − 1 − 2·log s + 2r]."""
    mean_var, scale_var = torch.exp(2 * hyper_log_std)
    precision = torch.exp(-2 * hyper_log_scale + 2 * scale_var)
    spread = torch.exp(2 * log_stds) + (means - hyper_mean) ** 2 + mean_var
    return 0.5 * (spread * precision - 1 - 2 * log_stds + 2 * hyper_log_scale).sum(-1)


def hyper_kl(posterior: MetaPosterior, reference: Params, settings: BoundSettings) -> torch.Tensor:
    """KL(𝒬 ‖ P₀) = KL(N(θ, κ_u²I) ‖ N(θ_ref, κ₀²I)) + KL(N(r, κ_ρ²I) ‖ N(log σ_p, κ_ρ₀²I))."""
    mean, log_scale = posterior.flat_hyper()
    mean_var, scale_var = torch.exp(2 * posterior.hyper_log_std)
    anchor = torch.full_like(log_scale[0], math.log(settings.prior_std))
    return (gaussian_kl(mean[0], mean_var.expand_as(mean[0]), flatten(expand_to_tasks(reference, 1))[0],
                        settings.hyperprior_std ** 2)
            + gaussian_kl(log_scale[0], scale_var.expand_as(anchor), anchor, settings.scale_hyperprior_std ** 2))


def _task_kls(posterior: MetaPosterior) -> torch.Tensor:
    mean, log_scale = posterior.flat_hyper()
    return expected_task_kl(flatten(posterior.task_means), flatten(posterior.task_log_stds), mean, log_scale,
                            posterior.hyper_log_std)


def _sample(means: Params, log_stds: Params, generator: torch.Generator) -> Params:
    return {k: means[k] + torch.exp(log_stds[k]) * torch.randn(means[k].shape, generator=generator,
                                                                dtype=means[k].dtype) for k in means}


def _gibbs_cross_entropy(learner: Learner, means: Params, log_stds: Params, x: torch.Tensor, y: torch.Tensor,
                         generator: torch.Generator) -> torch.Tensor:
    """Per-task cross-entropy [T] of one reparameterized draw h_k ∼ Q_k on task k's points."""
    logits = learner.predict_tasks(_sample(means, log_stds, generator), x)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)


def _within_term(kl: torch.Tensor, tasks: int, points: int, delta: float) -> torch.Tensor:
    """√((KL + log(4Tn/δ))/(2(n − 1))) per task (eq. 7.2's within-task summand)."""
    return torch.sqrt((kl + math.log(4 * tasks * points / delta)) / (2 * (points - 1)))


def minimize_meta_bound(learner: Learner, reference: Params, x: torch.Tensor, y: torch.Tensor,
                        settings: BoundSettings, generator: torch.Generator,
                        progress: bool = False) -> tuple[MetaPosterior, list[float]]:
    """Train 𝒬 and the Q_k on the T observed tasks (x, y) [T, n, ...] by minimizing the surrogate
    bound with Adam; returns the posterior and the surrogate objective every step."""
    if y.is_floating_point():
        raise ConfigError("the Amit–Meir bound needs a [0, 1] loss: the 0-1 error of a classifier",
                          "use a classification task family, e.g. clusters")
    tasks, points = y.shape[:2]
    if tasks < 2 or points < 2:
        raise ConfigError(f"need >= 2 tasks of >= 2 points, got {tasks} tasks of {points}", "eq. 7.2 divides by T − 1 "
                          "and n − 1")
    start = {k: v.detach().clone() for k, v in reference.items()}
    log_prior_std = math.log(settings.prior_std)
    posterior = MetaPosterior(
        hyper_mean={k: v.clone().requires_grad_(True) for k, v in start.items()},
        hyper_log_scale={k: torch.full_like(v, log_prior_std).requires_grad_(True) for k, v in start.items()},
        hyper_log_std=torch.log(torch.tensor([settings.hyperprior_std, settings.scale_hyperprior_std],
                                             dtype=torch.float64) * settings.initial_std_ratio).requires_grad_(True),
        task_means={k: v.clone().requires_grad_(True) for k, v in expand_to_tasks(start, tasks).items()},
        task_log_stds={k: torch.full((tasks, *v.shape), log_prior_std + math.log(settings.initial_std_ratio),
                                     dtype=v.dtype, requires_grad=True) for k, v in start.items()})
    optimizer = torch.optim.Adam(posterior.parameters(), lr=settings.lr)
    across_constant = math.log(4 * tasks / settings.delta)
    history = []
    bar = Progress(settings.steps, "minimizing the Amit–Meir bound", enabled=progress)
    for _ in range(settings.steps):
        empirical = _gibbs_cross_entropy(learner, posterior.task_means, posterior.task_log_stds, x, y, generator)
        kl = _task_kls(posterior)
        across = torch.sqrt((hyper_kl(posterior, reference, settings) + across_constant) / (2 * (tasks - 1)))
        objective = empirical.mean() + across + _within_term(kl, tasks, points, settings.delta).mean()
        optimizer.zero_grad()
        objective.backward()
        optimizer.step()
        history.append(float(objective.detach()))
        bar.update(bound=f"{history[-1]:.3f}")
    bar.close()
    return posterior, history


def evaluate_meta_bound(learner: Learner, posterior: MetaPosterior, reference: Params, x: torch.Tensor,
                        y: torch.Tensor, settings: BoundSettings, generator: torch.Generator,
                        draws: int = 16, delta: float | None = None) -> MetaBound:
    """Eq. 7.2 with the Gibbs 0-1 error (Monte Carlo over ``draws`` h ∼ Q_k per task) and the
    closed-form KL terms; ``delta`` defaults to the settings' δ (lower it for a union bound)."""
    with torch.no_grad():
        errors = torch.stack([(learner.predict_tasks(_sample(posterior.task_means, posterior.task_log_stds,
                                                              generator), x).argmax(-1) != y).double().mean(1)
                              for _ in range(draws)]).mean(0)
        kl = _task_kls(posterior)
        hyper = float(hyper_kl(posterior, reference, settings))
    return amit_meir_bound(float(errors.mean()), hyper, kl, y.shape[1], settings.delta if delta is None else delta)


def meta_test_error(learner: Learner, posterior: MetaPosterior, support_x: torch.Tensor, support_y: torch.Tensor,
                    query_x: torch.Tensor, query_y: torch.Tensor, settings: BoundSettings, tasks: int,
                    generator: torch.Generator, steps: int = 200, draws: int = 16) -> torch.Tensor:
    """Per-task Gibbs 0-1 error [B] on new tasks' query points: a prior P_ψ, ψ = (u, ρ) ∼ 𝒬, per task;
    Q = N(φ, diag s²) from φ = u, s = e^ρ·``initial_std_ratio`` by ``steps`` Adam steps on the per-task
    part of the training objective (cross-entropy + within-task term with the meta-training T) on the
    support points."""
    count, points = support_y.shape[:2]
    with torch.no_grad():
        mean_std, scale_std = torch.exp(posterior.hyper_log_std).tolist()

        def draw(centre: Params, std: float) -> Params:
            return {k: v + std * torch.randn(v.shape, generator=generator, dtype=v.dtype)
                    for k, v in expand_to_tasks({k: c.detach() for k, c in centre.items()}, count).items()}

        prior_mean, prior_log_scale = draw(posterior.hyper_mean, mean_std), draw(posterior.hyper_log_scale, scale_std)
    means = {k: v.clone().requires_grad_(True) for k, v in prior_mean.items()}
    log_stds = {k: (v + math.log(settings.initial_std_ratio)).requires_grad_(True) for k, v in prior_log_scale.items()}
    optimizer = torch.optim.Adam([*means.values(), *log_stds.values()], lr=settings.lr)
    prior_flat, prior_var = flatten(prior_mean), torch.exp(2 * flatten(prior_log_scale))
    for _ in range(steps):
        empirical = _gibbs_cross_entropy(learner, means, log_stds, support_x, support_y, generator)
        kl = gaussian_kl(flatten(means), torch.exp(2 * flatten(log_stds)), prior_flat, prior_var)
        objective = (empirical + _within_term(kl, tasks, points, settings.delta)).sum()
        optimizer.zero_grad()
        objective.backward()
        optimizer.step()
    with torch.no_grad():
        errors = [(learner.predict_tasks(_sample(means, log_stds, generator), query_x).argmax(-1) != query_y)
                  .double().mean(1) for _ in range(draws)]
    return torch.stack(errors).mean(0)
