"""Learners as pure functions of a parameter dict (the torch.func style, seed 000 §10.2).

A model owns no tensors: :meth:`MLP.init` returns a fresh ``dict[str, Tensor]`` and
:meth:`MLP.apply` maps ``(params, x)`` to predictions, so parameters can be batched over tasks,
adapted functionally and differentiated to any order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from innerloop.engine.errors import ConfigError, unknown_name
from innerloop.engine.params import Params, check_shapes, count

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "silu": F.silu,
}


class MLP:
    """Fully connected network: A_l = σ(A_{l−1}W_lᵀ + b_l), linear output layer.

    ``hidden=()`` gives a linear model (with ``bias=False``: the ŷ = ϕᵀx of monograph eq. 2.9).
    Parameters are named ``layer{l}.weight`` ([out, in]) and ``layer{l}.bias`` ([out]).
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int] = (40, 40),
        out_dim: int = 1,
        activation: str = "relu",
        bias: bool = True,
    ) -> None:
        widths = [in_dim, *hidden, out_dim]
        if any(int(w) != w or w < 1 for w in widths):
            raise ConfigError(f"MLP widths must be positive integers, got {widths}", "e.g. MLP(1, (40, 40), 1)")
        if activation not in ACTIVATIONS:
            raise unknown_name("activation", activation, ACTIVATIONS)
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = activation
        self.bias = bool(bias)
        self.widths = [int(w) for w in widths]

    @property
    def num_layers(self) -> int:
        return len(self.widths) - 1

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter name → shape, in layer order."""
        shapes = {}
        for layer, (fan_in, fan_out) in enumerate(zip(self.widths[:-1], self.widths[1:])):
            shapes[f"layer{layer}.weight"] = (fan_out, fan_in)
            if self.bias:
                shapes[f"layer{layer}.bias"] = (fan_out,)
        return shapes

    def num_params(self) -> int:
        return count(self.shapes())

    def init(
        self,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
    ) -> Params:
        """Fresh parameters, U(−1/√fan_in, 1/√fan_in) for weights and biases (torch.nn.Linear's)."""
        dtype = dtype or torch.get_default_dtype()
        params = {}
        for layer, fan_in in enumerate(self.widths[:-1]):
            bound = 1.0 / math.sqrt(fan_in)
            for kind in ("weight", "bias") if self.bias else ("weight",):
                name = f"layer{layer}.{kind}"
                u = torch.rand(self.shapes()[name], generator=generator, dtype=torch.float64)
                params[name] = ((2 * u - 1) * bound).to(dtype=dtype, device=device)
        return params

    def apply(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Predictions for inputs ``x`` of shape [..., in_dim] → [..., out_dim]."""
        act = ACTIVATIONS[self.activation]
        h = x
        for layer in range(self.num_layers):
            h = h @ params[f"layer{layer}.weight"].transpose(-1, -2)
            if self.bias:
                h = h + params[f"layer{layer}.bias"]
            if layer < self.num_layers - 1:
                h = act(h)
        return h

    def check_params(self, params: Params, task_axis: bool = False) -> None:
        """Raise ShapeError unless ``params`` has exactly this model's names and shapes."""
        check_shapes(self.shapes(), params, repr(self), task_axis)

    def config(self) -> dict:
        return {
            "in_dim": self.in_dim, "hidden": list(self.hidden), "out_dim": self.out_dim,
            "activation": self.activation, "bias": self.bias,
        }

    def __repr__(self) -> str:
        return f"MLP({self.in_dim}, {self.hidden}, {self.out_dim}, activation={self.activation!r})"
