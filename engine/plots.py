"""PNG figures of a run: training curve, adaptation on a held-out task, evaluation summary.

The adaptation figure reproduces seed 000 Figure 6 (predictions on a held-out task after
n = 0, 1, …, N inner steps) for 1D regression; for 2D classification it shows decision regions
after each step, and for other regression tasks predicted-vs-true scatter plots.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from innerloop.engine.params import Params  # noqa: E402
from innerloop.engine.tasks import TaskBatch, TaskFamily, generator_for  # noqa: E402

MAX_PANELS = 6


def training_curve(rows: list[dict], path: Path, title: str = "") -> None:
    """Meta-training loss per iteration (raw and moving average) and held-out validation loss."""
    fig, ax = plt.subplots(figsize=(7, 4))
    its = np.array([r["iter"] for r in rows])
    losses = np.array([r["loss"] for r in rows])
    if len(its):
        ax.plot(its, losses, color="tab:blue", alpha=0.25, lw=0.8, label="training meta-loss")
        window = max(1, len(its) // 50)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(its[window - 1 :], smooth, color="tab:blue", lw=1.8, label=f"moving average ({window})")
    val = [(r["iter"], r["val_loss"], r["val_ci95"]) for r in rows if "val_loss" in r]
    if val:
        vi, vm, vc = map(np.array, zip(*val))
        ax.errorbar(vi, vm, yerr=vc, color="tab:orange", marker="o", ms=3, capsize=2,
                    label="held-out query loss after adaptation")
    if len(its) and np.all(losses > 0):
        ax.set_yscale("log")
    ax.set(xlabel="meta-iteration", ylabel="loss", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def adaptation(algorithm, family: TaskFamily, params: Params, path: Path, seed: int, title: str = "") -> None:
    """Predictions on one held-out task after n = 0 … N inner steps (seed 000 Figure 6)."""
    steps = _panel_steps(algorithm.inner_steps)
    gen = generator_for(seed, "plot")
    family = family.split_view("meta-test")
    if family.input_dim == 1 and not family.loss == "cross_entropy":
        task = family.sample(1, gen, queries=200)
        _regression_panels(algorithm, task, params, steps, path, title)
    elif family.input_dim == 2 and family.loss == "cross_entropy":
        _classification_panels(algorithm, family.sample(1, gen), params, steps, path, title)
    elif getattr(family, "spiking", False) and family.loss == "cross_entropy":
        _spike_raster_panels(algorithm, family.sample(1, gen), params, [0, algorithm.inner_steps], path, title)
    elif family.loss == "cross_entropy":
        _accuracy_panel(algorithm, family.sample(1, gen), params, steps, path, title)
    elif not getattr(algorithm.model, "predicts_targets", True):  # an objective without targets (sum-rate)
        _objective_panel(algorithm, family.sample(1, gen), params, steps, path, title)
    else:
        _scatter_panels(algorithm, family.sample(1, gen, queries=200), params, steps, path, title)


def evaluation(result: dict, path: Path, title: str = "") -> None:
    """Held-out query loss vs inner steps, meta-learned init against the baselines, with 95% CIs."""
    fig, ax = plt.subplots(figsize=(6, 4))
    baselines = {name.replace("_", " "): table for name, table in result["baselines"].items()}
    series = {"meta-learned init": result["steps"], **baselines}
    for offset, (label, table) in enumerate(series.items()):
        xs = np.array([int(s) for s in table])
        order = np.argsort(xs)
        means = np.array([table[s]["mean"] for s in table])[order]
        cis = np.array([table[s]["ci95"] for s in table])[order]
        ax.errorbar(xs[order] + 0.08 * (offset - 1), means, yerr=cis, marker="o", capsize=3, label=label)
    ax.set(xlabel="inner steps on the support set", ylabel=f"query {result.get('loss', 'loss')}",
           title=title or f"held-out tasks: {result['tasks']}, shots: {result['shots']}")
    if all(table[s]["mean"] > 0 for table in series.values() for s in table):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


# -- panels -----------------------------------------------------------------------------------
def _panel_steps(n: int) -> list[int]:
    if n + 1 <= MAX_PANELS:
        return list(range(n + 1))
    return sorted({0, 1, 2, n // 2, (3 * n) // 4, n})


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


def _like(x: torch.Tensor, params: Params) -> torch.Tensor:
    """``x`` in the dtype and on the device of ``params`` (the backend's: a GPU for cuda backends)."""
    reference = next(iter(params.values()))
    return x.to(dtype=reference.dtype, device=reference.device)


def _predict(algorithm, task: TaskBatch, params: Params, steps: int, x: torch.Tensor) -> torch.Tensor:
    """The adapted learner's predictions at ``x``, on the CPU for plotting."""
    adapted = algorithm.adapt(params, task, steps=steps)
    single = {k: v[0] for k, v in adapted.items()}
    return algorithm.model.apply(single, _like(x, single)).cpu()


def _regression_panels(algorithm, task, params, steps, path, title) -> None:
    order = task.query_x[0, :, 0].argsort()
    xq, yq = task.query_x[0, order], task.query_y[0, order]
    fig, axes = plt.subplots(1, len(steps), figsize=(3.2 * len(steps), 3), sharey=True, squeeze=False)
    for ax, n in zip(axes[0], steps):
        pred = _predict(algorithm, task, params, n, xq)
        ax.plot(to_numpy(xq[:, 0]), to_numpy(yq[:, 0]), color="k", lw=1.5, label="task (query)")
        ax.plot(to_numpy(xq[:, 0]), to_numpy(pred[:, 0]), color="tab:red", lw=1.5, label="prediction")
        ax.scatter(to_numpy(task.support_x[0, :, 0]), to_numpy(task.support_y[0, :, 0]), color="tab:blue",
                   zorder=3, s=18, label="support")
        ax.set_title(f"n = {n} step{'s' if n != 1 else ''}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title or "adaptation on a held-out task", fontsize=10)
    save_figure(fig, path)


def _classification_panels(algorithm, task, params, steps, path, title) -> None:
    lim = float(task.support_x.abs().max()) + 0.8
    grid = torch.linspace(-lim, lim, 150)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    points = torch.stack([gx.flatten(), gy.flatten()], dim=-1)
    fig, axes = plt.subplots(1, len(steps), figsize=(3.2 * len(steps), 3.2), squeeze=False)
    for ax, n in zip(axes[0], steps):
        regions = _predict(algorithm, task, params, n, points).argmax(dim=-1).reshape(gx.shape)
        ax.contourf(to_numpy(gx), to_numpy(gy), to_numpy(regions), levels=np.arange(-0.5, regions.max().item() + 1),
                    cmap="tab10", alpha=0.3)
        ax.scatter(to_numpy(task.support_x[0, :, 0]), to_numpy(task.support_x[0, :, 1]),
                   c=to_numpy(task.support_y[0]), cmap="tab10", vmin=0, vmax=9, edgecolors="k", s=22)
        ax.set_title(f"n = {n} step{'s' if n != 1 else ''}")
        ax.set_aspect("equal")
    fig.suptitle(title or "decision regions on a held-out task", fontsize=10)
    save_figure(fig, path)


def _scatter_panels(algorithm, task, params, steps, path, title) -> None:
    fig, axes = plt.subplots(1, len(steps), figsize=(3.2 * len(steps), 3.2), squeeze=False)
    truth = to_numpy(task.query_y[0].flatten())
    for ax, n in zip(axes[0], steps):
        pred = to_numpy(_predict(algorithm, task, params, n, task.query_x[0]).flatten())
        ax.scatter(truth, pred, s=6, alpha=0.6)
        lo, hi = truth.min(), truth.max()
        ax.plot([lo, hi], [lo, hi], color="k", lw=1)
        ax.set(title=f"n = {n} step{'s' if n != 1 else ''}", xlabel="true query target", ylabel="prediction")
    fig.suptitle(title or "predictions on a held-out task", fontsize=10)
    save_figure(fig, path)


def _accuracy_panel(algorithm, task, params, steps, path, title) -> None:
    """Query accuracy of one held-out classification task after n inner steps."""
    truth = task.query_y[0]
    accuracy = [float((_predict(algorithm, task, params, n, task.query_x[0]).argmax(-1) == truth).float().mean())
                for n in steps]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.bar([str(n) for n in steps], accuracy, color="tab:blue")
    ax.axhline(1 / int(truth.max() + 1), color="k", ls="--", lw=1, label="chance")
    ax.set(xlabel="inner steps", ylabel="query accuracy", ylim=(0, 1), title=title or "a held-out task")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _objective_panel(algorithm, task, params, steps, path, title) -> None:
    """The query objective of one held-out task after n inner steps, for learners whose objective
    scores no targets (power control: minus the sum-rate)."""
    values = [float(algorithm.evaluate(params, task, steps=n)[0]) for n in steps]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.plot(steps, values, marker="o", color="tab:blue")
    ax.set(xlabel="inner steps", ylabel=f"query {algorithm.model.objective_name}", title=title or "a held-out task")
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def _spike_raster_panels(algorithm, task, params, steps, path, title) -> None:
    """A held-out spiking task before and after adaptation: one query input's spike raster, and
    the output neurons' spikes for every query example (rows grouped by true class)."""
    order = task.query_y[0].argsort()
    x, labels = task.query_x[0, order], task.query_y[0, order]
    fig, axes = plt.subplots(1, 1 + len(steps), figsize=(3.6 * (1 + len(steps)), 3.4), squeeze=False)
    t, c = np.nonzero(to_numpy(x[0]))
    axes[0][0].scatter(t, c, s=4, marker="|", color="k")
    axes[0][0].set(title=f"input spikes (class {int(labels[0])})", xlabel="time step", ylabel="channel")
    model = algorithm.model
    for ax, n in zip(axes[0][1:], steps):
        adapted = algorithm.adapt(params, task, steps=n)
        single = {k: v[:1] for k, v in adapted.items()}
        spikes = model.simulate(single, _like(x.unsqueeze(0), single))[-1].spikes[0].cpu()
        counts = spikes.sum(dim=1)  # [M, out]
        accuracy = float((counts.argmax(-1) == labels).float().mean())
        raster = to_numpy(spikes.sum(dim=1).T)
        ax.imshow(raster, aspect="auto", cmap="Greys", interpolation="nearest")
        ax.set(title=f"n = {n}: output spike counts, acc {accuracy:.2f}", xlabel="query example (sorted by class)",
               ylabel="output neuron")
    fig.suptitle(title or "spiking learner on a held-out task", fontsize=10)
    save_figure(fig, path)


def save_figure(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
