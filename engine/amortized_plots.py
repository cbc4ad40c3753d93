"""Figures of the amortized lenses: NP predictives with the exact GP (seed 000 Fig. 9), the
sample-efficiency sweep (Fig. 15), ProtoNet/MatchingNet decision regions (Fig. 11) and image
episodes, and accuracy bars with 95% CIs."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from innerloop.engine.gp_posterior import gp_predictive  # noqa: E402
from innerloop.engine.params import Params  # noqa: E402
from innerloop.engine.plots import save_figure, to_numpy  # noqa: E402
from innerloop.engine.tasks import TaskFamily, generator_for  # noqa: E402

SERIES_COLOURS = {"cnp": "tab:blue", "latent-np": "tab:green", "attentive-np": "tab:red", "exact GP": "k"}


def adaptation(algorithm, family: TaskFamily, params: Params, path: Path, seed: int, title: str = "") -> None:
    """The adaptation figure of an amortized run: NP predictive or metric decision regions/episode."""
    held_out = family.split_view("meta-test")
    gen = generator_for(seed, "plot")
    if algorithm.lens == "bayesian":
        np_predictive(algorithm, held_out, params, path, gen, title)
    elif family.input_dim == 2:
        decision_regions(algorithm, held_out, params, path, gen, title)
    elif getattr(family, "image_shape", None) is not None:
        image_episode(algorithm, held_out, params, path, gen, title)


def _mixture(mean: torch.Tensor, sigma: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the equal-weight mixture over latent samples (axis 0), task 0, output 0."""
    mu, s = mean[:, 0, :, 0].double(), sigma[:, 0, :, 0].double()
    m = mu.mean(dim=0)
    var = (s**2 + mu**2).mean(dim=0) - m**2
    return to_numpy(m), to_numpy(var.clamp_min(0).sqrt())


def np_predictive(algorithm, family: TaskFamily, params: Params, path: Path, gen: torch.Generator,
                  title: str = "") -> None:
    """One held-out task at growing context sizes: NP mean and 95% band, context points, and the
    exact GP posterior with the task's true lengthscale when the family is a GP (Fig. 9)."""
    if family.input_dim != 1 or family.output_dim != 1:
        return
    max_context = max(family.shots, 8)
    task = family.sample(1, gen, shots=max_context, queries=200)
    order = task.query_x[0, :, 0].argsort()
    xq, yq = task.query_x[:, order], task.query_y[:, order]
    sizes = sorted({min(3, max_context), min(8, max_context), max_context})
    fig, axes = plt.subplots(1, len(sizes), figsize=(4 * len(sizes), 3.3), sharey=True, squeeze=False)
    x = to_numpy(xq[0, :, 0])
    for ax, k in zip(axes[0], sizes):
        cx, cy = task.support_x[:, :k], task.support_y[:, :k]
        out = algorithm.predict(params, cx, cy, xq, generator=generator_for(0, "plot/latent"))
        m, s = _mixture(out.mean.cpu(), out.sigma.cpu())
        ax.scatter(x, to_numpy(yq[0, :, 0]), color="0.55", s=3, label="task (noisy targets)")
        ax.plot(x, m, color="tab:red", lw=1.8, label=f"{algorithm.name} mean")
        ax.fill_between(x, m - 1.96 * s, m + 1.96 * s, color="tab:red", alpha=0.2, label="95% predictive")
        if family.name == "gp":
            gm, gs = gp_predictive(cx, cy, xq, task.task_params["lengthscale"], family.output_scale, family.noise)
            gm, gs = to_numpy(gm[0, :, 0]), to_numpy(gs[0, :, 0])
            ax.plot(x, gm, color="k", lw=1.2, ls="--", label="exact GP (true ℓ)")
            ax.plot(x, gm - 1.96 * gs, color="k", lw=0.6, ls=":")
            ax.plot(x, gm + 1.96 * gs, color="k", lw=0.6, ls=":")
        ax.scatter(to_numpy(cx[0, :, 0]), to_numpy(cy[0, :, 0]), color="tab:blue", zorder=3, s=20, label="context")
        ax.set_title(f"{k} context points")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle(title or "held-out task", fontsize=10)
    save_figure(fig, path)


