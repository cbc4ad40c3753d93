"""The figure of ``innerloop experiment uabs-trajectory``: (a) the held-out return after the inner
steps against the number of traffic patterns seen, one curve per method, with the planned optimum
and the adapted random start; (b) the held-out return against the number of policy-gradient steps
at the end; (c) the UABS's mean-action flights over a few held-out roads before and after
adapting, with each platoon's path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from innerloop.engine.plots import save_figure  # noqa: E402

COLORS = {"maml": "tab:red", "fomaml": "tab:purple", "fomaml-replay": "tab:green", "joint": "tab:blue",
          "scratch": "tab:gray"}
LABELS = {"maml": "MAML, no revisiting", "fomaml": "FOMAML, no revisiting",
          "fomaml-replay": "FOMAML, revisiting 15 old patterns", "joint": "joint training (online)",
          "scratch": "random start"}


def _online(ax, document: dict[str, Any]) -> None:
    for method, row in document["rows"].items():
        seen = np.array([c["patterns"] for c in row["held_out"]])
        mean, ci = (np.array([c[k] for c in row["held_out"]]) for k in ("mean", "ci95"))
        ax.plot(seen, mean, marker="o", ms=3, color=COLORS.get(method), label=LABELS.get(method, method))
        ax.fill_between(seen, mean - ci, mean + ci, color=COLORS.get(method), alpha=0.2)
    steps = document["inner_steps"]
    ax.axhline(document["planned"]["held_out"]["mean"], color="k", ls="--", lw=1, label="planned, road known")
    ax.axhline(document["scratch"]["adaptation"][steps]["return"]["mean"], color=COLORS["scratch"], ls=":",
               label=LABELS["scratch"])
    ax.set(xlabel="traffic patterns seen", ylabel=f"held-out return after {steps} policy-gradient steps",
           title="(a) continual meta-training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _adaptation(ax, document: dict[str, Any]) -> None:
    rows = {m: r["adaptation"] for m, r in document["rows"].items()} | {"scratch": document["scratch"]["adaptation"]}
    for method, row in rows.items():
        steps = np.array([r["steps"] for r in row])
        mean, ci = (np.array([r["return"][k] for r in row]) for k in ("mean", "ci95"))
        ax.errorbar(steps, mean, yerr=ci, marker="o", capsize=3, color=COLORS.get(method),
                    ls=":" if method == "scratch" else "-", label=LABELS.get(method, method))
    ax.axhline(document["planned"]["held_out"]["mean"], color="k", ls="--", lw=1, label="planned, road known")
    ax.set_xticks(range(document["steps"] + 1))
    ax.set(xlabel="policy-gradient steps on the new pattern", ylabel="mean held-out return",
           title=f"(b) after {document['patterns']} patterns")
    ax.grid(alpha=0.3)


def _flights(ax, document: dict[str, Any], environment) -> None:
    from matplotlib.lines import Line2D

    rows, steps = document["rows"], document["inner_steps"]
    shown = next((m for m in ("fomaml", "maml", "fomaml-replay", "joint") if m in rows), None)
    roads = torch.tensor(document["example_roads"], dtype=torch.float64)
    platoons = environment.platoon(roads, document["task_options"]["horizon"]).mean(-2).numpy()
    for task, platoon in enumerate(platoons):
        ax.plot(platoon[:, 0], platoon[:, 1], color=f"C{task}", lw=7, alpha=0.3, solid_capstyle="butt")
        heading = np.degrees(np.arctan2(*(platoon[-1] - platoon[-2])[::-1]))
        ax.plot(*platoon[-1], marker=(3, 0, heading - 90), ms=10, color=f"C{task}", alpha=0.5, ls="none")
        if shown is not None:
            path = np.vstack([[0.0, 0.0], np.array(rows[shown]["paths"][steps][task])])
            ax.plot(path[:, 0], path[:, 1], lw=1.8, color=f"C{task}", marker=".", ms=4)
    if shown is not None:  # before adapting, every road gets the same flight
        path = np.vstack([[0.0, 0.0], np.array(rows[shown]["paths"][0][0])])
        ax.plot(path[:, 0], path[:, 1], ls=":", lw=1.8, color="k", marker=".", ms=4)
    ax.plot(0, 0, marker="o", color="k", ls="none")
    handles = [Line2D([], [], color="gray", lw=7, alpha=0.3, label="platoon centre over the episode (one colour "
                      "per road)")]
    if shown is not None:
        handles += [Line2D([], [], color="k", ls=":", label=f"UABS ({LABELS.get(shown, shown)}), before adapting"),
                    Line2D([], [], color="k", label=f"UABS, after {steps} steps on the road's episodes")]
    ax.legend(handles=handles, fontsize=7)
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(alpha=0.3)
    ax.set(xlabel="x", ylabel="y", title="(c) mean-action flights on held-out roads")


def plot(document: dict[str, Any], environment, path: Path) -> None:
    """Write the experiment's figure to ``path`` (``environment``: the family's AerialCoverage)."""
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    _online(axes[0], document)
    _adaptation(axes[1], document)
    _flights(axes[2], document, environment)
    options = document["task_options"]
    fig.suptitle(f"UABS trajectory over changing traffic: {options['vehicles']} vehicles, {options['horizon']}-step "
                 f"flights, {options['shots']} episodes per step, α = {document['inner_lr']} (monograph §7.1.2, "
                 f"[138])", fontsize=10)
    save_figure(fig, path)
