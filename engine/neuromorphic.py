"""``innerloop experiment neuromorphic``: emulated neuromorphic meta-learning (issue 7, monograph §6.1).

Spiking learners on DoubleMotif 5-way 1-shot, trained on the ``snn`` backend with local
three-factor inner loops, for several learning-rule variants and seeds:

* ``fomaml`` — all layers plastic, single-step hidden error (inner and outer loop);
* ``fomaml-readout-inner`` — only the output synapses plastic in the inner loop (the on-chip,
  SOEL-style regime); the outer loop trains every layer;
* ``fomaml-readout-only`` — readout-only in both loops (so the hidden layer is never trained);
* ``fomaml-feedback-alignment`` — hidden error through a fixed random feedback matrix;
* ``reptile`` — Reptile on the same three-factor steps;
* ``fomaml-recurrent`` — ``fomaml`` on a network whose hidden layer has lateral synapses
  (``recurrent=True``), trained by the same three-factor rule.

Each run is evaluated on held-out tasks (class pairs never seen in meta-training): query accuracy
after n = 0…20 inner steps from the meta-learned initialization and from a random one, and an
energy proxy per adaptation — synaptic operations, Σ over the forward passes of the N inner steps
of (presynaptic spikes × fan-out). Writes ``neuromorphic.json``, ``neuromorphic.png`` (accuracy vs
inner steps; synaptic operations) and ``spike_raster.png`` (a held-out task before/after adaptation).
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from innerloop.engine.config import TrainConfig  # noqa: E402
from innerloop.engine.experiment_setup import prepare  # noqa: E402
from innerloop.engine.inner import inner_step  # noqa: E402
from innerloop.engine.learner import Learner  # noqa: E402
from innerloop.engine.params import cast, expand_to_tasks  # noqa: E402
from innerloop.engine.rundir import atomic_write_json  # noqa: E402
from innerloop.engine.stats import summarize  # noqa: E402
from innerloop.engine.tasks import generator_for  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {  # algorithm and snn backend options
    "fomaml": {"algo": "fomaml", "backend": {"hidden_error": "single_step"}},
    "fomaml-readout-inner": {"algo": "fomaml", "backend": {"hidden_error": "single_step",
                                                            "inner_error": "readout_only"}},
    "fomaml-readout-only": {"algo": "fomaml", "backend": {"hidden_error": "readout_only"}},
    "fomaml-feedback-alignment": {"algo": "fomaml", "backend": {"hidden_error": "feedback_alignment"}},
    "reptile": {"algo": "reptile", "backend": {"hidden_error": "single_step"}},
    "fomaml-recurrent": {"algo": "fomaml", "backend": {"hidden_error": "single_step"}, "model": {"recurrent": True}},
}
EVAL_STEPS = (0, 1, 2, 5, 10, 20)
INNER_STEPS, INNER_LR, OUTER_LR, META_BATCH = 5, 0.5, 0.01, 8


def synaptic_operations(model, params: dict, x: torch.Tensor) -> torch.Tensor:
    """Per-task synaptic events of one forward pass: Σ_l (spikes into layer l) × fan-out of l, plus,
    for a recurrent layer, its spikes of steps 1…T−1 (delivered at the next step) × its own width."""
    records = model.simulate(params, x)
    inputs = [x] + [r.spikes for r in records[:-1]]
    events = sum(s.sum(dim=(1, 2, 3)) * fan_out for s, fan_out in zip(inputs, model.widths[1:]))
    for layer, record in enumerate(records):
        if model.is_recurrent(layer):
            events = events + record.spikes[:, :, :-1].sum(dim=(1, 2, 3)) * model.widths[layer + 1]
    return events


def _evaluate(algorithm, params: dict, family, tasks: int, seed: int) -> dict[str, Any]:
    """Accuracy vs inner steps and synaptic operations per adaptation on held-out tasks, along one
    inner trajectory of the backend's local rule (what ``algorithm.adapt`` runs for FOMAML/Reptile)."""
    batch = family.split_view("meta-test").sample(tasks, generator_for(seed, "neuromorphic-eval"))
    batch = batch.to(algorithm.backend.dtype, algorithm.backend.device)
    model, learner = algorithm.model, Learner(algorithm.model, family.loss)
    adapted = expand_to_tasks(cast(params, algorithm.backend.dtype, algorithm.backend.device), tasks)
    accuracy, synops = {}, torch.zeros(tasks, dtype=torch.float64)
    with torch.no_grad():
        for n in range(max(EVAL_STEPS) + 1):
            if n in EVAL_STEPS:
                correct = (model.apply_batched(adapted, batch.query_x).argmax(-1) == batch.query_y).double()
                accuracy[str(n)] = summarize(correct.mean(dim=1))
            if n < INNER_STEPS:  # the forward passes of an N-step adaptation
                synops += synaptic_operations(model, adapted, batch.support_x).double()
            _, adapted = inner_step(algorithm.backend, learner, adapted, batch.support_x, batch.support_y,
                                    algorithm.inner_lr)
    return {"accuracy": accuracy, "synaptic_operations": summarize(synops)}


