"""The figure of ``innerloop experiment model-free-link``: (a) held-out BLER against the frames of
online training, one curve per method and ρ (monograph Fig. 7.1); (b) the final held-out BLER
against ρ (Fig. 7.2); the conventional BPSK + ML link as a dashed line in both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from innerloop.engine.plots import save_figure  # noqa: E402

COLORS = {"meta": "tab:red", "joint": "tab:blue"}
LABELS = {"meta": "online meta-learning", "joint": "online joint training"}


def plot(document: dict[str, Any], path: Path) -> None:
    """Write the experiment's figure to ``path``."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    rhos = [float(r) for r in document["rhos"]]
    shades = dict(zip(rhos, np.linspace(1.0, 0.35, len(rhos))))
    for method, by_rho in document["rows"].items():
        finals = []
        for rho, row in by_rho.items():
            curve = row["held_out"]
            frames = np.array([c["frames"] for c in curve])
            mean = np.array([c["mean"] for c in curve])
            left.plot(frames, mean, marker="o", ms=3, color=COLORS.get(method), alpha=shades[float(rho)],
                      label=f"{LABELS.get(method, method)}, ρ = {rho}")
            finals.append((float(rho), row["final"]["mean"], row["final"]["ci95"]))
        x, mean, ci = (np.array(v) for v in zip(*sorted(finals)))
        right.errorbar(np.arange(len(x)), mean, yerr=ci, marker="o", capsize=3, color=COLORS.get(method),
                       label=LABELS.get(method, method))
    for ax in (left, right):
        ax.axhline(document["conventional"]["mean"], color="k", ls="--", lw=1, label="conventional (BPSK + ML)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    right.set_xticks(np.arange(len(rhos)), [f"{r:g}" for r in sorted(rhos)])
    options = document["task_options"]
    left.set(xlabel="frames of online training", ylabel="BLER on held-out channels",
             title=f"(a) {document['pilots']} pilots per frame (Fig. 7.1)")
    right.set(xlabel="frame-to-frame channel correlation ρ",
              ylabel=f"BLER after {document['frames']} frames", title="(b) (Fig. 7.2)")
    fig.suptitle(f"encoder/decoder without a channel model: {options['bits']} bits over {options['uses']} uses, "
                 f"{options['taps']}-tap Rayleigh, {options['snr_db']:g} dB (monograph §7.1.1)", fontsize=10)
    save_figure(fig, path)
