"""Planar environments for :class:`~innerloop.engine.navigation_policy.NavigationPolicy`: what the
policy observes, what each step earns, and the best return a planner that knows the task achieves
(monograph §7.1.2, meta-learning for reinforcement learning).

In both, a point starts at the origin and moves by s_{t+1} = s_t + clip(a_t, ±max_step) per
coordinate (the policy's dynamics); the task is described by a target vector y that the policy
never observes.

* :class:`GoalReaching` — MAML's 2D navigation ([6]): y = g, r_t = −‖s_{t+1} − g‖.
* :class:`AerialCoverage` — an unmanned aerial base station (UABS) serving a platoon of vehicles
  on a road (the monograph's [138], [173]-[174]): the traffic pattern is the task.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

from innerloop.engine.errors import ConfigError, ShapeError
from innerloop.engine.progress import Progress


class PlanarEnvironment(Protocol):
    """What :class:`~innerloop.engine.navigation_policy.NavigationPolicy` needs of an environment."""

    name: str
    observation_dim: int  # the mean network's input size
    target_dim: int  # the size of a task's target y
    predicts_targets: bool  # whether the final position estimates y (the evaluation's error)

    def observe(self, states: torch.Tensor, progress: torch.Tensor) -> torch.Tensor: ...

    def rewards(self, positions: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...

    def best_returns(self, y: torch.Tensor, horizon: int, max_step: float) -> torch.Tensor: ...

    def config(self) -> dict: ...


def _check_targets(y: torch.Tensor, dim: int, what: str) -> None:
    if y.shape[-1] != dim:
        raise ShapeError(f"{what} takes targets of size {dim}, got {y.shape[-1]}",
                         "build the policy with the task family's learner()")


class GoalReaching:
    """r_t = −‖s_{t+1} − g‖ for the goal y = g [2]; the policy observes its position s_t."""

    name = "goal-reaching"
    observation_dim = target_dim = 2
    predicts_targets = True  # the final position is compared with the goal

    def observe(self, states: torch.Tensor, progress: torch.Tensor) -> torch.Tensor:
        """The mean network's input at states [..., 2] (the elapsed fraction t/H is not observed)."""
        return states

    def rewards(self, positions: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """r [..., H] of positions s_1…s_H [..., H, 2] for goals y [..., 2]."""
        _check_targets(y, self.target_dim, self.name)
        return -(positions - y[..., None, :]).norm(dim=-1)

    def best_returns(self, y: torch.Tensor, horizon: int, max_step: float) -> torch.Tensor:
        """The exact optimum for goals y [B, 2]: every coordinate moves ``max_step`` toward its goal
        coordinate per step and stops there, which minimizes every coordinate's distance — hence
        ‖s_t − g‖ — at every step t at once."""
        steps = torch.arange(1, horizon + 1, dtype=y.dtype)[:, None, None] * max_step
        positions = (y.sign() * torch.minimum(y.abs(), steps)).transpose(0, 1)  # [B, H, 2]
        return self.rewards(positions, y).sum(-1)

    def config(self) -> dict:
        return {"environment": self.name}


class AerialCoverage:
    """A UABS at altitude h over a platoon of U vehicles driving along a straight road.

    The road passes through c with direction e_φ = (cos φ, sin φ); y = (c_x, c_y, cos φ, sin φ).
    Vehicle u is at p_u(t) = c + (v·(t − (H+1)/2) + o_u)·e_φ at step t = 1…H (the platoon passes c
    half-way through the episode), with offsets o_u evenly spaced over [−L/2, L/2]. With free-space
    path loss over the slant distance, the vehicle's SNR is snr·h²/(h² + ‖s − p_u‖²), and each step
    earns the platoon's mean rate (bit/s/Hz)

        r_t = (1/U)·Σ_u log₂(1 + snr·h² / (h² + ‖s_{t+1} − p_u(t+1)‖²)).

    The platoon moves, so the policy observes its position and the elapsed fraction t/H.
    """

    name = "aerial-coverage"
    observation_dim, target_dim = 3, 4
    predicts_targets = False  # the final position is not an estimate of the road

    def __init__(self, vehicles: int = 5, platoon_length: float = 0.2, speed: float = 0.04,
                 altitude: float = 0.1, snr_db: float = 20.0) -> None:
        if int(vehicles) != vehicles or vehicles < 1:
            raise ConfigError(f"vehicles must be a positive integer, got {vehicles}", "e.g. vehicles=5")
        if not (platoon_length >= 0 and speed >= 0 and altitude > 0 and math.isfinite(snr_db)):
            raise ConfigError(f"need platoon_length >= 0, speed >= 0, altitude > 0 and a finite snr_db; got "
                              f"{platoon_length}, {speed}, {altitude}, {snr_db}",
                              "e.g. platoon_length=0.2 speed=0.04 altitude=0.1 snr_db=20")
        self.vehicles, self.platoon_length, self.speed = int(vehicles), float(platoon_length), float(speed)
        self.altitude, self.snr_db = float(altitude), float(snr_db)

    def observe(self, states: torch.Tensor, progress: torch.Tensor) -> torch.Tensor:
        """(s_t, t/H) [..., 3] for states [..., 2] and t/H broadcastable to states[..., 0]."""
        return torch.cat([states, progress.to(states).expand(states.shape[:-1])[..., None]], dim=-1)

    def platoon(self, y: torch.Tensor, horizon: int) -> torch.Tensor:
        """Vehicle positions p_u(t) [..., H, U, 2] at t = 1…H for roads y [..., 4]."""
        _check_targets(y, self.target_dim, self.name)
        times = torch.arange(1, horizon + 1, dtype=y.dtype, device=y.device)
        offsets = torch.linspace(-0.5, 0.5, self.vehicles, dtype=y.dtype, device=y.device) * self.platoon_length
        along = self.speed * (times[:, None] - (horizon + 1) / 2) + offsets  # [H, U]
        return y[..., None, None, :2] + along[..., None] * y[..., None, None, 2:]

    def rewards(self, positions: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """r [..., H] of UABS positions s_1…s_H [..., H, 2] over roads y [..., 4]."""
        squared = ((positions[..., None, :] - self.platoon(y, positions.shape[-2])) ** 2).sum(-1)  # [..., H, U]
        h2, snr = self.altitude ** 2, 10 ** (self.snr_db / 10)
        return torch.log2(1 + snr * h2 / (h2 + squared)).mean(-1)

    def chase(self, y: torch.Tensor, horizon: int, max_step: float) -> torch.Tensor:
        """The greedy trajectory s_1…s_H [..., H, 2] that flies at full speed toward the platoon's
        current centre and then follows it, for roads y [..., 4]."""
        centre, state, positions = self.platoon(y, horizon).mean(-2), torch.zeros_like(y[..., :2]), []
        for t in range(horizon):
            state = state + (centre[..., t, :] - state).clamp(-max_step, max_step)
            positions.append(state)
        return torch.stack(positions, dim=-2)

    def best_returns(self, y: torch.Tensor, horizon: int, max_step: float, iters: int = 300,
                     progress: bool = False) -> torch.Tensor:
        """The return of the trajectory planned with the road known, for roads y [B, 4]: projected
        gradient ascent (Adam, then clipping each increment s_{t+1} − s_t to ±max_step — the
        trajectories the dynamics allow) from two starts, hovering at the origin and the greedy
        :meth:`chase`, keeping the best return met on the way. A numerical optimum of a non-concave
        problem — an upper reference, not a bound — that never falls below the chase."""
        y = y.detach().to(torch.float64)
        chase = self.chase(y, horizon, max_step)
        best = torch.full(y.shape[:1], -math.inf, dtype=torch.float64)
        bar = Progress(2 * iters, "planning UABS trajectories", progress)
        for start in (torch.zeros_like(chase), torch.diff(chase, dim=-2, prepend=torch.zeros_like(chase[..., :1, :]))):
            steps = start.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([steps], lr=0.01)
            for _ in range(iters + 1):
                returns = self.rewards(torch.cumsum(steps, dim=-2), y).sum(-1)
                best = torch.maximum(best, returns.detach())
                optimizer.zero_grad()
                (-returns.sum()).backward()
                optimizer.step()
                with torch.no_grad():
                    steps.clamp_(-max_step, max_step)
                bar.update()
        bar.close()
        return best

    def config(self) -> dict:
        return {"environment": self.name, "vehicles": self.vehicles, "platoon_length": self.platoon_length,
                "speed": self.speed, "altitude": self.altitude, "snr_db": self.snr_db}
