"""The figure of ``innerloop experiment channel-prediction``: (a) held-out NMSE vs training windows
N_tr (monograph Fig. 5.9), (b) one held-out frame's channel entry and its predictions after
adapting on a few windows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from innerloop.engine.plots import save_figure  # noqa: E402

STYLE = {"meta": "tab:red", "joint": "tab:blue", "conventional": "tab:gray", "outdated": "k",
         "lstd-meta": "tab:purple", "lstd-joint": "tab:cyan"}


def plot(document: dict[str, Any], path: Path) -> None:
    """Write the experiment's figure to ``path``."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    windows = document["training_windows"]
    for name, by_n in document["rows"].items():
        mean = np.array([by_n[str(n)]["nmse"]["mean"] for n in windows])
        ci = np.array([by_n[str(n)]["nmse"]["ci95"] for n in windows])
        db = 10 * np.log10(mean)
        low, high = 10 * np.log10(np.maximum(mean - ci, 1e-12)), 10 * np.log10(mean + ci)
        ls = ":" if name == "outdated" else "--" if name in ("joint", "conventional", "lstd-joint") else "-"
        left.plot(windows, db, marker="o", ms=3, ls=ls, color=STYLE.get(name), label=name)
        left.fill_between(windows, low, high, color=STYLE.get(name), alpha=0.12, lw=0)
    left.set(xscale="log", xlabel="training windows N_tr of the new frame", ylabel="NMSE (dB)",
             title=f"{document['held_out_frames']} held-out frames")
    left.set_xticks(windows, [str(n) for n in windows])
    left.minorticks_off()
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    example = document["example"]
    if example:
        slots = np.arange(len(example["target"]))
        right.plot(slots, example["target"], color="k", lw=2, alpha=0.4, label="channel (noisy estimate)")
        for name, by_n in document["rows"].items():
            right.plot(slots, by_n[str(example["shots"])]["example"], color=STYLE.get(name), lw=1,
                       ls=":" if name == "outdated" else "-", label=name)
        right.set(xlabel="test window", ylabel="Re h₁ (first antenna pair, first tap)",
                  title=f"one held-out frame, predictors adapted on {example['shots']} windows")
        right.grid(alpha=0.3)
        right.legend(fontsize=8)
    options = document["task_options"]
    fig.suptitle(f"channel prediction (monograph §5.4): S = {options['receive']}·{options['transmit']}·"
                 f"{options['taps']}, {options['paths']} paths, L = {options['window']}, δ = {options['lag']}, "
                 f"{options['snr_db']:g} dB; Θ from {document['meta_frames']} frames", fontsize=10)
    save_figure(fig, path)
