"""1D Gaussian-process regression tasks with a random RBF lengthscale (seed 000 §1.4, §4.5).

A task is a draw f ~ GP(0, k_ℓ) with k_ℓ(x, x') = s²·exp(−(x − x')²/(2ℓ²)), ℓ ~ U[0.5, 2],
observed with Gaussian noise: y = f(x) + ε, ε ~ N(0, σ_n²). Support and query points are
sampled jointly so they come from the same function.
"""

from __future__ import annotations

import torch

from innerloop.engine.errors import ConfigError
from innerloop.engine.tasks.base import TaskBatch, TaskFamily, uniform


def rbf_kernel(x1: torch.Tensor, x2: torch.Tensor, lengthscale: torch.Tensor, scale: float) -> torch.Tensor:
    """Batched RBF Gram matrix s²·exp(−‖x1 − x2‖²/(2ℓ²)); x of shape [B, n, 1], ℓ of shape [B]."""
    sq = (x1 - x2.transpose(1, 2)) ** 2
    return scale**2 * torch.exp(-0.5 * sq / lengthscale[:, None, None] ** 2)


class GaussianProcess1D(TaskFamily):
    """Draws from a zero-mean GP with RBF kernel, ℓ ~ U[ell_min, ell_max], x ~ U[x_min, x_max]."""

    name = "gp"
    loss = "mse"
    input_dim = 1
    output_dim = 1

    def __init__(
        self,
        shots: int = 10,
        queries: int = 10,
        ell_min: float = 0.5,
        ell_max: float = 2.0,
        output_scale: float = 1.0,
        noise: float = 0.1,
        x_min: float = -2.0,
        x_max: float = 2.0,
    ) -> None:
        super().__init__(shots, queries)
        if not 0 < ell_min < ell_max or output_scale <= 0 or noise < 0 or not x_min < x_max:
            raise ConfigError(
                f"GaussianProcess1D needs 0 < ell_min < ell_max, output_scale > 0, noise >= 0 and "
                f"x_min < x_max; got ell=[{ell_min}, {ell_max}], output_scale={output_scale}, "
                f"noise={noise}, x=[{x_min}, {x_max}]",
                "check the task options",
            )
        self.ell_min, self.ell_max = float(ell_min), float(ell_max)
        self.output_scale, self.noise = float(output_scale), float(noise)
        self.x_min, self.x_max = float(x_min), float(x_max)

    def _sample(self, num_tasks: int, generator: torch.Generator | None, shots: int, queries: int) -> TaskBatch:
        n = shots + queries
        lengthscale = uniform((num_tasks,), self.ell_min, self.ell_max, generator)
        x = uniform((num_tasks, n, 1), self.x_min, self.x_max, generator)
        z = torch.randn((num_tasks, n, 1), generator=generator, dtype=torch.float64)
        eps = torch.randn((num_tasks, n, 1), generator=generator)
        # Cholesky in float64 with a small jitter: RBF Gram matrices are numerically singular.
        gram = rbf_kernel(x.double(), x.double(), lengthscale.double(), self.output_scale)
        gram = gram + 1e-8 * torch.eye(n, dtype=torch.float64)
        f = (torch.linalg.cholesky(gram) @ z).to(x.dtype)
        y = f + self.noise * eps
        return TaskBatch(
            x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:], {"lengthscale": lengthscale}
        )

    def config(self) -> dict:
        return {
            **super().config(), "ell_min": self.ell_min, "ell_max": self.ell_max,
            "output_scale": self.output_scale, "noise": self.noise, "x_min": self.x_min, "x_max": self.x_max,
        }
