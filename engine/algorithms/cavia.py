"""CAVIA — fast context adaptation (Zintgraf et al. 2019; monograph Algorithm 9, eqs. 2.39–2.40).

The network θ is shared; each task adapts only a context vector φ fed as extra input, from
φ0 = 0: φ^(n) = φ^(n−1) − α∇_φ L_S(θ, φ^(n−1)) (eq. 2.39b for one step). Meta-gradient of
L_Q(θ, φ^(N)):

    ∇_θ L_Q − α Σ_n ∇²_{θφ} L_S(θ, φ^(n−1))·g_φ^(n)

(eq. 2.40; the monograph's mixed-derivative term is written with L_Q but by the chain rule it is
the support loss L_S that φ was adapted on). The mixed term comes from the backend's hvp with
the vector (0, g_φ): the θ-block of ∇²L_S·(0, g_φ) is ∇²_{θφ}L_S·g_φ. ``first_order=True`` drops it.
"""

from __future__ import annotations

from innerloop.backends.base import Backend
from innerloop.engine.algorithms.base import register
from innerloop.engine.algorithms.maml import MAML
from innerloop.engine.context_model import CONTEXT, ContextModel
from innerloop.engine.params import Params


@register
class CAVIA(MAML):
    """Shared network, per-task context vector adapted by the inner loop."""

    name = "cavia"
    summary = "CAVIA: shared network, per-task input context φ adapted from 0 (monograph eq. 2.39–2.40)"

    def __init__(self, model, backend: Backend, inner_lr: float = 1.0, inner_steps: int = 2, context_dim: int = 4,
                 first_order: bool = False, loss: str | None = None) -> None:
        if not isinstance(model, ContextModel):
            model = ContextModel(model, context_dim)
        super().__init__(model, backend, inner_lr, inner_steps, first_order, loss)

    def _start(self, weights: Params) -> Params:
        return {**weights, CONTEXT: self.model.context(weights)}

    def _adapted_names(self, weights: Params) -> frozenset[str]:
        return frozenset({CONTEXT})

    def _meta_gradient(self, grad: Params, lr_grad: Params | None, lr: float) -> Params:
        return {k: v for k, v in grad.items() if k != CONTEXT}

    def options(self) -> dict:
        return {**super().options(), "context_dim": self.model.context_dim}
