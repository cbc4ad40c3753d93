"""``innerloop experiment meta-rl``: meta-reinforcement learning on 2D navigation (monograph §7.1.2,
"minimizing the duration of the interactions with new tasks"; MAML's 2D navigation, the
monograph's [6]).

A task is an unobserved goal in [−0.5, 0.5]²; the learner is a Gaussian policy (mean MLP
``HIDDEN``, learned σ) over ``HORIZON``-step episodes (see
:class:`~innerloop.engine.navigation_policy.NavigationPolicy`), with normalized advantages. A
policy-gradient step has size α = ``INNER_LR`` and uses ``SHOTS`` episodes rolled out by the
current policy. The methods, all trained for ``iters`` iterations (Adam ``OUTER_LR``,
``META_BATCH`` goals per batch) with ``INNER_STEPS`` inner steps:

* ``maml`` — MAML, second order through the REINFORCE surrogate (the Hessian MAML-RL
  differentiates); ``maml-lvc`` — the same with the low-variance-curvature surrogate, whose
  Hessian adds the score outer products;
* ``fomaml`` — first-order MAML; ``reptile`` — Reptile (its steps use the support, then the
  query episodes);
* ``joint`` — one policy trained on the pooled goals (the "pretrained" baseline of [6]).

Every method is scored on the same ``tasks`` held-out goals by the mean return of ``QUERIES``
fresh episodes after 0…``STEPS`` policy-gradient steps on the goal's ``SHOTS`` support episodes,
against two references on the same goals: a random start adapted the same way ("scratch") and
the optimal return (each coordinate moves straight to the goal at the maximal speed: with
per-coordinate clipping no policy gets closer at any step). Writes ``meta_rl.json`` (returns,
paired differences against joint, mean-action paths) and ``meta_rl.png``.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from innerloop.engine.config import TrainConfig
from innerloop.engine.experiment_setup import prepare
from innerloop.engine.params import Params
from innerloop.engine.policy_adaptation import adapt_policy
from innerloop.engine.rundir import atomic_write_json
from innerloop.engine.stats import summarize
from innerloop.engine.tasks import generator_for

METHODS = ("maml", "maml-lvc", "fomaml", "reptile", "joint")
SHOTS = QUERIES = META_BATCH = 20
HORIZON, HIDDEN, INNER_LR, INNER_STEPS, OUTER_LR, STEPS, PATHS = 20, (64, 64), 0.0005, 2, 0.001, 3, 3


def _config(method: str, iters: int, seed: int) -> TrainConfig:
    algo = {"maml-lvc": "maml", "joint": "fomaml"}.get(method, method)  # joint only borrows family and model
    task_options = {"horizon": HORIZON, **({"estimator": "lvc"} if method == "maml-lvc" else {})}
    return TrainConfig(algo=algo, task="navigation-2d", shots=SHOTS, queries=QUERIES, hidden=HIDDEN,
                       meta_batch=META_BATCH, outer_lr=OUTER_LR, iters=iters, seed=seed, inner_lr=INNER_LR,
                       inner_steps=INNER_STEPS, task_options=task_options,
                       eval_every=max(1, iters // 5), checkpoint_every=iters, eval_tasks=50)


def held_out(family, tasks: int, seed: int):
    """The held-out goals and episodes every method is scored on."""
    return family.split_view("meta-test").sample(tasks, generator_for(seed, "meta-rl/test")).to(torch.float64, "cpu")


def adaptation(model, start: Params, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(returns [STEPS + 1, tasks], final squared distances to the goal [STEPS + 1, tasks], mean-action
    paths of the first ``PATHS`` tasks [STEPS + 1, PATHS, HORIZON, 2]) after 0…STEPS policy-gradient
    steps of α = ``INNER_LR`` from per-task parameters ``start``."""
    scored = adapt_policy(model, start, batch, INNER_LR, STEPS, PATHS)
    distances = ((scored.finals - batch.query_y.to(torch.float64)) ** 2).sum(-1).mean(-1)
    return scored.returns, distances, scored.paths


