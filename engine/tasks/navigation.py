"""2D point navigation to an unobserved goal: a task family for meta-reinforcement learning
(monograph §7.1.2; the 2D navigation benchmark of MAML, the monograph's [6]).

A task is a goal g ~ U[−``goal_range``, ``goal_range``]². A data point is one episode: x is the
policy's exploration noise (ε_1, …, ε_H) ~ N(0, I) [2·``horizon``] drawn ahead, y = g. The learner
(:class:`~innerloop.engine.navigation_policy.NavigationPolicy`) rolls the episode out with its own
parameters, so the support set is the K episodes a policy collects before adapting and the query
set the episodes it collects after (on-policy, as in MAML-RL), and it is trained on minus the
return by policy gradients.
"""

from __future__ import annotations

import torch

from innerloop.engine.errors import ConfigError
from innerloop.engine.tasks.base import TaskBatch, TaskFamily


class Navigation2D(TaskFamily):
    """Goals in a square around the start; episodes as pre-drawn policy noise."""

    name = "navigation-2d"
    loss = "negative_return"
    output_dim = 2

    def __init__(self, shots: int = 20, queries: int = 20, horizon: int = 20, goal_range: float = 0.5,
                 max_step: float = 0.1, discount: float = 0.99, init_std: float = 0.1,
                 estimator: str = "reinforce", normalize_advantages: bool = True) -> None:
        super().__init__(shots, queries)
        if not goal_range > 0:
            raise ConfigError(f"goal_range must be > 0, got {goal_range}", "e.g. goal_range=0.5")
        from innerloop.engine.navigation_policy import check_episodes

        check_episodes(horizon, max_step, discount, init_std, estimator)
        self.horizon, self.goal_range, self.max_step = int(horizon), float(goal_range), float(max_step)
        self.discount, self.init_std, self.estimator = float(discount), float(init_std), estimator
        self.normalize_advantages = bool(normalize_advantages)

    @property
    def input_dim(self) -> int:  # type: ignore[override]
        return 2 * self.horizon

    def goals(self, num_tasks: int, generator: torch.Generator | None) -> torch.Tensor:
        """g [B, 2], uniform in the square of half-side ``goal_range``."""
        u = torch.rand((num_tasks, 2), generator=generator, dtype=torch.float64)
        return (2 * u - 1) * self.goal_range

    def episodes(self, goals: torch.Tensor, count: int, generator: torch.Generator | None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` episodes per goal of ``goals`` [B, 2]: noise x [B, count, 2H] and goals y [B, count, 2]."""
        noise = torch.randn((goals.shape[0], count, self.input_dim), generator=generator, dtype=torch.float64)
        dtype = torch.get_default_dtype()
        return noise.to(dtype), goals[:, None].expand(-1, count, -1).to(dtype)

    def learner(self, hidden: tuple[int, ...], activation: str):
        """The Gaussian navigation policy, trained by policy gradients."""
        from innerloop.engine.navigation_policy import NavigationPolicy

        return NavigationPolicy(self.horizon, hidden, activation, self.max_step, self.discount, self.init_std,
                                self.estimator, self.normalize_advantages)

    def _sample(self, num_tasks: int, generator: torch.Generator | None, shots: int, queries: int) -> TaskBatch:
        goals = self.goals(num_tasks, generator)
        x, y = self.episodes(goals, shots + queries, generator)
        params = {"goal_x": goals[:, 0], "goal_y": goals[:, 1]}
        params = {k: v.to(torch.get_default_dtype()) for k, v in params.items()}
        return TaskBatch(x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:], params)

    def config(self) -> dict:
        return {**super().config(), "horizon": self.horizon, "goal_range": self.goal_range, "max_step": self.max_step,
                "discount": self.discount, "init_std": self.init_std, "estimator": self.estimator,
                "normalize_advantages": self.normalize_advantages}