def _run(args: tuple[str, int, int, int, str]) -> dict[str, Any]:
    """Train one (variant, seed) and evaluate it against a random initialization."""
    from innerloop.engine import build
    from innerloop.engine.trainer import train

    torch.set_num_threads(1)
    variant, seed, iters, tasks, out = args
    spec = VARIANTS[variant]
    config = TrainConfig(algo=spec["algo"], task="double-motif", backend="snn", meta_batch=META_BATCH,
                         inner_lr=INNER_LR, inner_steps=INNER_STEPS, outer_lr=OUTER_LR, iters=iters,
                         eval_every=max(iters // 4, 1), eval_tasks=50, seed=seed,
                         backend_options=dict(spec["backend"]), model_options=dict(spec.get("model", {})))
    start = time.perf_counter()
    run_dir = Path(out) / "runs" / f"{variant}-seed{seed}"
    result = train(config, run_dir, progress=False)
    seconds = time.perf_counter() - start
    family = build.family(config)
    algorithm = build.algorithm(config, build.model(config, family), build.backend(config))
    random_init = algorithm.init_params(torch.Generator().manual_seed(10_000 + seed))
    return {"variant": variant, "seed": seed, "train_seconds": seconds, "run_dir": str(run_dir),
            "meta_init": _evaluate(algorithm, result.params, family, tasks, seed),
            "random_init": _evaluate(algorithm, random_init, family, tasks, seed)}


def neuromorphic(out: str | Path, iters: int = 400, tasks: int = 300, algorithms: list[str] | None = None,
                 seed: int = 0, jobs: int = 1, seeds: int = 3) -> dict[str, Any]:
    """Run every variant for ``seeds`` seeds (seed, seed+1, ...); returns the JSON document it writes."""
    variants, out = prepare("neuromorphic variant", algorithms, list(VARIANTS), jobs, out)
    work = [(v, seed + s, iters, tasks, str(out)) for v in variants for s in range(seeds)]
    rows = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for row in pool.map(_run, work):
            acc = row["meta_init"]["accuracy"][str(INNER_STEPS)]["mean"]
            rnd = row["random_init"]["accuracy"][str(INNER_STEPS)]["mean"]
            print(f"[neuromorphic] {row['variant']:<26} seed {row['seed']}: accuracy after {INNER_STEPS} steps "
                  f"{acc:.3f} (random init {rnd:.3f}), {row['train_seconds']:.0f}s", flush=True)
            rows.append(row)
    summary = {}
    for v in variants:
        mine = [r for r in rows if r["variant"] == v]
        summary[v] = {
            f"meta_init_accuracy_{n}_steps": sum(r["meta_init"]["accuracy"][str(n)]["mean"] for r in mine) / len(mine)
            for n in EVAL_STEPS
        } | {f"random_init_accuracy_{n}_steps": sum(r["random_init"]["accuracy"][str(n)]["mean"]
                                                    for r in mine) / len(mine) for n in EVAL_STEPS}
    document = {"experiment": "neuromorphic", "task": "double-motif 5-way 1-shot", "iters": iters,
                "held_out_tasks": tasks, "inner_steps": INNER_STEPS, "inner_lr": INNER_LR, "outer_lr": OUTER_LR,
                "meta_batch": META_BATCH, "eval_steps": list(EVAL_STEPS), "rows": rows, "summary": summary}
    atomic_write_json(out / "neuromorphic.json", document)
    _plot(document, variants, out / "neuromorphic.png")
    first = Path(rows[0]["run_dir"]) / "adaptation.png"
    if first.is_file():
        shutil.copyfile(first, out / "spike_raster.png")
    return document


def _plot(document: dict[str, Any], variants: list[str], path: Path) -> None:
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    steps = document["eval_steps"]
    for index, v in enumerate(variants):
        s = document["summary"][v]
        color = f"C{index}"
        ax.plot(steps, [s[f"meta_init_accuracy_{n}_steps"] for n in steps], marker="o", color=color,
                label=f"{v} (meta-init)")
        ax.plot(steps, [s[f"random_init_accuracy_{n}_steps"] for n in steps], ls="--", color=color, alpha=0.6)
    ax.axhline(0.2, color="k", lw=1, ls=":", label="chance")
    ax.set(xlabel="inner three-factor steps", ylabel="held-out query accuracy", ylim=(0, 1),
           title="accuracy vs inner steps (dashed: random init)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    labels, meta, rand = [], [], []
    for v in variants:
        mine = [r for r in document["rows"] if r["variant"] == v]
        labels.append(v.replace("fomaml-", "fo-"))
        meta.append(sum(r["meta_init"]["synaptic_operations"]["mean"] for r in mine) / len(mine))
        rand.append(sum(r["random_init"]["synaptic_operations"]["mean"] for r in mine) / len(mine))
    xs = range(len(labels))
    bx.bar([x - 0.2 for x in xs], meta, width=0.4, label="meta-init")
    bx.bar([x + 0.2 for x in xs], rand, width=0.4, label="random init")
    bx.set_xticks(list(xs), labels, rotation=15, fontsize=8)
    bx.set(ylabel="synaptic operations per adaptation", title=f"energy proxy ({document['inner_steps']} steps)")
    bx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
