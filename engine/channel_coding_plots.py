"""The figure of ``innerloop experiment channel-coding``: BLER on new channels vs training iterations
from each start (monograph Fig. 5.7); dashed lines are the RTN receivers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from innerloop.engine.plots import save_figure  # noqa: E402

STYLE = {"maml": "tab:red", "joint": "tab:blue", "random": "tab:gray"}


def plot(document: dict[str, Any], path: Path) -> None:
    """Write the experiment's figure to ``path``; iteration 0 is drawn at x = 0.5 on the log axis."""
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    iterations = document["iterations"]
    x = np.array([max(n, 0.5) for n in iterations])
    for name, row in document["rows"].items():
        mean = np.array([row["bler"][str(n)]["mean"] for n in iterations])
        ci = np.array([row["bler"][str(n)]["ci95"] for n in iterations])
        color = STYLE.get(name.split("-")[0])
        ax.plot(x, mean, marker="o", ms=3, color=color, ls="--" if row.get("receiver") == "rtn" else "-",
                label=f"{name} (SGD α = {row['step_size']:g})")
        ax.fill_between(x, np.maximum(mean - ci, 1e-4), mean + ci, color=color, alpha=0.15, lw=0)
    ax.set_ylim(bottom=1e-4)
    ax.set(xscale="log", yscale="log", xlabel="training iterations on the new channel (16 messages each)",
           ylabel="block error rate", title=f"{document['held_out_channels']} new channels")
    ax.set_xticks(x, [str(n) for n in iterations])
    ax.minorticks_off()
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    options = document["task_options"]
    fig.suptitle(f"encoder/decoder over a {options['taps']}-tap Rayleigh channel (monograph §5.3): {options['bits']} "
                 f"bits, {options['uses']} channel uses, {options['snr_db']:g} dB", fontsize=10)
    save_figure(fig, path)
