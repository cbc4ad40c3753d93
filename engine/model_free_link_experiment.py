"""``innerloop experiment model-free-link``: online meta-learning of an encoder and decoder without a
channel model, over a time-correlated channel (monograph §7.1.1, Figs. 7.1–7.2; Park et al. [163]).

The link (:class:`~innerloop.engine.model_free_link.ModelFreeLink`) sends ``BITS`` bits over
``USES`` complex channel uses of a 3-tap Rayleigh block-fading channel at 10 dB. That is 4 over 4,
not the monograph's 8 over 8: with 256 messages the same protocol learns too slowly for a CPU run
(held-out BLER 0.86 after 2400 frames at ρ = 0 in an exploratory run, against 0.25 with 16
messages). Frames arrive one
at a time. The channel of frame t follows the AR(1) process h_t = ρ·h_{t−1} + √(1 − ρ²)·z_t
(:meth:`~innerloop.engine.tasks.channel_coding.ChannelCoding.drifting_channels`). Each frame holds
``FRAME`` messages: ``PILOTS`` pilots (the support set) and the rest known as well during
meta-training (the query set). The transmitter explores (σ = 0.15) and learns from the losses fed
back; it never differentiates the channel. Each frame gives one Adam step (``OUTER_LR``) on its
meta-gradient, with no revisiting of earlier frames
(:func:`~innerloop.engine.online.online_meta_learning`).

Methods, run for each ρ in ``RHOS``:

* ``meta`` — online meta-learning: MAML whose inner loop adapts only the receiver's context
  vector φ_R (``CONTEXT`` numbers appended to the decoder's input; ``INNER_STEPS`` steps of
  ``INNER_LR`` on the pilots). The decoder learns to read a channel from a few numbers fitted to 8
  pilots, and the encoder follows its query-set losses.
* ``joint`` — online joint training ([163]'s baseline): the same link and stream, trained on
  each frame's messages without an inner loop.

Both are scored the same way. Every ``frames``/``CHECKS`` frames the current link is adapted on
the ``PILOTS`` pilots of ``tasks`` held-out frames and scored there (the final link also without
adapting, ``unadapted``). The held-out channels are
drawn afresh, independent of the stream, and sent without exploration. The score is the block
error rate BLER = P[m̂ ≠ m] on the other messages, as mean ± 95% CI over frames, and ``meta`` minus
``joint`` paired over the same frames. The
``conventional`` reference runs on the same held-out frames: BPSK with the least-squares channel
estimate from the same pilots and maximum-likelihood decoding
(:mod:`~innerloop.engine.conventional_link`). The prequential BLER of every arriving frame
(adapted on its pilots before the frame is learned from) is recorded too.

Writes ``model_free_link.json`` and ``model_free_link.png``: (a) held-out BLER against frames
(Fig. 7.1), (b) the final held-out BLER against ρ (Fig. 7.2).
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from innerloop.engine.errors import ConfigError
from innerloop.engine.params import Params
from innerloop.engine.stats import summarize
from innerloop.engine.tasks import ModelFreeChannelCoding, TaskBatch, generator_for

BITS, USES, TAPS, SNR_DB, EXPLORATION = 4, 4, 3, 10.0, 0.15
FRAME, PILOTS, CONTEXT, HIDDEN = 256, 8, 8, (64, 64)
INNER_LR, INNER_STEPS, OUTER_LR, CHECKS = 1.0, 2, 0.003, 10
RHOS = (0.0, 0.5, 0.9, 0.99)
METHODS = ("meta", "joint")


def family(exploration: float = EXPLORATION) -> ModelFreeChannelCoding:
    """The experiment's frames: PILOTS support and FRAME − PILOTS query messages."""
    return ModelFreeChannelCoding(shots=PILOTS, queries=FRAME - PILOTS, bits=BITS, uses=USES, taps=TAPS,
                                  snr_db=SNR_DB, context_dim=CONTEXT, exploration=exploration)


def algorithm(method: str):
    """MAML adapting the receiver's context (``meta``: INNER_STEPS steps in training; ``joint``: none)."""
    from innerloop import backends
    from innerloop.engine.algorithms import MAML

    steps = INNER_STEPS if method == "meta" else 0
    return MAML(family().learner(HIDDEN, "relu"), backends.get("cpu"), inner_lr=INNER_LR, inner_steps=steps,
                inner_params=["context"])


def frames(channels: torch.Tensor, generator: torch.Generator) -> Any:
    """One single-task batch per channel of ``channels`` [T, taps], drawn lazily in order."""
    source = family()
    for channel in channels:
        x, y = source.transmissions(channel[None], FRAME, generator)
        yield TaskBatch(x[:, :PILOTS], y[:, :PILOTS], x[:, PILOTS:], y[:, PILOTS:])


def held_out(tasks: int, seed: int) -> TaskBatch:
    """``tasks`` frames over fresh channels, sent without exploration (the same for every run)."""
    return family().without_exploration().sample(tasks, generator_for(seed, "model-free-link/held-out"))


