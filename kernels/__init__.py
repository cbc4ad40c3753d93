"""Compute kernels behind the backends: closed-form batched MLP passes in pure torch (the CPU fast
path and the reference twin of the Triton kernels).

The engine never imports this package directly; backends do.
"""

from innerloop.kernels.fused_maml import maml_meta_gradient, trajectory_buffers
from innerloop.kernels.mlp_layout import MLPSpec
from innerloop.kernels.mlp_primitives import mlp_hvp, mlp_loss, mlp_loss_and_grad, workspace


def clear_caches() -> None:
    """Drop the cached workspaces and trajectory buffers (they are rebuilt on the next call)."""
    workspace.cache_clear()
    trajectory_buffers.cache_clear()


__all__ = ["MLPSpec", "clear_caches", "maml_meta_gradient", "mlp_hvp", "mlp_loss", "mlp_loss_and_grad"]
