"""``innerloop experiment uabs-trajectory``: continual meta-RL for an aerial base station's flight
over changing traffic (monograph §7.1.2: "in order to enable UABS to quickly adapt to new traffic
patterns, the work [138] developed a meta-learning solution for RL that does not require
revisiting the previous environments").

Traffic patterns of the ``aerial-base-station`` family (a platoon on a road of random position and
direction; the UABS observes its position and the time, not the road) arrive one at a time, the
same sequence for every method. Each arrival is first served — the current meta-policy takes
``INNER_STEPS`` policy-gradient steps (α = ``INNER_LR``) on ``SHOTS`` episodes and its mean return
on ``QUERIES`` fresh episodes is the prequential score — and then learned from by one Adam step
(``OUTER_LR``) on its meta-gradient (:func:`~innerloop.engine.online.online_meta_learning`):

* ``maml`` and ``fomaml`` — no revisiting: the meta-gradient of the arriving pattern alone, as in
  [138];
* ``fomaml-replay`` — follow-the-meta-leader style: the arrival and ``REPLAY`` stored patterns per
  step. In RL this means flying the old traffic patterns again (the episodes are re-rolled with
  the current policy), which a deployed UABS cannot do: the reference that no revisiting is
  measured against;
* ``joint`` — one policy trained online on the arrivals' returns without an inner loop (MAML with
  0 inner steps), adapted like the others when it serves.

Every ``iters``/``CHECKS`` arrivals each method is also scored on ``tasks`` held-out patterns after
``INNER_STEPS`` steps, and at the end after 0…``STEPS`` steps, against a random start adapted the
same way ("scratch") and the trajectory planned with the road known
(:meth:`~innerloop.engine.rl_environments.AerialCoverage.best_returns`); the final held-out
returns are also paired against revisiting's on the same roads and episodes. Writes
``uabs_trajectory.json`` and ``uabs_trajectory.png``.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import torch

from innerloop.engine.config import TrainConfig
from innerloop.engine.errors import ConfigError
from innerloop.engine.params import Params, expand_to_tasks
from innerloop.engine.policy_adaptation import adapt_policy
from innerloop.engine.rundir import atomic_write_json
from innerloop.engine.stats import summarize
from innerloop.engine.tasks import TaskBatch, derive_seed, generator_for

REPLAY, REVISITING = 15, "fomaml-replay"
METHODS: dict[str, dict[str, Any]] = {"maml": {"algo": "maml", "replay": 0}, "fomaml": {"algo": "fomaml", "replay": 0},
                                      REVISITING: {"algo": "fomaml", "replay": REPLAY},
                                      "joint": {"algo": "maml", "replay": 0, "inner_steps": 0}}
SHOTS = QUERIES = 20
HORIZON, HIDDEN, INNER_LR, INNER_STEPS, OUTER_LR, STEPS, CHECKS, PATHS = 20, (64, 64), 0.0005, 2, 0.001, 3, 10, 3


def method_config(method: str, seed: int) -> TrainConfig:
    spec = METHODS[method]
    return TrainConfig(algo=spec["algo"], task="aerial-base-station", shots=SHOTS, queries=QUERIES, hidden=HIDDEN,
                       outer_lr=OUTER_LR, seed=seed, inner_lr=INNER_LR, task_options={"horizon": HORIZON},
                       inner_steps=spec.get("inner_steps", INNER_STEPS), dtype="float64")


def held_out(family, tasks: int, seed: int) -> TaskBatch:
    """The held-out traffic patterns every method is scored on."""
    return family.split_view("meta-test").sample(tasks, generator_for(seed, "uabs/test")).to(torch.float64, "cpu")


def arrivals(family, seed: int):
    """The endless, seeded sequence of arriving traffic patterns (the same for every method)."""
    stream = family.stream("meta-train", seed)
    while True:
        yield stream.next(1)


def served_return(model, params: Params, batch: TaskBatch) -> torch.Tensor:
    """The mean return [B] of each pattern of ``batch`` after ``INNER_STEPS`` steps from ``params``."""
    return adapt_policy(model, expand_to_tasks(params, batch.num_tasks), batch, INNER_LR, INNER_STEPS).returns[-1]


def _run(args: tuple[str, int, int, int]) -> dict[str, Any]:
    """One method's online run (a worker process)."""
    from innerloop.engine import build
    from innerloop.engine.online import held_out_checks, online_meta_learning

    torch.set_num_threads(1)
    method, iters, tasks, seed = args
    config = method_config(method, seed)
    family = build.family(config)
    model, backend = build.model(config, family), build.backend(config)
    algorithm = build.algorithm(config, model, backend)
    params = algorithm.init_params(generator_for(seed, "init"), backend.dtype, backend.device)
    test = held_out(family, tasks, seed)
    curve, check = held_out_checks(lambda p: served_return(model, p, test), params, iters, CHECKS, "patterns")
    began = time.perf_counter()
    run = online_meta_learning(algorithm, params, islice(arrivals(family, seed), iters), lr=OUTER_LR,
                               score=lambda p, b: served_return(model, p, b), replay=METHODS[method]["replay"],
                               generator=generator_for(seed, "uabs/replay"), callback=check, progress=False)
    final = adapt_policy(model, expand_to_tasks(run.params, tasks), test, INNER_LR, STEPS, PATHS)
    return {"method": method, "prequential": run.prequential, "held_out": curve,
            "returns": final.returns.tolist(), "paths": final.paths.tolist(), "seconds": time.perf_counter() - began}


