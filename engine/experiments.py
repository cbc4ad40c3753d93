"""Reproducible multi-run experiments behind ``innerloop experiment NAME``.

* ``algorithm-table`` — every gradient-lens algorithm meta-trained on ``sinusoid`` at K = 5 and
  K = 10 support points with its default hyperparameters, then evaluated on held-out tasks
  after its own number of inner steps against the random-init and joint-learning baselines
  (fine-tuned with the same number of steps at α = 0.01), with training and evaluation wall
  times. Writes ``algorithm_table.json``, ``algorithm_table.png`` and ``algorithm_table.md``.
  With ``--algos`` into an OUT that holds a table made with the same iters, tasks and seed, the
  other algorithms' rows are kept; the re-run configurations' run directories start afresh.

* ``figure-2.4`` — monograph Figure 2.4 (b, c): the best held-out test loss over meta-training
  vs the number of data per task N (K fixed) and vs the number of meta-training tasks K (N
  fixed), for joint learning, MAML, iMAML and BMAML on sinusoid with a finite meta-training set
  (``--train-tasks``); each task's N points are split evenly into support and query. "Best" is
  the minimum over the validation checkpoints (every iters/10) of the held-out MSE after
  adaptation (joint learning: fine-tuned with MAML's 5 steps at α = 0.01); all four use a tanh
  MLP (40, 40) so that iMAML's inner problem is smooth. Writes
  ``figure_2_4.json`` and ``figure_2_4.png`` and reports whether BMAML leads at the smallest N and K.

Each configuration is an ordinary run directory under ``OUT/runs/``; runs run in ``jobs``
worker processes (one torch thread each), so wall times are per run, not per experiment.
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from innerloop.engine.channel_coding import channel_coding
from innerloop.engine.channel_prediction import channel_prediction
from innerloop.engine.demodulation import demodulation
from innerloop.engine.demodulation_devices import demodulation_devices
from innerloop.engine.experiment_setup import prepare
from innerloop.engine.meta_rl_experiment import meta_rl
from innerloop.engine.model_free_link_experiment import model_free_link
from innerloop.engine.neuromorphic import neuromorphic
from innerloop.engine.online_demodulation import online_demodulation
from innerloop.engine.power_control import power_control
from innerloop.engine.quantum_bayes import quantum_bayes
from innerloop.engine.rundir import atomic_write_json, atomic_write_text
from innerloop.engine.stats import nan_for_null
from innerloop.engine.theory_experiment import theory
from innerloop.engine.uabs_experiment import uabs_trajectory
from innerloop.engine.viterbi_equalization import viterbi_equalization

BASELINE_LR = 0.01

# Settings that differ from an algorithm's defaults in the table, with the reason (README repeats them).
TABLE_SETTINGS: dict[str, dict[str, Any]] = {
    # the implicit gradient assumes a smooth inner problem; with ReLU the prox solve stalls
    "imaml": {"activation": "tanh"},
    # same for the proximal point: with ReLU the accelerated prox solve diverged after ~1100 iterations
    "prox-maml": {"activation": "tanh"},
    # zeroth-order estimates cost one antithetic pair per parameter for an accurate gradient: a 16,16
    # network (321 parameters), 321 orthogonal antithetic directions, five ES steps of α = 0.02
    "es-maml": {"hidden": (16, 16), "inner_lr": 0.02, "inner_steps": 5, "algo_options": {"directions": 321}},
}


def gradient_algorithms() -> list[str]:
    from innerloop.engine.algorithms import ALGORITHMS

    return sorted(name for name, cls in ALGORITHMS.items() if cls.lens == "gradient")


class _guarded:
    """Run ``fn`` and turn a user-facing innerloop error into a row with an ``error`` entry, so one
    diverging run is reported in the table instead of aborting the experiment."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def __call__(self, args: tuple) -> dict[str, Any]:
        from innerloop.engine.errors import InnerloopError

        try:
            return self.fn(args)
        except InnerloopError as err:
            return {"algo": args[0], "shots": args[1], "error": str(err).splitlines()[0]}


