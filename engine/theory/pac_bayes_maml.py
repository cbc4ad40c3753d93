"""A computable Amit–Meir bound (seed 000 eq. 7.2) for MAML, softened as in §7.5.

MAML's within-task posterior is a point mass, whose KL to any continuous prior is infinite. The
softening (Dziugaite–Roy, applied to the meta-setting by Amit–Meir) replaces every point by a
Gaussian around it:

* hyperprior P₀ = N(θ_ref, κ₀²I) around a data-independent reference θ_ref (the random
  initialization, fixed by the seed before any task is seen);
* hyperposterior 𝒬 = N(θ₀, κ²I) around the meta-learned initialization θ₀;
* the prior a draw P ∼ 𝒬 stands for: N(θ₀ + u, σ_p²I), with σ_p² = Nα by default — the
  early-stopping prior variance of Theorem 2 (eq. 6.6);
* the within-task posterior Q_k^P = N(φ_k, s²I), φ_k = N SGD steps from θ₀ + u on task k's n
  points (the MAML inner loop on all of its data).

The bound's empirical term is the 0-1 error of the Gibbs classifier h ∼ Q_k^P on task k's own
points, averaged over tasks and draws; :func:`gibbs_error` on fresh points of fresh tasks
estimates the meta-risk it bounds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from innerloop.backends.base import Backend
from innerloop.engine.errors import ConfigError
from innerloop.engine.inner import sgd_trajectory
from innerloop.engine.learner import Learner
from innerloop.engine.params import Params, expand_to_tasks
from innerloop.engine.theory.pac_bayes import MetaBound, amit_meir_bound, gaussian_kl


@dataclass(frozen=True)
class Softening:
    """The Gaussian widths of the softened bound: κ (hyperposterior), κ₀ (hyperprior), s (within-task
    posterior) and σ_p² (within-task prior; None: Nα, eq. 6.6)."""

    hyper_std: float
    hyperprior_std: float
    posterior_std: float
    prior_var: float | None = None

    def __post_init__(self) -> None:
        for name in ("hyper_std", "hyperprior_std", "posterior_std"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}",
                                  "a zero width is a point mass, whose KL is infinite")
        if self.prior_var is not None and not self.prior_var > 0:
            raise ConfigError(f"prior_var must be > 0, got {self.prior_var}", "or None for Nα (eq. 6.6)")


def flatten(params: Params) -> torch.Tensor:
    """Per-task parameters {name: [B, ...]} as one [B, D] tensor (names in sorted order)."""
    return torch.cat([params[k].reshape(params[k].shape[0], -1) for k in sorted(params)], dim=1)


def perturb(params: Params, std: float, generator: torch.Generator) -> Params:
    """params + std·ε, ε ~ N(0, I) drawn on the CPU from ``generator``."""
    return {k: v + std * torch.randn(v.shape, generator=generator, dtype=torch.float64).to(v)
            for k, v in params.items()}


def gibbs_error(learner: Learner, centers: Params, std: float, x: torch.Tensor, y: torch.Tensor, draws: int,
                generator: torch.Generator) -> torch.Tensor:
    """Per-task 0-1 error [B] of the Gibbs classifier h ∼ N(centers_b, std²I) on (x_b, y_b), averaged
    over ``draws`` draws of h."""
    if y.is_floating_point():
        raise ConfigError("the PAC-Bayes bound here needs a [0, 1] loss: the 0-1 error of a classifier",
                          "use a classification task family, e.g. clusters")
    with torch.no_grad():
        errors = [(learner.predict_tasks(perturb(centers, std, generator), x).argmax(-1) != y).double().mean(1)
                  for _ in range(draws)]
    return torch.stack(errors).mean(0)


def adapt(backend: Backend, learner: Learner, start: Params, x: torch.Tensor, y: torch.Tensor, inner_lr: float,
          inner_steps: int) -> Params:
    """φ_k: ``inner_steps`` SGD steps of size ``inner_lr`` from per-task ``start`` on (x, y)."""
    return sgd_trajectory(backend, learner, start, x, y, inner_lr, inner_steps).final


def posterior_draws_for(backend: Backend, learner: Learner, theta0: Params, x: torch.Tensor, y: torch.Tensor,
                        inner_lr: float, inner_steps: int, softening: Softening, prior_draws: int,
                        generator: torch.Generator) -> Iterator[tuple[Params, Params]]:
    """``prior_draws`` pairs (θ₀ + u per task, φ_k adapted from it on (x, y)), u ~ N(0, κ²I) per task."""
    for _ in range(prior_draws):
        prior_mean = perturb(expand_to_tasks(theta0, y.shape[0]), softening.hyper_std, generator)
        yield prior_mean, adapt(backend, learner, prior_mean, x, y, inner_lr, inner_steps)


def softened_maml_bound(backend: Backend, learner: Learner, theta0: Params, reference: Params, x: torch.Tensor,
                        y: torch.Tensor, inner_lr: float, inner_steps: int, softening: Softening, *,
                        prior_draws: int = 4, posterior_draws: int = 8, delta: float = 0.05,
                        generator: torch.Generator) -> MetaBound:
    """Eq. 7.2 for the softened MAML learner on the T observed tasks (x, y) [T, n, ...]; every
    expectation over 𝒬 and Q_k^P is a Monte Carlo mean over ``prior_draws`` × ``posterior_draws``."""
    prior_var = softening.prior_var or inner_steps * inner_lr
    hyper_kl = float(gaussian_kl(flatten(expand_to_tasks(theta0, 1))[0], softening.hyper_std ** 2,
                                 flatten(expand_to_tasks(reference, 1))[0], softening.hyperprior_std ** 2))
    kls, errors = [], []
    for prior_mean, posterior_mean in posterior_draws_for(backend, learner, theta0, x, y, inner_lr, inner_steps,
                                                          softening, prior_draws, generator):
        kls.append(gaussian_kl(flatten(posterior_mean), softening.posterior_std ** 2, flatten(prior_mean), prior_var))
        errors.append(gibbs_error(learner, posterior_mean, softening.posterior_std, x, y, posterior_draws, generator))
    return amit_meir_bound(float(torch.stack(errors).mean()), hyper_kl, torch.stack(kls), y.shape[1], delta)


def meta_risk(backend: Backend, learner: Learner, theta0: Params, support_x: torch.Tensor, support_y: torch.Tensor,
              query_x: torch.Tensor, query_y: torch.Tensor, inner_lr: float, inner_steps: int, softening: Softening, *,
              prior_draws: int = 4, posterior_draws: int = 8, generator: torch.Generator) -> torch.Tensor:
    """Per-task Gibbs 0-1 error [B] on new tasks' query points after adapting to their support sets
    of n points: a Monte Carlo estimate of R_meta(𝒬), the left side of eq. 7.2."""
    errors = [gibbs_error(learner, posterior_mean, softening.posterior_std, query_x, query_y, posterior_draws,
                          generator)
              for _, posterior_mean in posterior_draws_for(backend, learner, theta0, support_x, support_y, inner_lr,
                                                           inner_steps, softening, prior_draws, generator)]
    return torch.stack(errors).mean(0)
