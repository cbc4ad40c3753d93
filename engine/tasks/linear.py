"""Linear regression tasks for closed-form checks (monograph §2.2.3, eqs. 2.9–2.12).

A task draws weights w ~ N(w̄, s²I) around a shared mean w̄ (all ones by default), inputs
x ~ N(0, I_d) and targets y = wᵀx + ε, ε ~ N(0, σ²). There is no bias term (eq. 2.9), so a
bias-free linear model is realizable and iMAML's meta-solution has the closed form (2.12).
"""

from __future__ import annotations

import torch

from innerloop.engine.errors import ConfigError
from innerloop.engine.tasks.base import TaskBatch, TaskFamily


class LinearRegression(TaskFamily):
    """y = wᵀx + ε with w ~ N(weight_mean·1, weight_std²·I), x ~ N(0, I_dim)."""

    name = "linear"
    loss = "mse"
    output_dim = 1

    def __init__(
        self,
        shots: int = 10,
        queries: int = 10,
        dim: int = 5,
        weight_mean: float = 1.0,
        weight_std: float = 0.5,
        noise: float = 0.1,
    ) -> None:
        super().__init__(shots, queries)
        if int(dim) != dim or dim < 1 or weight_std < 0 or noise < 0:
            raise ConfigError(
                f"LinearRegression needs dim >= 1, weight_std >= 0, noise >= 0; got dim={dim}, "
                f"weight_std={weight_std}, noise={noise}",
                "check the task options",
            )
        self.dim, self.weight_mean = int(dim), float(weight_mean)
        self.weight_std, self.noise = float(weight_std), float(noise)

    @property
    def input_dim(self) -> int:  # type: ignore[override]
        return self.dim

    def _sample(self, num_tasks: int, generator: torch.Generator | None, shots: int, queries: int) -> TaskBatch:
        w = self.weight_mean + self.weight_std * torch.randn((num_tasks, self.dim), generator=generator)
        x = torch.randn((num_tasks, shots + queries, self.dim), generator=generator)
        eps = torch.randn((num_tasks, shots + queries, 1), generator=generator)
        y = x @ w[..., None] + self.noise * eps
        return TaskBatch(x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:], {"weights": w})

    def config(self) -> dict:
        return {
            **super().config(), "dim": self.dim, "weight_mean": self.weight_mean,
            "weight_std": self.weight_std, "noise": self.noise,
        }
