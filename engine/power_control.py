"""``innerloop experiment power-control``: meta-learning power control for networks whose topology
changes every period (monograph §5.5, eqs. 5.26–5.33, Fig. 5.11; Nikoloska & Simeone [120]).

The learner is a REGNN (:class:`~innerloop.engine.regnn.REGNN`, features 16-16, 3 filter taps) on
the ``power-control`` family (5–10 links, 20 dB). For each number K ∈ ``PERIODS`` of meta-training
periods (a finite meta-training set of K topologies with ``SHOTS + QUERIES`` slots each):

* ``joint`` — one REGNN trained on the pooled slots of the K periods (eq. 5.28, as in Eisen &
  Ribeiro [133]) and used unchanged on a new period;
* ``fomaml`` and ``reptile`` — black-box meta-learning with one inner gradient step of size
  α = ``INNER_LR`` on the new period's ``SHOTS`` slots (eqs. 5.29–5.30);
* ``modular`` — modular meta-learning (eqs. 5.31–5.33): ``MODULES`` candidate filters per layer,
  the new period's assignment chosen by simulated annealing on its slots.

All are trained for ``iters`` iterations (Adam 0.003, ``min(K, 16)`` periods per batch) and scored
on ``tasks`` held-out periods (new topologies) by the sum-rate (eq. 5.26) on ``QUERIES`` fresh
slots after adapting on ``SHOTS`` slots; mean ± 95% CI over the periods, and each method's rate
minus joint learning's, paired over the same periods. References on the same slots: full power,
WMMSE (per slot, the full channel matrix, 100 iterations) and conventional learning (a REGNN
trained from a random start on the new period's ``SHOTS`` slots alone: ``CONVENTIONAL_STEPS``
SGD steps of 0.1). Writes ``power_control.json`` and ``power_control.png``.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from innerloop.engine.config import TrainConfig
from innerloop.engine.experiment_setup import prepare
from innerloop.engine.rundir import atomic_write_json
from innerloop.engine.stats import summarize
from innerloop.engine.tasks import generator_for

PERIODS = (1, 2, 4, 16, 64, 256)
METHODS = ("joint", "fomaml", "reptile", "modular")
SHOTS, QUERIES, HIDDEN, INNER_LR, OUTER_LR, MODULES = 10, 40, (16, 16), 0.03, 0.003, 4
CONVENTIONAL_STEPS, WMMSE_ITERATIONS = 200, 100


def _config(method: str, periods: int, iters: int, seed: int) -> TrainConfig:
    algo = "fomaml" if method == "joint" else method  # joint learning only borrows the family and model
    if method == "modular":
        options: dict[str, Any] = {"algo_options": {"modules": MODULES}}
    else:
        options = {"inner_lr": INNER_LR, "inner_steps": 1}
    return TrainConfig(algo=algo, task="power-control", shots=SHOTS, queries=QUERIES, train_tasks=periods,
                       hidden=HIDDEN, meta_batch=min(periods, 16), outer_lr=OUTER_LR, iters=iters, seed=seed,
                       eval_every=max(1, iters // 5), checkpoint_every=iters, eval_tasks=50, **options)


def held_out(family, tasks: int, seed: int):
    """The held-out periods every method is scored on (new topologies and slots)."""
    return family.split_view("meta-test").sample(tasks, generator_for(seed, "power-control/test"))


def _run(args: tuple[str, int, int, int, int, str]) -> dict[str, Any]:
    """Train one (method, K) configuration and score it on the held-out periods (a worker process):
    joint learning as is, the meta-learners after their own adaptation."""
    from innerloop.engine.baselines import train_start
    from innerloop.engine.learner import Learner
    from innerloop.engine.params import expand_to_tasks

    torch.set_num_threads(1)
    method, periods, iters, tasks, seed, out = args
    config = _config(method, periods, iters, seed)
    start = train_start(method, config, Path(out) / "runs" / f"{method}-K{periods}", meta_batch=config.meta_batch,
                        lr=OUTER_LR)
    batch = held_out(start.family, tasks, seed)
    algorithm = start.algorithm
    if method == "joint":
        learner = Learner(algorithm.model, algorithm.model.objective_name)
        losses = algorithm.backend.loss(learner, expand_to_tasks(start.params, tasks), batch.query_x, batch.query_y)
    else:
        losses = algorithm.evaluate(start.params, batch)
    return {"method": method, "periods": periods, "rate": (-losses.detach().double()).tolist(),
            "seconds": start.seconds}


def references(family, tasks: int, seed: int) -> dict[str, torch.Tensor]:
    """Per-period sum-rates on the held-out query slots: full power, WMMSE, conventional learning."""
    from innerloop import backends
    from innerloop.engine.baselines import random_inits
    from innerloop.engine.inner import sgd_trajectory
    from innerloop.engine.learner import Learner
    from innerloop.engine.regnn import sum_rate
    from innerloop.engine.wmmse import wmmse_powers

    batch = held_out(family, tasks, seed).to(torch.float64, "cpu")
    model = family.learner(HIDDEN, "relu")
    gains = model.graphs(batch.query_x)
    full = sum_rate(gains, batch.query_y, family.noise_power).mean(1)
    wmmse = sum_rate(gains, wmmse_powers(gains, family.noise_power, WMMSE_ITERATIONS), family.noise_power).mean(1)
    backend, learner = backends.get("cpu", dtype=torch.float64), Learner(model, model.objective_name)
    start = random_inits(model, tasks, seed, backend)
    trained = sgd_trajectory(backend, learner, start, batch.support_x, batch.support_y, 0.1, CONVENTIONAL_STEPS).final
    conventional = -backend.loss(learner, trained, batch.query_x, batch.query_y)
    return {"full-power": full, "wmmse": wmmse, "conventional": conventional}


def power_control(out: str | Path, iters: int = 1000, tasks: int = 200, algorithms: list[str] | None = None,
                  seed: int = 0, jobs: int = 1) -> dict[str, Any]:
    """Run the experiment (see the module docstring); returns the JSON document it writes."""
    from innerloop.engine import build
    from innerloop.engine.power_control_plots import plot

    methods, out = prepare("power-control method", algorithms, list(METHODS), jobs, out, tasks=tasks)
    family = build.family(_config("fomaml", PERIODS[0], iters, seed)).family
    reference = references(family, tasks, seed)
    work = [(m, k, iters, tasks, seed, str(out)) for k in PERIODS for m in methods]
    rates: dict[str, dict[int, torch.Tensor]] = {m: {} for m in methods}
    seconds = {}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for row in pool.map(_run, work):
            rates[row["method"]][row["periods"]] = torch.tensor(row["rate"], dtype=torch.float64)
            seconds[f"{row['method']}-K{row['periods']}"] = row["seconds"]
            print(f"[power-control] {row['method']:<8} K={row['periods']:<4} sum-rate "
                  f"{float(rates[row['method']][row['periods']].mean()):.3f} bit/slot ({row['seconds']:.0f}s)",
                  flush=True)
    rows = {m: {str(k): summarize(r) for k, r in by_k.items()} for m, by_k in rates.items()}
    document = {"experiment": "power-control", "task_options": family.config(), "iters": iters, "seed": seed,
                "held_out_periods": tasks, "periods": list(PERIODS), "shots": SHOTS, "queries": QUERIES,
                "hidden": list(HIDDEN), "inner_lr": INNER_LR, "outer_lr": OUTER_LR, "modules": MODULES,
                "conventional_steps": CONVENTIONAL_STEPS, "rows": rows, "seconds": seconds,
                "references": {name: summarize(r) for name, r in reference.items()}}
    if "joint" in rates:  # paired over the same held-out periods and slots
        document["minus_joint"] = {m: {str(k): summarize(r - rates["joint"][k]) for k, r in by_k.items()}
                                   for m, by_k in rates.items() if m != "joint"}
    atomic_write_json(out / "power_control.json", document)
    plot(document, out / "power_control.png")
    return document