def _scratch(family, tasks: int, seed: int) -> dict[str, torch.Tensor]:
    from innerloop import backends
    from innerloop.engine import build
    from innerloop.engine.baselines import random_inits

    config = method_config("fomaml", seed)
    model = build.model(config, family)
    starts = random_inits(model, tasks, derive_seed(seed, "uabs/scratch"), backends.get("cpu", dtype=torch.float64))
    scored = adapt_policy(model, starts, held_out(family, tasks, seed), INNER_LR, STEPS, PATHS)
    return {"returns": scored.returns, "paths": scored.paths}


def _steps_rows(returns: torch.Tensor) -> list[dict[str, Any]]:
    return [{"steps": n, "return": summarize(r)} for n, r in enumerate(returns)]


def uabs_trajectory(out: str | Path, iters: int = 1500, tasks: int = 200, algorithms: list[str] | None = None,
                    seed: int = 0, jobs: int = 1) -> dict[str, Any]:
    """Run the experiment (see the module docstring); returns the JSON document it writes."""
    from innerloop.engine import build
    from innerloop.engine.experiment_setup import prepare
    from innerloop.engine.uabs_plots import plot

    methods, out = prepare("uabs-trajectory method", algorithms, list(METHODS), jobs, out, tasks=tasks)
    if int(iters) != iters or iters < CHECKS:
        raise ConfigError(f"need --iters >= {CHECKS} arriving traffic patterns, got {iters}", "e.g. --iters 1500")
    family = build.family(method_config("fomaml", seed))
    test = held_out(family, tasks, seed)
    roads = test.query_y[:, 0]
    stream_roads = torch.cat([b.query_y[:, 0] for b in islice(arrivals(family, seed), iters)]).to(torch.float64)
    planned, stream_planned = family.best_returns(roads), family.best_returns(stream_roads)
    scratch = _scratch(family, tasks, seed)
    rows: dict[str, Any] = {}
    adapted: dict[str, torch.Tensor] = {}  # held-out returns after INNER_STEPS steps, for paired differences
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for row in pool.map(_run, [(m, iters, tasks, seed) for m in methods]):
            prequential = torch.tensor(row["prequential"], dtype=torch.float64)
            returns = torch.tensor(row["returns"], dtype=torch.float64)
            adapted[row["method"]] = returns[INNER_STEPS]
            rows[row["method"]] = {
                "replay": METHODS[row["method"]]["replay"], "prequential": row["prequential"],
                "prequential_mean": summarize(prequential), "last_quarter": summarize(prequential[-(iters // 4):]),
                "planned_minus_last_quarter": summarize((stream_planned - prequential)[-(iters // 4):]),
                "held_out": row["held_out"], "adaptation": _steps_rows(returns),
                "planned_minus_adapted": summarize(planned - returns[INNER_STEPS]), "paths": row["paths"],
                "seconds": row["seconds"]}
            print(f"[uabs-trajectory] {row['method']:<13} prequential return {float(prequential.mean()):.1f} (last "
                  f"quarter {float(prequential[-(iters // 4):].mean()):.1f}); held-out after 0…{STEPS} steps: "
                  + " ".join(f"{float(r):.1f}" for r in returns.mean(1)) + f"  ({row['seconds']:.0f}s)", flush=True)
    document: dict[str, Any] = {
        "experiment": "uabs-trajectory", "task_options": family.config(), "patterns": iters, "held_out_patterns": tasks,
        "seed": seed, "hidden": list(HIDDEN), "inner_lr": INNER_LR, "inner_steps": INNER_STEPS, "outer_lr": OUTER_LR,
        "steps": STEPS, "rows": rows, "scratch": {"adaptation": _steps_rows(scratch["returns"]),
                                                   "paths": scratch["paths"].tolist()},
        "planned": {"held_out": summarize(planned), "stream": summarize(stream_planned)},
        "example_roads": roads[:PATHS].tolist(),
    }
    if REVISITING in adapted:  # paired over the same held-out roads and episodes
        document["minus_revisiting"] = {m: summarize(r - adapted[REVISITING]) for m, r in adapted.items()
                                        if m != REVISITING}
    atomic_write_json(out / "uabs_trajectory.json", document)
    plot(document, family.environment(), out / "uabs_trajectory.png")
    return document
