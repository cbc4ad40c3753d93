"""The ``triton`` backend: fused Triton kernels for MLP learners (issue 6; DESIGN.md "GPU backend").

Primitives ``loss``, ``loss_and_grad`` and ``hvp`` and the fused ``meta_gradient`` run the kernels
of :mod:`innerloop.kernels.triton_mlp` for MLPs with two hidden layers (ReLU or tanh, MSE, widths
≤ 64), in float32 with ``precision`` ∈ {"tf32x3" (default, fp32-accurate), "tf32", "ieee"} for
every ``tl.dot``, on a persistent grid of at most ``programs`` Triton programs (default: 4 per SM)
of ``num_warps`` warps (default 8), optionally compiled with ptxas's register cap ``max_registers``
per thread (a lower cap lets an SM hold more programs, at the price of spills).
``loss`` and ``loss_and_grad`` are ``torch.autograd.Function``s — their backward
passes are the kernel's gradient and Hessian-vector product — so autograd sees ordinary ops.

``cuda_graphs=True`` runs ``meta_gradient``, ``loss``, ``loss_and_grad`` and ``hvp`` as replays of
CUDA graphs captured once per call signature (:class:`.cuda_graphs.GraphCache`): at small B an
eager call then costs the host a copy of θ and the data, a replay and clones of the outputs
instead of the Python and Triton launcher around the kernel (see the README for what has been
measured).

Inputs are checked before every launch (:mod:`.mlp_inputs`): the kernels read raw pointers,
where a wrong shape, dtype or device would give wrong numbers instead of an error.

Every other learner (wider or deeper MLPs, other activations or losses, NP and metric networks)
is delegated to the ``torch`` backend on the same device, and the delegation is logged once per
learner (logger ``innerloop.backends.triton``): nothing falls back silently.

The kernels run compiled on a CUDA GPU, or in Triton's CPU interpreter when ``TRITON_INTERPRET=1``
was set before Python started (slow; meant for tests on machines without a GPU).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import torch

from innerloop.backends.base import Backend, LearnerLike, Params
from innerloop.backends.cuda_graphs import GraphCache
from innerloop.backends.mlp_inputs import check_meta_gradient_inputs, check_primitive_inputs
from innerloop.backends.torch_func import TorchFuncBackend, parse_dtype
from innerloop.engine.errors import CapabilityError, ConfigError
from innerloop.kernels.mlp_layout import MLPSpec

LOG = logging.getLogger("innerloop.backends.triton")
PRECISIONS = ("tf32x3", "tf32", "ieee")
WARPS = (1, 2, 4, 8, 16, 32)


def _kernels():
    """The launch module, imported on first use (after TRITON_INTERPRET has been decided)."""
    from innerloop.kernels import triton_launch

    return triton_launch


@contextmanager
def _on_chip_limits(spec: MLPSpec, task_size: str):
    """Triton's OutOfResources at launch (a program needs more shared memory than the GPU has)
    as a CapabilityError that names the task size, the learner and the ways out."""
    try:
        yield
    except _kernels().OutOfResources as err:
        raise CapabilityError(
            f"the triton kernels keep a whole task on chip, and a task of {task_size} for the learner "
            f"{'→'.join(map(str, spec.widths))} needs {err.required} of {err.name} per program where this GPU "
            f"has {err.limit}",
            "use fewer points per task (on an H100 the sinusoid learner fits 64, a 64-wide one 32; "
            "`python -m innerloop.kernels.triton_resources` reports other sizes), or --backend torch",
        ) from None


@lru_cache(maxsize=64)
def _plan(learner: LearnerLike) -> tuple[MLPSpec | None, str | None]:
    """(spec, None) when the kernels fuse ``learner``; (None, reason) when they do not."""
    spec = MLPSpec.of(learner)
    reason = _kernels().unfusable_reason(spec)
    return (None, reason) if reason else (spec, None)


class _TritonLoss(torch.autograd.Function):
    """Per-task losses L_b(θ_b); backward: grad_output_b·∇L_b (the kernel's gradient). ``backend``
    launches the kernels (:meth:`TritonBackend._primitives`)."""

    @staticmethod
    def forward(ctx, flat, x, y, spec, backend):
        losses, grads, _ = backend._primitives(spec, flat, x, y, None, True)
        ctx.save_for_backward(grads)
        return losses

    @staticmethod
    def backward(ctx, grad_losses):
        (grads,) = ctx.saved_tensors
        return grad_losses[:, None] * grads, None, None, None, None


class _TritonLossAndGrad(torch.autograd.Function):
    """(L_b, ∇L_b); backward: grad_L_b·∇L_b + ∇²L_b·grad_∇_b (the kernel's HVP, launched directly:
    a backward pass is no place to capture a CUDA graph)."""

    @staticmethod
    def forward(ctx, flat, x, y, spec, backend):
        losses, grads, _ = backend._primitives(spec, flat, x, y, None, True)
        ctx.save_for_backward(flat, x, y, grads)
        ctx.spec, ctx.backend = spec, backend
        return losses, grads

    @staticmethod
    def backward(ctx, grad_losses, grad_grads):
        flat, x, y, grads = ctx.saved_tensors
        total = torch.zeros_like(flat)
        if grad_losses is not None:
            total = total + grad_losses[:, None] * grads
        if grad_grads is not None:
            _, _, products = ctx.backend._primitives(ctx.spec, flat, x, y, grad_grads.contiguous(), False,
                                                     graphed=False)
            total = total + products
        return total, None, None, None, None


class TritonBackend(Backend):
    """Fused Triton kernels for two-hidden-layer MLP learners; logged delegation to ``torch`` otherwise."""

    name = "triton"
    provides = frozenset({"loss", "loss_and_grad", "hvp", "autograd", "meta_gradient"})
    description = "fused Triton kernels (batched HVP, fused MAML meta-gradient) for 2-hidden-layer MLPs"

    def __init__(
        self,
        dtype: torch.dtype | str = torch.float32,
        precision: str = "tf32x3",
        programs: int | None = None,
        capabilities: Iterable[str] | str | None = None,
        cuda_graphs: bool = False,
        num_warps: int | None = None,
        max_registers: int | None = None,
    ) -> None:
        super().__init__(capabilities)
        if parse_dtype(dtype) != torch.float32:
            raise ConfigError(
                f"the triton backend computes in float32, not {dtype}",
                "use --dtype float32 with --backend triton, or --backend cpu for float64",
            )
        if precision not in PRECISIONS:
            raise ConfigError(f"unknown precision '{precision}'", f"choose one of: {', '.join(PRECISIONS)}")
        if programs is not None and (int(programs) != programs or programs < 1):
            raise ConfigError(f"programs must be a whole number >= 1, got {programs}",
                              "leave it unset for the default (4 programs per SM)")
        if num_warps is not None and num_warps not in WARPS:
            raise ConfigError(f"num_warps must be one of {', '.join(map(str, WARPS))} (Triton's warps per program), "
                              f"got {num_warps}", "leave it unset for the default (8 warps)")
        if max_registers is not None and (int(max_registers) != max_registers or not 1 <= max_registers <= 255):
            raise ConfigError(f"max_registers must be a whole number from 1 to 255 (ptxas's register cap per thread; "
                              f"255 is the hardware's limit), got {max_registers}",
                              "leave it unset for no cap, or try 128 (two 8-warp programs per SM)")
        self.dtype, self.precision, self.programs = torch.float32, precision, programs
        self.num_warps, self.max_registers = num_warps, max_registers
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if cuda_graphs and self.device.type != "cuda":
            raise ConfigError("cuda_graphs=True needs a CUDA GPU (Triton's CPU interpreter has no graphs)",
                              "leave cuda_graphs off on a machine without a GPU")
        self.cuda_graphs = bool(cuda_graphs)
        self._graphs = GraphCache(self.device) if self.cuda_graphs else None
        self.delegate = TorchFuncBackend(dtype=self.dtype, device=self.device)
        self._logged: set[str] = set()

    @classmethod
    def unavailable_reason(cls, **_: Any) -> str | None:
        try:
            import triton  # noqa: F401
        except ImportError:
            return "Triton is not installed (pip install triton; Linux only)"
        if torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1":
            return None
        return ("there is no CUDA GPU and TRITON_INTERPRET is not set: run on a machine with an NVIDIA GPU, "
                "or start Python with TRITON_INTERPRET=1 to run the kernels in Triton's CPU interpreter (slow)")

    def fuses(self, learner: LearnerLike) -> bool:
        return _plan(learner)[0] is not None

    def trains_with_autograd(self, algorithm: str, model: Any) -> None:
        """An amortized algorithm's network runs as plain torch ops on this device: logged once."""
        network = type(getattr(model, "module", model)).__name__
        key = f"autograd {algorithm} {network}"
        if key not in self._logged:
            self._logged.add(key)
            LOG.warning("triton backend: %s trains its %s with plain torch autograd on %s (no Triton kernel "
                        "runs it, as on the torch backend)", algorithm, network, self.device)

    def _spec(self, learner: LearnerLike) -> MLPSpec | None:
        spec, reason = _plan(learner)
        if spec is None:
            key = repr(getattr(learner, "model", learner))
            if key not in self._logged:
                self._logged.add(key)
                LOG.warning("triton backend: delegating %s to the torch backend (%s)", key, reason)
        return spec

    @property
    def _launch(self) -> tuple[str, int | None, int | None, int | None]:
        """The kernels' launch choices after the problem arguments: precision, grid cap, warps per
        program, register cap per thread (None: the kernels' defaults)."""
        return self.precision, self.programs, self.num_warps, self.max_registers

    def _primitives(self, spec: MLPSpec, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                    vector: torch.Tensor | None, with_grad: bool, graphed: bool = True
                    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """:func:`triton_launch.primitives` with this backend's launch choices — replayed from a CUDA
        graph per call signature with ``cuda_graphs`` (and ``graphed``) — and the GPU's on-chip
        limits as a clear error."""
        with _on_chip_limits(spec, f"{x.shape[1]} points"):
            if self._graphs is None or not graphed:
                return _kernels().primitives(spec, flat, x, y, vector, with_grad, *self._launch)
            inputs = [flat, x, y] if vector is None else [flat, x, y, vector]

            def launch(static: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
                results = _kernels().primitives(spec, *static[:3], static[3] if vector is not None else None,
                                                with_grad, *self._launch)
                return tuple(result for result in results if result is not None)

            outputs = iter(self._graphs(("primitives", spec, *(t.shape for t in inputs), with_grad), launch, inputs))
            return next(outputs), next(outputs) if with_grad else None, next(outputs) if vector is not None else None

    def _pack(self, spec: MLPSpec, params: Params, tasks: int) -> torch.Tensor:
        return _kernels().pack(spec, params, tasks)

    def loss(self, learner: LearnerLike, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self._require("loss")
        spec = self._spec(learner)
        if spec is None:
            return self.delegate.loss(learner, params, x, y)
        check_primitive_inputs(spec, params, x, y, device=self.device)
        return _TritonLoss.apply(self._pack(spec, params, x.shape[0]), x, y, spec, self)

    def loss_and_grad(
        self, learner: LearnerLike, params: Params, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, Params]:
        self._require("loss_and_grad")
        spec = self._spec(learner)
        if spec is None:
            return self.delegate.loss_and_grad(learner, params, x, y)
        check_primitive_inputs(spec, params, x, y, device=self.device)
        losses, grads = _TritonLossAndGrad.apply(self._pack(spec, params, x.shape[0]), x, y, spec, self)
        return losses, _kernels().unpack(spec, grads)

    def hvp(
        self, learner: LearnerLike, params: Params, x: torch.Tensor, y: torch.Tensor, vector: Params
    ) -> Params:
        self._require("hvp")
        spec = self._spec(learner)
        if spec is None:
            return self.delegate.hvp(learner, params, x, y, vector)
        check_primitive_inputs(spec, params, x, y, vector, self.device)
        tasks = x.shape[0]
        _, _, products = self._primitives(spec, self._pack(spec, params, tasks), x, y,
                                          self._pack(spec, vector, tasks), False)
        return _kernels().unpack(spec, products)

    def meta_gradient(
        self, learner: LearnerLike, params: Params, support_x: torch.Tensor, support_y: torch.Tensor,
        query_x: torch.Tensor, query_y: torch.Tensor, inner_lr: float, inner_steps: int, first_order: bool = False,
    ) -> tuple[torch.Tensor, Params]:
        self._require("meta_gradient")
        spec = self._spec(learner)
        if spec is None:
            raise ConfigError(
                f"the triton backend cannot fuse {learner.model!r}: {_plan(learner)[1]}",
                "check backend.fuses(learner) first; MAML composes the primitives for such learners",
            )
        check_meta_gradient_inputs(spec, params, support_x, support_y, query_x, query_y, inner_steps,
                                   self.device)
        with _on_chip_limits(spec, f"{support_x.shape[1]} support and {query_x.shape[1]} query points"):
            losses, grad = self._meta_gradient(spec, params, (support_x, support_y, query_x, query_y),
                                               float(inner_lr), int(inner_steps), bool(first_order))
        return losses, _kernels().unpack(spec, grad)

    def _meta_gradient(self, spec: MLPSpec, params: Params, data: tuple[torch.Tensor, ...], inner_lr: float,
                       inner_steps: int, first_order: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`triton_launch.meta_gradient` with this backend's launch choices — with
        ``cuda_graphs``, the replay of a CUDA graph captured once per call signature (learner, data
        shapes, α, N, order), each call copying θ and the data into its static buffers."""
        if self._graphs is None:
            return _kernels().meta_gradient(spec, params, *data, inner_lr, inner_steps, first_order, *self._launch)
        names = spec.names()

        def launch(static: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            theta = dict(zip(names, static[:len(names)]))
            return _kernels().meta_gradient(spec, theta, *static[len(names):], inner_lr, inner_steps, first_order,
                                            *self._launch)

        key = ("meta_gradient", spec, *(t.shape for t in data), inner_lr, inner_steps, first_order)
        return self._graphs(key, launch, [*(params[name] for name in names), *data])

    def __repr__(self) -> str:
        graphs = " cuda_graphs" if self.cuda_graphs else ""
        launch = f"programs={self.programs or 'default'} num_warps={self.num_warps or 'default'}"
        cap = f" max_registers={self.max_registers}" if self.max_registers else ""
        return f"{super().__repr__()[:-1]} precision={self.precision} {launch}{cap}{graphs}>"
