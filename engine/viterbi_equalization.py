"""``innerloop experiment viterbi-equalization``: meta-learned branch metrics for Viterbi detection
on an unknown nonlinear ISI channel (monograph §7.3: the Viterbi algorithm [197] with data-driven
branch metrics [198], meta-learned [110]).

The tasks are channels of the ``isi-channel`` family: BPSK, L = 4 random taps (‖h‖ = 1,
exponential profile), a saturating receiver A·tanh(u/A) with A = 1, 14 dB. A block of pilots
is the support set; the data that follow are detected by :func:`~innerloop.engine.viterbi.viterbi`
with each receiver's branch metrics (:mod:`~innerloop.engine.isi_detection`). Methods meta-train
on an endless stream of channels with ``SHOTS`` pilots and ``QUERIES`` further symbols each:

* ``maml`` — a channel-model MLP f(s) (4 → 40 → 40 → 1, the ``channel`` view) adapted by 5 SGD
  steps (α = 0.1) on the pilots; metric −(y − f(s))²/2σ²;
* ``cavia`` — the same network with a 4-dimensional context, adapted by 10 steps (α = 0.5);
* ``joint`` — one channel model trained on the pooled channels (monograph eq. 1.2), then MAML's
  5 steps;
* ``viterbinet`` — ViterbiNet's classifier of p(s | y_t) (1 → 40 → 40 → 16, the ``classifier``
  view) meta-trained by MAML, 5 steps (α = 0.1);

against, on the same held-out channels and symbols,
* ``scratch`` — a channel model from a random start trained on the pilots alone (``SCRATCH_STEPS``
  SGD steps, α = 0.1);
* ``mmse-viterbi`` — the model-based receiver: the linear-channel posterior mean of the taps from
  the pilots, blind to the saturation;
* ``genie-viterbi`` — the maximum-likelihood sequence detector with the true channel.

Every receiver knows σ². Reported: the bit error rate on ``EVAL_SYMBOLS`` data symbols of
``tasks`` held-out channels vs the pilot count, and vs the SNR at ``SWEEP_PILOTS`` pilots (the
learned models were meta-trained at 14 dB only); one held-out channel's learned f(s) against
the truth; and, on channels that drift from block to block, the BER of each channel-model
receiver adapted on each block's pilots alone or on them plus its own decisions on the previous
block (:mod:`~innerloop.engine.viterbi_tracking`), and for MAML and CAVIA the same with each
channel's initialization learned online from its own decisions, by meta-gradients (Meta-ViterbiNet
[110]) or by plain gradients (:mod:`~innerloop.engine.viterbi_online`) — for MAML also on channels that
rotate quickly and periodically (:func:`~innerloop.engine.viterbi_tracking.rotating_blocks`). Writes
``viterbi_equalization.json``, ``.md`` and ``.png``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from innerloop.engine import isi_detection as detection
from innerloop.engine import viterbi_online as online
from innerloop.engine import viterbi_tracking as tracking
from innerloop.engine.config import TrainConfig
from innerloop.engine.experiment_setup import prepare, write_results
from innerloop.engine.learner import Learner
from innerloop.engine.params import Params, cast
from innerloop.engine.stats import summarize
from innerloop.engine.tasks import ISIChannel, TaskBatch, generator_for
from innerloop.engine.viterbi import state_symbols, viterbi

TASK, SHOTS, QUERIES, META_BATCH, OUTER_LR, HIDDEN = "isi-channel", 16, 64, 16, 0.003, (40, 40)
PILOTS, SNRS, SWEEP_PILOTS = (4, 8, 16, 32, 64), (6.0, 10.0, 14.0, 18.0), 16
EVAL_SYMBOLS, SCRATCH_STEPS, BASELINE_LR = 1000, 500, 0.1
METHODS: dict[str, dict[str, Any]] = {
    "maml": {"algo": "maml", "view": "channel", "inner_lr": 0.1, "inner_steps": 5, "online": True, "rotating": True},
    "cavia": {"algo": "cavia", "view": "channel", "inner_lr": 0.5, "inner_steps": 10, "online": True},
    "joint": {"algo": "maml", "view": "channel", "inner_lr": BASELINE_LR, "inner_steps": 5},
    "viterbinet": {"algo": "maml", "view": "classifier", "inner_lr": 0.1, "inner_steps": 5},
}


def method_config(method: str, iters: int, seed: int) -> TrainConfig:
    """The run of ``method`` on an endless stream of channels (see :data:`METHODS`)."""
    spec = METHODS[method]
    return TrainConfig(algo=spec["algo"], task=TASK, shots=SHOTS, queries=QUERIES, hidden=HIDDEN,
                       inner_lr=spec["inner_lr"], inner_steps=spec["inner_steps"], meta_batch=META_BATCH,
                       outer_lr=OUTER_LR, iters=iters, seed=seed, eval_every=max(1, iters // 5), eval_tasks=64,
                       checkpoint_every=iters, task_options={"view": spec["view"]})


def held_out(view: str, tasks: int, seed: int, snr_db: float = 14.0) -> tuple[ISIChannel, TaskBatch]:
    """``tasks`` held-out channels with max(PILOTS) pilots and EVAL_SYMBOLS data symbols in ``view``;
    both views of one (seed, snr_db) hold the same channels, bits and noise."""
    family = ISIChannel(view=view, snr_db=snr_db)
    generator = generator_for(seed, f"viterbi-equalization-eval/{snr_db}")
    return family, family.split_view("meta-test").sample(tasks, generator, shots=max(PILOTS), queries=EVAL_SYMBOLS)


def channel_options() -> dict[str, Any]:
    """The held-out channels' settings (the family's defaults), without the per-run sizes and view."""
    return {k: v for k, v in ISIChannel().config().items() if k not in ("shots", "queries", "view")}


def received_and_states(family: ISIChannel, batch: TaskBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """The data block's received samples [B, T, 1] and true states [B, T] in either view."""
    if family.view == "classifier":
        return batch.query_x, batch.query_y
    return batch.query_y, tracking.block_states(family, batch.query_x)  # channel-view inputs: the states' symbols


