"""``innerloop experiment online-demodulation``: meta-learning a demodulator online, as devices arrive
(monograph §5.2's online paragraph and §7.1.1; Park et al. [109]).

Devices of the ``demodulation`` family arrive one at a time: 4 pilots (the support set) and 256
further known symbols (the query set) each, the same sequence for every method. Each arrival is
first demodulated with the current meta-parameters adapted on its 4 pilots — its SER on the 256
symbols is the prequential score — and then used for one Adam step (0.003) on its meta-gradient
(:func:`innerloop.engine.online.online_meta_learning`). Methods, with the demodulation experiment's
networks and inner loops:

* ``cavia`` and ``maml`` — no revisiting: the meta-gradient of the arriving device alone;
* ``cavia-replay`` — follow-the-meta-leader style: the arriving device and ``REPLAY`` devices
  drawn from those stored so far (16 per step, the offline meta-batch);
* ``cavia-active`` — active meta-learning (monograph §7.1.3): each step offers ``CANDIDATES``
  devices, and the learner acquires the one whose pilots leave its demodulator most uncertain —
  the largest mean predictive entropy on the device's received symbols after adapting to its
  pilots, which needs no labels beyond the pilots. The same number of devices is acquired as by
  ``cavia``; the others are never seen again. Its prequential SER is on the devices it chose
  (harder than average by design), so only its held-out curve compares with the other methods;
* ``bmaml`` and ``bmaml-active`` — the Bayesian meta-learner (5 SVGD particles) in arrival order,
  and acquiring the candidate of largest *epistemic* uncertainty: the particles' disagreement
  I(s; φ | y) = H(E_φ p(s|y, φ)) − E_φ H(p(s|y, φ)) (BALD), averaged over the device's symbols —
  the criterion of Bayesian active meta-learning [112], which predictive entropy mixes with the
  aleatoric noise of a device in a deep fade.

References on the same arrivals: the model-based receiver (MMSE channel estimate from the 4 pilots,
then ML detection). Every ``iters``/``CHECKS`` arrivals the meta-parameters are also scored on
``tasks`` held-out devices (4 pilots, 1000 test symbols), against MMSE + ML on those devices.
Writes ``online_demodulation.json`` and ``online_demodulation.png``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import torch

from innerloop.engine.calibration import class_probabilities
from innerloop.engine.demodulation import (
    OUTER_LR,
    SHOTS,
    held_out,
    method_config,
    mmse_ml_decisions,
    model_based,
)
from innerloop.engine.errors import ConfigError
from innerloop.engine.params import Params
from innerloop.engine.rundir import atomic_write_json
from innerloop.engine.stats import summarize
from innerloop.engine.tasks import TaskBatch, derive_seed, generator_for

CHECKS, REPLAY, CANDIDATES = 10, 15, 8
METHODS: dict[str, dict[str, Any]] = {"cavia": {"base": "cavia", "replay": 0},
                                      "cavia-replay": {"base": "cavia", "replay": REPLAY},
                                      "cavia-active": {"base": "cavia", "replay": 0, "candidates": CANDIDATES,
                                                       "measure": "entropy"},
                                      "maml": {"base": "maml", "replay": 0},
                                      "bmaml": {"base": "bmaml", "replay": 0},
                                      "bmaml-active": {"base": "bmaml", "replay": 0, "candidates": CANDIDATES,
                                                       "measure": "bald"}}


def device_ser(algorithm, params: Params, batch: TaskBatch) -> torch.Tensor:
    """Per-device SER [B] of the demodulator adapted on the support pilots, on the query symbols."""
    adapted = algorithm.adapt(params, batch)
    with torch.no_grad():
        decisions = class_probabilities(algorithm.model, adapted, batch.query_x).argmax(-1)
    return (decisions != batch.query_y).double().mean(dim=1)


def mmse_ml_ser(family, batch: TaskBatch) -> torch.Tensor:
    """Per-device SER [B] of the model-based receiver using all the support pilots."""
    decisions = mmse_ml_decisions(family, batch, batch.support_y.shape[1])
    return (decisions != batch.query_y).double().mean(dim=1)


def arrivals(family, seed: int, candidates: int = 1):
    """The endless, seeded sequence of arriving devices, ``candidates`` per batch (the first device
    of the sequence is the same for every method)."""
    stream = family.stream("meta-train", seed)
    while True:
        yield stream.next(candidates)


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1)


def most_uncertain(algorithm, measure: str = "entropy") -> Callable[[Params, TaskBatch], int]:
    """Active selection: the candidate with the largest mean uncertainty on its query symbols'
    received signals after adapting to its pilots (no query labels are read). ``measure``:
    ``"entropy"`` — the predictive entropy; ``"bald"`` — the particles' mutual information
    H(mean_m p_m) − mean_m H(p_m) (an ensemble learner: BMAML)."""
    if measure not in ("entropy", "bald"):
        raise ConfigError(f"unknown uncertainty measure {measure!r}", "use 'entropy' or 'bald'")

    def select(params: Params, candidates: TaskBatch) -> int:
        adapted = algorithm.adapt(params, candidates)
        with torch.no_grad():
            if measure == "bald":
                particles = torch.softmax(torch.func.vmap(algorithm.model.predictions)(adapted, candidates.query_x),
                                          dim=-1)  # [B, M, K, classes]
                score = _entropy(particles.mean(1)) - _entropy(particles).mean(1)
            else:
                score = _entropy(class_probabilities(algorithm.model, adapted, candidates.query_x))
        return int(score.mean(-1).argmax())

    return select


def _run(args: tuple[str, int, int, int]) -> dict[str, Any]:
    """One method's online run (a worker process)."""
    from innerloop.engine import build
    from innerloop.engine.online import held_out_checks, online_meta_learning

    torch.set_num_threads(1)
    method, iters, tasks, seed = args
    spec = METHODS[method]
    config = method_config(spec["base"], iters, seed)
    family = build.family(config)
    model, backend = build.model(config, family), build.backend(config)
    algorithm = build.algorithm(config, model, backend)
    algorithm.seed(derive_seed(seed, "algorithm"))
    params = algorithm.init_params(generator_for(seed, "init"), backend.dtype, backend.device)
    test = held_out(family, tasks, seed).first_support(SHOTS)
    curve, check = held_out_checks(lambda p: device_ser(algorithm, p, test), params, iters, CHECKS, "devices")
    began = time.perf_counter()
    candidates = spec.get("candidates", 1)
    run = online_meta_learning(algorithm, params, islice(arrivals(family, seed, candidates), iters), lr=OUTER_LR,
                               score=lambda p, b: device_ser(algorithm, p, b), replay=spec["replay"],
                               generator=generator_for(seed, "online/replay"), callback=check, progress=False,
                               select=most_uncertain(algorithm, spec["measure"]) if candidates > 1 else None)
    return {"method": method, "prequential": run.prequential, "held_out": curve,
            "seconds": time.perf_counter() - began}


