"""N-way K-shot classification of 2D Gaussian clusters (seed 000 §1.4, §5.5).

Each task draws N class means uniformly on a disk of radius 2.5; points of class c are
N(μ_c, σ²I) with σ = 0.35. ``shots`` and ``queries`` are per class. Labels 0..N−1 are
assigned to freshly drawn means in every task, so no label means anything across tasks.
"""

from __future__ import annotations

import math

import torch

from innerloop.engine.errors import ConfigError
from innerloop.engine.tasks.base import TaskBatch, TaskFamily, shuffle_points


class Clusters2D(TaskFamily):
    """N-way classification; class means uniform on a disk of ``radius``, isotropic noise ``sigma``."""

    name = "clusters"
    loss = "cross_entropy"
    input_dim = 2

    def __init__(
        self, shots: int = 5, queries: int = 15, ways: int = 5, radius: float = 2.5, sigma: float = 0.35
    ) -> None:
        super().__init__(shots, queries)
        if int(ways) != ways or ways < 2 or radius <= 0 or sigma <= 0:
            raise ConfigError(
                f"Clusters2D needs ways >= 2, radius > 0, sigma > 0; got ways={ways}, "
                f"radius={radius}, sigma={sigma}",
                "check the task options",
            )
        self.ways, self.radius, self.sigma = int(ways), float(radius), float(sigma)

    @property
    def output_dim(self) -> int:  # type: ignore[override]
        return self.ways

    def _sample(self, num_tasks: int, generator: torch.Generator | None, shots: int, queries: int) -> TaskBatch:
        # Uniform on the disk: r = R·sqrt(u) makes the area density constant.
        r = self.radius * torch.rand((num_tasks, self.ways), generator=generator).sqrt()
        angle = 2 * math.pi * torch.rand((num_tasks, self.ways), generator=generator)
        means = torch.stack([r * torch.cos(angle), r * torch.sin(angle)], dim=-1)  # [B, N, 2]
        support = self._points(means, shots, generator)
        query = self._points(means, queries, generator)
        return TaskBatch(*support, *query, {"means": means})

    def _points(
        self, means: torch.Tensor, per_class: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``per_class`` points around each mean, shuffled within each task."""
        num_tasks = means.shape[0]
        labels = torch.arange(self.ways).repeat_interleave(per_class).expand(num_tasks, -1)
        noise = torch.randn((num_tasks, self.ways * per_class, 2), generator=generator)
        x = means.repeat_interleave(per_class, dim=1) + self.sigma * noise
        return shuffle_points(x, labels, generator)

    def config(self) -> dict:
        return {**super().config(), "ways": self.ways, "radius": self.radius, "sigma": self.sigma}
