"""The figure of ``innerloop experiment power-control``: held-out sum-rate vs the number of
meta-training periods K (monograph Fig. 5.11), with the model-based and conventional references,
and each method's paired gain over joint learning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from innerloop.engine.plots import save_figure  # noqa: E402

STYLE = {"joint": "tab:blue", "fomaml": "tab:red", "reptile": "tab:orange", "modular": "tab:green"}
FLOOR = -0.6  # lower limit of the paired-gain panel
REFERENCE_STYLE = {"wmmse": ("k", "--"), "full-power": ("gray", ":"), "conventional": ("tab:purple", "-.")}


def plot(document: dict[str, Any], path: Path) -> None:
    """Write the experiment's figure to ``path``."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    periods = document["periods"]
    for method, by_k in document["rows"].items():
        ks = [k for k in periods if str(k) in by_k]
        mean = np.array([by_k[str(k)]["mean"] for k in ks])
        ci = np.array([by_k[str(k)]["ci95"] for k in ks])
        left.plot(ks, mean, marker="o", ms=4, color=STYLE.get(method), label=method)
        left.fill_between(ks, mean - ci, mean + ci, color=STYLE.get(method), alpha=0.15, lw=0)
    for name, summary in document["references"].items():
        color, style = REFERENCE_STYLE.get(name, ("k", "-"))
        left.axhline(summary["mean"], color=color, ls=style, lw=1.2, label=f"{name} ({summary['mean']:.2f})")
    left.set(xscale="log", xlabel="meta-training periods K", ylabel="sum-rate (bit/slot) on new periods",
             title=f"{document['held_out_periods']} held-out periods, adapted on {document['shots']} slots")
    left.set_xticks(periods, [str(k) for k in periods])
    left.minorticks_off()
    left.grid(alpha=0.3)
    left.legend(fontsize=7, ncol=2)
    for method, by_k in document.get("minus_joint", {}).items():
        ks = [k for k in periods if str(k) in by_k]
        mean = np.array([by_k[str(k)]["mean"] for k in ks])
        ci = np.array([by_k[str(k)]["ci95"] for k in ks])
        right.errorbar(ks, mean, yerr=ci, marker="o", ms=4, capsize=3, color=STYLE.get(method), label=method)
        for k, m in zip(ks, mean):
            if m < FLOOR:  # keep the small differences readable; name the collapse in words
                right.annotate(f"{method} K={k}: {m:+.2f} (off scale)", (k, FLOOR), xytext=(4, 6),
                               textcoords="offset points", fontsize=7, color=STYLE.get(method))
    bottom, top = right.get_ylim()
    right.set_ylim(max(bottom, FLOOR), top)
    right.axhline(0, color=STYLE["joint"], lw=1)
    right.set(xscale="log", xlabel="meta-training periods K", ylabel="sum-rate − joint learning's (paired)",
              title="gain over joint learning on the same periods")
    right.set_xticks(periods, [str(k) for k in periods])
    right.minorticks_off()
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    options = document["task_options"]
    fig.suptitle(f"power control with a REGNN (monograph §5.5): {options['min_links']}–{options['max_links']} links, "
                 f"{options['snr_db']:g} dB, {document['iters']} meta-iterations", fontsize=10)
    save_figure(fig, path)