def ber_entry(family: ISIChannel, batch: TaskBatch, metrics: torch.Tensor) -> dict[str, Any]:
    """BER mean ± 95% CI over channels of Viterbi detection with ``metrics``, and each channel's
    error count (for paired comparisons)."""
    _, states = received_and_states(family, batch)
    errors = detection.bit_errors(viterbi(metrics), states)
    return {**summarize(errors.double() / states.shape[1]), "errors": errors.tolist()}


def learned_branch_metrics(family: ISIChannel, model, adapted: Params, batch: TaskBatch) -> torch.Tensor:
    """Branch metrics of a learned receiver in ``family``'s view."""
    received, _ = received_and_states(family, batch)
    if family.view == "classifier":
        return detection.learned_metrics(model, adapted, received)
    return detection.channel_model_metrics(model, adapted, received, family.memory, family.noise_var)


def ber_scores(view: str, tasks: int, seed: int,
               metrics_of: Callable[[ISIChannel, TaskBatch], torch.Tensor]) -> dict[str, Any]:
    """BER vs pilots at 14 dB and vs SNR at SWEEP_PILOTS of the receiver whose branch metrics
    ``metrics_of(family, batch)`` gives for held-out channels cut to a pilot count."""
    family, batch = held_out(view, tasks, seed)
    ber = {str(n): ber_entry(family, batch, metrics_of(family, batch.first_support(n))) for n in PILOTS}
    sweep = {}
    for snr in SNRS:
        family, batch = held_out(view, tasks, seed, snr)
        sweep[str(snr)] = ber_entry(family, batch, metrics_of(family, batch.first_support(SWEEP_PILOTS)))
    return {"ber": ber, "ber_vs_snr": sweep}


def _scores(model, adapt, view: str, tasks: int, seed: int) -> dict[str, Any]:
    """:func:`ber_scores` of a learned receiver; ``adapt(batch)`` gives its per-channel parameters."""
    return ber_scores(view, tasks, seed, lambda family, batch: learned_branch_metrics(family, model, adapt(batch),
                                                                                      batch))


def channel_fit(model, adapted: Params, family: ISIChannel, batch: TaskBatch, channel: int = 0) -> list[float]:
    """The learned noiseless output f(s) of every state for held-out ``channel``."""
    one = {k: v[channel:channel + 1] for k, v in adapted.items()}
    return detection.channel_model_outputs(model, one, family.memory, batch.query_x.dtype)[0].tolist()


def run_method(args: tuple[str, int, int, int, str]) -> dict[str, Any]:
    """Meta-train one method (a run directory under OUT/runs) and score it on the held-out channels."""
    from innerloop.engine.baselines import train_start

    torch.set_num_threads(1)
    method, iters, tasks, seed, out = args
    config = method_config(method, iters, seed)
    start = train_start(method, config, Path(out) / "runs" / method, meta_batch=META_BATCH, lr=OUTER_LR)
    algorithm = start.algorithm
    theta = cast(start.params, algorithm.backend.dtype, algorithm.backend.device)
    view = METHODS[method]["view"]
    row = {"method": method, "algo": config.algo, "view": view, "inner_lr": config.inner_lr,
           "inner_steps": config.inner_steps, "iters": iters, "train_seconds": start.seconds,
           **_scores(algorithm.model, lambda b: algorithm.adapt(theta, b), view, tasks, seed)}
    if view == "channel":
        family, batch = held_out(view, tasks, seed)
        row["channel_fit"] = channel_fit(algorithm.model, algorithm.adapt(theta, batch.first_support(SWEEP_PILOTS)),
                                         family, batch)
        row["tracking"] = tracking.tracking_scores(
            lambda family: tracking.learned_receiver(family, algorithm.model, lambda b: algorithm.adapt(theta, b)),
            tasks, seed)
    if METHODS[method].get("online"):
        row["online"] = online.online_scores(algorithm, theta, min(tasks, online.ONLINE_CHANNELS), seed, tasks)
    if METHODS[method].get("rotating"):
        row["rotating"] = online.rotating_scores(algorithm, theta, min(tasks, online.ONLINE_CHANNELS), seed)
    return row


