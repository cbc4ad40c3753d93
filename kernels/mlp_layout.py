"""Which MLPs the fused passes realize, and their flat per-task parameter layout.

A fused pass sees an L-layer MLP as weights W_l [B, out, in] and biases b_l [B, out]; the
meta-gradient keeps all B·P parameters of a batch in one flat buffer (so an SGD step,
θ ← θ − α∇, is one op over every layer), parameter-major: each parameter is one contiguous
[B, *shape] block of it, which is the layout batched GEMMs read and write at full speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from innerloop.kernels.activations import ACTIVATIONS

LOSSES = ("mse", "cross_entropy")
Params = dict[str, torch.Tensor]
LayerViews = tuple[list[torch.Tensor], list[torch.Tensor] | None]


@dataclass(frozen=True)
class MLPSpec:
    """widths (in, hidden..., out), hidden activation, bias, loss ("mse" | "cross_entropy")."""

    widths: tuple[int, ...]
    activation: str
    bias: bool
    loss: str

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"no fused passes for activation '{self.activation}' (have: {', '.join(ACTIVATIONS)})")
        if self.loss not in LOSSES:
            raise ValueError(f"no fused passes for loss '{self.loss}' (have: {', '.join(LOSSES)})")

    @classmethod
    def of(cls, learner: object) -> MLPSpec | None:
        """The spec of ``learner`` (a Learner wrapping an engine MLP), or None when the fused passes
        cannot realize it (another model type, activation or loss)."""
        model = getattr(learner, "model", None)
        widths, activation = getattr(model, "widths", None), getattr(model, "activation", None)
        loss = getattr(learner, "loss_name", None)
        if type(model).__name__ != "MLP" or widths is None or activation not in ACTIVATIONS or loss not in LOSSES:
            return None
        return cls(tuple(widths), activation, bool(model.bias), loss)

    @property
    def num_layers(self) -> int:
        return len(self.widths) - 1

    def names(self) -> list[str]:
        """Parameter names in layout order (the engine MLP's: ``layer{l}.weight``, ``layer{l}.bias``)."""
        kinds = ("weight", "bias") if self.bias else ("weight",)
        return [f"layer{layer}.{k}" for layer in range(self.num_layers) for k in kinds]

    def shapes(self) -> list[tuple[int, ...]]:
        shapes = []
        for fan_in, fan_out in zip(self.widths[:-1], self.widths[1:]):
            shapes.append((fan_out, fan_in))
            if self.bias:
                shapes.append((fan_out,))
        return shapes

    @cached_property
    def named_shapes(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """(name, shape) of every parameter in layout order, computed once (host checks read it on
        every call)."""
        return tuple(zip(self.names(), self.shapes()))

    @cached_property
    def num_params(self) -> int:
        """P, the parameters of one task (computed once: the launch paths read it on every call)."""
        return sum(torch.Size(s).numel() for s in self.shapes())

    def views(self, flat: torch.Tensor, tasks: int) -> list[torch.Tensor]:
        """Per-parameter contiguous views [B, *shape] of a flat buffer of B·P numbers, in
        :meth:`names` order."""
        out, offset = [], 0
        for shape in self.shapes():
            size = tasks * torch.Size(shape).numel()
            out.append(flat[offset:offset + size].view(tasks, *shape))
            offset += size
        return out

    def split(self, tensors: list[torch.Tensor]) -> LayerViews:
        """(weights, biases or None) from per-parameter tensors in :meth:`names` order."""
        if not self.bias:
            return list(tensors), None
        return list(tensors[0::2]), list(tensors[1::2])

    def layers(self, params: Params) -> LayerViews:
        """(weights, biases) of a per-task parameter dict."""
        return self.split([params[name] for name in self.names()])

    def as_dict(self, tensors: list[torch.Tensor]) -> Params:
        return dict(zip(self.names(), tensors))
