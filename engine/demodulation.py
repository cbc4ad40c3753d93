"""``innerloop experiment demodulation``: meta-learning to demodulate from few pilots
(monograph §5.2, Figures 5.2 and 5.5; Park et al. 2021).

Devices of the ``demodulation`` family (16-QAM, I/Q imbalance, Rayleigh fading, 20 dB) are the
tasks. Each method meta-trains on an endless stream of devices with N_tr = 4 pilots and
``QUERIES`` further symbols per device (the monograph's N_va):

* ``maml``, ``fomaml``, ``reptile`` — an MLP demodulator (2 → 64 → 64 → 16) adapted by 5 SGD
  steps (α = 0.1) on the pilots;
* ``cavia`` — the same network with a 4-dimensional context adapted by 2 steps (α = 1);
* ``bmaml`` — 5 particles moved by 5 SVGD steps (α = 0.1): the Bayesian meta-learner;
* ``joint`` — one demodulator trained on the pooled symbols of the meta-training devices
  (monograph eq. 1.2), then the same 5 steps as MAML.

Evaluation on ``tasks`` held-out devices, each with ``EVAL_SYMBOLS`` test symbols, for Ñ_tr in
``PILOTS`` (the first Ñ_tr pilots of the same devices for every method and every Ñ_tr, so the
comparisons are paired): the symbol error rate SER = 1 − accuracy (eq. 5.7) of each method after
its own adaptation, against
* ``scratch`` — conventional learning: a fresh random initialization trained on the pilots alone
  by ``SCRATCH_STEPS`` SGD steps (α = 0.1);
* ``mmse-ml`` — the model-based receiver: MMSE channel estimate from the pilots, then ML
  detection for the linear channel y = h·s + z (blind to the I/Q imbalance);
* ``genie-ml`` — ML detection with the true channel h (still blind to the I/Q imbalance): what the
  model-based receiver reaches with unlimited pilots.

Calibration (eqs. 5.8–5.10) at Ñ_tr = ``CALIBRATION_PILOTS``: reliability diagram and expected
calibration error of every learned demodulator's p(s|y) — for BMAML the particle mixture.
Writes ``demodulation.json``, ``demodulation.md`` (the SER table) and ``demodulation.png`` (SER vs
pilots; reliability diagrams; the decision regions of one held-out device before and after adaptation).
"""

from __future__ import annotations

import base64
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from innerloop.engine.calibration import class_probabilities, reliability
from innerloop.engine.comms import ml_detect, mmse_channel_estimate
from innerloop.engine.config import TrainConfig
from innerloop.engine.experiment_setup import prepare, write_results
from innerloop.engine.inner import sgd_trajectory
from innerloop.engine.learner import Learner
from innerloop.engine.params import Params, cast
from innerloop.engine.stats import summarize
from innerloop.engine.tasks import TaskBatch, generator_for

TASK, HIDDEN, SHOTS, QUERIES, META_BATCH, OUTER_LR = "demodulation", (64, 64), 4, 256, 16, 0.003
PILOTS = (1, 2, 4, 8, 16, 32)
CALIBRATION_PILOTS, EVAL_SYMBOLS, SCRATCH_STEPS, BASELINE_LR = 8, 1000, 500, 0.1
METHODS: dict[str, dict[str, Any]] = {
    "maml": {"algo": "maml", "inner_lr": 0.1, "inner_steps": 5},
    "fomaml": {"algo": "fomaml", "inner_lr": 0.1, "inner_steps": 5},
    "reptile": {"algo": "reptile", "inner_lr": 0.1, "inner_steps": 5},
    "cavia": {"algo": "cavia", "inner_lr": 1.0, "inner_steps": 2},
    "bmaml": {"algo": "bmaml", "inner_lr": 0.1, "inner_steps": 5},
    "joint": {"algo": "maml", "inner_lr": BASELINE_LR, "inner_steps": 5},  # trained jointly; adapted like MAML
}


