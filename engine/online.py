"""Online (continual) meta-learning over a stream of arriving tasks (monograph §7.1.1 and §5.2's
online paragraph; Finn et al.'s follow-the-meta-leader when tasks are replayed).

Tasks arrive one at a time and are never drawn again from the source. Each arrival is

1. **scored first** (test-then-train, a prequential estimate): the current meta-parameters θ_{t−1}
   are adapted on the task's support set and scored on its query set — what a user of the system
   experiences on that task;
2. **then learned from**: one optimizer step on the meta-gradient of the arrival, averaged with
   ``replay`` tasks drawn uniformly from the arrivals stored so far (``replay = 0``: no revisiting,
   the meta-gradient of the current task alone, as in the monograph's [163]).

The average prequential score over arrivals measures how quickly the meta-learner becomes useful
while it is being built, which offline meta-training on a stored set of tasks does not show.

**Active selection** (monograph §7.1.3): with ``select``, each arrival is a batch of candidate tasks
and ``select(params, candidates)`` names the one to acquire, given the current meta-parameters; only
that task is scored, learned from and stored — the others are never seen again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from innerloop.engine.errors import ConfigError, NonFiniteError
from innerloop.engine.params import Params, all_finite
from innerloop.engine.progress import Progress
from innerloop.engine.tasks import TaskBatch


@dataclass
class OnlineRun:
    """The final meta-parameters, the prequential score of every arrival (scored before it was
    learned from), and the per-arrival meta-losses."""

    params: Params
    prequential: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)


FIELDS = ("support_x", "support_y", "query_x", "query_y")


def _stack(tasks: list[TaskBatch]) -> TaskBatch:
    """One batch of the given single-or-multi-task batches (same sizes)."""
    return TaskBatch(*(torch.cat([getattr(t, name) for t in tasks]) for name in FIELDS))


def _pick(candidates: TaskBatch, index: int) -> TaskBatch:
    if not 0 <= index < candidates.num_tasks:
        raise ConfigError(f"select chose candidate {index} of {candidates.num_tasks}",
                          "return an index into the arriving batch of candidates")
    return TaskBatch(*(getattr(candidates, name)[index:index + 1] for name in FIELDS))


def online_meta_learning(algorithm, params: Params, arrivals: Iterable[TaskBatch], *, lr: float,
                         score: Callable[[Params, TaskBatch], torch.Tensor], replay: int = 0,
                         generator: torch.Generator | None = None,
                         callback: Callable[[int, Params], None] | None = None, progress: bool = True,
                         total: int | None = None,
                         select: Callable[[Params, TaskBatch], int] | None = None) -> OnlineRun:
    """Run the protocol of the module docstring with Adam (step ``lr``) on ``params`` (updated in
    place and returned). ``score(params, batch)`` gives one score per task of ``batch`` for the
    current meta-parameters; ``callback(t, params)`` runs after the t-th update; ``select`` makes
    the run active (see the module docstring)."""
    if int(replay) != replay or replay < 0:
        raise ConfigError(f"replay must be an integer >= 0, got {replay}", "0 (no revisiting) or e.g. 15")
    if replay and generator is None:
        raise ConfigError("replaying past tasks draws them at random", "pass generator=torch.Generator()...")
    params = {k: v.detach().clone() for k, v in params.items()}
    optimizer = torch.optim.Adam(list(params.values()), lr=lr)
    run, seen = OnlineRun(params), []
    bar = Progress(total or 0, "online meta-learning", progress and total is not None)
    for t, arrival in enumerate(arrivals, start=1):
        if select is not None:
            arrival = _pick(arrival, select(params, arrival))
        with torch.no_grad():
            run.prequential.extend(float(s) for s in score(params, arrival))
        batch = arrival
        if replay and seen:
            picks = torch.randint(len(seen), (replay,), generator=generator).tolist()
            batch = _stack([arrival, *(seen[i] for i in picks)])
        seen.append(arrival)
        result = algorithm.compute(params, batch)
        if not all_finite(result.grad):
            raise NonFiniteError(f"the meta-gradient of arrival {t} is not finite",
                                 "lower the meta step size lr or the algorithm's inner step size")
        for name, p in params.items():
            p.grad = result.grad[name]
        optimizer.step()
        run.losses.append(float(result.task_losses.mean()))
        bar.update(loss=f"{run.losses[-1]:.4f}")
        if callback is not None:
            callback(t, params)
    bar.close()
    return run


def held_out_checks(score: Callable[[Params], torch.Tensor], params: Params, arrivals: int, checks: int,
                    unit: str) -> tuple[list[dict], Callable[[int, Params], None]]:
    """(curve, callback) for watching a run on held-out tasks: the curve starts with the summary of
    ``score(params)`` (one score per held-out task) before any arrival, and ``callback`` — the
    ``callback`` of :func:`online_meta_learning` — appends it after every ``arrivals``/``checks``
    arrivals, each entry {``unit``: arrivals so far, mean, ci95, …}."""
    from innerloop.engine.stats import summarize

    due = {round(arrivals * (i + 1) / checks) for i in range(checks)}
    curve = [{unit: 0, **summarize(score(params))}]

    def check(t: int, current: Params) -> None:
        if t in due:
            curve.append({unit: t, **summarize(score(current))})

    return curve, check
