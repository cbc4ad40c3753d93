"""The figure of ``innerloop experiment quantum-bayes``: (a) held-out MSE of the posterior-predictive
mean vs inner steps, (b) probability mass on the true weights vs inner steps, (c) the meta-learned
distributions over bit-strings against the true task prior, (d) the predictive mean ± std on one
held-out task after the inner steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from innerloop.engine.binary_bayes import string_index  # noqa: E402
from innerloop.engine.inner import inner_step  # noqa: E402
from innerloop.engine.quantum_bayes import trajectories  # noqa: E402

STYLE = {"maml": "tab:red", "fomaml": "tab:orange", "reptile": "tab:brown", "fomaml-shots": "tab:purple",
         "mean-field": "tab:green", "joint": "tab:blue", "uniform": "tab:gray", "uniform-shots": "silver"}


def _steps_panel(ax, document, metric: str, ylabel: str) -> None:
    steps = document["eval_steps"]
    for name, curve in trajectories(document).items():
        means = [curve[metric][str(n)]["mean"] for n in steps]
        cis = [curve[metric][str(n)]["ci95"] for n in steps]
        ax.errorbar(steps, means, yerr=cis, marker="o", ms=3, capsize=2, color=STYLE.get(name), label=name,
                    ls="--" if name.startswith(("uniform", "joint")) else "-")
    floor = document["exact_bayes"][metric]["mean"]
    ax.axhline(floor, color="k", ls=":", lw=1, label="exact Bayes (true prior)")
    ax.axvline(document["inner_steps"], color="k", lw=0.5, alpha=0.4)
    ax.set(xlabel="inner steps on the support free energy", ylabel=ylabel)
    ax.grid(alpha=0.3)


def _distribution_panel(ax, document, family, top: int = 20) -> None:
    """The ``top`` bit-strings of the true task prior (bars) and the mass each meta-learned q(θ₀)
    puts on them (markers); the last column is the mass on all other strings."""
    prior = family.log_prior().exp()
    order = torch.argsort(prior, descending=True)[:top]
    rest = len(prior) - top

    def shown(p: torch.Tensor) -> list[float]:
        return [*p[order].tolist(), float(1 - p[order].sum())]

    positions = range(top + 1)
    ax.bar(positions, shown(prior), color="k", alpha=0.25, width=0.8, label="true task prior")
    for method in ("maml", "fomaml-shots", "mean-field"):
        if method not in document["rows"]:
            continue
        model = _model(method, family, document)
        theta = {k: torch.tensor(v, dtype=torch.float64) for k, v in document["rows"][method]["theta"].items()}
        with torch.no_grad():
            q = model.probabilities(theta)
        ax.plot(positions, shown(q), color=STYLE[method], marker="o", ms=3, lw=0.8, label=f"q(θ₀) {method}")
    ax.set_xticks(list(positions), [*(str(int(i)) for i in order), f"other\n{rest}"], fontsize=6, rotation=90)
    ax.set(xlabel=f"the {top} most probable bit-strings of the task prior (index), then all others",
           ylabel="probability", yscale="log", title="meta-learned initial distribution vs task prior")
    ax.set_ylim(bottom=1e-4)
    ax.legend(fontsize=7)


def _model(method: str, family, document):
    from innerloop.engine.binary_bayes import MeanFieldBernoulli
    from innerloop.engine.born_machine import BornMachine

    if method == "mean-field":
        return MeanFieldBernoulli(family.likelihood)
    layers = len(document["rows"][method]["theta"]["weights"])
    return BornMachine(family.likelihood, layers=layers)


def _task_panel(ax, document, family, batch) -> None:
    """One held-out task: truth, support points, exact Bayes and each method after the inner steps
    (exact adaptation steps for the plot)."""
    from innerloop import backends
    from innerloop.engine.learner import Learner

    task = {k: v[:1] for k, v in vars(batch).items() if isinstance(v, torch.Tensor)}
    x = torch.linspace(-torch.pi, torch.pi, 200, dtype=torch.float64).reshape(1, -1, 1)
    truth = family.function(batch.task_params["bits"][:1], x)
    ax.plot(x[0, :, 0], truth[0, :, 0], color="k", lw=1.5, label="true function")
    support_x, support_y = task["support_x"].double(), task["support_y"].double()
    bayes = family.predictive_mean(family.posterior(support_x, support_y), x)
    ax.plot(x[0, :, 0], bayes[0, :, 0], color="k", ls=":", label="exact Bayes")
    for method in ("maml", "mean-field", "joint"):
        if method not in document["rows"]:
            continue
        model = _model(method, family, document)
        backend = backends.get("cpu", dtype="float64") if method == "mean-field" else backends.get("quantum")
        learner = Learner(model, model.objective_name)
        params = {k: torch.tensor(v, dtype=torch.float64).unsqueeze(0) for k, v in
                  document["rows"][method]["theta"].items()}
        for _ in range(document["inner_steps"]):
            _, params = inner_step(backend, learner, params, support_x, support_y, document["inner_lr"])
        with torch.no_grad():
            q = model.probabilities(params)
            mean = model.likelihood.predictive_mean(q, x)[0, :, 0]
            std = model.likelihood.predictive_std(q, x)[0, :, 0]
        ax.plot(x[0, :, 0], mean, color=STYLE[method], label=f"{method} + {document['inner_steps']} steps")
        ax.fill_between(x[0, :, 0], mean - std, mean + std, color=STYLE[method], alpha=0.15)
    ax.scatter(support_x[0, :, 0], support_y[0, :, 0], color="k", zorder=5, label="support points")
    mass = string_index(batch.task_params["bits"][:1])
    ax.set(xlabel="x", ylabel="y", title=f"a held-out task (true weights: string {int(mass)}), mean ± std")
    ax.legend(fontsize=7)


def plot(document: dict[str, Any], family, batch, path: Path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    _steps_panel(axes[0, 0], document, "mse", "held-out MSE of the posterior-predictive mean")
    axes[0, 0].set_title("(a) MSE vs inner steps")
    axes[0, 0].legend(fontsize=7)
    _steps_panel(axes[0, 1], document, "mass", "q(φ*) — mass on the true weights")
    axes[0, 1].set_yscale("log")
    axes[0, 1].set_ylim(bottom=1e-5)  # joint learning's mass is ~1e-15: off the panel
    axes[0, 1].set_title("(b) probability of the true weights vs inner steps")
    _distribution_panel(axes[1, 0], document, family)
    _task_panel(axes[1, 1], document, family, batch)
    fig.suptitle(f"quantum-bayes: Born machine (n = {family.bits}) meta-learning on {document['task']}, "
                 f"{document['held_out_tasks']} held-out tasks", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
