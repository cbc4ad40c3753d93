"""Scoring a planar Gaussian policy as it adapts to new tasks (monograph §7.1.2): the return of
fresh on-policy episodes after 0…n policy-gradient steps on each task's support episodes — the
"duration of the interactions with new tasks" meta-RL shortens — in float64 on the cpu backend."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from innerloop.engine.params import Params
from innerloop.engine.tasks import TaskBatch


@dataclass
class Adaptation:
    """returns [n + 1, B] (mean return of each task's query episodes), finals [n + 1, B, K, 2] (the
    query episodes' final positions) and paths [n + 1, P, H, 2] (the mean-action paths, ε = 0, of the
    first P tasks), after 0…n steps."""

    returns: torch.Tensor
    finals: torch.Tensor
    paths: torch.Tensor


def adapt_policy(model, start: Params, batch: TaskBatch, lr: float, steps: int, paths: int = 0) -> Adaptation:
    """:class:`Adaptation` after 0…``steps`` policy-gradient steps of size ``lr`` from per-task
    parameters ``start`` (leading axis B) on ``batch``'s support episodes, scored on its query
    episodes (rolled out by each adapted policy)."""
    from innerloop import backends
    from innerloop.engine.inner import sgd_trajectory
    from innerloop.engine.learner import Learner

    backend, learner = backends.get("cpu", dtype=torch.float64), Learner(model, model.objective_name)
    start = {k: v.to(torch.float64) for k, v in start.items()}
    batch = batch.to(torch.float64, "cpu")
    states = sgd_trajectory(backend, learner, start, batch.support_x, batch.support_y, lr, steps,
                            keep_states=True).states
    still = torch.zeros(paths, 1, model.in_dim, dtype=torch.float64)  # ε = 0: the policy's mean action
    returns, finals, mean_paths = [], [], []
    with torch.no_grad():
        for params in states:
            returns.append(-backend.loss(learner, params, batch.query_x, batch.query_y))
            finals.append(torch.func.vmap(model.apply)(params, batch.query_x))
            first = {k: v[:paths] for k, v in params.items()}
            mean_paths.append(torch.func.vmap(model.trajectory)(first, still)[:, 0])
    return Adaptation(torch.stack(returns), torch.stack(finals), torch.stack(mean_paths))