def _table_run(args: tuple[str, int, int, int, int, str]) -> dict[str, Any]:
    """Train and evaluate one (algorithm, shots) configuration in a worker process."""
    import torch

    from innerloop.engine import build
    from innerloop.engine.config import TrainConfig
    from innerloop.engine.evaluation import evaluate_run
    from innerloop.engine.trainer import train

    torch.set_num_threads(1)
    algo, shots, iters, tasks, seed, out = args
    config = TrainConfig(algo=algo, task="sinusoid", shots=shots, iters=iters, seed=seed,
                         eval_every=max(1, iters // 10), checkpoint_every=iters, eval_tasks=100,
                         **TABLE_SETTINGS.get(algo, {}))
    run_dir = Path(out) / "runs" / f"{algo}-K{shots}"
    if run_dir.is_dir():  # the table owns OUT/runs: a re-run of this configuration starts afresh
        shutil.rmtree(run_dir)
    start = time.perf_counter()
    train(config, run_dir, progress=False)
    trained = time.perf_counter() - start
    steps = build.inner_steps(config)
    result = evaluate_run(run_dir, tasks=tasks, steps=[steps], joint_iters=min(iters, 2000), progress=False,
                          baseline_lr=BASELINE_LR)
    key = str(steps)
    row = {"algo": algo, "shots": shots, "inner_steps": steps, "inner_lr": result["inner_lr"],
           "settings": TABLE_SETTINGS.get(algo, {}),
           "mse": result["steps"][key], "random_init": result["baselines"]["random_init"][key],
           "joint": result["baselines"]["joint"][key], "train_seconds": trained,
           "eval_seconds": time.perf_counter() - start - trained, "run_dir": str(run_dir)}
    best = min(row["random_init"]["mean"] - row["random_init"]["ci95"], row["joint"]["mean"] - row["joint"]["ci95"])
    row["clearly_below_baselines"] = row["mse"]["mean"] + row["mse"]["ci95"] < best
    return row


def algorithm_table(out: str | Path, iters: int = 2000, shots: tuple[int, ...] = (5, 10), tasks: int = 500,
                    algorithms: list[str] | None = None, seed: int = 0, jobs: int = 1) -> dict[str, Any]:
    """Run the table (see module docstring); returns the JSON document it writes."""
    algorithms, out = prepare("gradient-lens algorithm", algorithms, gradient_algorithms(), jobs, out)
    work = [(algo, k, iters, tasks, seed, str(out)) for algo in algorithms for k in shots]
    rows = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for row in pool.map(_guarded(_table_run), work):
            if "error" in row:
                print(f"[algorithm-table] {row['algo']} K={row['shots']} FAILED: {row['error']}", flush=True)
                rows.append(row)
                continue
            print(f"[algorithm-table] {row['algo']:<11} K={row['shots']:<3} MSE {row['mse']['mean']:.3f} ± "
                  f"{row['mse']['ci95']:.3f}  (random {row['random_init']['mean']:.2f}, joint "
                  f"{row['joint']['mean']:.2f})  train {row['train_seconds']:.0f}s", flush=True)
            rows.append(row)
    document = {"experiment": "algorithm-table", "task": "sinusoid", "iters": iters, "tasks": tasks, "seed": seed,
                "baseline_lr": BASELINE_LR}
    settings = {"iters": iters, "tasks": tasks, "seed": seed}
    document["rows"] = _kept_rows(out / "algorithm_table.json", algorithms, shots, settings) + rows
    atomic_write_json(out / "algorithm_table.json", document)
    atomic_write_text(out / "algorithm_table.md", table_markdown(document) + "\n")
    if any("error" not in r for r in document["rows"]):
        _table_plot(document, out / "algorithm_table.png")
    return document


def _kept_rows(previous: Path, rerun: list[str], shots: tuple[int, ...], settings: dict[str, int]
               ) -> list[dict[str, Any]]:
    """The rows of an existing table in OUT for algorithms not re-run now, so that one algorithm
    can be re-run alone into the full table; only a table made with the same iters, tasks and seed
    is merged (another one is replaced, with a note)."""
    if not previous.is_file():
        return []
    document = json.loads(previous.read_text(), object_hook=nan_for_null)
    differs = {k: document.get(k) for k, v in settings.items() if document.get(k) != v}
    if differs:
        print(f"[algorithm-table] not merging the rows of {previous}: made with {differs}", flush=True)
        return []
    kept = [r for r in document.get("rows", []) if r["algo"] not in rerun and r["shots"] in shots]
    if kept:
        print(f"[algorithm-table] kept {len(kept)} rows of {sorted({r['algo'] for r in kept})} from {previous}",
              flush=True)
    return kept


def table_markdown(document: dict[str, Any]) -> str:
    """The table as Markdown: one line per algorithm, MSE ± CI per K, baselines, wall time."""
    shots = sorted({r["shots"] for r in document["rows"]})
    ok = [r for r in document["rows"] if "error" not in r]
    failed = [r for r in document["rows"] if "error" in r]
    head = "| algorithm | N steps | " + " | ".join(
        f"MSE K={k} | random K={k} | joint K={k} | train s K={k}" for k in shots) + " |"
    lines = [head, "|" + "---|" * (2 + 4 * len(shots))]
    by = {(r["algo"], r["shots"]): r for r in ok}
    for algo in sorted({r["algo"] for r in ok}):
        steps = next(by[(algo, k)]["inner_steps"] for k in shots if (algo, k) in by)
        cells = [algo, str(steps)]
        for k in shots:
            if (algo, k) not in by:
                cells += ["failed", "", "", ""]
                continue
            r = by[(algo, k)]
            mark = "**" if r["clearly_below_baselines"] else ""
            cells += [f"{mark}{r['mse']['mean']:.3f} ± {r['mse']['ci95']:.3f}{mark}",
                      f"{r['random_init']['mean']:.2f} ± {r['random_init']['ci95']:.2f}",
                      f"{r['joint']['mean']:.2f} ± {r['joint']['ci95']:.2f}", f"{r['train_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [f"\n{r['algo']} K={r['shots']} failed: {r['error']}" for r in failed]
    return "\n".join(lines)


def _table_plot(document: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [r for r in document["rows"] if "error" not in r]
    algos = sorted({r["algo"] for r in rows})
    shots = sorted({r["shots"] for r in rows})
    by = {(r["algo"], r["shots"]): r for r in rows}
    fig, axes = plt.subplots(1, len(shots), figsize=(6 * len(shots), 4), squeeze=False, sharey=True)
    for ax, k in zip(axes[0], shots):
        x = np.arange(len(algos))
        for offset, (key, label, colour) in enumerate(
                (("mse", "meta-learned", "tab:red"), ("random_init", "random init", "tab:gray"),
                 ("joint", "joint learning", "tab:blue"))):
            means = [by[(a, k)][key]["mean"] if (a, k) in by else np.nan for a in algos]
            cis = [by[(a, k)][key]["ci95"] if (a, k) in by else 0 for a in algos]
            ax.bar(x + (offset - 1) * 0.27, means, 0.27, yerr=cis, capsize=2, color=colour, label=label)
        ax.set_xticks(x, algos, rotation=45, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set(title=f"sinusoid, K = {k}: held-out MSE after each algorithm's N steps", ylabel="query MSE")
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


FIGURE_METHODS = ("joint", "maml", "imaml", "bmaml")
FIGURE_ACTIVATION = "tanh"  # one architecture for all four; iMAML's implicit gradient needs a smooth inner problem


def _figure_run(args: tuple[str, int, int, int, int, int, str]) -> dict[str, Any]:
    """Best held-out loss of one method at N data per task and K meta-training tasks."""
    import torch

    from innerloop.engine import build
    from innerloop.engine.baselines import finetune_loss, train_joint
    from innerloop.engine.config import TrainConfig
    from innerloop.engine.learner import Learner
    from innerloop.engine.params import expand_to_tasks
    from innerloop.engine.rundir import RunDirectory
    from innerloop.engine.trainer import train

    torch.set_num_threads(1)
    method, data, count, iters, tasks, seed, out = args
    shots, queries = data // 2, data - data // 2
    config = TrainConfig(algo="maml" if method == "joint" else method, task="sinusoid", shots=shots, queries=queries,
                         train_tasks=count, iters=iters, seed=seed, eval_every=max(1, iters // 10),
                         checkpoint_every=iters, eval_tasks=tasks, activation=FIGURE_ACTIVATION)
    run_dir = Path(out) / "runs" / f"{method}-N{data}-K{count}"
    start = time.perf_counter()
    if method == "joint":
        family, backend = build.family(config), build.backend(config)
        model = build.model(config, family)
        learner = Learner(model, family.loss)
        val = family.stream("meta-val", seed).next(tasks)
        curve: list[float] = []

        def validate(it: int, params) -> None:
            if it % config.eval_every == 0:
                losses, _ = finetune_loss(backend, learner, expand_to_tasks(params, tasks), val, BASELINE_LR, 5)
                curve.append(float(losses.mean()))

        train_joint(family, model, backend, iters=iters, meta_batch=config.meta_batch, lr=config.outer_lr,
                    seed=seed, progress=False, callback=validate)
    else:
        train(config, run_dir, progress=False)
        curve = [r["val_loss"] for r in RunDirectory(run_dir).read_metrics() if "val_loss" in r]
    return {"method": method, "data": data, "tasks": count, "best": min(curve), "curve": curve,
            "seconds": time.perf_counter() - start}


def figure_2_4(out: str | Path, iters: int = 1000, tasks: int = 200, algorithms: list[str] | None = None,
               seed: int = 0, jobs: int = 1, data: tuple[int, ...] = (4, 10, 20),
               task_counts: tuple[int, ...] = (4, 16, 64), fixed_data: int = 10, fixed_tasks: int = 16
               ) -> dict[str, Any]:
    """Run the Figure 2.4 sweep (see module docstring); returns the JSON document it writes."""
    methods, out = prepare("Figure 2.4 method", algorithms, list(FIGURE_METHODS), jobs, out)
    grid = sorted({(n, fixed_tasks) for n in data} | {(fixed_data, k) for k in task_counts})
    work = [(m, n, k, iters, tasks, seed, str(out)) for n, k in grid for m in methods]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        rows = []
        for row in pool.map(_figure_run, work):
            print(f"[figure-2.4] {row['method']:<6} N={row['data']:<3} K={row['tasks']:<4} best held-out MSE "
                  f"{row['best']:.3f}  ({row['seconds']:.0f}s)", flush=True)
            rows.append(row)
    best = {(r["method"], r["data"], r["tasks"]): r["best"] for r in rows}

    def leader(n: int, k: int) -> str:
        return min(methods, key=lambda m: best[(m, n, k)])

    document = {"experiment": "figure-2.4", "task": "sinusoid", "iters": iters, "val_tasks": tasks, "seed": seed,
                "fixed_data": fixed_data, "fixed_tasks": fixed_tasks, "rows": rows,
                "leader_smallest_data": leader(min(data), fixed_tasks),
                "leader_smallest_tasks": leader(fixed_data, min(task_counts))}
    document["bmaml_leads_when_small"] = (document["leader_smallest_data"] == "bmaml"
                                          and document["leader_smallest_tasks"] == "bmaml")
    atomic_write_json(out / "figure_2_4.json", document)
    _figure_plot(document, methods, data, task_counts, out / "figure_2_4.png")
    return document


def _figure_plot(document, methods, data, task_counts, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = {(r["method"], r["data"], r["tasks"]): r["best"] for r in document["rows"]}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for m in methods:
        axes[0].plot(data, [best[(m, n, document["fixed_tasks"])] for n in data], marker="o", label=m)
        axes[1].plot(task_counts, [best[(m, document["fixed_data"], k)] for k in task_counts], marker="o", label=m)
    axes[0].set(xlabel="data per task N", ylabel="best held-out MSE", title=f"(b) K = {document['fixed_tasks']} tasks")
    axes[1].set(xlabel="meta-training tasks K", title=f"(c) N = {document['fixed_data']} data per task")
    axes[1].set_xscale("log")
    axes[1].set_xticks(task_counts, [str(k) for k in task_counts])
    axes[1].minorticks_off()
    for ax in axes:
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("monograph Figure 2.4 on sinusoid (joint learning, MAML, iMAML, BMAML)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


EXPERIMENTS = {"algorithm-table": algorithm_table, "figure-2.4": figure_2_4, "neuromorphic": neuromorphic,
               "quantum-bayes": quantum_bayes, "demodulation": demodulation,
               "demodulation-devices": demodulation_devices, "online-demodulation": online_demodulation,
               "channel-coding": channel_coding, "model-free-link": model_free_link, "meta-rl": meta_rl,
               "uabs-trajectory": uabs_trajectory,
               "channel-prediction": channel_prediction, "power-control": power_control,
               "viterbi-equalization": viterbi_equalization, "theory": theory}
OUTPUTS = {"algorithm-table": "algorithm_table", "figure-2.4": "figure_2_4", "neuromorphic": "neuromorphic",
           "quantum-bayes": "quantum_bayes", "demodulation": "demodulation",
           "demodulation-devices": "demodulation_devices", "online-demodulation": "online_demodulation",
           "channel-coding": "channel_coding", "model-free-link": "model_free_link", "meta-rl": "meta_rl",
           "uabs-trajectory": "uabs_trajectory",
           "channel-prediction": "channel_prediction", "power-control": "power_control",
           "viterbi-equalization": "viterbi_equalization", "theory": "implicit-prior"}
