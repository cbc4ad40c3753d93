"""The benchmark picture: tasks/s vs B per implementation (one panel per primitive, log-log) and
peak memory vs inner steps N for the second-order meta-gradient."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_results(results: dict, path: Path) -> None:
    primitives = list(dict.fromkeys(row["primitive"] for row in results["cases"]))
    memory = results.get("memory")
    panels = len(primitives) + (1 if memory else 0)
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 4.0), squeeze=False)
    machine = results["machine"]
    implementations = dict.fromkeys(n for row in results["cases"] for n in row["results"])
    color = {name: f"C{i}" for i, name in enumerate(implementations)}  # one colour per implementation
    for ax, primitive in zip(axes[0], primitives):
        rows = [row for row in results["cases"] if row["primitive"] == primitive]
        names = list(dict.fromkeys(n for row in rows for n in row["results"]))
        for name in names:
            points = [(row["batch"], row["results"][name]) for row in rows if name in row["results"]]
            batches = [b for b, _ in points]
            rate = [r["tasks_per_s"] for _, r in points]
            low = [b / r["p75_s"] for b, r in points]
            high = [b / r["p25_s"] for b, r in points]
            ax.plot(batches, rate, marker="o", label=name, color=color[name])
            ax.fill_between(batches, low, high, alpha=0.2, color=color[name])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("tasks per batch B")
        ax.set_ylabel("tasks / s (median, IQR band)")
        ax.set_title(primitive)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    if memory:
        ax = axes[0][-1]
        for name, peaks in memory["peak_bytes"].items():
            ax.plot(memory["steps"], [p / 2**20 for p in peaks], marker="o", color=color.get(name),
                    label=f"{name} ({memory['slope_in_snapshots'][name]:.2f} snapshots/step)")
        ax.set_xlabel("inner steps N")
        ax.set_ylabel("peak memory (MiB)")
        ax.set_title(f"second-order meta-gradient, B={memory['batch']}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    config = results["config"]
    sep = "; " if panels > 1 else "\n"  # one panel is too narrow for the title on one line
    fig.suptitle(f"{'-'.join(map(str, config['widths']))} {config['activation']}, K={config['shots']}, "
                 f"N={config['steps']}, {config['dtype']}{sep}{machine['device_name']}, {machine['threads']} thread(s)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
