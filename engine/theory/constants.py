"""Estimates of the constants of seed 000 Assumptions 8.1–8.4 and of G_Q at a meta-parameter θ.

A task's true loss L_T is stood in for by its loss on ``population`` points drawn from that task;
the stochastic gradients and Hessians of the assumptions are those of ``shots``-point batches of the
same task. Every operator norm is a power iteration on Hessian-vector products, so these are
estimates at the points visited, to be maximized over a training trajectory — not certified
suprema.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from innerloop.backends.base import Backend
from innerloop.engine.errors import ConfigError
from innerloop.engine.learner import Learner
from innerloop.engine.params import Params, add_scaled, expand_to_tasks, norm_per_task, subtract
from innerloop.engine.tasks import TaskFamily
from innerloop.engine.theory.pac_bayes_maml import perturb


@dataclass(frozen=True)
class Constants:
    """L (8.1), ρ (8.2), σ_g (8.3), σ_H (8.4) and G_Q (Lemma 1)."""

    lipschitz_gradient: float
    lipschitz_hessian: float
    gradient_std: float
    hessian_std: float
    query_gradient_bound: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def maximum(self, other: Constants) -> Constants:
        """Elementwise maximum (suprema over several points of a trajectory)."""
        return Constants(*(max(a, b) for a, b in zip(asdict(self).values(), asdict(other).values())))


def operator_norm(operator: Callable[[Params], Params], like: Params, iterations: int,
                  generator: torch.Generator) -> torch.Tensor:
    """Per-task ‖A_b‖_op [B] of a symmetric linear operator by power iteration: ‖A v‖ for the unit v
    reached after ``iterations`` steps (a lower estimate that converges to the largest |eigenvalue|)."""
    image = perturb({k: torch.zeros_like(v) for k, v in like.items()}, 1.0, generator)
    norm = norm_per_task(image)
    for _ in range(iterations):
        image = operator(_unit(image, norm))
        norm = norm_per_task(image).clamp_min(torch.finfo(norm.dtype).tiny)
    return norm


def _unit(vector: Params, norm: torch.Tensor) -> Params:
    return {k: v / norm.reshape(-1, *([1] * (v.ndim - 1))) for k, v in vector.items()}


def estimate_constants(backend: Backend, learner: Learner, theta: Params, family: TaskFamily, *, inner_lr: float,
                       tasks: int = 32, shots: int = 10, repeats: int = 8, population: int = 1000,
                       hessian_radius: float = 0.1, power_iterations: int = 20,
                       generator: torch.Generator) -> Constants:
    """The constants at θ over ``tasks`` tasks, each with ``repeats`` independent ``shots``-point
    batches and ``population`` points standing for its true loss: L = max ‖∇²L_T‖, ρ = max
    ‖∇²L_T(θ + r·u) − ∇²L_T(θ)‖/r for a random unit u and r = ``hessian_radius``, σ_g² and σ_H² the
    largest per-task mean of ‖g̃ − ∇L_T‖² and ‖H̃ − ∇²L_T‖²_op, G_Q = max ‖∇L_T(θ − αg̃)‖."""
    if int(repeats) != repeats or repeats < 2:
        raise ConfigError(f"repeats must be an integer >= 2, got {repeats}", "a variance needs two batches")
    batch = family.sample(tasks, generator, shots=repeats * shots, queries=population).to(
        backend.dtype, getattr(backend, "device", "cpu"))
    whole = (batch.query_x, batch.query_y)
    params = expand_to_tasks(theta, tasks)

    def hessian(at: Params, data) -> Callable[[Params], Params]:
        return lambda v: backend.hvp(learner, at, *data, v)

    lipschitz = operator_norm(hessian(params, whole), params, power_iterations, generator).max()
    direction = perturb({k: torch.zeros_like(v) for k, v in params.items()}, 1.0, generator)
    moved = add_scaled(params, _unit(direction, norm_per_task(direction)), hessian_radius)
    change = operator_norm(lambda v: subtract(hessian(moved, whole)(v), hessian(params, whole)(v)), params,
                           power_iterations, generator)
    _, true_grad = backend.loss_and_grad(learner, params, *whole)
    grad_sq, hess_sq, query_norms = [], [], []
    for r in range(repeats):
        part = (batch.support_x[:, r * shots:(r + 1) * shots], batch.support_y[:, r * shots:(r + 1) * shots])
        _, grad = backend.loss_and_grad(learner, params, *part)
        grad_sq.append(norm_per_task(subtract(grad, true_grad)) ** 2)
        hess_sq.append(operator_norm(lambda v, p=part: subtract(hessian(params, p)(v), hessian(params, whole)(v)),
                                     params, power_iterations, generator) ** 2)
        query_norms.append(norm_per_task(backend.loss_and_grad(learner, add_scaled(params, grad, -inner_lr),
                                                               *whole)[1]))
    return Constants(float(lipschitz), float(change.max() / hessian_radius),
                     float(torch.stack(grad_sq).mean(0).max().sqrt()), float(torch.stack(hess_sq).mean(0).max().sqrt()),
                     float(torch.stack(query_norms).max()))
