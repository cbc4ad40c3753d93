"""Trajectories of an unmanned aerial base station (UABS) for vehicular traffic: a task family for
meta-reinforcement learning (monograph §7.1.2: "in order to enable UABS to quickly adapt to new
traffic patterns, the work [138] developed a meta-learning solution for RL"; [173]-[174]).

A task is a traffic pattern: a platoon of vehicles driving along a straight road through
c ~ U[−``road_range``, ``road_range``]² in direction φ ~ U[0, 2π), passing c half-way through the
episode (:class:`~innerloop.engine.rl_environments.AerialCoverage`; y = (c_x, c_y, cos φ, sin φ)).
The UABS starts at the origin, observes its position and the time, not the traffic, and earns the
platoon's mean rate per step. Episodes are pre-drawn policy noise, as in every
:class:`~innerloop.engine.tasks.navigation.PolicyGradientFamily`.
"""

from __future__ import annotations

import math

import torch

from innerloop.engine.errors import ConfigError
from innerloop.engine.rl_environments import AerialCoverage
from innerloop.engine.tasks.navigation import PolicyGradientFamily


class AerialBaseStation(PolicyGradientFamily):
    """An aerial base station covering a vehicle platoon on an unobserved road (monograph §7.1.2, [138]).

    Roads pass through a square around the UABS's start, in every direction."""

    name = "aerial-base-station"
    output_dim = 4

    def __init__(self, shots: int = 20, queries: int = 20, horizon: int = 20, road_range: float = 0.25,
                 vehicles: int = 5, platoon_length: float = 0.2, speed: float = 0.04, altitude: float = 0.1,
                 snr_db: float = 20.0, max_step: float = 0.1, discount: float = 0.99, init_std: float = 0.1,
                 estimator: str = "reinforce", normalize_advantages: bool = True) -> None:
        super().__init__(shots, queries, horizon, max_step, discount, init_std, estimator, normalize_advantages)
        if not road_range >= 0:
            raise ConfigError(f"road_range must be >= 0, got {road_range}", "e.g. road_range=0.25")
        self.road_range = float(road_range)
        self.coverage = AerialCoverage(vehicles, platoon_length, speed, altitude, snr_db)

    def environment(self) -> AerialCoverage:
        return self.coverage

    def targets(self, num_tasks: int, generator: torch.Generator | None) -> tuple[torch.Tensor, dict]:
        """Roads y = (c_x, c_y, cos φ, sin φ) [B, 4]."""
        u = torch.rand((num_tasks, 3), generator=generator, dtype=torch.float64)
        centre, angle = (2 * u[:, :2] - 1) * self.road_range, 2 * math.pi * u[:, 2]
        roads = torch.cat([centre, angle.cos()[:, None], angle.sin()[:, None]], dim=1)
        return roads, {"road_x": centre[:, 0], "road_y": centre[:, 1], "road_angle": angle}

    def config(self) -> dict:
        options = {k: v for k, v in self.coverage.config().items() if k != "environment"}
        return {**super().config(), "road_range": self.road_range, **options}
