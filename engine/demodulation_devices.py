"""``innerloop experiment demodulation-devices``: SER vs the number K of meta-training devices
(monograph §5.2, Fig. 5.4).

The methods of ``innerloop experiment demodulation`` (default: CAVIA, MAML and joint learning)
are meta-trained on K fixed devices (``--train-tasks K``: each device's 4 pilots and 256 further
symbols drawn once) for K in ``DEVICE_COUNTS``, and scored on the same held-out devices with
Ñ_tr = ``TEST_PILOTS`` pilots, against the model-based receiver (MMSE + ML) and ML with the true
channel at the same pilot count. Few meta-training devices let meta-learning overfit the devices
it saw (meta-overfitting, monograph §4.2); joint learning does not transfer at any K. Writes
``demodulation_devices.json`` and ``demodulation_devices.png``.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from innerloop.engine.demodulation import EVAL_SYMBOLS, held_out, model_based, prepare_methods, run_method
from innerloop.engine.rundir import atomic_write_json
from innerloop.engine.stats import summarize

DEVICE_COUNTS = (10, 30, 100, 300, 1000)
TEST_PILOTS = 8
DEFAULT_METHODS = ["cavia", "maml", "joint"]


def demodulation_devices(out: str | Path, iters: int = 3000, tasks: int = 300, algorithms: list[str] | None = None,
                         seed: int = 0, jobs: int = 1) -> dict[str, Any]:
    """Run the sweep (see the module docstring); returns the JSON document it writes."""
    from innerloop.engine.demodulation_plots import plot_devices

    methods, out, family = prepare_methods(algorithms, DEFAULT_METHODS, tasks, jobs, out, seed)
    work = [(m, iters, tasks, seed, str(out), k) for m in methods for k in DEVICE_COUNTS]
    rows: dict[str, dict[str, Any]] = {m: {} for m in methods}
    pilots = str(TEST_PILOTS)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for row in pool.map(run_method, work):
            ser = row["ser"][pilots]
            print(f"[demodulation-devices] {row['method']:<8} K = {row['devices']:>5} devices: SER with {pilots} "
                  f"pilots {ser['mean']:.3f} ± {ser['ci95']:.3f}  ({row['train_seconds']:.0f}s)", flush=True)
            rows[row["method"]][str(row["devices"])] = {"ser": ser, "train_seconds": row["train_seconds"]}
    receivers = model_based(family, held_out(family, tasks, seed))
    reference = {name: entry["ser"][pilots] for name, entry in receivers.items()}
    document = {"experiment": "demodulation-devices", "task_options": family.config(), "iters": iters,
                "held_out_devices": tasks, "seed": seed, "device_counts": list(DEVICE_COUNTS),
                "test_pilots": TEST_PILOTS, "rows": rows, "model_based": reference}
    document["summary"] = summary(document)
    atomic_write_json(out / "demodulation_devices.json", document)
    plot_devices(document, out / "demodulation_devices.png")
    return document


def summary(document: dict[str, Any]) -> dict[str, Any]:
    """SER per method and K, and each method's SER minus the model-based receiver's, paired over the
    same held-out devices (mean ± 95% CI)."""
    reference = torch.tensor(document["model_based"]["mmse-ml"]["errors"])

    def minus_reference(entry: dict[str, Any]) -> dict[str, float]:
        return summarize((torch.tensor(entry["ser"]["errors"]) - reference).double() / EVAL_SYMBOLS)

    rows = document["rows"].items()
    return {"ser": {method: {k: entry["ser"]["mean"] for k, entry in by_count.items()} for method, by_count in rows},
            "minus_mmse_ml": {method: {k: minus_reference(entry) for k, entry in by_count.items()}
                              for method, by_count in rows}}
