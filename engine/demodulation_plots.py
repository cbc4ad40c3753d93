"""The figure of ``innerloop experiment demodulation``: (a) SER vs meta-test pilots Ñ_tr
(monograph Fig. 5.2), (b) reliability diagrams at Ñ_tr = 8 (Fig. 5.5), (c, d) the decision regions
of one held-out device's demodulator at the meta-learned start and after adapting on 8 pilots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from innerloop.engine.demodulation import region_map  # noqa: E402
from innerloop.engine.plots import save_figure  # noqa: E402

STYLE = {"maml": "tab:red", "fomaml": "tab:orange", "reptile": "tab:brown", "cavia": "tab:purple",
         "bmaml": "tab:green", "joint": "tab:blue", "scratch": "tab:gray", "mmse-ml": "k", "genie-ml": "k"}
SER_TICKS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0)
REGIONS_OF = ("cavia", "maml", "bmaml", "reptile", "fomaml", "joint")  # the first one run draws panels c, d


def _ser_ticks(ax) -> None:
    """Readable SER values on a log axis (matplotlib shows only the decades otherwise)."""
    low, high = ax.get_ylim()
    ticks = [t for t in SER_TICKS if low <= t <= high]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()


def _ser_panel(ax, document: dict[str, Any]) -> None:
    pilots = document["pilots"]
    for name, entry in {**document["rows"], **document["baselines"]}.items():
        means = np.array([entry["ser"][str(n)]["mean"] for n in pilots])
        cis = np.array([entry["ser"][str(n)]["ci95"] for n in pilots])
        ls = ":" if name == "genie-ml" else "--" if name in ("mmse-ml", "scratch", "joint") else "-"
        ax.plot(pilots, means, marker="o", ms=3, ls=ls, color=STYLE.get(name), label=name)
        ax.fill_between(pilots, means - cis, means + cis, color=STYLE.get(name), alpha=0.12, lw=0)
    ax.axvline(document["meta_train_pilots"], color="k", lw=0.5, alpha=0.4)
    ax.set(xscale="log", yscale="log", xlabel="pilots at meta-test Ñ_tr", ylabel="symbol error rate",
           title=f"SER on {document['held_out_devices']} held-out devices")
    ax.set_xticks(pilots, [str(n) for n in pilots])
    _ser_ticks(ax)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)


def _reliability_panel(ax, document: dict[str, Any]) -> None:
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    for name, row in document["rows"].items():
        diagram = row["calibration"]
        points = [(c, a) for c, a in zip(diagram["confidence"], diagram["accuracy"]) if c is not None]
        ax.plot(*zip(*points), marker="o", ms=3, color=STYLE.get(name), label=f"{name} (ECE {diagram['ece']:.3f})")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence p(ŝ|y)", ylabel="accuracy",
           title=f"reliability at Ñ_tr = {document['calibration_pilots']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _regions_panel(ax, document: dict[str, Any], method: str, which: str) -> None:
    regions, example = document["rows"][method]["regions"], document["example_device"]
    extent = regions["extent"]
    ax.imshow(region_map(regions, which), origin="lower", extent=(-extent, extent, -extent, extent), cmap="tab20",
              vmin=0, vmax=19, alpha=0.45, interpolation="nearest")
    received, labels = np.array(example["received"]), np.array(example["labels"])
    ax.scatter(received[:, 0], received[:, 1], c=labels, cmap="tab20", vmin=0, vmax=19, s=5, edgecolors="k",
               linewidths=0.2)
    pilots = np.array(example["pilots"])
    ax.scatter(pilots[:, 0], pilots[:, 1], marker="*", s=80, c="w", edgecolors="k", label="pilots")
    title = "meta-learned start" if which == "start" else f"adapted on {document['calibration_pilots']} pilots"
    ax.set(xlim=(-extent, extent), ylim=(-extent, extent), xlabel="Re y", ylabel="Im y",
           title=f"{method}: {title}")
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="upper right")


def plot(document: dict[str, Any], path: Path) -> None:
    """Write the experiment's figure to ``path``."""
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.8))
    _ser_panel(axes[0], document)
    _reliability_panel(axes[1], document)
    method = next((m for m in REGIONS_OF if m in document["rows"]), None)
    for ax, which in zip(axes[2:], ("start", "adapted")):
        if method is None:
            ax.set_axis_off()
        else:
            _regions_panel(ax, document, method, which)
    fig.suptitle(f"few-pilot demodulation (monograph §5.2): {document['task_options']['order']}-QAM, I/Q imbalance, "
                 f"Rayleigh fading, {document['task_options']['snr_db']:g} dB; meta-trained with "
                 f"{document['meta_train_pilots']} pilots per device", fontsize=10)
    save_figure(fig, path)


def plot_devices(document: dict[str, Any], path: Path) -> None:
    """SER at the test pilot count vs the number of meta-training devices (monograph Fig. 5.4)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    counts = document["device_counts"]
    for name, by_count in document["rows"].items():
        means = np.array([by_count[str(k)]["ser"]["mean"] for k in counts])
        cis = np.array([by_count[str(k)]["ser"]["ci95"] for k in counts])
        ax.errorbar(counts, means, yerr=cis, marker="o", ms=4, capsize=3, color=STYLE.get(name), label=name,
                    ls="--" if name == "joint" else "-")
    for name, entry in document["model_based"].items():
        ax.axhline(entry["mean"], color="k", ls=":" if name == "genie-ml" else "--", lw=1, label=name)
    ax.set(xscale="log", yscale="log", xlabel="meta-training devices K",
           ylabel=f"SER with Ñ_tr = {document['test_pilots']} pilots",
           title=f"SER vs meta-training devices: {document['held_out_devices']} held-out devices")
    ax.set_xticks(counts, [str(k) for k in counts])
    _ser_ticks(ax)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save_figure(fig, path)
