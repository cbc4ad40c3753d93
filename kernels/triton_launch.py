"""Host side of the Triton MLP kernels: which learners they fuse, packing, grids and launches.

Import this module only after deciding where kernels run: Triton reads ``TRITON_INTERPRET`` when
the kernels are defined, so the CPU interpreter must be switched on before the first import.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton

from innerloop.kernels.mlp_layout import MLPSpec
from innerloop.kernels.triton_mlp import ACTIVATIONS, maml_meta_gradient_kernel, mlp_primitives_kernel, padded

PRECISIONS = ("tf32x3", "tf32", "ieee")
MAX_WIDTH = 64  # widest layer the kernels keep in registers
TASKS_PER_PROGRAM = 4
NUM_WARPS = 8  # fewest spills on sm_90 (see tests/test_triton_backend.py, the compile check)
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


@dataclass(frozen=True)
class KernelShape:
    """Compile-time sizes of one launch: widths, points and their ≥16 power-of-two tiles."""

    spec: MLPSpec

    def constants(self, points: int) -> dict:
        i, h1, h2, o = self.spec.widths
        return dict(P=self.spec.num_params, K=points, IN=i, H1=h1, H2=h2, OUT=o, KP=padded(points),
                    INP=padded(i), H1P=padded(h1), H2P=padded(h2), OUTP=padded(o),
                    ACT=ACTIVATIONS[self.spec.activation])


def pack(spec: MLPSpec, params: Params, tasks: int) -> torch.Tensor:
    """Per-task parameter dict → contiguous float32 rows [B, P] in the engine's order."""
    return torch.cat([params[name].expand(tasks, *params[name].shape[-len(shape):]).reshape(tasks, -1)
                      for name, shape in zip(spec.names(), spec.shapes())], dim=1).contiguous()


def unpack(spec: MLPSpec, flat: torch.Tensor) -> Params:
    """Rows [B, P] (or one row [P]) → parameter dict of views."""
    lead = flat.shape[:-1]
    out, offset = {}, 0
    for name, shape in zip(spec.names(), spec.shapes()):
        size = torch.Size(shape).numel()
        out[name] = flat[..., offset:offset + size].reshape(*lead, *shape)
        offset += size
    return out


def primitives(spec: MLPSpec, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor, vector: torch.Tensor | None,
               with_grad: bool, precision: str) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Per-task losses [B], gradients [B, P] (``with_grad``) and H·v [B, P] (``vector`` given)."""
    tasks = x.shape[0]
    losses = torch.empty(tasks, device=x.device, dtype=torch.float32)
    grads = torch.empty_like(flat) if with_grad else None
    products = torch.empty_like(flat) if vector is not None else None
    grid = (triton.cdiv(tasks, TASKS_PER_PROGRAM),)
    mlp_primitives_kernel[grid](
        flat, x.contiguous(), y.contiguous(), flat if vector is None else vector.contiguous(), losses,
        flat if grads is None else grads, flat if products is None else products, tasks,
        TASKS=TASKS_PER_PROGRAM, WITH_GRAD=with_grad, WITH_HVP=vector is not None, PRECISION=precision,
        num_warps=NUM_WARPS, **KernelShape(spec).constants(x.shape[1]),
    )
    return losses, grads, products


def meta_gradient(spec: MLPSpec, theta: torch.Tensor, support_x: torch.Tensor, support_y: torch.Tensor,
                  query_x: torch.Tensor, query_y: torch.Tensor, inner_lr: float, inner_steps: int,
                  first_order: bool, precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-task query losses [B] and the mean meta-gradient [P] at shared parameters ``theta`` [P]."""
    tasks = support_x.shape[0]
    programs = triton.cdiv(tasks, TASKS_PER_PROGRAM)
    device = support_x.device
    second_order = not first_order and inner_steps > 0
    scratch = torch.empty(programs, max(inner_steps, 1) if second_order else 1, spec.num_params,
                          device=device, dtype=torch.float32)
    partial = torch.zeros(programs, spec.num_params, device=device, dtype=torch.float32)
    losses = torch.empty(tasks, device=device, dtype=torch.float32)
    constants = KernelShape(spec).constants(support_x.shape[1])
    maml_meta_gradient_kernel[(programs,)](
        theta.contiguous(), support_x.contiguous(), support_y.contiguous(), query_x.contiguous(),
        query_y.contiguous(), scratch, partial, losses, tasks, float(inner_lr),
        M=query_x.shape[1], MP=padded(query_x.shape[1]), TASKS=TASKS_PER_PROGRAM, STEPS=inner_steps,
        SECOND_ORDER=second_order, PRECISION=precision, num_warps=NUM_WARPS, **constants,
    )
    return losses, partial.sum(dim=0) / tasks
