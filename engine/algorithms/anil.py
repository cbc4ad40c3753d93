"""ANIL — almost no inner loop (Raghu et al. 2020): MAML whose inner loop adapts only the head.

Inner loop on the head parameters h (the last layer) with the body b fixed:
h^(n) = h^(n−1) − α∇_h L_S(b, h^(n−1)). The second-order meta-gradient is MAML's reverse pass
(seed 000 eq. 2.5) restricted to that update: g ← g − ∇²L_S·(α g_h, 0), one Hessian-vector
product per step through the backend; ``first_order=True`` drops it.
"""

from __future__ import annotations

from innerloop.backends.base import Backend
from innerloop.engine.algorithms.base import register
from innerloop.engine.algorithms.maml import MAML
from innerloop.engine.params import Params


def head_names(weights: Params) -> frozenset[str]:
    """Names of the last layer: every parameter sharing the last parameter's module prefix."""
    prefix = list(weights)[-1].rpartition(".")[0]
    return frozenset(k for k in weights if k.rpartition(".")[0] == prefix)


@register
class ANIL(MAML):
    """MAML with only the head (last layer) adapted in the inner loop."""

    name = "anil"
    summary = "ANIL: MAML adapting only the last layer in the inner loop (Raghu et al. 2020)"

    def __init__(self, model, backend: Backend, inner_lr: float = 0.1, inner_steps: int = 5,
                 first_order: bool = False, loss: str | None = None) -> None:
        super().__init__(model, backend, inner_lr, inner_steps, first_order, loss)

    def _adapted_names(self, weights: Params) -> frozenset[str]:
        return head_names(weights)
