"""Meta-SGD (Li et al. 2017): MAML with a meta-learned step size per parameter entry.

Inner loop θ^(n) = θ^(n−1) − α⊙∇L_S(θ^(n−1)) with α as large as θ and meta-learned with it.
Meta-gradient of L_Q(θ^(N)): w.r.t. θ, MAML's reverse pass with g ← g − ∇²L_S·(α⊙g); w.r.t.
α, −Σ_n ∇L_S(θ^(n−1))⊙g^(n) with g^(n) the adjoint of θ^(n).

The step sizes are meta-learned in log space, α = exp(ρ), stored as ``log_inner_lr.<name>``
(initialized to log ``inner_lr``; ∂/∂ρ = α⊙∂/∂α). Li et al. learn α directly; with Adam's
fixed-size steps that lets α jump from 0.01 to ~1 within a few hundred iterations and the inner
loop diverge (measured on sinusoid), while log space keeps α positive and its changes relative.
"""

from __future__ import annotations

import math

import torch

from innerloop.backends.base import Backend
from innerloop.engine.algorithms.base import register
from innerloop.engine.algorithms.maml import MAML
from innerloop.engine.params import Params, check_shapes

PREFIX = "log_inner_lr."


@register
class MetaSGD(MAML):
    """MAML whose inner step sizes α (one per parameter entry) are meta-parameters."""

    name = "metasgd"
    summary = "Meta-SGD: MAML with a meta-learned step size per parameter entry (Li et al. 2017)"

    def __init__(self, model, backend: Backend, inner_lr: float = 0.01, inner_steps: int = 5,
                 first_order: bool = False, loss: str | None = None) -> None:
        super().__init__(model, backend, inner_lr, inner_steps, first_order, loss)

    def init_params(self, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
                    device: torch.device | str = "cpu") -> Params:
        weights = self.model.init(generator, dtype=dtype, device=device)
        return {**weights, **{PREFIX + k: torch.full_like(v, math.log(self.inner_lr)) for k, v in weights.items()}}

    def check_params(self, params: Params) -> None:
        shapes = self.model.shapes()
        check_shapes({**shapes, **{PREFIX + k: s for k, s in shapes.items()}}, params, f"Meta-SGD {self.model!r}")

    def _weights_and_steps(self, theta: Params) -> tuple[Params, Params]:
        weights = {k: v for k, v in theta.items() if not k.startswith(PREFIX)}
        return weights, {k: theta[PREFIX + k].exp() for k in weights}

    def _meta_gradient(self, grad: Params, lr_grad: Params | None, lr: Params) -> Params:
        """∂/∂ρ = α⊙∂/∂α (chain rule through α = exp ρ), averaged over tasks."""
        return {**grad, **{PREFIX + k: lr[k] * v.mean(dim=0) for k, v in lr_grad.items()}}

    def step_sizes(self, params: Params) -> Params:
        """The inner step sizes α = exp(ρ) per parameter entry."""
        return self._weights_and_steps(params)[1]
