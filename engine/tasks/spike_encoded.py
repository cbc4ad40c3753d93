"""Spike-encoded versions of the synthetic families, so one experiment runs on ``cpu`` and ``snn``.

Each input feature is mapped to [0, 1] with the family's input range, spread over ``channels``
neurons with Gaussian receptive fields (population coding, width 1/channels) and turned into
spike trains of ``steps`` steps:

* ``rate``: Bernoulli spikes with probability equal to the intensity at every step (the scheme of
  ``snntorch.spikegen.rate``, drawn here with the task stream's generator so runs are reproducible);
* ``latency``: one spike per channel, earlier for stronger intensity (``snntorch.spikegen.latency``
  with linear normalized timing; channels below its threshold stay silent).

Targets are unchanged: sinusoid regression (use a ``membrane`` readout for signed outputs) and
N-way Clusters2D classification.
"""

from __future__ import annotations

import torch
from snntorch import spikegen

from innerloop.engine.errors import ConfigError
from innerloop.engine.tasks.base import TaskBatch, TaskFamily
from innerloop.engine.tasks.clusters import Clusters2D
from innerloop.engine.tasks.sinusoid import Sinusoid

CODINGS = ("rate", "latency")


class SpikeEncoded(TaskFamily):
    """A base family's tasks with inputs x [.., d] encoded as spike trains [.., steps, d·channels]."""

    spiking = True

    def __init__(self, base: TaskFamily, low: float, high: float, coding: str = "rate", steps: int = 30,
                 channels: int = 16) -> None:
        if coding not in CODINGS:
            raise ConfigError(f"unknown coding '{coding}'", f"choose one of: {', '.join(CODINGS)}")
        if int(steps) != steps or steps < 1 or int(channels) != channels or channels < 1:
            raise ConfigError(f"steps and channels must be positive integers, got {steps}, {channels}",
                              "e.g. steps=30 channels=16")
        super().__init__(base.shots, base.queries)
        self.base, self.low, self.high = base, float(low), float(high)
        self.coding, self.steps, self.channels = coding, int(steps), int(channels)
        self.loss, self.output_dim = base.loss, base.output_dim
        self.input_dim = base.input_dim * self.channels

    def intensities(self, x: torch.Tensor) -> torch.Tensor:
        """Population code [.., d·channels] in [0, 1] of inputs x [.., d]."""
        unit = ((x - self.low) / (self.high - self.low)).clamp(0, 1).unsqueeze(-1)
        centers = (torch.arange(self.channels, dtype=x.dtype) + 0.5) / self.channels
        return torch.exp(-0.5 * ((unit - centers) * self.channels) ** 2).flatten(-2)

    def encode(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Spike trains [B, K, steps, d·channels] of inputs x [B, K, d]."""
        p = self.intensities(x)
        if self.coding == "rate":
            expanded = p.unsqueeze(2).expand(*p.shape[:2], self.steps, p.shape[-1])
            return torch.bernoulli(expanded, generator=generator)
        return spikegen.latency(p, num_steps=self.steps, normalize=True, linear=True).movedim(0, 2)

    def _sample(self, num_tasks: int, generator: torch.Generator | None, shots: int, queries: int) -> TaskBatch:
        batch = self.base.sample(num_tasks, generator, shots=shots, queries=queries)
        return TaskBatch(self.encode(batch.support_x, generator), batch.support_y,
                         self.encode(batch.query_x, generator), batch.query_y, batch.task_params)

    def config(self) -> dict:
        return {**self.base.config(), "coding": self.coding, "steps": self.steps, "channels": self.channels}


class SpikingSinusoid(SpikeEncoded):
    """Sinusoid regression (x ∈ [−5, 5]) with spike-encoded inputs."""

    name = "spiking-sinusoid"

    def __init__(self, shots: int = 10, queries: int = 10, coding: str = "rate", steps: int = 30,
                 channels: int = 16) -> None:
        super().__init__(Sinusoid(shots, queries), -5.0, 5.0, coding, steps, channels)


class SpikingClusters(SpikeEncoded):
    """Clusters2D N-way classification (coordinates within ±3.5) with spike-encoded inputs."""

    name = "spiking-clusters"

    def __init__(self, shots: int = 5, queries: int = 15, ways: int = 5, coding: str = "rate", steps: int = 30,
                 channels: int = 16) -> None:
        super().__init__(Clusters2D(shots, queries, ways), -3.5, 3.5, coding, steps, channels)
