"""Meta-gradient variance against the task-batch size (seed 000 §9.4, Figure 17).

The meta-gradient of a batch is the mean of B independent per-task meta-gradients, so its
covariance is Cov(g_T)/B and its total variance E‖ḡ_B − ∇F‖² = tr Cov(g_T)/B. The curve is
estimated as in §9.4: per-task meta-gradients of T tasks, split into T/B disjoint batches of B,
and the spread of the batch means around their grand mean.
"""

from __future__ import annotations

import math

import torch

from innerloop.backends.base import Backend
from innerloop.engine.errors import ConfigError
from innerloop.engine.inner import sgd_reverse, sgd_trajectory
from innerloop.engine.learner import Learner
from innerloop.engine.params import Params, expand_to_tasks
from innerloop.engine.tasks import TaskBatch
from innerloop.engine.theory.pac_bayes_maml import flatten


def per_task_meta_gradients(backend: Backend, learner: Learner, theta0: Params, batch: TaskBatch, inner_lr: float,
                            inner_steps: int, first_order: bool = False) -> torch.Tensor:
    """[T, D]: each task's MAML meta-gradient ∇_θ₀ L_Q(θ^(N)) (seed 000 eq. 2.5), or FOMAML's
    ∇L_Q(θ^(N)) (eq. 3.1) when ``first_order``."""
    start = expand_to_tasks(theta0, batch.num_tasks)
    trajectory = sgd_trajectory(backend, learner, start, batch.support_x, batch.support_y, inner_lr, inner_steps,
                                keep_states=not first_order)
    _, grad = backend.loss_and_grad(learner, trajectory.final, batch.query_x, batch.query_y)
    if not first_order:
        grad, _ = sgd_reverse(backend, learner, trajectory.states[:-1], batch.support_x, batch.support_y, grad,
                              inner_lr)
    return flatten(grad)


def batch_mean_variance(per_task: torch.Tensor, batch_size: int) -> float:
    """E‖ḡ_B − E ḡ_B‖² estimated from the ⌊T/B⌋ disjoint batch means of ``per_task`` [T, D]
    (unbiased: divided by ⌊T/B⌋ − 1)."""
    batches = per_task.shape[0] // batch_size
    if int(batch_size) != batch_size or batch_size < 1 or batches < 2:
        raise ConfigError(f"batch size {batch_size} leaves {batches} disjoint batches of {per_task.shape[0]} tasks",
                          "a variance needs at least 2 batches: use B <= T/2")
    means = per_task[: batches * batch_size].reshape(batches, batch_size, -1).mean(1)
    return float(((means - means.mean(0)) ** 2).sum(1).sum() / (batches - 1))


def variance_curve(per_task: torch.Tensor, batch_sizes: list[int]) -> dict:
    """Variance of the B-task mean for each B, the 1/B prediction from B = 1 (tr Cov/B) and the
    least-squares slope of log variance on log B (−1 in theory)."""
    measured = {b: batch_mean_variance(per_task, b) for b in batch_sizes}
    single = float(per_task.var(dim=0, unbiased=True).sum())
    logs = torch.tensor([[math.log(b), math.log(v)] for b, v in measured.items()], dtype=torch.float64)
    centred = logs - logs.mean(0)
    slope = float((centred[:, 0] * centred[:, 1]).sum() / (centred[:, 0] ** 2).sum())
    return {"batch_sizes": list(batch_sizes), "variance": [measured[b] for b in batch_sizes],
            "predicted": [single / b for b in batch_sizes], "single_task_variance": single, "slope": slope}
