"""Reproducible multi-run experiments behind ``innerloop experiment NAME``.

* ``algorithm-table`` — every gradient-lens algorithm meta-trained on ``sinusoid`` at K = 5 and
  K = 10 support points with its default hyperparameters, then evaluated on held-out tasks
  after its own number of inner steps against the random-init and joint-learning baselines
  (fine-tuned with the same number of steps at α = 0.01), with training and evaluation wall
  times. Writes ``algorithm_table.json``, ``algorithm_table.png`` and ``algorithm_table.md``.

Each configuration is an ordinary run directory under ``OUT/runs/``; runs run in ``jobs``
worker processes (one torch thread each), so wall times are per run, not per experiment.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from innerloop.engine.errors import ConfigError, unknown_name

BASELINE_LR = 0.01


def gradient_algorithms() -> list[str]:
    from innerloop.engine.algorithms import ALGORITHMS

    return sorted(name for name, cls in ALGORITHMS.items() if cls.lens == "gradient")


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
                         eval_every=max(1, iters // 10), checkpoint_every=iters, eval_tasks=100)
    run_dir = Path(out) / "runs" / f"{algo}-K{shots}"
    start = time.perf_counter()
    train(config, run_dir, progress=False)
    trained = time.perf_counter() - start
    steps = build.inner_steps(config)
    result = evaluate_run(run_dir, tasks=tasks, steps=[steps], joint_iters=min(iters, 2000), progress=False,
                          baseline_lr=BASELINE_LR)
    key = str(steps)
    row = {"algo": algo, "shots": shots, "inner_steps": steps, "inner_lr": result["inner_lr"],
           "mse": result["steps"][key], "random_init": result["baselines"]["random_init"][key],
           "joint": result["baselines"]["joint"][key], "train_seconds": trained,
           "eval_seconds": time.perf_counter() - start - trained, "run_dir": str(run_dir)}
    best = min(row["random_init"]["mean"] - row["random_init"]["ci95"], row["joint"]["mean"] - row["joint"]["ci95"])
    row["clearly_below_baselines"] = row["mse"]["mean"] + row["mse"]["ci95"] < best
    return row


def algorithm_table(out: str | Path, iters: int = 2000, shots: tuple[int, ...] = (5, 10), tasks: int = 500,
                    algorithms: list[str] | None = None, seed: int = 0, jobs: int = 1) -> dict[str, Any]:
    """Run the table (see module docstring); returns the JSON document it writes."""
    known = gradient_algorithms()
    algorithms = algorithms or known
    for name in algorithms:
        if name not in known:
            raise unknown_name("gradient-lens algorithm", name, known)
    if int(jobs) != jobs or jobs < 1:
        raise ConfigError(f"jobs must be a positive integer, got {jobs}", "e.g. --jobs 2")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    work = [(algo, k, iters, tasks, seed, str(out)) for algo in algorithms for k in shots]
    rows = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for row in pool.map(_table_run, work):
            print(f"[algorithm-table] {row['algo']:<11} K={row['shots']:<3} MSE {row['mse']['mean']:.3f} ± "
                  f"{row['mse']['ci95']:.3f}  (random {row['random_init']['mean']:.2f}, joint "
                  f"{row['joint']['mean']:.2f})  train {row['train_seconds']:.0f}s", flush=True)
            rows.append(row)
    document = {"experiment": "algorithm-table", "task": "sinusoid", "iters": iters, "tasks": tasks, "seed": seed,
                "baseline_lr": BASELINE_LR, "rows": rows}
    (out / "algorithm_table.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "algorithm_table.md").write_text(table_markdown(document) + "\n")
    _table_plot(document, out / "algorithm_table.png")
    return document


def table_markdown(document: dict[str, Any]) -> str:
    """The table as Markdown: one line per algorithm, MSE ± CI per K, baselines, wall time."""
    shots = sorted({r["shots"] for r in document["rows"]})
    by = {(r["algo"], r["shots"]): r for r in document["rows"]}
    head = "| algorithm | N steps | " + " | ".join(
        f"MSE K={k} | random K={k} | joint K={k} | train s K={k}" for k in shots) + " |"
    lines = [head, "|" + "---|" * (2 + 4 * len(shots))]
    for algo in sorted({r["algo"] for r in document["rows"]}):
        cells = [algo, str(by[(algo, shots[0])]["inner_steps"])]
        for k in shots:
            r = by[(algo, k)]
            mark = "**" if r["clearly_below_baselines"] else ""
            cells += [f"{mark}{r['mse']['mean']:.3f} ± {r['mse']['ci95']:.3f}{mark}",
                      f"{r['random_init']['mean']:.2f} ± {r['random_init']['ci95']:.2f}",
                      f"{r['joint']['mean']:.2f} ± {r['joint']['ci95']:.2f}", f"{r['train_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _table_plot(document: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = document["rows"]
    algos = sorted({r["algo"] for r in rows})
    shots = sorted({r["shots"] for r in rows})
    by = {(r["algo"], r["shots"]): r for r in rows}
    fig, axes = plt.subplots(1, len(shots), figsize=(6 * len(shots), 4), squeeze=False, sharey=True)
    for ax, k in zip(axes[0], shots):
        x = np.arange(len(algos))
        for offset, (key, label, colour) in enumerate(
                (("mse", "meta-learned", "tab:red"), ("random_init", "random init", "tab:gray"),
                 ("joint", "joint learning", "tab:blue"))):
            means = [by[(a, k)][key]["mean"] for a in algos]
            cis = [by[(a, k)][key]["ci95"] for a in algos]
            ax.bar(x + (offset - 1) * 0.27, means, 0.27, yerr=cis, capsize=2, color=colour, label=label)
        ax.set_xticks(x, algos, rotation=45, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set(title=f"sinusoid, K = {k}: held-out MSE after each algorithm's N steps", ylabel="query MSE")
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


EXPERIMENTS = {"algorithm-table": algorithm_table}
