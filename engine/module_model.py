"""A ``torch.nn.Module`` used as a pure function of a parameter dict (seed 000 §10.2).

The engine's learners own no tensors (see :mod:`innerloop.engine.models`). Networks that are
easier to write as modules — the Neural Processes' encoders, decoders and
``torch.nn.MultiheadAttention`` — are wrapped here: the module is only a template, its
parameters live in a ``dict[str, Tensor]`` created by :meth:`ModuleModel.init`, and
:meth:`ModuleModel.apply` runs it through ``torch.func.functional_call``. So checkpoints,
optimizers and the trainer treat them exactly like an :class:`~innerloop.engine.models.MLP`.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call

from innerloop.engine.errors import ShapeError
from innerloop.engine.params import Params, check_shapes, count


class ModuleModel:
    """Pure-function view of ``module``: ``init(generator) -> params``, ``apply(params, *args)``."""

    def __init__(self, module: nn.Module) -> None:
        if any(True for _ in module.buffers()):
            raise ShapeError(
                f"{type(module).__name__} has buffers, which a parameter dict cannot carry",
                "use modules without running statistics (e.g. no BatchNorm running stats)",
            )
        self.module = module

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter name → shape, in the module's order."""
        return {name: tuple(p.shape) for name, p in self.module.named_parameters()}

    def num_params(self) -> int:
        return count(self.shapes())

    def init(
        self,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
    ) -> Params:
        """Fresh parameters with each submodule's own ``reset_parameters`` initialization.

        The global RNG is forked and seeded from ``generator``, so the result depends only on
        the generator's state.
        """
        seed = int(torch.randint(0, 2**62, (), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = copy.deepcopy(self.module)
            for sub in fresh.modules():  # MultiheadAttention names its initializer _reset_parameters
                reset = getattr(sub, "reset_parameters", None) or getattr(sub, "_reset_parameters", None)
                if callable(reset):
                    reset()
        dtype = dtype or torch.get_default_dtype()
        return {name: p.detach().to(dtype=dtype, device=device) for name, p in fresh.named_parameters()}

    def apply(self, params: Params, *args, **kwargs):
        """``module(*args, **kwargs)`` evaluated with ``params`` in place of its parameters."""
        return functional_call(self.module, params, args, kwargs)

    def check_params(self, params: Params, task_axis: bool = False) -> None:
        """Raise ShapeError unless ``params`` has exactly this network's names and shapes."""
        check_shapes(self.shapes(), params, repr(self), task_axis)

    def config(self) -> dict:
        return {"module": type(self.module).__name__, "num_params": self.num_params()}

    def __repr__(self) -> str:
        return f"ModuleModel({type(self.module).__name__}, {self.num_params()} parameters)"
