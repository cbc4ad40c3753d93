"""Batched loss, gradient and Hessian-vector product of MLP learners by the closed-form passes.

The pure-torch twins of the Triton kernels (issue 5): the same math as :mod:`.mlp_passes`,
on per-task parameter dicts with a leading task axis B, optional point masks [B, K] for padded
(ragged) task batches. Results are fresh tensors; intermediates live in cached workspaces.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from innerloop.kernels.mlp_layout import MLPSpec, Params
from innerloop.kernels.mlp_losses import CrossEntropyOutput, MSEOutput, output_loss
from innerloop.kernels.mlp_passes import (
    Workspace,
    backward,
    backward_with_r,
    forward,
    forward_with_r,
    loss_delta,
    loss_deltas_with_r,
    loss_value,
)


@lru_cache(maxsize=16)
def workspace(spec: MLPSpec, tasks: int, points: int, dtype: torch.dtype, device: torch.device) -> Workspace:
    """The cached :class:`Workspace` of one (spec, B, K, dtype, device)."""
    return Workspace(spec, tasks, points, dtype, device)


def prepare(spec: MLPSpec, params: Params, x: torch.Tensor, y: torch.Tensor,
            mask: torch.Tensor | None) -> tuple[Workspace, MSEOutput | CrossEntropyOutput]:
    """The workspace and output loss for a batch ``x`` [B, K, in], ``y``, ``mask`` [B, K]."""
    sample = params[spec.names()[0]]
    ws = workspace(spec, x.shape[0], x.shape[1], sample.dtype, sample.device)
    return ws, output_loss(spec.loss, y, mask, spec.widths[-1], sample.dtype)


def _empty_like_params(spec: MLPSpec, params: Params) -> list[torch.Tensor]:
    return [torch.empty_like(params[name], memory_format=torch.contiguous_format) for name in spec.names()]


def mlp_loss(spec: MLPSpec, params: Params, x: torch.Tensor, y: torch.Tensor,
             mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-task loss L_b(θ_b), shape [B]."""
    ws, out_loss = prepare(spec, params, x, y, mask)
    forward(ws, *spec.layers(params), x)
    loss_delta(ws, out_loss)
    return loss_value(ws, out_loss)


def mlp_loss_and_grad(spec: MLPSpec, params: Params, x: torch.Tensor, y: torch.Tensor,
                      mask: torch.Tensor | None = None) -> tuple[torch.Tensor, Params]:
    """Per-task loss [B] and gradient ∇L_b(θ_b) (dict with leading axis B)."""
    ws, out_loss = prepare(spec, params, x, y, mask)
    weights, biases = spec.layers(params)
    forward(ws, weights, biases, x)
    loss_delta(ws, out_loss)
    grads = _empty_like_params(spec, params)
    backward(ws, weights, x, *spec.split(grads))
    return loss_value(ws, out_loss), spec.as_dict(grads)


def mlp_hvp(spec: MLPSpec, params: Params, x: torch.Tensor, y: torch.Tensor, vector: Params,
            mask: torch.Tensor | None = None) -> Params:
    """Per-task Hessian-vector product ∇²L_b(θ_b)·v_b by the R-pass (seed 000 eq. 2.7)."""
    ws, out_loss = prepare(spec, params, x, y, mask)
    weights, biases = spec.layers(params)
    v_w, v_b = spec.layers(vector)
    forward_with_r(ws, weights, biases, v_w, v_b, x)
    loss_deltas_with_r(ws, out_loss)
    products = _empty_like_params(spec, params)
    backward_with_r(ws, weights, v_w, x, *spec.split(products))
    return spec.as_dict(products)
