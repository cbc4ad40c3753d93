"""Shared base of the algorithms whose inner problem is proximal (iMAML, Prox-MAML):

    φ*(θ) = prox_{L, λ}(θ) = argmin_φ L(φ) + (λ/2)‖φ − θ‖²   (monograph eqs. 2.4b, 2.6, 2.25)

solved per task by accelerated gradient descent to a relative gradient-norm tolerance
(:func:`innerloop.engine.inner.prox_solve`); adaptation at test time is the same solve on the
support set. An unmet tolerance is reported as a warning, never hidden.
"""

from __future__ import annotations

import torch

from innerloop.backends.base import Backend
from innerloop.engine.algorithms.base import MetaAlgorithm
from innerloop.engine.errors import require_positive
from innerloop.engine.inner import ProxSolution, prox_solve
from innerloop.engine.learner import Learner
from innerloop.engine.params import Params
from innerloop.engine.tasks import TaskBatch


class ProximalAlgorithm(MetaAlgorithm):
    """Holds λ (``lam``) and the inner tolerance; ``inner_steps`` caps the solver's iterations."""

    def __init__(self, model, backend: Backend, inner_lr: float, inner_steps: int, lam: float, inner_tol: float,
                 loss: str | None = None) -> None:
        require_positive("lam", lam)
        require_positive("inner_tol", inner_tol)
        self.lam, self.inner_tol = float(lam), float(inner_tol)
        super().__init__(model, backend, inner_lr, inner_steps, loss)

    def _solve_inner(self, learner: Learner, theta: Params, batch: TaskBatch, steps: int,
                     x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> ProxSolution:
        """prox of the loss on (x, y) (default: the support set) around θ, per task."""
        x = batch.support_x if x is None else x
        y = batch.support_y if y is None else y
        return prox_solve(self.backend, learner, self._expand(theta, batch), x, y, self.lam, self.inner_lr, steps,
                          self.inner_tol)

    def _adapt(self, learner: Learner, theta: Params, batch: TaskBatch, steps: int) -> Params:
        return self._solve_inner(learner, theta, batch, steps).params

    def _tolerance_warning(self, solution: ProxSolution) -> list[str]:
        if float(solution.relative_residual.max()) <= self.inner_tol:
            return []
        # one stable text, so a trainer shows it once; the residual itself is in the diagnostics
        return [f"{type(self).__name__}'s inner solve stopped after inner_steps={self.inner_steps} above "
                f"inner_tol={self.inner_tol:g} (relative gradient norm: inner_residual in metrics.jsonl); raise "
                "inner_steps or inner_lr, or use a smooth activation (ReLU kinks keep the gradient from vanishing)"]

    def options(self) -> dict:
        return {**super().options(), "lam": self.lam, "inner_tol": self.inner_tol}
