"""Sharp-MAML (Abbas et al. 2022; monograph eqs. 2.13–2.15): sharpness-aware MAML.

Sharpness-aware (SAM) perturbations at both levels, treated as constants when differentiating:

* inner (eq. 2.14a): ε_k = α_in ∇L_S(θ)/‖∇L_S(θ)‖, and the adapted point φ̃ = θ − α∇L_S(θ + ε_k) (2.14c);
* outer (eq. 2.14b): ε = α_out ∇L_Q(φ̃)/‖∇L_Q(φ̃)‖;
* meta-objective L_Q(φ_sm), φ_sm = θ + ε − α∇L_S(θ + ε + ε_k) (eq. 2.13), meta-gradient
  (I − α∇²L_S(θ + ε + ε_k))·∇L_Q(φ_sm) by the backend's hvp (update 2.15).

With N > 1 inner steps the same rule repeats: the unperturbed SAM trajectory φ̃_n =
φ̃_{n−1} − α∇L_S(φ̃_{n−1} + ε_k^(n)) fixes the inner perturbations ε_k^(n) and the outer ε; the
perturbed trajectory from θ + ε reuses them, and the reverse pass takes Hessians at its
gradient points (N = 1 is eq. 2.13 exactly). Test-time adaptation is the unperturbed SAM
trajectory φ̃.
"""

from __future__ import annotations

from innerloop.backends.base import Backend
from innerloop.engine.algorithms.base import MetaGradient, register
from innerloop.engine.algorithms.maml import MAML
from innerloop.engine.errors import require_positive
from innerloop.engine.inner import sgd_reverse
from innerloop.engine.learner import Learner
from innerloop.engine.params import Params, add_scaled, mean_over_tasks, norm_per_task
from innerloop.engine.tasks import TaskBatch


def ascent(grads: Params, radius: float) -> Params:
    """The SAM perturbation radius·∇/‖∇‖ per task (zero where the gradient vanishes)."""
    norm = norm_per_task(grads).clamp_min(1e-30)
    return {k: v * (radius / norm).reshape(-1, *([1] * (v.ndim - 1))) for k, v in grads.items()}


@register
class SharpMAML(MAML):
    """MAML with SAM perturbations of radius ``alpha_in`` (inner) and ``alpha_out`` (outer)."""

    name = "sharp-maml"
    summary = "Sharp-MAML: SAM perturbations at inner and outer level (monograph eqs. 2.13–2.15)"

    def __init__(self, model, backend: Backend, inner_lr: float = 0.01, inner_steps: int = 1, alpha_in: float = 0.05,
                 alpha_out: float = 0.05, first_order: bool = False, loss: str | None = None) -> None:
        require_positive("alpha_in", alpha_in, allow_zero=True)
        require_positive("alpha_out", alpha_out, allow_zero=True)
        self.alpha_in, self.alpha_out = float(alpha_in), float(alpha_out)
        super().__init__(model, backend, inner_lr, inner_steps, first_order, loss)

    def _sam_steps(self, learner: Learner, start: Params, batch: TaskBatch, steps: int,
                   perturbations: list[Params] | None = None) -> tuple[Params, list[Params], list[Params]]:
        """N steps φ ← φ − α∇L_S(φ + ε_k^(n)); ε_k^(n) computed here (eq. 2.14a) unless given.
        Returns the final point, the perturbations used and the gradient points φ + ε_k^(n)."""
        backend, x, y = self.backend, batch.support_x, batch.support_y
        phi, used, points = start, [], []
        for n in range(steps):
            if perturbations is None:
                _, g = backend.loss_and_grad(learner, phi, x, y)
                eps = ascent(g, self.alpha_in)
            else:
                eps = perturbations[n]
            point = add_scaled(phi, eps, 1.0)
            _, g = backend.loss_and_grad(learner, point, x, y)
            phi = add_scaled(phi, g, -self.inner_lr)
            used.append(eps)
            points.append(point)
        return phi, used, points

    def _compute(self, learner: Learner, theta: Params, batch: TaskBatch) -> MetaGradient:
        backend, start = self.backend, self._expand(theta, batch)
        tilde, inner_eps, _ = self._sam_steps(learner, start, batch, self.inner_steps)
        _, g_tilde = backend.loss_and_grad(learner.validation, tilde, batch.query_x, batch.query_y)
        outer = add_scaled(start, ascent(g_tilde, self.alpha_out), 1.0)  # θ + ε
        phi, _, points = self._sam_steps(learner, outer, batch, self.inner_steps, inner_eps)
        query_loss, g = backend.loss_and_grad(learner.validation, phi, batch.query_x, batch.query_y)
        if not self.first_order:
            g, _ = sgd_reverse(backend, learner, points, batch.support_x, batch.support_y, g, self.inner_lr)
        return MetaGradient(mean_over_tasks(g), query_loss)

    def _adapt(self, learner: Learner, theta: Params, batch: TaskBatch, steps: int) -> Params:
        return self._sam_steps(learner, self._expand(theta, batch), batch, steps)[0]

    def options(self) -> dict:
        return {**super().options(), "alpha_in": self.alpha_in, "alpha_out": self.alpha_out}
