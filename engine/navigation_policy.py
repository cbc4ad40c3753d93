"""A Gaussian policy for a point moving in the plane, trained by policy gradients (monograph
§7.1.2, meta-learning for reinforcement learning; the 2D navigation task of MAML, the monograph's
[6], and the aerial base station of its [138]).

The agent starts at the origin. At step t it observes o_t = ``environment.observe``(s_t, t/H) —
its position s_t (and, where the task moves, the elapsed fraction t/H), never the task — and
samples an action a_t = μ_ϕ(o_t) + σ_ϕ ⊙ ε_t, ε_t ~ N(0, I), from the policy
π_ϕ(a|o) = N(μ_ϕ(o), diag σ_ϕ²) (μ_ϕ an MLP, log σ_ϕ the parameter ``log_std``). The point moves
by the clipped action, s_{t+1} = s_t + clip(a_t, ±max_step), and earns the environment's reward
r_t(s_{t+1}; y) for the task's target y (:mod:`~innerloop.engine.rl_environments`; for 2D
navigation r_t = −‖s_{t+1} − g‖ with y = g). An episode lasts ``horizon`` steps; its return is
R = Σ_t r_t.

The environment is not differentiated. A data point is one episode's noise x = (ε_1, …, ε_H)
(flattened, [2H]) with the task's target y: drawing the noise ahead (common random
numbers) makes the episodes a deterministic function of the policy, so the objective is an
ordinary loss and the meta-gradients of every algorithm can be checked against autograd
unrolls. The episodes of a support or query set are rolled out with the parameters the objective
is evaluated at — the on-policy data MAML-RL collects before and after adaptation. The objective
of K episodes is

    S(ϕ) = (1/K)·Σ_i [ −R_i + Σ_t s(log π_ϕ(a_it|s_it), A_it) ],   A_it = C_it − mean_{j≠i} C_jt,

with the cost-to-go C_it = −Σ_{t'≥t} γ^{t'−t} r_{it'} and its leave-one-out baseline over the
task's episodes, and s the score surrogate of :mod:`~innerloop.engine.policy_gradient`
(``estimator``: "reinforce" or "lvc"). Its value is minus the mean return; its gradient is minus
the policy gradient Σ_t A_t ∇ log π (REINFORCE with reward-to-go). With ``normalize_advantages``, A
is divided by its standard deviation over the task's K·H samples, a per-task constant: the
direction is unchanged and the step size no longer depends on the scale of the task's returns, as
MAML-RL's implementations do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from innerloop.engine.errors import ConfigError, ShapeError
from innerloop.engine.models import MLP
from innerloop.engine.params import Params, check_shapes, count
from innerloop.engine.policy_gradient import check_estimator, leave_one_out_advantages, rewards_to_go, score_surrogate
from innerloop.engine.rl_environments import GoalReaching, PlanarEnvironment

OBJECTIVE = "negative_return"
LOG_STD = "log_std"


def check_episodes(horizon: int, max_step: float, discount: float, init_std: float, estimator: str) -> None:
    """Raise ConfigError for settings no policy can be built with (a bad --task-option fails before training)."""
    if int(horizon) != horizon or horizon < 1:
        raise ConfigError(f"horizon must be a positive integer, got {horizon}", "e.g. horizon=20")
    if not (max_step > 0 and 0 <= discount <= 1 and init_std > 0):
        raise ConfigError(f"need max_step > 0, discount in [0, 1] and init_std > 0; got max_step={max_step}, "
                          f"discount={discount}, init_std={init_std}", "e.g. max_step=0.1 discount=0.99 init_std=0.1")
    check_estimator(estimator)


class NavigationPolicy:
    """π_ϕ(a|o) = N(μ_ϕ(o), diag σ_ϕ²) over ``horizon``-step episodes of a point in the plane, in
    ``environment`` (default: :class:`~innerloop.engine.rl_environments.GoalReaching`).

    ``apply`` gives the final position s_H of each episode ([..., 2]; for goal reaching it is
    compared with the goal y: the evaluation's "mse" is the per-coordinate mean squared error of
    the final position, half the mean squared distance to the goal at the end of an episode);
    ``trajectory`` gives every position.
    """

    objective_name = OBJECTIVE

    def __init__(self, horizon: int = 20, hidden: Sequence[int] = (100, 100), activation: str = "relu",
                 max_step: float = 0.1, discount: float = 0.99, init_std: float = 0.1,
                 estimator: str = "reinforce", normalize_advantages: bool = True,
                 environment: PlanarEnvironment | None = None) -> None:
        check_episodes(horizon, max_step, discount, init_std, estimator)
        self.environment = GoalReaching() if environment is None else environment
        self.predicts_targets, self.target_dim = self.environment.predicts_targets, self.environment.target_dim
        self.normalize_advantages = bool(normalize_advantages)
        self.horizon, self.max_step, self.discount = int(horizon), float(max_step), float(discount)
        self.init_std, self.estimator = float(init_std), estimator
        self.mean = MLP(self.environment.observation_dim, hidden, 2, activation)
        self.in_dim, self.out_dim = 2 * self.horizon, 2

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {**{f"mean.{k}": s for k, s in self.mean.shapes().items()}, LOG_STD: (2,)}

    def num_params(self) -> int:
        return count(self.shapes())

    def init(self, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
             device: torch.device | str = "cpu") -> Params:
        """The mean network by torch.nn.Linear's rule, its output layer scaled by 0.01 (the policy
        starts by barely moving, rather than drifting the same way for every goal — returns near
        −30 at horizon 20, from which policy gradients took hundreds of meta-iterations to recover);
        σ = ``init_std`` in both directions."""
        params = {f"mean.{k}": v for k, v in self.mean.init(generator, dtype, device).items()}
        last = self.mean.num_layers - 1
        for kind in ("weight", "bias"):
            params[f"mean.layer{last}.{kind}"] = params[f"mean.layer{last}.{kind}"] * 0.01
        params[LOG_STD] = torch.full((2,), math.log(self.init_std), dtype=dtype or torch.get_default_dtype(),
                                     device=device)
        return params

    def check_params(self, params: Params, task_axis: bool = False) -> None:
        check_shapes(self.shapes(), params, repr(self), task_axis)

    def _mean(self, params: Params, states: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """μ_ϕ(o) at states [..., 2] observed at steps t (broadcastable to states[..., 0])."""
        observations = self.environment.observe(states, steps / self.horizon)
        return self.mean.apply({k[5:]: v for k, v in params.items() if k.startswith("mean.")}, observations)

    def _noise(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_dim:
            raise ShapeError(f"a {self.horizon}-step episode takes {self.in_dim} noise values, got {x.shape[-1]}",
                             "build the policy with the task family's horizon")
        return x.reshape(*x.shape[:-1], self.horizon, 2)

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The environment's dynamics s_{t+1} = s_t + clip(a_t, ±max_step) (any leading axes)."""
        return state + action.clamp(-self.max_step, self.max_step)

    def rollout(self, params: Params, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(states s_0…s_{H−1}, actions a_0…a_{H−1}), each [..., H, 2], of the episodes whose noise is
        ``x`` [..., 2H] under ``params`` (differentiable in the parameters only through a_t's mean)."""
        noise = self._noise(x)
        std = params[LOG_STD].exp()
        state = torch.zeros_like(noise[..., 0, :])
        steps = torch.arange(self.horizon, dtype=noise.dtype, device=noise.device)
        states, actions = [], []
        for t in range(self.horizon):
            action = self._mean(params, state, steps[t]) + std * noise[..., t, :]
            states.append(state)
            actions.append(action)
            state = self.step(state, action)
        return torch.stack(states, dim=-2), torch.stack(actions, dim=-2)

    def trajectory(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Positions s_1…s_H [..., H, 2] after each step."""
        return self.step(*self.rollout(params, x))

    def apply(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """The final position s_H [..., 2] of each episode."""
        return self.trajectory(params, x)[..., -1, :]

    def log_policy(self, params: Params, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log π_ϕ(a|o) [..., H] up to its constant: Σ_d −(a_d − μ_d)²/(2σ_d²) − log σ_d, for the
        states s_0…s_{H−1} and actions of whole episodes."""
        log_std = params[LOG_STD]
        steps = torch.arange(self.horizon, dtype=states.dtype, device=states.device)
        z = (actions - self._mean(params, states, steps)) * torch.exp(-log_std)
        return (-0.5 * z ** 2 - log_std).sum(-1)

    def objective(self, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """S(ϕ) of the module docstring for one task's episodes x [K, 2H] and targets y [K, ·]."""
        frozen = {k: v.detach() for k, v in params.items()}
        states, actions = self.rollout(frozen, x)
        positions = self.step(states, actions)
        rewards = self.environment.rewards(positions, y)  # [K, H]
        costs = -rewards_to_go(rewards, self.discount)
        advantages = leave_one_out_advantages(costs.transpose(-1, -2)).transpose(-1, -2)  # over episodes
        if self.normalize_advantages:
            advantages = advantages / (advantages.std() + 1e-8)
        score = score_surrogate(self.log_policy(params, states, actions), advantages, self.estimator)
        return (score.sum(-1) - rewards.sum(-1)).mean()

    def config(self) -> dict:
        return {"horizon": self.horizon, "max_step": self.max_step, "discount": self.discount,
                "init_std": self.init_std, "estimator": self.estimator,
                "normalize_advantages": self.normalize_advantages, "mean": self.mean.config(),
                **self.environment.config()}

    def __repr__(self) -> str:
        return (f"NavigationPolicy({self.environment.name}, horizon={self.horizon}, hidden={self.mean.hidden}, "
                f"estimator={self.estimator!r})")
