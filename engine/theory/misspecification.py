"""Epistemic uncertainty of Bayesian meta-learning under model misspecification (monograph §7.2.2).

§4.5's minimum excess meta-risk I(Y; ϕ | X, D) measures epistemic uncertainty when the model is
well specified and the meta-posterior exact. Here the data come from one linear-Gaussian
hierarchical model (:class:`~innerloop.engine.theory.excess_meta_risk.HierarchicalLinearModel`,
the truth) and the meta-learner computes the exact Bayesian predictive of another (the assumption:
the same form with other variances s_θ'², s_ϕ'², σ'²).

Everything is jointly Gaussian given the designs. Stack the targets of the K meta-training tasks
and of the test task's N points as Y; under a model with variances (s_θ², s_ϕ², σ²),

    Cov(y_k, y_j) = s_θ²·X_kX_jᵀ + [k = j]·(s_ϕ²·X_kX_kᵀ + σ²I),   Cov(ϕ_T, y_k) = (s_θ² + [k = T]·s_ϕ²)·X_kᵀ,

so the posterior mean of ϕ_T is L·Y with L = Cov(ϕ_T, Y)·Cov(Y)⁻¹ (generic Gaussian conditioning).
At a test input x, the assumed predictive is N(xᵀL'Y, v'), v' = σ'² + xᵀΣ'x, and its expected
log-loss under the truth is exact:

    E[−log q(y | x, D)] = ½·log(2πv') + E[(y − xᵀL'Y)²] / 2v',
    E[(y − xᵀL'Y)²] = xᵀ(s_θ² + s_ϕ²)x + σ² − 2·xᵀC_ϕY L'ᵀx + xᵀL'C_YY L'ᵀx   (true covariances C).

The excess over the aleatoric ½·log(2πeσ²) splits into the true MEMR ½·log(v/σ²) (the
well-specified learner's) plus E[KL(true predictive ‖ assumed predictive)] ≥ 0, the price of
misspecification — while the learner reports its own MEMR, ½·log(v'/σ'²), as its epistemic uncertainty.
"""

from __future__ import annotations

import math

import torch

from innerloop.engine.errors import ShapeError
from innerloop.engine.stats import summarize
from innerloop.engine.theory.excess_meta_risk import HierarchicalLinearModel


def joint_covariances(model: HierarchicalLinearModel, designs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Cov(Y) [..., M, M], Cov(ϕ_T, Y) [..., d, M]) for designs [..., K + 1, N, d] (test task last),
    M = (K + 1)·N, under ``model``'s variances (see the module docstring)."""
    if designs.ndim < 3 or designs.shape[-1] != model.dim:
        raise ShapeError(f"designs have shape {tuple(designs.shape)}",
                         f"expected [..., tasks + 1, points, {model.dim}]")
    tasks, points = designs.shape[-3], designs.shape[-2]
    flat = designs.flatten(-3, -2)
    gram = flat @ flat.transpose(-1, -2)
    task_of = torch.arange(tasks).repeat_interleave(points)
    same_task = (task_of[:, None] == task_of[None, :]).to(designs.dtype)
    eye = torch.eye(tasks * points, dtype=designs.dtype)
    covariance = model.hyper_var * gram + model.task_var * gram * same_task + model.noise_var * eye
    test_rows = (task_of == tasks - 1).to(designs.dtype)
    cross = (model.hyper_var + model.task_var * test_rows) * flat.transpose(-1, -2)
    return covariance, cross


def posterior_map(model: HierarchicalLinearModel, designs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L [..., d, M], Σ [..., d, d]): ``model``'s posterior of ϕ_T given Y is N(L·Y, Σ)."""
    covariance, cross = joint_covariances(model, designs)
    gain = torch.linalg.solve(covariance, cross.transpose(-1, -2)).transpose(-1, -2)
    prior = (model.hyper_var + model.task_var) * torch.eye(model.dim, dtype=designs.dtype)
    return gain, prior - gain @ cross.transpose(-1, -2)


def expected_log_losses(truth: HierarchicalLinearModel, assumed: HierarchicalLinearModel, designs: torch.Tensor,
                        inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per design draw and test input [..., I] (inputs [..., I, d]): the assumed predictive's exact
    expected log-loss under the truth, the true Bayes predictive's, the aleatoric floor, and the
    MEMR each model reports — ``actual``, ``bayes``, ``aleatoric``, ``reported_memr``, ``true_memr``."""
    if truth.dim != assumed.dim:
        raise ShapeError(f"the truth has d = {truth.dim} but the assumption d = {assumed.dim}", "use one dimension")
    true_covariance, true_cross = joint_covariances(truth, designs)
    gain, assumed_posterior = posterior_map(assumed, designs)
    _, true_posterior = posterior_map(truth, designs)

    def quadratic(matrix: torch.Tensor) -> torch.Tensor:  # xᵀAx per input
        return ((inputs @ matrix) * inputs).sum(-1)

    prior = truth.hyper_var + truth.task_var
    squared_error = (prior * (inputs ** 2).sum(-1) + truth.noise_var
                     - 2 * quadratic(true_cross @ gain.transpose(-1, -2))
                     + quadratic(gain @ true_covariance @ gain.transpose(-1, -2)))
    assumed_variance = assumed.noise_var + quadratic(assumed_posterior)
    true_variance = truth.noise_var + quadratic(true_posterior)
    log_2pi = math.log(2 * math.pi)
    return {"actual": 0.5 * (log_2pi + torch.log(assumed_variance)) + squared_error / (2 * assumed_variance),
            "bayes": 0.5 * (log_2pi + 1 + torch.log(true_variance)),
            "aleatoric": torch.full_like(true_variance, 0.5 * (log_2pi + 1 + math.log(truth.noise_var))),
            "reported_memr": 0.5 * torch.log(assumed_variance / assumed.noise_var),
            "true_memr": 0.5 * torch.log(true_variance / truth.noise_var)}


def misspecified_meta_risk(truth: HierarchicalLinearModel, assumed: HierarchicalLinearModel, tasks: int, points: int,
                           draws: int, inputs: int, generator: torch.Generator) -> dict[str, dict[str, float]]:
    """Monte Carlo over designs and test inputs (everything else exact): the actual excess meta-risk
    of the assumed learner (its expected log-loss minus the aleatoric floor), the MEMR it reports,
    the true MEMR, and the misspecification penalty E[KL] = actual − Bayes, each as a summary over draws."""
    designs = torch.randn(draws, tasks + 1, points, truth.dim, generator=generator, dtype=torch.float64)
    x = torch.randn(draws, inputs, truth.dim, generator=generator, dtype=torch.float64)
    losses = expected_log_losses(truth, assumed, designs, x)
    per_draw = {"actual_excess": losses["actual"] - losses["aleatoric"], "reported_memr": losses["reported_memr"],
                "true_memr": losses["true_memr"], "penalty": losses["actual"] - losses["bayes"]}
    return {name: summarize(value.mean(-1)) for name, value in per_draw.items()}
