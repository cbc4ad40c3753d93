"""Host side of the Triton MLP kernels: which learners they fuse, packing, grids and launches.

Import this module only after deciding where kernels run: Triton reads ``TRITON_INTERPRET`` when
the kernels are defined, so the CPU interpreter must be switched on before the first import.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType

import torch
from triton.runtime.errors import OutOfResources  # noqa: F401  (re-exported: the backend catches it)

from innerloop.kernels.mlp_layout import MLPSpec
from innerloop.kernels.triton_mlp import ACTIVATIONS, maml_meta_gradient_kernel, mlp_primitives_kernel, padded

PRECISIONS = ("tf32x3", "tf32", "ieee")
MAX_WIDTH = 64  # widest layer the kernels keep in registers
# Launch defaults from H100 measurements (bench/results/h100-triton-*.json): the kernels are latency
# bound with one 8-warp program resident per SM (255 registers/thread), and 8 warps spill least. The
# grid is persistent (program p runs tasks p, p+G, ...): G = min(B, PROGRAMS_PER_SM · SMs) keeps every
# SM busy from B = 1 on, while the meta-gradient's snapshot scratch (G·N·P floats) stays L2-sized.
PROGRAMS_PER_SM = 4
INTERPRETER_PROGRAMS = 4  # the CPU interpreter runs programs one by one; 4 exercises the strided split
NUM_WARPS = 8
Params = dict[str, torch.Tensor]


def unfusable_reason(spec: MLPSpec | None) -> str | None:
    """Why the Triton kernels cannot realize ``spec`` (None when they can)."""
    if spec is None:
        return "the learner is not an engine MLP"
    if spec.num_layers != 3:
        return f"the kernels fuse MLPs with exactly two hidden layers, this one has {spec.num_layers - 1}"
    if spec.activation not in ACTIVATIONS:
        return f"activation '{spec.activation}' is not fused (fused: {', '.join(ACTIVATIONS)})"
    if spec.loss != "mse":
        return f"loss '{spec.loss}' is not fused (fused: mse)"
    if not spec.bias:
        return "the kernels fuse MLPs with biases"
    if max(spec.widths) > MAX_WIDTH:
        return f"layers wider than {MAX_WIDTH} are not fused (widths {list(spec.widths)})"
    return None


@lru_cache(maxsize=256)
def kernel_constants(spec: MLPSpec, points: int) -> Mapping[str, int]:
    """Compile-time sizes of one launch — widths, points and their tiles (:func:`padded`) — as a
    read-only mapping computed once per learner and K (the launch path runs every inner step: its
    host cost is part of every timing)."""
    i, h1, h2, o = spec.widths
    return MappingProxyType(dict(P=spec.num_params, K=points, IN=i, H1=h1, H2=h2, OUT=o, KP=padded(points),
                                 INP=padded(i), H1P=padded(h1), H2P=padded(h2), OUTP=padded(o),
                                 ACT=ACTIVATIONS[spec.activation]))


@lru_cache(maxsize=64)
def _layout(spec: MLPSpec) -> tuple:
    """(name, shape, offset, size) of every parameter in a flat row."""
    rows, offset = [], 0
    for name, shape in zip(spec.names(), spec.shapes()):
        size = torch.Size(shape).numel()
        rows.append((name, shape, offset, size))
        offset += size
    return tuple(rows)


def pack(spec: MLPSpec, params: Params, tasks: int) -> torch.Tensor:
    """Per-task parameter dict → contiguous float32 rows [B, P] in the engine's order."""
    return torch.cat([params[name].reshape(-1, size).expand(tasks, size) for name, _, _, size in _layout(spec)], dim=1)


def unpack(spec: MLPSpec, flat: torch.Tensor) -> Params:
    """Rows [B, P] (or one row [P]) → parameter dict of views."""
    lead = flat.shape[:-1]
    layout = _layout(spec)
    pieces = flat.split_with_sizes([size for _, _, _, size in layout], dim=-1)
    return {name: piece.view(*lead, *shape) for (name, shape, _, _), piece in zip(layout, pieces)}