def online_demodulation(out: str | Path, iters: int = 3000, tasks: int = 300, algorithms: list[str] | None = None,
                        seed: int = 0, jobs: int = 1) -> dict[str, Any]:
    """Run the experiment (see the module docstring); returns the JSON document it writes."""
    from innerloop.engine import build
    from innerloop.engine.experiment_setup import prepare
    from innerloop.engine.online_demodulation_plots import plot

    methods, out = prepare("online-demodulation method", algorithms, list(METHODS), jobs, out)
    if int(iters) != iters or iters < 4 or int(tasks) != tasks or tasks < 2:
        raise ConfigError(f"need --iters >= 4 arriving devices and --tasks >= 2 held-out devices, got {iters} and "
                          f"{tasks}", "e.g. --iters 1000 --tasks 300")
    family = build.family(method_config("cavia", 1, seed))
    stream = torch.cat([mmse_ml_ser(family, batch) for batch in islice(arrivals(family, seed), iters)])
    reference = model_based(family, held_out(family, tasks, seed))["mmse-ml"]["ser"][str(SHOTS)]
    rows = {}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for row in pool.map(_run, [(m, iters, tasks, seed) for m in methods]):
            prequential = torch.tensor(row["prequential"], dtype=torch.float64)
            spec = METHODS[row["method"]]
            paired = "candidates" not in spec  # an active method's devices are not the shared sequence
            rows[row["method"]] = {
                "replay": spec["replay"], "candidates": spec.get("candidates", 1), "prequential": row["prequential"],
                "prequential_mean": summarize(prequential), "last_quarter": summarize(prequential[-(iters // 4):]),
                "minus_mmse_ml_last_quarter": summarize((prequential - stream)[-(iters // 4):]) if paired else None,
                "held_out": row["held_out"], "seconds": row["seconds"]}
            print(f"[online-demodulation] {row['method']:<12} prequential SER {float(prequential.mean()):.3f} "
                  f"(last quarter {float(prequential[-(iters // 4):].mean()):.3f}); held-out SER after {iters} "
                  f"devices {row['held_out'][-1]['mean']:.3f}  ({row['seconds']:.0f}s)", flush=True)
    document = {"experiment": "online-demodulation", "task_options": family.config(), "devices": iters,
                "held_out_devices": tasks, "seed": seed, "pilots": SHOTS, "outer_lr": OUTER_LR, "replay": REPLAY,
                "rows": rows, "mmse_ml": {"prequential": stream.tolist(), "prequential_mean": summarize(stream),
                                          "held_out": {k: v for k, v in reference.items() if k != "errors"}}}
    atomic_write_json(out / "online_demodulation.json", document)
    plot(document, out / "online_demodulation.png")
    return document
