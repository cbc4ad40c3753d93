"""A model conditioned on a context vector appended to its input (CAVIA, monograph Fig. 2.5).

``ContextModel(MLP(d, hidden, out), c)`` is the network MLP(d + c, hidden, out) applied to
[x, φ] where φ ∈ R^c is the ``"context"`` entry of the parameter dict. Meta-parameters
(``init``, ``shapes``) exclude the context: it is per task, starts at φ0 = 0 and is what the
inner loop adapts; ``apply`` without a context uses φ0.
"""

from __future__ import annotations

import torch

from innerloop.engine.errors import ConfigError
from innerloop.engine.models import MLP
from innerloop.engine.params import Params, check_shapes

CONTEXT = "context"


class ContextModel:
    """MLP over [x, φ]; ``context_dim`` = c entries of φ."""

    def __init__(self, model: MLP, context_dim: int) -> None:
        if int(context_dim) != context_dim or context_dim < 1:
            raise ConfigError(f"context_dim must be a positive integer, got {context_dim}", "e.g. context_dim=4")
        if not isinstance(model, MLP):
            raise ConfigError(f"CAVIA appends its context to the input of an MLP, and this task's learner is {model!r}",
                              "use maml, fomaml, reptile or anil on this task")
        self.context_dim = int(context_dim)
        self.inner = model
        self.network = MLP(model.in_dim + self.context_dim, model.hidden, model.out_dim, model.activation, model.bias)
        self.in_dim, self.out_dim = model.in_dim, model.out_dim

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return self.network.shapes()

    def num_params(self) -> int:
        return self.network.num_params()

    def init(self, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
             device: torch.device | str = "cpu") -> Params:
        return self.network.init(generator, dtype=dtype, device=device)

    def context(self, params: Params) -> torch.Tensor:
        """φ0 = 0, shaped like one task's context (with a leading task axis when params have one)."""
        weight = params["layer0.weight"]
        lead = weight.shape[:-2]
        return torch.zeros(*lead, self.context_dim, dtype=weight.dtype, device=weight.device)

    def apply(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        phi = params.get(CONTEXT)
        if phi is None:
            phi = torch.zeros(self.context_dim, dtype=x.dtype, device=x.device)
        weights = {k: v for k, v in params.items() if k != CONTEXT}
        return self.network.apply(weights, torch.cat([x, phi.expand(*x.shape[:-1], self.context_dim)], dim=-1))

    def check_params(self, params: Params, task_axis: bool = False) -> None:
        check_shapes(self.shapes(), {k: v for k, v in params.items() if k != CONTEXT}, repr(self), task_axis)

    def config(self) -> dict:
        return {**self.inner.config(), "context_dim": self.context_dim}

    def __repr__(self) -> str:
        return f"ContextModel({self.inner!r}, context_dim={self.context_dim})"
