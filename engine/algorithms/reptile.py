"""Reptile (Nichol et al. 2018; seed 000 eq. 3.3, monograph Algorithm 5).

Per task, N SGD steps on minibatches drawn from support ∪ query (no support/query split at
training time, as in Nichol et al.); the meta-gradient is θ0 − mean_b θ_b^(N), so an outer
step θ ← θ − β·g is exactly θ ← θ + β(mean θ^(N) − θ) of eq. 3.3 (with plain SGD; Adam on
the same direction is the common variant). At test time the adaptation is N plain SGD steps
on the support set.
"""

from __future__ import annotations

import torch

from innerloop.backends.base import Backend
from innerloop.engine.algorithms.base import MetaAlgorithm, MetaGradient, register
from innerloop.engine.errors import require_positive
from innerloop.engine.inner import cyclic_minibatch, inner_step
from innerloop.engine.learner import Learner
from innerloop.engine.params import Params, mean_over_tasks, subtract
from innerloop.engine.tasks import TaskBatch


@register
class Reptile(MetaAlgorithm):
    """Reptile; ``inner_batch_size`` points per inner step (default: the support size K)."""

    name = "reptile"
    requires = frozenset({"loss", "loss_and_grad"})
    summary = "Reptile, meta-gradient θ0 − mean θ^(N) over support ∪ query (seed 000 eq. 3.3)"

    def __init__(
        self,
        model,
        backend: Backend,
        inner_lr: float = 0.01,
        inner_steps: int = 5,
        inner_batch_size: int | None = None,
        loss: str | None = None,
    ) -> None:
        if inner_batch_size is not None:
            require_positive("inner_batch_size", inner_batch_size)
        self.inner_batch_size = inner_batch_size
        super().__init__(model, backend, inner_lr, inner_steps, loss)

    def _compute(self, learner: Learner, theta: Params, batch: TaskBatch) -> MetaGradient:
        x = torch.cat([batch.support_x, batch.query_x], dim=1)
        y = torch.cat([batch.support_y, batch.query_y], dim=1)
        size = min(self.inner_batch_size or batch.support_x.shape[1], x.shape[1])
        params = self._expand(theta, batch)
        losses = []
        for step in range(self.inner_steps):
            xb, yb = cyclic_minibatch(x, y, step, size)
            loss, params = inner_step(self.backend, learner, params, xb, yb, self.inner_lr)
            losses.append(loss)
        task_losses = torch.stack(losses).mean(dim=0) if losses else self.backend.loss(learner, params, x, y)
        return MetaGradient(subtract(theta, mean_over_tasks(params)), task_losses)

    def options(self) -> dict:
        return {**super().options(), "inner_batch_size": self.inner_batch_size}
