"""A meta-learning environment where every quantity of monograph ch. 4 is computable exactly.

Tasks are biases τ on a finite grid with probabilities p(τ); a task's training set D_T holds N
draws Z ∼ Bernoulli(τ); the loss is the Brier score ℓ(z|ϕ) = (z − ϕ)² ∈ [0, 1], hence ¼-sub-Gaussian
under every distribution (Assumptions 4.1 and 4.2 hold with σ² = δ² = ¼). Models ϕ and
hyperparameters θ live on grids over [0, 1]; θ sets the prior q(ϕ|θ) ∝ exp(−(ϕ − θ)²/(2w²)).

* base-learner: the Gibbs posterior p(ϕ|D, θ) ∝ q(ϕ|θ)·exp(−β·L_D(ϕ)) (eq. 4.11);
* meta-learner: the Gibbs meta-learner p(θ|D_{1:K}) ∝ exp(−β_meta·L_IMRM(θ)) under a uniform
  hyperprior (eqs. 4.33–4.34).

Both depend on a training set only through its count of ones k (the training loss does), so mutual
informations with D equal those with k, and the meta-learner depends on D_{1:K} only through the
histogram of the K counts: expectations over datasets are finite sums over counts and histograms,
mutual informations are exact, and nothing is sampled.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

from innerloop.engine.errors import ConfigError
from innerloop.engine.theory import information_bounds as bounds
from innerloop.engine.theory.gibbs import free_energy, gibbs_posterior, kl_divergence
from innerloop.engine.theory.relatedness import environment_relatedness

ENUMERATION_LIMIT = 2_000_000


def _mutual_information(conditionals: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """I(A; B) = Σ_b p(b)·KL(p(a|b) ‖ p(a)) for conditionals [..., b, a] and weights p(b) [..., b]."""
    marginal = (weights[..., None] * conditionals).sum(-2, keepdim=True)
    return (weights * kl_divergence(conditionals, marginal)).sum(-1)


@dataclass(frozen=True)
class BernoulliEnvironment:
    """The environment of the module docstring (float64 throughout)."""

    task_biases: tuple[float, ...]
    task_probs: tuple[float, ...]
    points: int
    beta: float = 10.0
    meta_beta: float = 10.0
    prior_width: float = 0.15
    models: int = 41
    hypers: int = 21

    def __post_init__(self) -> None:
        if len(self.task_biases) != len(self.task_probs) or not self.task_biases:
            raise ConfigError("give one probability per task bias",
                              f"got {len(self.task_biases)} biases and {len(self.task_probs)} probabilities")
        if not all(0 < t < 1 for t in self.task_biases):
            raise ConfigError(f"task biases must lie strictly inside (0, 1), got {self.task_biases}",
                              "a bias of 0 or 1 makes the KL relatedness of eq. 4.25 infinite")
        if min(self.task_probs) < 0 or not math.isclose(sum(self.task_probs), 1.0, abs_tol=1e-9):
            raise ConfigError(f"task probabilities must be >= 0 and sum to 1, got {self.task_probs}",
                              "normalize them")
        if int(self.points) != self.points or self.points < 1:
            raise ConfigError(f"points must be an integer >= 1, got {self.points}", "N is the training-set size")
        for name in ("beta", "meta_beta", "prior_width"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}", "use a positive value")
        if self.models < 2 or self.hypers < 1:
            raise ConfigError(f"need >= 2 models and >= 1 hyperparameter, got {self.models} and {self.hypers}",
                              "the grids discretize [0, 1]")

    # -- the grids and per-task quantities -------------------------------------------------------

    @cached_property
    def model_grid(self) -> torch.Tensor:
        return torch.linspace(0, 1, self.models, dtype=torch.float64)

    @cached_property
    def hyper_grid(self) -> torch.Tensor:
        return torch.linspace(0, 1, self.hypers, dtype=torch.float64) if self.hypers > 1 else \
            torch.full((1,), 0.5, dtype=torch.float64)

    @cached_property
    def biases(self) -> torch.Tensor:
        return torch.tensor(self.task_biases, dtype=torch.float64)

    @cached_property
    def probs(self) -> torch.Tensor:
        return torch.tensor(self.task_probs, dtype=torch.float64)

    @cached_property
    def count_given_task(self) -> torch.Tensor:
        """p(k | τ) = Binomial(k; N, τ), shape [tasks, N + 1]."""
        counts = torch.arange(self.points + 1, dtype=torch.float64)
        log_choose = (math.lgamma(self.points + 1) - torch.lgamma(counts + 1)
                      - torch.lgamma(self.points - counts + 1))
        tau = self.biases[:, None]
        return torch.exp(log_choose + counts * torch.log(tau) + (self.points - counts) * torch.log1p(-tau))

    @cached_property
    def count_marginal(self) -> torch.Tensor:
        """p(k) = Σ_τ p(τ)·p(k | τ): a meta-training count's distribution, shape [N + 1]."""
        return self.probs @ self.count_given_task

    def population_loss(self, bias: torch.Tensor) -> torch.Tensor:
        """L_τ(ϕ) = E_{Z∼Bern(τ)}[(Z − ϕ)²] = τ(1 − ϕ)² + (1 − τ)ϕ² (eq. 4.1), shape [..., models]."""
        phi = self.model_grid
        bias = torch.as_tensor(bias, dtype=torch.float64)[..., None]
        return bias * (1 - phi) ** 2 + (1 - bias) * phi ** 2

    @cached_property
    def training_loss(self) -> torch.Tensor:
        """L_D(ϕ) for a training set with k ones (eq. 4.2), shape [N + 1, models]."""
        return self.population_loss(torch.arange(self.points + 1, dtype=torch.float64) / self.points)

    @cached_property
    def log_prior(self) -> torch.Tensor:
        """log q(ϕ | θ), shape [hypers, models]."""
        return torch.log_softmax(-(self.model_grid - self.hyper_grid[:, None]) ** 2 / (2 * self.prior_width ** 2), -1)

    @cached_property
    def base_learner(self) -> torch.Tensor:
        """p(ϕ | k, θ) of eq. 4.11, shape [hypers, N + 1, models]."""
        return gibbs_posterior(self.log_prior[:, None], self.training_loss, self.beta)

    @cached_property
    def task_training_loss(self) -> torch.Tensor:
        """L_D(θ) = E_{p(ϕ|D,θ)}[L_D(ϕ)] (eq. 4.16), shape [hypers, N + 1]."""
        return (self.base_learner * self.training_loss).sum(-1)

    @cached_property
    def task_meta_loss(self) -> torch.Tensor:
        """A task's IMRM summand L_D(θ) + KL(p(ϕ|D,θ) ‖ q(ϕ|θ))/β (eq. 4.34), which for the Gibbs
        base-learner is the free energy; shape [hypers, N + 1]."""
        return free_energy(self.log_prior[:, None], self.training_loss, self.beta)

    @cached_property
    def task_population_loss(self) -> torch.Tensor:
        """L_τ(θ) = E_{k|τ} E_{p(ϕ|k,θ)}[L_τ(ϕ)] (eq. 4.14), shape [hypers, tasks]."""
        expected = torch.einsum("hkm,tm->htk", self.base_learner, self.population_loss(self.biases))
        return (expected * self.count_given_task).sum(-1)

    def meta_learner(self, mean_meta_loss: torch.Tensor) -> torch.Tensor:
        """p(θ | D_{1:K}) of eq. 4.33 from L_IMRM(θ) [..., hypers], uniform hyperprior."""
        uniform = torch.full((self.hypers,), -math.log(self.hypers), dtype=torch.float64)
        return gibbs_posterior(uniform, mean_meta_loss, self.meta_beta)

    # -- conventional learning (monograph §4.1) --------------------------------------------------

    def single_task(self, delta: float = 0.05) -> dict[str, torch.Tensor]:
        """For every task τ and fixed prior θ, shape [tasks, hypers]: the average generalization
        error E[ΔL] (eq. 4.4), I(ϕ; D) and the bound of Theorem 4.1 (eq. 4.7), the IRM bound
        (eq. 4.9) and the probability over D that the PAC-Bayes bound (eq. 4.12) holds."""
        weights = self.count_given_task[:, None, :]  # [tasks, 1, k]
        model_pop = self.population_loss(self.biases)  # [tasks, models]
        posterior_pop = torch.einsum("hkm,tm->thk", self.base_learner, model_pop)  # E_{p(ϕ|k,θ)}[L_τ(ϕ)]
        gen_error = (weights * (posterior_pop - self.task_training_loss)).sum(-1)
        information = _mutual_information(self.base_learner[None], weights.expand(-1, self.hypers, -1))
        sub_gaussian, n = bounds.BOUNDED_LOSS_SUB_GAUSSIAN, self.points
        theorem = torch.sqrt(2 * sub_gaussian * information.clamp(min=0) / n)
        irm = (weights * self.task_meta_loss).sum(-1) + self.beta * sub_gaussian / (2 * n)
        pac_slack = math.log(1 / delta) / self.beta + self.beta * sub_gaussian / (2 * n)
        pac_holds = (weights * (posterior_pop <= self.task_meta_loss + pac_slack)).sum(-1)
        population = (weights * posterior_pop).sum(-1)
        return {"gen_error": gen_error, "information": information, "xu_raginsky": theorem,
                "population_loss": population, "irm_bound": irm, "pac_bayes_coverage": pac_holds}

    # -- meta-learning (monograph §4.2–4.3) ------------------------------------------------------

    def histograms(self, tasks: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every histogram of K counts over {0..N} [S, N + 1] and its multinomial probability [S]."""
        _check_tasks(tasks)
        size = math.comb(self.points + tasks, tasks)
        if size > ENUMERATION_LIMIT:
            raise ConfigError(f"{size} histograms of K = {tasks} counts over N + 1 = {self.points + 1} values is "
                              f"above the enumeration limit {ENUMERATION_LIMIT}", "lower K or N")
        hist = _compositions(tasks, self.points + 1).to(torch.float64)
        log_multinomial = math.lgamma(tasks + 1) - torch.lgamma(hist + 1).sum(-1)
        log_prob = log_multinomial + (hist * torch.log(self.count_marginal)).sum(-1)
        return hist, torch.exp(log_prob)

    def meta_generalization(self, tasks: int) -> dict[str, Any]:
        """Theorem 4.3 on K meta-training tasks, exactly: the average meta-generalization error
        (eq. 4.18), its within-task and environment-level parts (eq. 4.22), I(θ; D_{1:K}),
        I(ϕ; D_T | T) per task, the bound (eq. 4.24) and the meta-learner's L(θ) (eq. 4.13)."""
        hist, weights = self.histograms(tasks)
        meta = self.meta_learner(hist @ self.task_meta_loss.T / tasks)  # [S, hypers]
        meta_training = hist @ self.task_training_loss.T / tasks  # L_{D_{1:K}}(θ), eq. 4.15
        population = self.task_population_loss @ self.probs  # L(θ), eq. 4.13
        auxiliary = self.task_training_loss @ self.count_marginal  # L̄(θ), eq. 4.20
        hyper_marginal = weights @ meta
        gen_error = float(weights @ (meta * (population - meta_training)).sum(-1))
        within = float(hyper_marginal @ (population - auxiliary))
        env_information = float(_mutual_information(meta, weights))
        task_informations = self._within_task_information(hyper_marginal)
        bound = bounds.meta_information_bound(env_information, tasks, task_informations.tolist(),
                                              self.probs.tolist(), self.points)
        return {"tasks": tasks, "points": self.points, "gen_error": gen_error, "within_task_error": within,
                "environment_error": gen_error - within, "environment_information": env_information,
                "task_informations": task_informations.tolist(), **bound.as_dict(),
                "meta_population_loss": float(hyper_marginal @ population),
                "hyper_marginal": hyper_marginal.tolist()}

    def _within_task_information(self, hyper_marginal: torch.Tensor) -> torch.Tensor:
        """I(ϕ; D_T | T = τ) for each τ [tasks], with θ drawn from ``hyper_marginal`` independently of D_T."""
        mixture = torch.einsum("h,hkm->km", hyper_marginal, self.base_learner)  # p(ϕ | k)
        return _mutual_information(mixture[None], self.count_given_task)

    def relatedness(self, divergence: str = "kl") -> float:
        """ε of Definition 4.1 (eq. 4.25) for this environment (the count is sufficient)."""
        return environment_relatedness(self.count_given_task, self.probs, divergence)

    def task_similarity(self, tasks: int) -> dict[str, Any]:
        """Theorem 4.4 on K meta-training tasks, exactly: the average absolute meta-generalization
        error (eq. 4.29) against the bound of eq. 4.30, enumerating the K meta-training tasks and
        their ordered counts (small K only)."""
        _check_tasks(tasks)
        n_tasks, values = len(self.task_biases), self.points + 1
        size = n_tasks ** tasks * values ** tasks
        if size > ENUMERATION_LIMIT:
            raise ConfigError(f"{size} (task, count) tuples for K = {tasks} is above the enumeration limit "
                              f"{ENUMERATION_LIMIT}", "lower K, N or the number of task biases")
        counts = torch.cartesian_prod(*[torch.arange(values)] * tasks).reshape(-1, tasks)
        meta_loss = self.task_meta_loss.T[counts].mean(1)  # [C, hypers]
        meta = self.meta_learner(meta_loss)
        meta_training_term = (meta * self.task_training_loss.T[counts].mean(1)).sum(-1)  # [C]
        avg_abs, env_information = 0.0, 0.0
        task_informations = torch.zeros(n_tasks, dtype=torch.float64)
        for task_tuple in itertools.product(range(n_tasks), repeat=tasks):
            tuple_prob = float(torch.prod(self.probs[list(task_tuple)]))
            count_prob = torch.prod(self._tuple_count_prob(task_tuple, counts), dim=-1)  # p(k_{1:K} | τ_{1:K})
            hyper_given_tasks = count_prob @ meta
            inner = self.task_population_loss.T @ hyper_given_tasks - float(count_prob @ meta_training_term)
            avg_abs += tuple_prob * float(self.probs @ inner.abs())
            env_information += tuple_prob * float(_mutual_information(meta, count_prob))
            task_informations += tuple_prob * self._within_task_information(hyper_given_tasks)
        epsilon = self.relatedness("kl")
        bound = bounds.task_similarity_bound(env_information, tasks, epsilon, task_informations.tolist(),
                                             self.probs.tolist(), self.points)
        return {"tasks": tasks, "points": self.points, "avg_abs_gen_error": avg_abs,
                "conditional_environment_information": env_information, "relatedness_kl": epsilon,
                "task_informations": task_informations.tolist(), **bound.as_dict()}

    def _tuple_count_prob(self, task_tuple: tuple[int, ...], counts: torch.Tensor) -> torch.Tensor:
        """p(k_i | τ_i) for each position i of every ordered count tuple, shape [C, K]."""
        table = self.count_given_task[list(task_tuple)]  # [K, N + 1]
        return table[torch.arange(len(task_tuple)), counts]


def _check_tasks(tasks: int) -> None:
    if int(tasks) != tasks or tasks < 1:
        raise ConfigError(f"the number of meta-training tasks K must be an integer >= 1, got {tasks}", "e.g. 5")


def _compositions(total: int, parts: int) -> torch.Tensor:
    """Every way to write ``total`` as an ordered sum of ``parts`` non-negative integers, [C(total + parts − 1,
    total), parts]: the histograms of ``total`` draws over ``parts`` values."""
    rows, left = torch.zeros(1, 0, dtype=torch.long), torch.tensor([total])
    for _ in range(parts - 1):
        repeats = left + 1
        owner = torch.repeat_interleave(torch.arange(len(rows)), repeats)
        starts = torch.cumsum(repeats, 0) - repeats
        value = torch.arange(len(owner)) - starts[owner]
        rows, left = torch.cat([rows[owner], value[:, None]], 1), left[owner] - value
    return torch.cat([rows, left[:, None]], 1)