def frame_bler(algo, params: Params, batch: TaskBatch, steps: int = INNER_STEPS) -> torch.Tensor:
    """Per-frame BLER [B] on the query messages after ``steps`` context steps on the pilots."""
    adapted = algo.adapt(params, batch, steps=steps)
    with torch.no_grad():
        decisions = torch.func.vmap(algo.model.apply)(adapted, batch.query_x).argmax(-1)
    return (decisions != batch.query_y).double().mean(dim=1)


def _run(args: tuple[str, float, int, int, int]) -> dict[str, Any]:
    """One method's online run at one ρ (a worker process)."""
    from innerloop.engine.online import online_meta_learning

    torch.set_num_threads(1)
    method, rho, count, tasks, seed = args
    algo = algorithm(method)
    params = algo.model.init(generator_for(seed, "model-free-link/init"))
    test = held_out(tasks, seed)
    checks = {round(count * (i + 1) / CHECKS) for i in range(CHECKS)}
    curve = [{"frames": 0, **summarize(frame_bler(algo, params, test))}]

    def check(t: int, current: Params) -> None:
        if t in checks:
            curve.append({"frames": t, **summarize(frame_bler(algo, current, test))})

    stream = generator_for(seed, f"model-free-link/stream/{rho}")
    channels = family().drifting_channels(count, rho, stream)
    began = time.perf_counter()
    run = online_meta_learning(algo, params, frames(channels, stream), lr=OUTER_LR,
                               score=lambda p, b: frame_bler(algo, p, b), callback=check, progress=False)
    return {"method": method, "rho": rho, "prequential": run.prequential, "held_out": curve,
            "final": frame_bler(algo, run.params, test).tolist(),
            "unadapted": frame_bler(algo, run.params, test, steps=0).tolist(), "seconds": time.perf_counter() - began}


def model_free_link(out: str | Path, iters: int = 4000, tasks: int = 300, algorithms: list[str] | None = None,
                    seed: int = 0, jobs: int = 1) -> dict[str, Any]:
    """Run the experiment (see the module docstring); ``iters`` frames per run; returns the JSON
    document it writes."""
    from innerloop.engine.conventional_link import conventional_bler
    from innerloop.engine.experiment_setup import prepare
    from innerloop.engine.model_free_link_plots import plot
    from innerloop.engine.rundir import atomic_write_json

    methods, out = prepare("model-free-link method", algorithms, list(METHODS), jobs, out, tasks=tasks)
    if int(iters) != iters or iters < CHECKS:
        raise ConfigError(f"need --iters >= {CHECKS} frames per run, got {iters}", "e.g. --iters 4000")
    conventional = conventional_bler(family(), held_out(tasks, seed))
    runs = [(method, rho, int(iters), tasks, seed) for method in methods for rho in RHOS]
    rows: dict[str, dict[str, Any]] = {method: {} for method in methods}
    finals: dict[tuple[str, float], torch.Tensor] = {}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for row in pool.map(_run, runs):
            final = finals[row["method"], row["rho"]] = torch.tensor(row["final"], dtype=torch.float64)
            rows[row["method"]][str(row["rho"])] = {
                "held_out": row["held_out"], "final": summarize(final),
                "unadapted": summarize(torch.tensor(row["unadapted"], dtype=torch.float64)),
                "minus_conventional": summarize(final - conventional),
                "prequential": row["prequential"], "seconds": row["seconds"]}
            print(f"[model-free-link] {row['method']:<5} ρ = {row['rho']:<4} held-out BLER after {iters} frames "
                  f"{float(final.mean()):.4f} (conventional {float(conventional.mean()):.4f})  "
                  f"({row['seconds']:.0f}s)", flush=True)
    document = {"experiment": "model-free-link", "task_options": family().config(), "frames": int(iters),
                "held_out_frames": tasks, "seed": seed, "pilots": PILOTS, "messages_per_frame": FRAME,
                "context_dim": CONTEXT, "hidden": list(HIDDEN), "inner_lr": INNER_LR, "inner_steps": INNER_STEPS,
                "outer_lr": OUTER_LR, "rhos": list(RHOS), "rows": rows,
                "conventional": summarize(conventional), "summary": summary(rows, conventional)}
    if set(methods) == set(METHODS):  # paired over the same held-out frames
        document["summary"]["meta_minus_joint"] = {str(rho): summarize(finals["meta", rho] - finals["joint", rho])
                                                   for rho in RHOS}
    atomic_write_json(out / "model_free_link.json", document)
    plot(document, out / "model_free_link.png")
    return document


def summary(rows: dict[str, dict[str, Any]], conventional: torch.Tensor) -> dict[str, Any]:
    """The final held-out BLER of every method by ρ, and where it is significantly below the
    conventional link's (paired over the same held-out frames)."""
    def below(row: dict[str, Any]) -> bool:
        difference = row["minus_conventional"]
        return difference["mean"] + difference["ci95"] < 0

    return {"final_bler": {m: {rho: r["final"]["mean"] for rho, r in by_rho.items()} for m, by_rho in rows.items()},
            "conventional_bler": float(conventional.mean()),
            "significantly_below_conventional": {m: [rho for rho, r in by_rho.items() if below(r)]
                                                 for m, by_rho in rows.items()}}
