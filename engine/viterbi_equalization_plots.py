"""The figure of ``innerloop experiment viterbi-equalization``: (a) BER vs pilots, (b) BER vs SNR
at a fixed pilot count, (c) one held-out channel's noiseless output per state, true and learned,
(d) BER on drifting channels vs the block correlation ρ, pilots alone and decision-directed, and, when
the run has them, (e, f) the same with each channel's initialization learned online (pilots alone,
decision-directed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from innerloop.engine.plots import save_figure  # noqa: E402

STYLE = {"maml": "tab:red", "cavia": "tab:purple", "joint": "tab:blue", "viterbinet": "tab:orange",
         "scratch": "tab:gray", "mmse-viterbi": "k", "genie-viterbi": "k"}
DASHED = ("mmse-viterbi", "scratch", "joint")


def _curves(ax, document: dict[str, Any], key: str, xs: list[float], labels: list[str]) -> None:
    """One line with a 95% band per receiver of document[...][key][label] against xs."""
    for name, entry in {**document["rows"], **document["baselines"]}.items():
        means = np.array([entry[key][label]["mean"] for label in labels])
        cis = np.array([entry[key][label]["ci95"] for label in labels])
        ls = ":" if name == "genie-viterbi" else "--" if name in DASHED else "-"
        floor = 0.5 / (document["eval_symbols"] * document["held_out_channels"])  # a zero BER on a log axis
        ax.plot(xs, np.maximum(means, floor), marker="o", ms=3, ls=ls, color=STYLE.get(name), label=name)
        ax.fill_between(xs, np.maximum(means - cis, floor), means + cis, color=STYLE.get(name), alpha=0.12, lw=0)
    ax.set_yscale("log")
    ax.grid(alpha=0.3)


def _channel_panel(ax, document: dict[str, Any]) -> None:
    reference = document["reference_channel"]
    states = np.arange(len(reference["true"]))
    ax.plot(states, reference["true"], "ko", ms=6, label="true A·tanh(hᵀs/A)")
    ax.plot(states, reference["mmse"], "k_", ms=10, mew=2, label="mmse-viterbi (linear ĥᵀs)")
    for name, row in document["rows"].items():
        if "channel_fit" in row:
            ax.plot(states, row["channel_fit"], marker="x", ls="none", color=STYLE.get(name), label=f"{name} f(s)")
    taps = ", ".join(f"{t:+.2f}" for t in reference["taps"])
    ax.set(xlabel="state index Σ b_{t−l} 2^l", ylabel="noiseless output",
           title=f"(c) one held-out channel after {document['sweep_pilots']} pilots")
    ax.text(0.98, 0.03, f"h = ({taps})", transform=ax.transAxes, ha="right", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _tracking_panel(ax, document: dict[str, Any]) -> None:
    rhos = document["tracking"]["correlations"]
    xs = [1 - r for r in rhos]  # the drift per block, 1 − ρ, on a log axis
    for name, entry in {**document["rows"], **document["baselines"]}.items():
        if "tracking" not in entry:
            continue
        for mode, ls in (("pilots", "--"), ("decision-directed", "-")):
            ax.plot(xs, [entry["tracking"][str(r)][mode]["mean"] for r in rhos], marker="o", ms=3, ls=ls,
                    color=STYLE.get(name), label=f"{name}, {mode}" if name != "genie-viterbi" or mode == "pilots"
                    else None)
    ax.set(xscale="log", yscale="log", xlabel="channel drift per block 1 − ρ", ylabel="bit error rate",
           title=f"(d) drifting channels, {document['tracking']['pilots']} pilots + {document['tracking']['data']} "
                 "data per block; dashed: pilots only")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)


def _online_panel(ax, document: dict[str, Any], support: str, letter: str) -> None:
    """BER vs 1 − ρ of each method's receiver with its initialization fixed or learned online."""
    rhos = document["tracking"]["correlations"]
    xs = [1 - r for r in rhos]
    for name, row in document["rows"].items():
        if "online" not in row:
            continue
        for update, ls in (("fixed", ":"), ("online-tuning", "--"), ("online-meta", "-")):
            ax.plot(xs, [row["online"][str(r)][support][update]["mean"] for r in rhos], marker="o", ms=3, ls=ls,
                    color=STYLE.get(name), label=f"{name}, {update}")
    ax.set(xscale="log", yscale="log", xlabel="channel drift per block 1 − ρ", ylabel="bit error rate",
           title=f"({letter}) online initialization, {support} ({document['online']['channels']} channels)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)


def plot(document: dict[str, Any], path: Path) -> None:
    online = any("online" in row for row in document["rows"].values())
    fig, axes = plt.subplots(2, 3 if online else 2, figsize=(19 if online else 13, 9))
    axes = axes.flatten()
    pilots = document["pilots"]
    _curves(axes[0], document, "ber", pilots, [str(n) for n in pilots])
    axes[0].axvline(document["meta_train_pilots"], color="k", lw=0.5, alpha=0.4)
    axes[0].set(xscale="log", xlabel="pilots", ylabel="bit error rate",
                title=f"(a) BER on {document['held_out_channels']} held-out channels, 14 dB")
    axes[0].set_xticks(pilots, [str(n) for n in pilots])
    axes[0].minorticks_off()
    axes[0].legend(fontsize=7, ncol=2)
    snrs = document["snrs_db"]
    _curves(axes[1], document, "ber_vs_snr", snrs, [str(s) for s in snrs])
    axes[1].set(xlabel="SNR (dB); meta-trained at 14 dB", ylabel="bit error rate",
                title=f"(b) BER vs SNR, {document['sweep_pilots']} pilots")
    _channel_panel(axes[2], document)
    _tracking_panel(axes[3], document)
    if online:
        _online_panel(axes[4], document, "pilots", "e")
        _online_panel(axes[5], document, "decision-directed", "f")
    fig.suptitle("Viterbi detection with meta-learned branch metrics on a saturating 4-tap ISI channel "
                 "(monograph §7.3)", fontsize=10)
    save_figure(fig, path)
