"""``innerloop experiment channel-coding``: meta-learning an encoder/decoder pair that adapts to a new
channel in few iterations (monograph §5.3, eqs. 5.15–5.17, Fig. 5.7; Park et al. [118]).

The learner is the whole link (:class:`~innerloop.engine.link_autoencoder.LinkAutoencoder`): 4 bits
over 4 complex channel uses of a 3-tap Rayleigh block-fading channel at 15 dB (the
``channel-coding`` family's defaults). Starts for a new channel:

* ``maml`` — meta-trained with MAML's one-step update ϕ = θ − α∇L (eq. 5.16, α = 0.1) on an
  endless stream of channels (16 messages per inner step, 64 per meta-validation, 16 channels per
  meta-batch, Adam 0.003, ``iters`` iterations), run directory ``OUT/runs/maml``;
* ``joint`` — one encoder/decoder pair trained on the pooled messages of the meta-training
  channels (monograph eq. 1.2), the same iterations and optimizer;
* ``random`` — conventional learning from a random initialization;
* ``maml-rtn``, ``joint-rtn``, ``random-rtn`` — the same three with a radio transformer network
  (a learned 3-tap equalizer, [115]) in front of the decoder, as in the monograph's Fig. 5.7;
  the MAML run lives in ``OUT/runs/maml-rtn``.

Each start is then trained on every held-out channel by SGD, one fresh batch of 16 messages per
iteration (its step size chosen from ``STEP_SIZES`` by the mean BLER over ``ITERATIONS`` on
``VALIDATION_CHANNELS`` other channels), and scored after each of ``ITERATIONS`` iterations by
the block error rate BLER = P[m̂ ≠ m] (eq. 5.17) on ``EVAL_MESSAGES`` messages per channel, mean ±
95% CI over ``tasks`` channels, and MAML's BLER minus the others', paired over the same channels.
Writes ``channel_coding.json`` and ``channel_coding.png``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from innerloop.engine.config import TrainConfig
from innerloop.engine.experiment_setup import prepare
from innerloop.engine.inner import inner_step
from innerloop.engine.learner import Learner
from innerloop.engine.params import Params, cast, expand_to_tasks
from innerloop.engine.rundir import atomic_write_json
from innerloop.engine.stats import summarize
from innerloop.engine.tasks import generator_for

INNER_LR, META_BATCH, OUTER_LR, SHOTS, QUERIES = 0.1, 16, 0.003, 16, 64
ITERATIONS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
STEP_SIZES, VALIDATION_CHANNELS, EVAL_MESSAGES = (0.01, 0.1), 50, 1000
METHODS = ("maml", "joint", "random", "maml-rtn", "joint-rtn", "random-rtn")


def _config(iters: int, seed: int, receiver: str = "mlp") -> TrainConfig:
    return TrainConfig(algo="maml", task="channel-coding", shots=SHOTS, queries=QUERIES, inner_steps=1,
                       inner_lr=INNER_LR, meta_batch=META_BATCH, outer_lr=OUTER_LR, iters=iters, seed=seed,
                       eval_every=max(1, iters // 5), eval_tasks=64, checkpoint_every=iters,
                       task_options={"receiver": receiver})


def _start(method: str, iters: int, seed: int, out: Path) -> tuple[Params, float, Any]:
    """A method's start (meta-parameters), its training seconds, and its (family, model, backend)."""
    from innerloop.engine import build
    from innerloop.engine.baselines import train_joint
    from innerloop.engine.trainer import Trainer

    kind, _, receiver = method.partition("-")
    config = _config(iters, seed, receiver or "mlp")
    family, backend = build.family(config), build.backend(config)
    model = build.model(config, family)
    began = time.perf_counter()
    if kind == "maml":
        start = Trainer(config, out / "runs" / method, progress=False).run().params
    elif kind == "joint":
        start = train_joint(family, model, backend, iters=iters, meta_batch=META_BATCH, lr=OUTER_LR, seed=seed,
                            progress=False)
    else:
        start = model.init(generator_for(seed, "channel-coding/random-init"))
    start = cast({k: v.detach() for k, v in start.items()}, backend.dtype, backend.device)
    return start, time.perf_counter() - began, (family, model, backend)