def decision_regions(algorithm, family: TaskFamily, params: Params, path: Path, gen: torch.Generator,
                     title: str = "", tasks: int = 2) -> None:
    """Input-space decision regions of ``tasks`` held-out 2D tasks (seed 000 Fig. 11)."""
    fig, axes = plt.subplots(1, tasks, figsize=(4.2 * tasks, 4), squeeze=False)
    for ax, task in zip(axes[0], [family.sample(1, gen) for _ in range(tasks)]):
        lim = float(task.support_x.abs().max()) + 0.8
        grid = torch.linspace(-lim, lim, 160)
        gx, gy = torch.meshgrid(grid, grid, indexing="xy")
        probe = task.__class__(task.support_x, task.support_y, torch.stack([gx.flatten(), gy.flatten()], -1)[None],
                               torch.zeros(1, gx.numel(), dtype=torch.long))
        regions = algorithm.predict(params, probe).reshape(gx.shape).cpu()
        ways = int(task.support_y.max()) + 1
        ax.contourf(to_numpy(gx), to_numpy(gy), to_numpy(regions), levels=np.arange(-0.5, ways), cmap="tab10",
                    alpha=0.3)
        ax.scatter(to_numpy(task.query_x[0, :, 0]), to_numpy(task.query_x[0, :, 1]), c=to_numpy(task.query_y[0]),
                   cmap="tab10", vmin=0, vmax=9, s=10, alpha=0.6, label="query")
        ax.scatter(to_numpy(task.support_x[0, :, 0]), to_numpy(task.support_x[0, :, 1]), c=to_numpy(task.support_y[0]),
                   cmap="tab10", vmin=0, vmax=9, edgecolors="k", s=40, marker="*", label="support")
        accuracy = float(algorithm.accuracy(params, task)[0])
        ax.set_title(f"held-out task: query accuracy {accuracy:.2f}")
        ax.set_aspect("equal")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title or "decision regions", fontsize=10)
    save_figure(fig, path)


def image_episode(algorithm, family: TaskFamily, params: Params, path: Path, gen: torch.Generator,
                  title: str = "", columns: int = 8) -> None:
    """A held-out image episode: support images per class (left), query images with their predicted
    class (green: correct, red: wrong)."""
    task = family.sample(1, gen)
    shape = family.image_shape
    predicted = algorithm.predict(params, task)[0].cpu()
    ways, shots = int(task.support_y.max()) + 1, task.support_x.shape[1] // (int(task.support_y.max()) + 1)
    queries = min(columns, task.query_x.shape[1] // ways)
    fig, axes = plt.subplots(ways, shots + queries, figsize=(1.1 * (shots + queries), 1.2 * ways), squeeze=False)

    def show(ax, flat, edge=None):
        image = flat.reshape(shape).permute(1, 2, 0).squeeze(-1)
        ax.imshow(to_numpy(image), cmap="gray" if shape[0] == 1 else None)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor(edge or "white")
            spine.set_linewidth(2.5 if edge else 0)

    for k in range(ways):
        for j, index in enumerate((task.support_y[0] == k).nonzero()[:shots, 0]):
            show(axes[k][j], task.support_x[0, index])
        for j, index in enumerate((task.query_y[0] == k).nonzero()[:queries, 0]):
            show(axes[k][shots + j], task.query_x[0, index], "tab:green" if predicted[index] == k else "tab:red")
        axes[k][0].set_ylabel(f"class {k}", fontsize=7)
    accuracy = float((predicted == task.query_y[0]).double().mean())
    fig.suptitle((title + "\n" if title else "") + f"support (left) · query, frame = prediction correct/wrong "
                 f"(accuracy {accuracy:.2f})", fontsize=8)
    save_figure(fig, path)


def sample_efficiency(series: dict[str, dict], path: Path, title: str = "") -> None:
    """Held-out NLL vs context size, one curve per model with 95% CIs (seed 000 Fig. 15)."""
    curves(series, path, "context size K_C", "held-out predictive NLL per target point", title)


def curves(series: dict[str, dict], path: Path, xlabel: str, ylabel: str, title: str = "") -> None:
    """One line per series {x: {"mean", "ci95"}} with 95% CI error bars, slightly offset in x."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for offset, (label, table) in enumerate(series.items()):
        ks = np.array([int(k) for k in table])
        means = np.array([table[k]["mean"] for k in table])
        cis = np.array([table[k]["ci95"] for k in table])
        ax.errorbar(ks + 0.12 * (offset - len(series) / 2), means, yerr=cis, marker="o", ms=4, capsize=3,
                    color=SERIES_COLOURS.get(label), ls="--" if label == "exact GP" else "-", label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def accuracy_bars(series: dict[str, dict], path: Path, title: str = "") -> None:
    """Held-out accuracy per method with 95% CIs."""
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(series), 3.8))
    names = list(series)
    means = [series[n]["mean"] for n in names]
    ax.bar(range(len(names)), means, yerr=[series[n]["ci95"] for n in names], capsize=4,
           color=["tab:red" if i == 0 else "tab:gray" for i in range(len(names))])
    for i, m in enumerate(means):
        ax.text(i, m / 2, f"{m:.3f}", ha="center", color="white", fontsize=9)
    ax.set_xticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=8)
    ax.set(ylabel="held-out query accuracy", ylim=(0, 1), title=title)
    ax.grid(alpha=0.3, axis="y")
    save_figure(fig, path)