def _scratch(tasks: int, seed: int) -> dict[str, Any]:
    """Conventional learning: a fresh channel model per held-out channel trained on its pilots alone."""
    from innerloop.engine import build
    from innerloop.engine.baselines import random_inits
    from innerloop.engine.inner import sgd_trajectory

    config = method_config("maml", 1, seed)
    family, backend = build.family(config), build.backend(config)
    model = build.model(config, family)
    learner, start = Learner(model, "mse"), random_inits(model, tasks, seed, backend)

    def adapt(batch: TaskBatch) -> Params:
        return sgd_trajectory(backend, learner, start, batch.support_x, batch.support_y, BASELINE_LR,
                              SCRATCH_STEPS).final

    return {"method": "scratch", "steps": SCRATCH_STEPS, "lr": BASELINE_LR,
            **_scores(model, adapt, "channel", tasks, seed)}


def model_based(tasks: int, seed: int) -> dict[str, dict[str, Any]]:
    """BER of Viterbi detection with the linear-model MMSE taps from the pilots, and with the true channel."""
    def scores(receiver) -> dict[str, Any]:
        return ber_scores("classifier", tasks, seed, receiver)

    def mmse(family: ISIChannel, batch: TaskBatch) -> torch.Tensor:
        taps = detection.mmse_taps(family, batch.support_x, batch.support_y)
        return detection.linear_metrics(family, taps, batch.query_x)

    def genie(family: ISIChannel, batch: TaskBatch) -> torch.Tensor:
        return detection.genie_metrics(family, detection.true_taps(batch.task_params, family.memory), batch.query_x)

    return {"mmse-viterbi": {"method": "mmse-viterbi", **scores(mmse),
                             "tracking": tracking.tracking_scores(tracking.mmse_receiver, tasks, seed)},
            "genie-viterbi": {"method": "genie-viterbi", **scores(genie),
                              "tracking": tracking.tracking_scores(tracking.genie_receiver, tasks, seed)}}


def reference_channel(tasks: int, seed: int) -> dict[str, Any]:
    """Held-out channel 0: its taps, the true noiseless output of every state and the MMSE
    linear model's at SWEEP_PILOTS pilots (for the channel-fit panel)."""
    family, batch = held_out("classifier", tasks, seed)
    taps = detection.true_taps(batch.task_params, family.memory)[:1]
    estimate = detection.mmse_taps(family, batch.support_x[:1, :SWEEP_PILOTS], batch.support_y[:1, :SWEEP_PILOTS])
    return {"taps": taps[0].tolist(), "true": family.noiseless(taps)[0].tolist(),
            "mmse": (estimate @ state_symbols(family.memory).T)[0].tolist()}


def viterbi_equalization(out: str | Path, iters: int = 3000, tasks: int = 200, algorithms: list[str] | None = None,
                         seed: int = 0, jobs: int = 1) -> dict[str, Any]:
    """Run the experiment (see the module docstring); returns the JSON document it writes."""
    from innerloop.engine.viterbi_equalization_plots import plot
    from innerloop.engine.viterbi_equalization_report import ber_table, summary

    methods, out = prepare("viterbi-equalization method", algorithms, list(METHODS), jobs, out, tasks=tasks)
    rows: dict[str, Any] = {}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for row in pool.map(run_method, [(m, iters, tasks, seed, str(out)) for m in methods]):
            entry = row["ber"][str(SWEEP_PILOTS)]
            print(f"[viterbi-equalization] {row['method']:<10} BER with {SWEEP_PILOTS} pilots {entry['mean']:.4f} ± "
                  f"{entry['ci95']:.4f}  ({row['train_seconds']:.0f}s)", flush=True)
            rows[row["method"]] = row
    baselines = {"scratch": _scratch(tasks, seed), **model_based(tasks, seed)}
    document: dict[str, Any] = {
        "experiment": "viterbi-equalization", "task": TASK, "task_options": channel_options(), "iters": iters,
        "held_out_channels": tasks, "eval_symbols": EVAL_SYMBOLS, "seed": seed, "pilots": list(PILOTS),
        "snrs_db": list(SNRS), "sweep_pilots": SWEEP_PILOTS, "meta_train_pilots": SHOTS,
        "tracking": {"blocks": tracking.BLOCKS, "pilots": tracking.PILOTS, "data": tracking.DATA,
                     "correlations": list(tracking.CORRELATIONS)},
        "online": {"channels": min(tasks, online.ONLINE_CHANNELS), "window": online.WINDOW,
                   "updates": online.UPDATES, "lr": online.ONLINE_LR, "rotation_period": tracking.ROTATION_PERIOD,
                   "rotation_blocks": tracking.ROTATION_BLOCKS},
        "meta_train_symbols": QUERIES, "hidden": list(HIDDEN), "meta_batch": META_BATCH, "outer_lr": OUTER_LR,
        "rows": rows, "baselines": baselines, "reference_channel": reference_channel(tasks, seed),
    }
    document["summary"] = summary(document)
    write_results(out, "viterbi_equalization", document, ber_table(document), plot)
    return document
