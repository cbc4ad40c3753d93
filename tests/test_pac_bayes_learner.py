"""The Amit–Meir bound-minimizing meta-learner (seed 000 §7) against direct computations."""

import math

import pytest
import torch

from innerloop.engine.errors import ConfigError
from innerloop.engine.learner import Learner
from innerloop.engine.models import MLP
from innerloop.engine.params import expand_to_tasks
from innerloop.engine.tasks import Clusters2D
from innerloop.engine.theory.pac_bayes_learner import (
    BoundSettings,
    evaluate_meta_bound,
    expected_task_kl,
    meta_test_error,
    minimize_meta_bound,
)
from innerloop.engine.theory.pac_bayes_maml import flatten

F64 = torch.float64


def _setup(tasks=6):
    batch = Clusters2D(shots=4, queries=6, ways=3).sample(tasks, torch.Generator().manual_seed(20)).to(F64, "cpu")
    model = MLP(2, (8,), 3)
    learner = Learner(model, "cross_entropy")
    x, y = torch.cat([batch.support_x, batch.query_x], 1), torch.cat([batch.support_y, batch.query_y], 1)
    return batch, learner, model.init(torch.Generator().manual_seed(21), dtype=F64), x, y


def test_expected_task_kl_is_the_mean_over_priors_drawn_from_the_hyperposterior():
    g = torch.Generator().manual_seed(22)
    means, log_stds = torch.randn(3, 5, generator=g, dtype=F64), 0.3 * torch.randn(3, 5, generator=g, dtype=F64)
    centre, log_scale = torch.randn(1, 5, generator=g, dtype=F64), 0.2 * torch.randn(1, 5, generator=g, dtype=F64)
    log_kappa = torch.log(torch.tensor([0.3, 0.2], dtype=F64))
    u = centre + 0.3 * torch.randn(400000, 1, 5, generator=g, dtype=F64)
    rho = log_scale + 0.2 * torch.randn(400000, 1, 5, generator=g, dtype=F64)
    D = torch.distributions
    sampled = D.kl_divergence(D.Independent(D.Normal(means, log_stds.exp()), 1),
                              D.Independent(D.Normal(u, rho.exp()), 1)).mean(0)
    closed = expected_task_kl(means, log_stds, centre, log_scale, log_kappa)
    assert torch.allclose(closed, sampled, rtol=5e-3)


def test_evaluated_bound_terms_match_a_direct_computation():
    _, learner, reference, x, y = _setup()
    settings = BoundSettings(hyperprior_std=0.5, scale_hyperprior_std=0.7, prior_std=0.2, steps=3, lr=0.01)
    posterior, history = minimize_meta_bound(learner, reference, x, y, settings, torch.Generator().manual_seed(23))
    assert len(history) == 3
    bound = evaluate_meta_bound(learner, posterior, reference, x, y, settings, torch.Generator().manual_seed(24))
    D = torch.distributions
    centre = flatten(expand_to_tasks(posterior.hyper_mean, 1))[0].detach()
    log_scale = flatten(expand_to_tasks(posterior.hyper_log_scale, 1))[0].detach()
    kappa_u, kappa_rho = posterior.hyper_log_std.detach().exp().tolist()
    assert (kappa_u, kappa_rho) != (0.05, 0.07), "κ_u and κ_ρ are trained"
    anchor = torch.full_like(log_scale, math.log(0.2))
    hyper = (D.kl_divergence(D.Independent(D.Normal(centre, kappa_u), 1),
                             D.Independent(D.Normal(flatten(expand_to_tasks(reference, 1))[0], 0.5), 1))
             + D.kl_divergence(D.Independent(D.Normal(log_scale, kappa_rho), 1),
                               D.Independent(D.Normal(anchor, 0.7), 1)))
    assert bound.hyper_kl == pytest.approx(float(hyper), rel=1e-9)
    tasks, points = y.shape[:2]
    across = math.sqrt((float(hyper) + math.log(4 * tasks / 0.05)) / (2 * (tasks - 1)))
    assert bound.across_task == pytest.approx(across)
    means, stds = flatten(posterior.task_means).detach(), flatten(posterior.task_log_stds).detach().exp()
    g = torch.Generator().manual_seed(29)  # E over ψ = (u, ρ) ∼ 𝒬 by sampling, against the closed form
    u = centre + kappa_u * torch.randn(20000, centre.numel(), generator=g, dtype=F64)
    rho = log_scale + kappa_rho * torch.randn(20000, centre.numel(), generator=g, dtype=F64)
    per_task = [float(D.kl_divergence(D.Independent(D.Normal(m, s), 1), D.Independent(D.Normal(u, rho.exp()), 1))
                      .mean()) for m, s in zip(means, stds)]
    within = sum(math.sqrt((k + math.log(4 * tasks * points / 0.05)) / (2 * (points - 1))) for k in per_task) / tasks
    assert bound.within_task == pytest.approx(within, rel=2e-3)
    assert 0 <= bound.empirical <= 1
    assert bound.bound == pytest.approx(bound.empirical + bound.across_task + bound.within_task)


def test_training_lowers_the_surrogate_bound_and_beats_chance_on_fresh_tasks():
    batch, learner, reference, x, y = _setup(tasks=12)
    settings = BoundSettings(hyperprior_std=0.5, prior_std=0.3, steps=150, lr=0.03)
    posterior, history = minimize_meta_bound(learner, reference, x, y, settings, torch.Generator().manual_seed(25))
    assert history[-1] < 0.8 * history[0]
    trained = evaluate_meta_bound(learner, posterior, reference, x, y, settings, torch.Generator().manual_seed(26))
    untrained, _ = minimize_meta_bound(learner, reference, x, y, BoundSettings(0.5, prior_std=0.3, steps=0),
                                       torch.Generator().manual_seed(25))
    start = evaluate_meta_bound(learner, untrained, reference, x, y, settings, torch.Generator().manual_seed(26))
    assert trained.empirical < start.empirical
    fresh = Clusters2D(shots=10, queries=10, ways=3).sample(20, torch.Generator().manual_seed(27)).to(F64, "cpu")
    error = meta_test_error(learner, posterior, fresh.support_x, fresh.support_y, fresh.query_x, fresh.query_y,
                            settings, tasks=12, generator=torch.Generator().manual_seed(28), steps=60)
    assert error.shape == (20,) and bool(((error >= 0) & (error <= 1)).all())
    assert float(error.mean()) < 2 / 3 - 0.15  # well below chance for 3 ways


def test_bound_learner_rejects_bad_input():
    batch, learner, reference, x, y = _setup()
    with pytest.raises(ConfigError, match="0-1 error"):
        minimize_meta_bound(learner, reference, x, y.double(), BoundSettings(steps=1), torch.Generator())
    with pytest.raises(ConfigError, match=">= 2 tasks"):
        minimize_meta_bound(learner, reference, x[:1], y[:1], BoundSettings(steps=1), torch.Generator())
    with pytest.raises(ConfigError, match="prior_std must be > 0"):
        BoundSettings(prior_std=0.0)
    with pytest.raises(ConfigError, match="δ must lie"):
        BoundSettings(delta=1.0)