def block_errors(learner: Learner, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-channel BLER [B] of the decoder's decisions (eq. 5.17)."""
    with torch.no_grad():
        return (learner.predict_tasks(params, x).argmax(-1) != y).double().mean(dim=1)


def training_curve(built, start: Params, channels: torch.Tensor, lr: float, purpose: str, seed: int
                   ) -> dict[int, torch.Tensor]:
    """Per-channel BLER after each of ITERATIONS SGD iterations on fresh messages, from ``start``."""
    family, model, backend = built
    learner = Learner(model, "cross_entropy")
    test_x, test_y = family.transmissions(channels, EVAL_MESSAGES, generator_for(seed, f"{purpose}/test"))
    train = generator_for(seed, f"{purpose}/train")
    params, curve = expand_to_tasks(start, channels.shape[0]), {}
    for iteration in range(max(ITERATIONS) + 1):
        if iteration in ITERATIONS:
            curve[iteration] = block_errors(learner, params, test_x, test_y)
        if iteration < max(ITERATIONS):
            x, y = family.transmissions(channels, SHOTS, train)
            _, params = inner_step(backend, learner, params, x, y, lr)
    return curve


def channel_coding(out: str | Path, iters: int = 2000, tasks: int = 100, algorithms: list[str] | None = None,
                   seed: int = 0, jobs: int = 1) -> dict[str, Any]:
    """Run the experiment (see the module docstring); returns the JSON document it writes."""
    from innerloop.engine.channel_coding_plots import plot

    methods, out = prepare("channel-coding method", algorithms, list(METHODS), jobs, out, tasks=tasks)
    rows, curves = {}, {}
    for method in methods:
        start, seconds, built = _start(method, iters, seed, out)
        family = built[0]  # the channels depend on the seed only, not on the receiver
        validation = family.channels(VALIDATION_CHANNELS, generator_for(seed, "channel-coding/validation"))
        test = family.channels(tasks, generator_for(seed, "channel-coding/test"))
        chosen = {lr: float(torch.stack(list(training_curve(built, start, validation, lr, "validation", seed).values()))
                            .mean()) for lr in STEP_SIZES}
        lr = min(chosen, key=chosen.get)
        curve = curves[method] = training_curve(built, start, test, lr, "test", seed)
        rows[method] = {"receiver": family.receiver, "step_size": lr, "validation_mean_bler": chosen,
                        "train_seconds": seconds, "bler": {str(n): summarize(v) for n, v in curve.items()}}
        print(f"[channel-coding] {method:<6} (α = {lr}): BLER " + ", ".join(
            f"{n} it. {s['mean']:.4f}" for n, s in rows[method]["bler"].items()), flush=True)
    options = {k: v for k, v in family.config().items() if k != "receiver"}
    document = {"experiment": "channel-coding", "task_options": options, "iters": iters, "seed": seed,
                "held_out_channels": tasks, "eval_messages": EVAL_MESSAGES, "iterations": list(ITERATIONS),
                "inner_lr": INNER_LR, "meta_batch": META_BATCH, "outer_lr": OUTER_LR, "messages_per_iteration": SHOTS,
                "rows": rows, "summary": summary(rows)}
    if "maml" in curves:  # paired over the same test channels, messages and noise
        document["summary"]["maml_minus"] = {other: {str(n): summarize(curves["maml"][n] - curve[n]) for n in curve}
                                             for other, curve in curves.items() if other != "maml"}
    atomic_write_json(out / "channel_coding.json", document)
    plot(document, out / "channel_coding.png")
    return document


def summary(rows: dict[str, Any], target: float = 1e-2) -> dict[str, Any]:
    """BLER after one iteration, and the first iteration count with mean BLER ≤ ``target`` (None: never)."""
    def first_below(bler: dict[str, Any]) -> int | None:
        return next((int(n) for n, s in bler.items() if s["mean"] <= target), None)

    return {"bler_after_one_iteration": {m: r["bler"]["1"]["mean"] for m, r in rows.items()},
            f"iterations_to_bler_{target:g}": {m: first_below(r["bler"]) for m, r in rows.items()}}
