"""Prox-MAML (monograph Algorithm 6, eqs. 2.24–2.29): meta-learning the Moreau envelope.

Meta-objective: the mean over tasks of min_φ L_k(φ) + (λ/2)‖φ − θ‖² (eq. 2.24) on the task's
meta-training data (support ∪ query), with φ_k = prox_{L_k, λ}(θ) (eq. 2.25). By the optimality
condition (2.27) the chain-rule term vanishes and the meta-gradient is first order:

    ∇_θ = λ(θ − (1/K)Σ_k φ_k)      (eq. 2.28; the update is eq. 2.29)

so the algorithm needs only ``loss_and_grad``. Test-time adaptation is the prox on the support set.
"""

from __future__ import annotations

import torch

from innerloop.backends.base import Backend
from innerloop.engine.algorithms.base import MetaGradient, register
from innerloop.engine.algorithms.proximal import ProximalAlgorithm
from innerloop.engine.learner import Learner
from innerloop.engine.params import Params, mean_over_tasks, norm_per_task, subtract
from innerloop.engine.tasks import TaskBatch


@register
class ProxMAML(ProximalAlgorithm):
    """Prox-MAML: meta-gradient λ(θ − φ*) with φ* the task's proximal point."""

    name = "prox-maml"
    requires = frozenset({"loss", "loss_and_grad"})
    summary = "Prox-MAML: Moreau-envelope meta-objective, meta-gradient λ(θ − prox(θ)) (monograph eq. 2.28)"

    def __init__(self, model, backend: Backend, inner_lr: float = 0.01, inner_steps: int = 25, lam: float = 2.0,
                 inner_tol: float = 1e-3, loss: str | None = None) -> None:
        super().__init__(model, backend, inner_lr, inner_steps, lam, inner_tol, loss)

    def _compute(self, learner: Learner, theta: Params, batch: TaskBatch) -> MetaGradient:
        x = torch.cat([batch.support_x, batch.query_x], dim=1)
        y = torch.cat([batch.support_y, batch.query_y], dim=1)
        solution = self._solve_inner(learner, theta, batch, self.inner_steps, x, y)
        displacement = subtract(self._expand(theta, batch), solution.params)  # θ − φ*, per task
        envelope = self.backend.loss(learner, solution.params, x, y) + 0.5 * self.lam * norm_per_task(displacement) ** 2
        grad = {k: self.lam * v for k, v in mean_over_tasks(displacement).items()}
        diagnostics = {"inner_residual": float(solution.relative_residual.max()),
                       "inner_steps_run": float(solution.steps)}
        return MetaGradient(grad, envelope, diagnostics, self._tolerance_warning(solution))