def max_programs(device: torch.device) -> int:
    """The default grid cap on ``device``: PROGRAMS_PER_SM per multiprocessor on a GPU."""
    if device.type == "cuda":
        return PROGRAMS_PER_SM * _multiprocessors(device.index or 0)
    return INTERPRETER_PROGRAMS


@lru_cache(maxsize=8)
def _multiprocessors(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def launch_options(num_warps: int | None, max_registers: int | None) -> dict[str, int]:
    """Triton's launch options: warps per program (None: NUM_WARPS) and, when given, ptxas's register
    cap per thread (``maxnreg``: a lower cap lets an SM hold more programs, at the price of spills)."""
    options = {"num_warps": NUM_WARPS if num_warps is None else num_warps}
    return options if max_registers is None else {**options, "maxnreg": max_registers}


def primitives(spec: MLPSpec, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor, vector: torch.Tensor | None,
               with_grad: bool, precision: str, programs: int | None = None, num_warps: int | None = None,
               max_registers: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Per-task losses [B], gradients [B, P] (``with_grad``) and H·v [B, P] (``vector`` given).
    ``programs`` (grid cap; default :func:`max_programs`), ``num_warps`` and ``max_registers``
    are launch choices (``bench/triton_tuning.py`` sweeps them)."""
    tasks = x.shape[0]
    losses = torch.empty(tasks, device=x.device, dtype=torch.float32)
    grads = torch.empty_like(flat) if with_grad else None
    products = torch.empty_like(flat) if vector is not None else None
    grid = (_grid(tasks, programs, x.device),)
    mlp_primitives_kernel[grid](
        flat, x.contiguous(), y.contiguous(), flat if vector is None else vector.contiguous(), losses,
        flat if grads is None else grads, flat if products is None else products, tasks,
        WITH_GRAD=with_grad, WITH_HVP=vector is not None, PRECISION=precision,
        **launch_options(num_warps, max_registers), **kernel_constants(spec, x.shape[1]),
    )
    return losses, grads, products


def _grid(tasks: int, programs: int | None, device: torch.device) -> int:
    return max(1, min(tasks, max_programs(device) if programs is None else programs))


def meta_gradient(spec: MLPSpec, theta: Params, support_x: torch.Tensor, support_y: torch.Tensor,
                  query_x: torch.Tensor, query_y: torch.Tensor, inner_lr: float, inner_steps: int,
                  first_order: bool, precision: str, programs: int | None = None, num_warps: int | None = None,
                  max_registers: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-task query losses [B] and the mean meta-gradient [P] (flat, engine order) at shared
    parameters ``theta`` (the parameter dict; the kernel reads its six tensors in place).

    Host work is kept to three allocations, one launch and, for G > 1 programs, one sum of the
    partials (the kernel scales by 1/B and writes the partials without a zero-fill): at small B an
    eager call costs the host's time, not the device's.
    """
    tasks = support_x.shape[0]
    device = support_x.device
    programs = _grid(tasks, programs, device)
    second_order = not first_order and inner_steps > 0
    scratch = torch.empty(programs, max(inner_steps, 1) if second_order else 1, spec.num_params,
                          device=device, dtype=torch.float32)
    partial = torch.empty(programs, spec.num_params, device=device, dtype=torch.float32)
    losses = torch.empty(tasks, device=device, dtype=torch.float32)
    maml_meta_gradient_kernel[(programs,)](
        *(theta[name].contiguous() for name, _, _, _ in _layout(spec)), support_x.contiguous(), support_y.contiguous(),
        query_x.contiguous(), query_y.contiguous(), scratch, partial, losses, tasks, float(inner_lr),
        M=query_x.shape[1], MP=padded(query_x.shape[1]), STEPS=inner_steps, SECOND_ORDER=second_order,
        PRECISION=precision, **launch_options(num_warps, max_registers), **kernel_constants(spec, support_x.shape[1]),
    )
    return losses, partial[0] if programs == 1 else partial.sum(dim=0)
