"""Implicit MAML (Rajeswaran et al. 2019; seed 000 §3.4–3.5, monograph Algorithm 2).

Inner problem (seed 000 eq. 3.6 / monograph 2.4b), solved to tolerance by gradient descent:

    φ*(θ) = argmin_φ L_S(φ) + (λ/2)‖φ − θ‖²

Meta-gradient by the implicit function theorem (seed 000 eq. 3.9 / monograph 2.8):

    ∇_θ L_Q(φ*) = λ(∇²L_S(φ*) + λI)⁻¹ ∇L_Q(φ*) = (I + ∇²L_S(φ*)/λ)⁻¹ ∇L_Q(φ*)

with the linear system solved per task by conjugate gradients on Hessian-vector products.
Diagnostics report the inner solve's relative gradient norm and CG's relative residual.
"""

from __future__ import annotations

from innerloop.backends.base import Backend
from innerloop.engine.algorithms.base import MetaGradient, register
from innerloop.engine.algorithms.proximal import ProximalAlgorithm
from innerloop.engine.cg import conjugate_gradient
from innerloop.engine.errors import require_positive
from innerloop.engine.learner import Learner
from innerloop.engine.params import Params, add_scaled, mean_over_tasks
from innerloop.engine.tasks import TaskBatch


@register
class iMAML(ProximalAlgorithm):  # noqa: N801 - the algorithm's published name
    """Implicit MAML. ``inner_steps`` caps the inner iterations, ``inner_tol`` ends them early.

    λ (``lam``) plays the role of 1/(Nα) in MAML (seed 000 §3.4): larger λ keeps φ* near θ.
    The implicit gradient assumes a smooth inner objective: with ReLU learners the proximal
    problem has kinks, the gradient-norm criterion stalls (typically at a few percent) and the
    solve runs to ``inner_steps``; smooth activations (tanh, gelu, silu) solve to tolerance.
    Unmet tolerances and indefinite systems are reported as warnings, never hidden.
    """

    name = "imaml"
    requires = frozenset({"loss", "loss_and_grad", "hvp"})
    summary = "implicit MAML, prox inner solve + CG on (H + λI)x = ∇L_Q (seed 000 eq. 3.9)"

    def __init__(
        self,
        model,
        backend: Backend,
        inner_lr: float = 0.01,
        inner_steps: int = 25,
        lam: float = 10.0,
        inner_tol: float = 1e-3,
        cg_steps: int = 10,
        cg_tol: float = 1e-6,
        loss: str | None = None,
    ) -> None:
        require_positive("cg_steps", cg_steps)
        require_positive("cg_tol", cg_tol)
        self.cg_steps, self.cg_tol = int(cg_steps), float(cg_tol)
        super().__init__(model, backend, inner_lr, inner_steps, lam, inner_tol, loss)

    def _compute(self, learner: Learner, theta: Params, batch: TaskBatch) -> MetaGradient:
        backend, lam = self.backend, self.lam
        inner = self._solve_inner(learner, theta, batch, self.inner_steps)
        phi = inner.params
        query_loss, query_grad = backend.loss_and_grad(learner.validation, phi, batch.query_x, batch.query_y)

        def shifted_hvp(v: Params) -> Params:  # (∇²L_S(φ*) + λI)·v
            return add_scaled(backend.hvp(learner, phi, batch.support_x, batch.support_y, v), v, lam)

        cg = conjugate_gradient(shifted_hvp, query_grad, self.cg_steps, self.cg_tol)
        task_grads = {k: lam * v for k, v in cg.solution.items()}
        diagnostics = {
            "inner_residual": float(inner.relative_residual.max()),
            "inner_steps_run": float(inner.steps),
            "cg_residual": float(cg.relative_residual.max()),
            "cg_iterations": float(cg.iterations),
            "cg_indefinite_tasks": float(cg.indefinite.sum()),
        }
        warnings = self._tolerance_warning(inner)
        if diagnostics["cg_indefinite_tasks"]:
            warnings.append(
                f"{int(diagnostics['cg_indefinite_tasks'])} task(s) had ∇²L_S + λI not positive definite; "
                f"CG stopped early for them. Raise lam (now {self.lam:g})"
            )
        return MetaGradient(mean_over_tasks(task_grads), query_loss, diagnostics, warnings)

    def options(self) -> dict:
        return {**super().options(), "cg_steps": self.cg_steps, "cg_tol": self.cg_tol}
