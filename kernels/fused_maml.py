"""The fused MAML meta-gradient of an MLP learner, on the closed-form passes (issue 5).

Per task b (seed 000 eqs. 2.1 and 2.5): N inner steps θ_n = θ_{n−1} − α∇L_S(θ_{n−1}) keeping
the parameter snapshots θ_1..θ_N (θ_0 is the shared θ), then g = ∇L_Q(θ_N) and the reverse pass

    g ← g − α·∇²L_S(θ_{n−1})·g,   n = N, …, 1,

where each Hessian-vector product recomputes the forward/backward pass at θ_{n−1} instead of
storing activations: memory grows by one parameter snapshot per task per inner step (B·P
numbers), and by nothing else. The meta-gradient is the mean of g over tasks; first order
(FOMAML, eq. 3.1) skips the reverse pass and keeps no snapshots.

Each snapshot and g is one flat buffer of B·P numbers (parameter-major, see :mod:`.mlp_layout`).
The SGD step and the reverse update are folded into the products that make the gradient and the
HVP (θ_{n+1} = θ_n − αΔᵀA as one baddbmm with alpha = −α, g += −α(Hv) in place), so no
gradient or HVP buffer exists; buffers and their per-layer views are made once per (spec, B, N)
and reused (seed 000 §10.3).
"""

from __future__ import annotations

from functools import lru_cache

import torch

from innerloop.kernels import mlp_passes as passes
from innerloop.kernels.mlp_layout import LayerViews, MLPSpec, Params
from innerloop.kernels.mlp_losses import output_loss
from innerloop.kernels.mlp_primitives import workspace


class TrajectoryBuffers:
    """Flat buffers of B·P numbers with layer views: ``states`` holds θ_1..θ_N (θ_0 is the shared
    θ; two states reused alternately when first order) and ``g`` the reverse-pass vector. SGD
    steps and reverse updates write into them directly, so there is no gradient or HVP buffer."""

    def __init__(self, spec: MLPSpec, tasks: int, snapshots: int, dtype: torch.dtype, device: torch.device) -> None:
        size = tasks * spec.num_params
        self.states = torch.empty(snapshots, size, dtype=dtype, device=device)
        self.g = torch.empty(size, dtype=dtype, device=device)
        self.state_layers: list[LayerViews] = [spec.split(spec.views(s, tasks)) for s in self.states]
        self.g_views = spec.views(self.g, tasks)
        self.g_layers = spec.split(self.g_views)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.states, self.g))


@lru_cache(maxsize=8)
def trajectory_buffers(spec: MLPSpec, tasks: int, snapshots: int, dtype: torch.dtype,
                       device: torch.device) -> TrajectoryBuffers:
    return TrajectoryBuffers(spec, tasks, snapshots, dtype, device)


def maml_meta_gradient(
    spec: MLPSpec,
    theta: Params,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    query_x: torch.Tensor,
    query_y: torch.Tensor,
    inner_lr: float,
    inner_steps: int,
    first_order: bool = False,
    support_mask: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Params]:
    """Per-task query losses L_Q(θ_N) [B] and the batch meta-gradient (mean over tasks) at the
    shared parameters ``theta`` (no task axis)."""
    first = theta[spec.names()[0]]
    dtype, device = first.dtype, first.device
    tasks = support_x.shape[0]
    second_order = not first_order and inner_steps > 0
    buffers = trajectory_buffers(spec, tasks, inner_steps if second_order else min(inner_steps, 2), dtype, device)
    support = workspace(spec, tasks, support_x.shape[1], dtype, device)
    query = workspace(spec, tasks, query_x.shape[1], dtype, device)
    support_loss = output_loss(spec.loss, support_y, support_mask, spec.widths[-1], dtype)
    query_loss = output_loss(spec.loss, query_y, query_mask, spec.widths[-1], dtype)

    slot = (lambda n: n - 1) if second_order else (lambda n: (n - 1) % 2)
    shared = spec.layers({name: theta[name].expand(tasks, *theta[name].shape) for name in spec.names()})

    def layers_at(n: int) -> LayerViews:
        """θ_n's layers; θ_0 as stride-0 views of the shared θ, which the products run as one GEMM."""
        return shared if n == 0 else buffers.state_layers[slot(n)]

    for n in range(inner_steps):  # θ_{n+1} = θ_n − α∇L_S(θ_n)
        weights, biases = layers_at(n)
        passes.forward(support, weights, biases, support_x)
        passes.loss_delta(support, support_loss)
        passes.backward(support, weights, support_x, *buffers.state_layers[slot(n + 1)], (weights, biases), -inner_lr)

    weights, biases = layers_at(inner_steps)
    passes.forward(query, weights, biases, query_x)
    passes.loss_delta(query, query_loss)
    losses = passes.loss_value(query, query_loss)
    passes.backward(query, weights, query_x, *buffers.g_layers)

    if second_order:
        v_w, v_b = buffers.g_layers
        for n in reversed(range(inner_steps)):  # g ← g − α∇²L_S(θ_n)g
            weights, biases = layers_at(n)
            passes.forward_with_r(support, weights, biases, v_w, v_b, support_x)
            passes.loss_deltas_with_r(support, support_loss)
            passes.backward_with_r(support, weights, v_w, support_x, *buffers.g_layers, buffers.g_layers, -inner_lr)

    return losses, spec.as_dict([view.mean(dim=0) for view in buffers.g_views])
