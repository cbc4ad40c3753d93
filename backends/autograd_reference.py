"""Gradients and Hessian-vector products by plain autograd, for backends whose substrate is a
differentiable simulation (surrogate-gradient spiking networks, state-vector quantum circuits)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from innerloop.backends.base import Params

TaskLosses = Callable[[Params], torch.Tensor]  # params (with a task axis) → per-task losses [B]


def loss_and_grad(task_losses: TaskLosses, params: Params) -> tuple[torch.Tensor, Params]:
    """Per-task losses and ∇L_b (summing over tasks separates them: θ_b only enters L_b)."""
    with torch.enable_grad():
        leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        losses = task_losses(leaves)
        grads = torch.autograd.grad(losses.sum(), list(leaves.values()), allow_unused=True)
    return losses.detach(), {k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(leaves.items(), grads)}


def hvp(task_losses: TaskLosses, params: Params, vector: Params) -> Params:
    """∇²L_b·v_b by double backward (seed 000 eq. 2.7 through autograd)."""
    with torch.enable_grad():
        leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        grads = torch.autograd.grad(task_losses(leaves).sum(), list(leaves.values()), create_graph=True)
        dot = sum((g * vector[k]).sum() for g, k in zip(grads, leaves))
        products = torch.autograd.grad(dot, list(leaves.values()), allow_unused=True)
    return {k: torch.zeros_like(v) if h is None else h for (k, v), h in zip(leaves.items(), products)}
