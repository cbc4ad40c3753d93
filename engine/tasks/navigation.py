"""Task families for meta-reinforcement learning with a planar Gaussian policy (monograph §7.1.2).

A data point is one episode: x is the policy's exploration noise (ε_1, …, ε_H) ~ N(0, I)
[2·``horizon``] drawn ahead, y the task's target (never observed by the policy). The learner
(:class:`~innerloop.engine.navigation_policy.NavigationPolicy`) rolls the episode out with its own
parameters, so the support set is the K episodes a policy collects before adapting and the query
set the episodes it collects after (on-policy, as in MAML-RL), and it is trained on minus the
return by policy gradients. :class:`PolicyGradientFamily` holds what the families share; each
names its environment (:mod:`~innerloop.engine.rl_environments`) and draws its targets.
"""

from __future__ import annotations

import torch

from innerloop.engine.errors import ConfigError
from innerloop.engine.rl_environments import GoalReaching, PlanarEnvironment
from innerloop.engine.tasks.base import TaskBatch, TaskFamily


class PolicyGradientFamily(TaskFamily):
    """Episodes as pre-drawn policy noise, targets from :meth:`targets`, rewards from
    :meth:`environment`."""

    loss = "negative_return"

    def __init__(self, shots: int, queries: int, horizon: int, max_step: float, discount: float, init_std: float,
                 estimator: str, normalize_advantages: bool) -> None:
        super().__init__(shots, queries)
        from innerloop.engine.navigation_policy import check_episodes

        check_episodes(horizon, max_step, discount, init_std, estimator)
        self.horizon, self.max_step = int(horizon), float(max_step)
        self.discount, self.init_std, self.estimator = float(discount), float(init_std), estimator
        self.normalize_advantages = bool(normalize_advantages)

    @property
    def input_dim(self) -> int:  # type: ignore[override]
        return 2 * self.horizon

    def environment(self) -> PlanarEnvironment:
        """The rewards and observations of this family's tasks."""
        raise NotImplementedError

    def targets(self, num_tasks: int, generator: torch.Generator | None) -> tuple[torch.Tensor, dict]:
        """(y [B, target_dim] in float64, the task parameters TaskBatch records)."""
        raise NotImplementedError

    def episodes(self, targets: torch.Tensor, count: int, generator: torch.Generator | None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` episodes per task of ``targets`` [B, d]: noise x [B, count, 2H] and y [B, count, d]."""
        noise = torch.randn((targets.shape[0], count, self.input_dim), generator=generator, dtype=torch.float64)
        dtype = torch.get_default_dtype()
        return noise.to(dtype), targets[:, None].expand(-1, count, -1).to(dtype)

    def learner(self, hidden: tuple[int, ...], activation: str):
        """The Gaussian policy in this family's environment, trained by policy gradients."""
        from innerloop.engine.navigation_policy import NavigationPolicy

        return NavigationPolicy(self.horizon, hidden, activation, self.max_step, self.discount, self.init_std,
                                self.estimator, self.normalize_advantages, self.environment())

    def best_returns(self, targets: torch.Tensor, **options) -> torch.Tensor:
        """The environment's best return for each target of ``targets`` [B, d] (see its
        ``best_returns``)."""
        return self.environment().best_returns(targets, self.horizon, self.max_step, **options)

    def _sample(self, num_tasks: int, generator: torch.Generator | None, shots: int, queries: int) -> TaskBatch:
        targets, params = self.targets(num_tasks, generator)
        x, y = self.episodes(targets, shots + queries, generator)
        params = {k: v.to(torch.get_default_dtype()) for k, v in params.items()}
        return TaskBatch(x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:], params)

    def config(self) -> dict:
        return {**super().config(), "horizon": self.horizon, "max_step": self.max_step, "discount": self.discount,
                "init_std": self.init_std, "estimator": self.estimator,
                "normalize_advantages": self.normalize_advantages}


class Navigation2D(PolicyGradientFamily):
    """2D point navigation to an unobserved goal (MAML's benchmark, monograph §7.1.2 and its [6]).

    The goal is g ~ U[−``goal_range``, ``goal_range``]², and y = g."""

    name = "navigation-2d"
    output_dim = 2

    def __init__(self, shots: int = 20, queries: int = 20, horizon: int = 20, goal_range: float = 0.5,
                 max_step: float = 0.1, discount: float = 0.99, init_std: float = 0.1,
                 estimator: str = "reinforce", normalize_advantages: bool = True) -> None:
        super().__init__(shots, queries, horizon, max_step, discount, init_std, estimator, normalize_advantages)
        if not goal_range > 0:
            raise ConfigError(f"goal_range must be > 0, got {goal_range}", "e.g. goal_range=0.5")
        self.goal_range = float(goal_range)

    def environment(self) -> PlanarEnvironment:
        return GoalReaching()

    def targets(self, num_tasks: int, generator: torch.Generator | None) -> tuple[torch.Tensor, dict]:
        """Goals g [B, 2], uniform in the square of half-side ``goal_range``."""
        goals = (2 * torch.rand((num_tasks, 2), generator=generator, dtype=torch.float64) - 1) * self.goal_range
        return goals, {"goal_x": goals[:, 0], "goal_y": goals[:, 1]}

    def config(self) -> dict:
        return {**super().config(), "goal_range": self.goal_range}