def method_config(method: str, iters: int, seed: int, devices: int | None = None) -> TrainConfig:
    """The run of ``method``, meta-trained on an endless stream of devices or on ``devices`` fixed ones."""
    spec = METHODS[method]
    return TrainConfig(algo=spec["algo"], task=TASK, shots=SHOTS, queries=QUERIES, hidden=HIDDEN, train_tasks=devices,
                       inner_lr=spec["inner_lr"], inner_steps=spec["inner_steps"], meta_batch=META_BATCH,
                       outer_lr=OUTER_LR, iters=iters, seed=seed, eval_every=max(1, iters // 5), eval_tasks=64,
                       checkpoint_every=iters, algo_options=dict(spec.get("algo_options", {})))


def held_out(family, tasks: int, seed: int) -> TaskBatch:
    """``tasks`` held-out devices with max(PILOTS) pilots and EVAL_SYMBOLS test symbols each."""
    generator = generator_for(seed, "demodulation-eval")
    return family.split_view("meta-test").sample(tasks, generator, shots=max(PILOTS), queries=EVAL_SYMBOLS)


def symbol_errors(decisions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-device count of wrong decisions [B] (SER × symbols, eq. 5.7)."""
    return (decisions != labels).sum(dim=1)


def _ser_entry(errors: torch.Tensor, symbols: int) -> dict[str, Any]:
    """SER mean ± 95% CI over devices, and each device's error count (for paired comparisons)."""
    return {**summarize(errors.double() / symbols), "errors": errors.tolist()}


def _scores(model, adapted_for: dict[int, Params], batch: TaskBatch) -> dict[str, Any]:
    """SER and expected calibration error per pilot count, and the reliability diagram at
    CALIBRATION_PILOTS."""
    ser, ece, calibration = {}, {}, None
    for count, adapted in adapted_for.items():
        with torch.no_grad():
            probabilities = class_probabilities(model, adapted, batch.query_x)
        ser[str(count)] = _ser_entry(symbol_errors(probabilities.argmax(-1), batch.query_y), batch.query_y.shape[1])
        diagram = reliability(probabilities, batch.query_y)
        ece[str(count)] = diagram["ece"]
        if count == CALIBRATION_PILOTS:
            calibration = diagram
    return {"ser": ser, "ece_by_pilots": ece, "calibration": calibration}


def run_method(args: tuple[str, int, int, int, str, int | None]) -> dict[str, Any]:
    """Meta-train one method (a run directory under OUT/runs) on an endless stream of devices, or on
    ``devices`` fixed ones, and score it on the held-out devices."""
    from innerloop.engine.baselines import train_start

    torch.set_num_threads(1)
    method, iters, tasks, seed, out, devices = args
    config = method_config(method, iters, seed, devices)
    name = method if devices is None else f"{method}-{devices}-devices"
    start = train_start(method, config, Path(out) / "runs" / name, meta_batch=META_BATCH, lr=OUTER_LR)
    family, algorithm, seconds = start.family, start.algorithm, start.seconds
    theta = cast(start.params, algorithm.backend.dtype, algorithm.backend.device)
    batch = held_out(family, tasks, seed)
    adapted = {count: algorithm.adapt(theta, batch.first_support(count)) for count in PILOTS}
    row = {"method": method, "devices": devices, "algo": config.algo, "inner_lr": config.inner_lr,
           "inner_steps": config.inner_steps, "iters": iters, "train_seconds": seconds,
           **_scores(algorithm.model, adapted, batch)}
    row["regions"] = decision_regions(algorithm, theta, batch)
    if hasattr(algorithm.model, "particles"):  # BMAML: how each particle of the mixture does on its own
        row["particles"] = particle_scores(algorithm.model, adapted[CALIBRATION_PILOTS], batch)
    return row


def particle_scores(ensemble, adapted: Params, batch: TaskBatch) -> list[dict[str, float]]:
    """SER, ECE and mean confidence of each particle of an ensemble's adapted parameters [B, M, ...]
    used alone, on the query symbols."""
    scores = []
    for m in range(ensemble.particles):
        with torch.no_grad():
            probabilities = class_probabilities(ensemble.inner, {k: v[:, m] for k, v in adapted.items()},
                                                batch.query_x)
        scores.append({"ser": float((probabilities.argmax(-1) != batch.query_y).double().mean()),
                       "ece": reliability(probabilities, batch.query_y)["ece"],
                       "confidence": float(probabilities.max(-1).values.double().mean())})
    return scores


def _scratch(family, batch: TaskBatch, seed: int) -> dict[str, Any]:
    """Conventional learning: a fresh demodulator per held-out device trained on its pilots alone."""
    from innerloop.engine import build
    from innerloop.engine.baselines import random_inits

    config = method_config("maml", 1, seed)
    model, backend = build.model(config, family), build.backend(config)
    learner, start = Learner(model, "cross_entropy"), random_inits(model, batch.num_tasks, seed, backend)
    adapted = {count: sgd_trajectory(backend, learner, start, batch.support_x[:, :count], batch.support_y[:, :count],
                                     BASELINE_LR, SCRATCH_STEPS).final for count in PILOTS}
    return {"method": "scratch", "steps": SCRATCH_STEPS, "lr": BASELINE_LR, **_scores(model, adapted, batch)}


def complex_symbols(x: torch.Tensor) -> torch.Tensor:
    """Received points (Re y, Im y) [..., 2] as complex y [...]."""
    return torch.complex(x[..., 0].double(), x[..., 1].double())


def mmse_ml_decisions(family, batch: TaskBatch, count: int) -> torch.Tensor:
    """Symbol decisions [B, N] on the query points: ML detection with the MMSE channel estimate from the
    first ``count`` pilots of each device (the model-based receiver)."""
    channel = mmse_channel_estimate(family.constellation[batch.support_y[:, :count]],
                                    complex_symbols(batch.support_x[:, :count]), family.noise_var)
    return ml_detect(complex_symbols(batch.query_x), channel, family.constellation)


def model_based(family, batch: TaskBatch) -> dict[str, dict[str, Any]]:
    """SER on the held-out devices ``batch`` of ML detection with the MMSE channel estimate from Ñ_tr
    pilots, and with the true channel."""
    def ser(decisions: torch.Tensor) -> dict[str, Any]:
        return _ser_entry(symbol_errors(decisions, batch.query_y), EVAL_SYMBOLS)

    true_channel = torch.complex(batch.task_params["channel_real"].double(), batch.task_params["channel_imag"].double())
    genie = ser(ml_detect(complex_symbols(batch.query_x), true_channel, family.constellation))
    return {"mmse-ml": {"method": "mmse-ml", "ser": {str(n): ser(mmse_ml_decisions(family, batch, n)) for n in PILOTS}},
            "genie-ml": {"method": "genie-ml", "ser": {str(n): genie for n in PILOTS}}}


def decision_regions(algorithm, theta: Params, batch: TaskBatch, device: int = 0, size: int = 101) -> dict[str, Any]:
    """The decisions of one held-out device's demodulator on a size×size grid of received signals
    (spanning its test symbols), at the meta-learned start and after adaptation on CALIBRATION_PILOTS
    pilots; each map is stored compactly as base64 of its uint8 symbol indices, row by row (Im y)."""
    extent = round(1.15 * float(batch.query_x[device].abs().max()), 2)
    axis = torch.linspace(-extent, extent, size, dtype=algorithm.backend.dtype)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(1, -1, 2)
    one = batch.select(slice(device, device + 1)).first_support(CALIBRATION_PILOTS)
    probe = TaskBatch(one.support_x, one.support_y, grid, torch.zeros(1, grid.shape[1], dtype=torch.long))
    maps = {}
    for label, steps in (("start", 0), ("adapted", None)):
        with torch.no_grad():
            probabilities = class_probabilities(algorithm.model, algorithm.adapt(theta, probe, steps=steps), grid)
        decisions = probabilities.argmax(-1).to(torch.uint8).reshape(size, size)
        maps[label] = base64.b64encode(decisions.numpy().tobytes()).decode("ascii")
    return {"device": device, "extent": extent, "size": size, **maps}


def region_map(regions: dict[str, Any], which: str) -> np.ndarray:
    """The [size, size] symbol indices of map ``which`` ("start" or "adapted") of :func:`decision_regions`."""
    flat = np.frombuffer(base64.b64decode(regions[which]), dtype=np.uint8)
    return flat.reshape(regions["size"], regions["size"])


def prepare_methods(algorithms: list[str] | None, default: list[str], tasks: int, jobs: int, out: str | Path,
                    seed: int):
    """(methods, output directory, the demodulation family) after checking the arguments."""
    from innerloop.engine import build

    methods, out = prepare("demodulation method", algorithms or default, list(METHODS), jobs, out, tasks=tasks)
    return methods, out, build.family(method_config(methods[0], 1, seed))


def demodulation(out: str | Path, iters: int = 3000, tasks: int = 300, algorithms: list[str] | None = None,
                 seed: int = 0, jobs: int = 1) -> dict[str, Any]:
    """Run the experiment (see the module docstring); returns the JSON document it writes."""
    from innerloop.engine.demodulation_plots import plot

    methods, out, family = prepare_methods(algorithms, list(METHODS), tasks, jobs, out, seed)
    rows: dict[str, Any] = {}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for row in pool.map(run_method, [(m, iters, tasks, seed, str(out), None) for m in methods]):
            print(f"[demodulation] {row['method']:<8} SER with {SHOTS} pilots "
                  f"{row['ser'][str(SHOTS)]['mean']:.3f} ± {row['ser'][str(SHOTS)]['ci95']:.3f}, ECE at "
                  f"{CALIBRATION_PILOTS} pilots {row['calibration']['ece']:.3f}  ({row['train_seconds']:.0f}s)",
                  flush=True)
            rows[row["method"]] = row
    batch = held_out(family, tasks, seed)
    baselines = {"scratch": _scratch(family, batch, seed), **model_based(family, batch)}
    document: dict[str, Any] = {
        "experiment": "demodulation", "task": TASK, "task_options": family.config(), "iters": iters,
        "held_out_devices": tasks, "eval_symbols": EVAL_SYMBOLS, "seed": seed, "pilots": list(PILOTS),
        "meta_train_pilots": SHOTS, "meta_train_symbols": QUERIES, "hidden": list(HIDDEN), "meta_batch": META_BATCH,
        "outer_lr": OUTER_LR, "calibration_pilots": CALIBRATION_PILOTS, "rows": rows, "baselines": baselines,
        "example_device": {"received": batch.query_x[0, :400].tolist(), "labels": batch.query_y[0, :400].tolist(),
                           "pilots": batch.support_x[0, :CALIBRATION_PILOTS].tolist()},
    }
    document["summary"] = summary(document)
    write_results(out, "demodulation", document, demodulation_table(document), plot)
    return document


def summary(document: dict[str, Any]) -> dict[str, Any]:
    """SER per method and pilot count, who is lowest where, each learned method's SER minus the
    model-based receiver's paired over the same devices, ECE per learned method, and the checks of
    the monograph's two claims (§5.2): meta-learning beats the model-based receiver and conventional
    learning with few pilots; Bayesian meta-learning is better calibrated than frequentist."""
    entries = {**document["rows"], **document["baselines"]}
    pilots, symbols = [str(n) for n in document["pilots"]], document["eval_symbols"]
    table = {name: {n: entry["ser"][n]["mean"] for n in pilots} for name, entry in entries.items()}
    lowest = {n: min((name for name in table if name != "genie-ml"), key=lambda name: table[name][n]) for n in pilots}

    def paired(a: str, b: str) -> dict[str, dict[str, float]]:
        return {n: summarize((torch.tensor(entries[a]["ser"][n]["errors"])
                              - torch.tensor(entries[b]["ser"][n]["errors"])).double() / symbols) for n in pilots}

    versus = {f"{name} - mmse-ml": paired(name, "mmse-ml") for name in document["rows"]}
    versus |= {f"{name} - scratch": paired(name, "scratch") for name in document["rows"]}
    ece = {name: row["calibration"]["ece"] for name, row in document["rows"].items()}
    few = str(document["meta_train_pilots"])
    checks = {f"{name}_beats_mmse_ml_and_scratch_at_{few}_pilots": all(
        versus[f"{name} - {b}"][few]["mean"] + versus[f"{name} - {b}"][few]["ci95"] < 0 for b in ("mmse-ml", "scratch"))
        for name in document["rows"] if name != "joint"}
    if {"bmaml", "maml"} <= set(ece):
        checks["bmaml_ece_below_maml"] = ece["bmaml"] < ece["maml"]
        by_pilots = {name: document["rows"][name].get("ece_by_pilots", {}).get(few) for name in ("bmaml", "maml")}
        if None not in by_pilots.values():
            checks[f"bmaml_ece_below_maml_at_{few}_pilots"] = by_pilots["bmaml"] < by_pilots["maml"]
    return {"ser": table, "lowest_ser_without_genie": lowest, "paired_differences": versus, "ece": ece,
            "checks": checks}


def demodulation_table(document: dict[str, Any]) -> str:
    """SER ± 95% CI per method (rows) and meta-test pilot count (columns), with each learned
    method's ECE at the meta-training pilot count and at CALIBRATION_PILOTS, as Markdown."""
    pilots = [str(n) for n in document["pilots"]]
    counts = [str(document["meta_train_pilots"]), str(document["calibration_pilots"])]
    lines = ["| method | " + " | ".join(f"SER, {n} pilot{'s' * (n != '1')}" for n in pilots) + " | "
             + " | ".join(f"ECE at {n}" for n in counts) + " |", "|---|" + "---|" * (len(pilots) + len(counts))]
    for name, entry in {**document["rows"], **document["baselines"]}.items():
        cells = [f"{entry['ser'][n]['mean']:.3f} ± {entry['ser'][n]['ci95']:.3f}" for n in pilots]
        ece = entry.get("ece_by_pilots", {})
        cells += [f"{ece[n]:.3f}" if n in ece else "–" for n in counts]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