def _run(args: tuple[str, int, int, int, str]) -> dict[str, Any]:
    """Train one method and score its adaptation on the held-out goals (a worker process)."""
    from innerloop.engine.baselines import train_start
    from innerloop.engine.params import expand_to_tasks

    torch.set_num_threads(1)
    method, iters, tasks, seed, out = args
    config = _config(method, iters, seed)
    start = train_start(method, config, Path(out) / "runs" / method, meta_batch=META_BATCH, lr=OUTER_LR)
    batch = held_out(start.family, tasks, seed)
    returns, distances, paths = adaptation(start.algorithm.model, expand_to_tasks(start.params, tasks), batch)
    return {"method": method, "returns": returns.tolist(), "distances": distances.tolist(), "paths": paths.tolist(),
            "seconds": start.seconds}


def _scratch(family, model, batch, seed: int) -> dict[str, Any]:
    from innerloop import backends
    from innerloop.engine.baselines import random_inits

    starts = random_inits(model, batch.num_tasks, seed, backends.get("cpu", dtype=torch.float64))
    returns, distances, paths = adaptation(model, starts, batch)
    return {"returns": returns, "distances": distances, "paths": paths}


def _rows(returns: torch.Tensor, distances: torch.Tensor) -> list[dict[str, Any]]:
    return [{"steps": n, "return": summarize(r), "final_squared_distance": summarize(d)}
            for n, (r, d) in enumerate(zip(returns, distances))]


def meta_rl(out: str | Path, iters: int = 1000, tasks: int = 200, algorithms: list[str] | None = None,
            seed: int = 0, jobs: int = 1) -> dict[str, Any]:
    """Run the experiment (see the module docstring); returns the JSON document it writes."""
    from innerloop.engine import build
    from innerloop.engine.meta_rl_plots import plot

    methods, out = prepare("meta-rl method", algorithms, list(METHODS), jobs, out, tasks=tasks)
    config = _config("maml", iters, seed)
    family = build.family(config)
    batch = held_out(family, tasks, seed)
    model = build.model(config, family)
    scratch = _scratch(family, model, batch, seed)
    results: dict[str, dict[str, torch.Tensor]] = {}
    seconds = {}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for row in pool.map(_run, [(m, iters, tasks, seed, str(out)) for m in methods]):
            results[row["method"]] = {k: torch.tensor(row[k], dtype=torch.float64)
                                      for k in ("returns", "distances", "paths")}
            seconds[row["method"]] = row["seconds"]
            curve = results[row["method"]]["returns"].mean(1)
            print(f"[meta-rl] {row['method']:<9} return after 0…{STEPS} steps: "
                  + " ".join(f"{float(r):.2f}" for r in curve) + f" ({row['seconds']:.0f}s)", flush=True)
    goals = batch.query_y[:, 0]
    document: dict[str, Any] = {
        "experiment": "meta-rl", "task_options": family.config(), "iters": iters, "seed": seed,
        "held_out_goals": tasks, "hidden": list(HIDDEN), "inner_lr": INNER_LR, "outer_lr": OUTER_LR,
        "meta_batch": META_BATCH, "steps": STEPS, "seconds": seconds,
        "rows": {m: _rows(r["returns"], r["distances"]) for m, r in results.items()},
        "scratch": _rows(scratch["returns"], scratch["distances"]),
        "optimal_return": summarize(family.best_returns(goals)),
        "paths": {"goals": goals[:PATHS].tolist(), "scratch": scratch["paths"].tolist(),
                  **{m: r["paths"].tolist() for m, r in results.items()}},
    }
    if "joint" in results:  # paired over the same held-out goals and episodes
        document["minus_joint"] = {m: [summarize(d) for d in r["returns"] - results["joint"]["returns"]]
                                   for m, r in results.items() if m != "joint"}
    atomic_write_json(out / "meta_rl.json", document)
    plot(document, out / "meta_rl.png")
    return document
