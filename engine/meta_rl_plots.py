"""The figure of ``innerloop experiment meta-rl``: (a) the mean held-out return against the number
of policy-gradient steps on the new goal, one curve per method with the scratch start and the
optimal return (as MAML's 2D-navigation figure); (b) the mean-action paths of a few held-out goals
before and after adaptation, for MAML and joint training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from innerloop.engine.plots import save_figure  # noqa: E402

COLORS = {"maml": "tab:red", "maml-lvc": "tab:orange", "fomaml": "tab:purple", "reptile": "tab:green",
          "joint": "tab:blue", "scratch": "tab:gray"}
LABELS = {"maml": "MAML (REINFORCE Hessian)", "maml-lvc": "MAML (LVC Hessian)", "fomaml": "FOMAML",
          "reptile": "Reptile", "joint": "joint training (pretrained)", "scratch": "random start"}


def _curves(ax, document: dict[str, Any]) -> None:
    rows = {**document["rows"], "scratch": document["scratch"]}
    for method, row in rows.items():
        steps = np.array([r["steps"] for r in row])
        mean, ci = (np.array([r["return"][k] for r in row]) for k in ("mean", "ci95"))
        ax.errorbar(steps, mean, yerr=ci, marker="o", capsize=3, color=COLORS.get(method),
                    ls=":" if method == "scratch" else "-", label=LABELS.get(method, method))
    ax.axhline(document["optimal_return"]["mean"], color="k", ls="--", lw=1, label="optimal")
    ax.set_xticks(range(document["steps"] + 1))
    ax.set(xlabel="policy-gradient steps on the new goal", ylabel="mean return on held-out goals",
           title="(a) adaptation to new goals")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _paths(ax, document: dict[str, Any]) -> None:
    from matplotlib.lines import Line2D

    paths, last = document["paths"], document["steps"]
    shown = [m for m in ("maml", "joint") if m in paths] or [m for m in paths if m != "goals"][:1]
    styles = {(shown[0], 0): (":", 2.0), (shown[0], last): ("-", 2.4)}
    if len(shown) > 1:
        styles[(shown[1], last)] = ("--", 1.2)
    for task, goal in enumerate(paths["goals"]):
        ax.plot(*goal, marker="*", ms=14, color=f"C{task}", mec="k", ls="none")
        for (method, steps), (style, width) in styles.items():
            path = np.vstack([[0.0, 0.0], np.array(paths[method][steps][task])])
            ax.plot(path[:, 0], path[:, 1], ls=style, lw=width, color=f"C{task}")
    ax.plot(0, 0, marker="o", color="k", ls="none")
    handles = [Line2D([], [], color="k", ls=style, lw=width,
                      label=f"{LABELS.get(method, method)}, {steps} steps") for (method, steps), (style, width) in
               styles.items()]
    handles.append(Line2D([], [], color="k", marker="*", ms=10, ls="none", label="goal (one colour per goal)"))
    ax.legend(handles=handles, fontsize=7)
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(alpha=0.3)
    ax.set(xlabel="x", ylabel="y", title="(b) mean-action paths from the origin on held-out goals")


def plot(document: dict[str, Any], path: Path) -> None:
    """Write the experiment's figure to ``path``."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    _curves(left, document)
    _paths(right, document)
    options = document["task_options"]
    fig.suptitle(f"meta-RL on 2D navigation: {options['horizon']}-step episodes, {options['shots']} episodes per "
                 f"step, α = {document['inner_lr']} (monograph §7.1.2)", fontsize=10)
    save_figure(fig, path)
