"""Sinusoid regression, the canonical MAML demo (seed 000 §1.4, §2.5).

A task is y = A·sin(x + φ) with A ~ U[0.1, 5], φ ~ U[0, 2π] (``phase_max=math.pi`` gives
Finn et al.'s variant) and inputs x ~ U[−5, 5].
"""

from __future__ import annotations

import math

import torch

from innerloop.engine.errors import ConfigError
from innerloop.engine.tasks.base import TaskBatch, TaskFamily, uniform


class Sinusoid(TaskFamily):
    """y = A·sin(x + φ), A ~ U[amp_min, amp_max], φ ~ U[0, phase_max], x ~ U[x_min, x_max]."""

    name = "sinusoid"
    loss = "mse"
    input_dim = 1
    output_dim = 1

    def __init__(
        self,
        shots: int = 10,
        queries: int = 10,
        amp_min: float = 0.1,
        amp_max: float = 5.0,
        phase_max: float = 2 * math.pi,
        x_min: float = -5.0,
        x_max: float = 5.0,
    ) -> None:
        super().__init__(shots, queries)
        if not amp_min < amp_max or not x_min < x_max or not phase_max > 0:
            raise ConfigError(
                f"Sinusoid needs amp_min < amp_max, x_min < x_max and phase_max > 0; got "
                f"amp=[{amp_min}, {amp_max}], x=[{x_min}, {x_max}], phase_max={phase_max}",
                "check the task options",
            )
        self.amp_min, self.amp_max, self.phase_max = float(amp_min), float(amp_max), float(phase_max)
        self.x_min, self.x_max = float(x_min), float(x_max)

    def _sample(self, num_tasks: int, generator: torch.Generator | None, shots: int, queries: int) -> TaskBatch:
        amplitude = uniform((num_tasks,), self.amp_min, self.amp_max, generator)
        phase = uniform((num_tasks,), 0.0, self.phase_max, generator)
        x = uniform((num_tasks, shots + queries, 1), self.x_min, self.x_max, generator)
        y = self.function(amplitude, phase, x)
        return TaskBatch(
            x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:],
            {"amplitude": amplitude, "phase": phase},
        )

    @staticmethod
    def function(amplitude: torch.Tensor, phase: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """A_b·sin(x + φ_b) for inputs x of shape [B, n, 1]."""
        return amplitude[:, None, None] * torch.sin(x + phase[:, None, None])

    def config(self) -> dict:
        return {
            **super().config(), "amp_min": self.amp_min, "amp_max": self.amp_max,
            "phase_max": self.phase_max, "x_min": self.x_min, "x_max": self.x_max,
        }
