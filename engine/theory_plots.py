"""The figures of ``innerloop experiment theory``, one per part (seed 000 Figs. 12, 13, 16, 17 and
Theorem 2; the monograph ch. 4 parts' figures are in :mod:`theory_generalization_plots`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from innerloop.engine import theory_generalization_plots as generalization  # noqa: E402
from innerloop.engine.plots import save_figure  # noqa: E402

Document = dict[str, Any]


def implicit_prior(document: Document, path: Path) -> None:
    """(a) implicit precision vs Nαλ, exact and small-step; (b) nonlinear gap vs α."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    curve = document["precision_curve"]
    left.plot(curve["n_alpha_lambda"], curve["exact"], color="k", lw=2, label="eq. 6.5 (exact)")
    left.plot(curve["n_alpha_lambda"], curve["first_order"], "--", color="tab:red", label="1/(Nα) − (N+1)λ/(2N)")
    left.plot(curve["n_alpha_lambda"], curve["printed"], ":", color="tab:blue", label="1/(Nα) − λ (eq. 6.6 as printed)")
    left.axhline(1, color="gray", lw=0.8, label="1/(Nα)")
    left.set(xlabel="Nαλ", ylabel="prior precision × Nα",
             title=f"implicit prior precision, N = {document['inner_steps']}")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    rows = document["sinusoid"]
    lrs = [r["inner_lr"] for r in rows]
    mean = np.array([r["relative_gap"]["mean"] for r in rows])
    ci = np.array([r["relative_gap"]["ci95"] for r in rows])
    right.errorbar(lrs, mean, yerr=ci, marker="o", color="tab:red", capsize=3)
    right.set(xscale="log", yscale="log", xlabel="inner step size α",
              ylabel="‖θ^(N) − θ_quad^(N)‖ / ‖θ^(N) − θ₀‖",
              title=f"meta-trained sinusoid MLP: GD vs Theorem 2 step ({rows[0]['relative_gap']['n']} tasks)")
    right.grid(alpha=0.3, which="both")
    fig.suptitle(f"Theorem 2 (seed 000 §6.2); on linear regression the MAP equals the GD iterate to "
                 f"{document['max_linear_gap']:.1e} (relative)", fontsize=10)
    save_figure(fig, path)


def inner_steps(document: Document, path: Path) -> None:
    """Held-out MSE vs test-time inner steps (Fig. 16)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    steps = document["test_steps"]
    for algo, row in document["rows"].items():
        mean = np.array([row["mse"][str(n)]["mean"] for n in steps])
        ci = np.array([row["mse"][str(n)]["ci95"] for n in steps])
        ax.plot(steps, mean, marker="o", label=f"{algo} (α = {row['inner_lr']:g})")
        ax.fill_between(steps, mean - ci, mean + ci, alpha=0.15, lw=0)
    ax.axvline(document["train_steps"], color="gray", ls=":", label="meta-training N")
    ax.set(yscale="log", xlabel="test-time inner steps N_test", ylabel="held-out query MSE",
           title="inner-loop step sensitivity (seed 000 §9.3, Fig. 16)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def gradient_variance(document: Document, path: Path) -> None:
    """Meta-gradient variance vs task-batch size with the 1/B line (Fig. 17)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for (name, curve), color in zip(document["curves"].items(), ("tab:red", "tab:blue")):
        sizes = curve["batch_sizes"]
        ax.plot(sizes, curve["variance"], "o", color=color, label=f"{name} (slope {curve['slope']:.2f})")
        ax.plot(sizes, curve["predicted"], "-", color=color, alpha=0.5, label=f"{name}: tr Cov / B")
    ax.set(xscale="log", yscale="log", xlabel="task-batch size B", ylabel="E‖ḡ_B − ∇F‖²",
           title=f"meta-gradient variance, {document['tasks']} tasks (seed 000 §9.4, Fig. 17)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def convergence(document: Document, path: Path) -> None:
    """Meta-loss and ‖∇F‖² along the SGD run, with the Theorem 4 bound (Fig. 13)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    rows = document["trajectory"]
    k = [max(r["iteration"], 1) for r in rows]
    left.plot(k, [r["meta_loss"] for r in rows], marker="o", ms=3, color="k")
    left.set(xscale="log", yscale="log", xlabel="meta-iteration k (k = 0 drawn at 1)",
             ylabel=f"F(θ_k) ({document['evaluation_tasks']} fixed tasks)",
             title=f"one-step MAML, SGD β = {document['outer_lr']:.2g}, α = {document['inner_lr']:.2g}")
    left.grid(alpha=0.3, which="both")
    estimate = np.array([r["grad_norm_sq"] for r in rows])
    error = np.array([r["grad_norm_sq_se"] for r in rows])
    resolved = estimate > 2 * error
    right.errorbar(np.array(k)[resolved], estimate[resolved], yerr=error[resolved], fmt="o", ms=3, color="tab:red",
                   capsize=2, label="‖∇F(θ_k)‖² (unbiased estimate ± s.e.)")
    if not resolved.all():
        right.plot(np.array(k)[~resolved], 2 * error[~resolved], "v", ms=4, mfc="none", color="tab:red",
                   label="below 2 s.e. (marker at 2 s.e.)")
    bounded = [r for r in rows if r.get("bound") is not None]
    if bounded:
        right.plot([r["iteration"] for r in bounded], [r["bound"] for r in bounded], "-", color="tab:blue",
                   label=f"2(F(θ₀) − F*)/(Kβ) + L_F·β·V (L_F = {document['smoothness']:.3g}, "
                         f"V = {document['variance']:.3g})")
    else:
        right.set_title("the estimated constants violate the lemma's step-size condition: no bound")
    right.set(xscale="log", yscale="log", xlabel="meta-iterations K (k = 0 drawn at 1)",
              ylabel="squared meta-gradient norm")
    right.grid(alpha=0.3, which="both")
    right.legend(fontsize=7)
    fig.suptitle("Fallah–Mokhtari–Ozdaglar convergence (seed 000 §8, Fig. 13)", fontsize=10)
    save_figure(fig, path)


def pac_bayes(document: Document, path: Path) -> None:
    """Bound terms vs T for n ∈ {5, 25, 100} at the measured KLs, and the grid (Fig. 12)."""
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.2))
    _what_if_panel(left, document)
    for n, rows in document["what_if"].items():
        if n == "25":
            middle.plot([r["tasks"] for r in rows], [r["across_task"] for r in rows], marker="o", ms=3,
                        label="across-task")
            middle.plot([r["tasks"] for r in rows], [r["within_task"] for r in rows], marker="s", ms=3,
                        label="within-task")
    middle.set(xscale="log", xlabel="observed tasks T", title="terms at n = 25")
    middle.grid(alpha=0.3, which="both")
    middle.legend(fontsize=8)
    rows = document["rows"]
    labels = [f"κ={r['hyper_std']:g}\ns={r['posterior_std']:g}" for r in rows]
    x = np.arange(len(rows))
    right.bar(x - 0.2, [r["bound"] for r in rows], 0.4, color="tab:blue", label="bound (7.2)")
    right.bar(x + 0.2, [r["fresh_task_error"]["mean"] for r in rows], 0.4, color="tab:red",
              label="Gibbs error, fresh tasks")
    right.bar(x + 0.2, [r["empirical"] for r in rows], 0.15, color="k", label="empirical (observed tasks)")
    right.set_xticks(x, labels, fontsize=6)
    right.set(ylabel="0-1 error", title=f"softened MAML, T = {document['tasks']}, n = {document['points']}")
    right.grid(alpha=0.3, axis="y")
    right.legend(fontsize=7)
    fig.suptitle("Amit–Meir meta PAC-Bayes bound (seed 000 §7, Fig. 12)", fontsize=10)
    save_figure(fig, path)


def _what_if_panel(ax, document: Document) -> None:
    """Eq. 7.2 vs T for each n at the measured KL terms, with the chance error."""
    for n, rows in document["what_if"].items():
        ax.plot([r["tasks"] for r in rows], [r["bound"] for r in rows], marker="o", ms=3, label=f"n = {n}")
    ax.axhline(1 - 1 / document["ways"], color="gray", ls=":", label="chance error")
    ax.set(xscale="log", xlabel="observed tasks T", ylabel="bound on the meta-risk",
           title="eq. 7.2 at the measured KL terms")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


def pac_bayes_learner(document: Document, path: Path) -> None:
    """Training curves, the bound's terms per hyperprior setting against the fresh-task error, and
    the bound at the learned KLs for other T and n."""
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.2))
    rows = document["rows"]
    labels = [f"κ₀={r['hyperprior_std']:g}, κ_ρ₀={r['scale_hyperprior_std']:g}\nσ_p={r['prior_std']:g}" for r in rows]
    for row, label in zip(rows, labels):
        steps = np.linspace(0, document["steps"], len(row["history"]))
        left.plot(steps, row["history"], label=label.replace("\n", ", "))
    left.set(yscale="log", xlabel="step", ylabel="surrogate bound (cross-entropy)", title="minimizing eq. 7.2")
    left.grid(alpha=0.3, which="both")
    left.legend(fontsize=7)
    x = np.arange(len(rows))
    bottom = np.zeros(len(rows))
    for key, color in (("empirical", "k"), ("across_task", "tab:blue"), ("within_task", "tab:orange")):
        values = np.array([r[key] for r in rows])
        middle.bar(x, values, 0.5, bottom=bottom, color=color, alpha=0.7, label=key.replace("_", "-"))
        bottom += values
    middle.plot(x, [r["fresh_task_error"]["mean"] for r in rows], "D", color="tab:red",
                label="Gibbs error, fresh tasks")
    middle.axhline(1 - 1 / document["ways"], color="gray", ls=":", label="chance error")
    middle.set_xticks(x, labels, fontsize=7)
    middle.set(ylabel="0-1 error", ylim=(0, 1.5 * bottom.max()),
               title=f"learned bound, T = {document['tasks']}, n = {document['points']}")
    middle.grid(alpha=0.3, axis="y")
    middle.legend(fontsize=7, loc="upper center", ncol=2)
    _what_if_panel(right, document)
    fig.suptitle("the Amit–Meir bound minimized by the meta-learner (seed 000 §7)", fontsize=10)
    save_figure(fig, path)


PLOTS: dict[str, Callable[[Document, Path], None]] = {
    "implicit-prior": implicit_prior, "inner-steps": inner_steps, "gradient-variance": gradient_variance,
    "convergence": convergence, "pac-bayes": pac_bayes, "pac-bayes-learner": pac_bayes_learner,
    "information-bounds": generalization.information_bounds,
    "task-similarity": generalization.task_similarity, "excess-meta-risk": generalization.excess_meta_risk,
    "meta-linear-regression": generalization.meta_linear_regression, "double-descent": generalization.double_descent,
    "misspecification": generalization.misspecification, "degenerate-bilevel": generalization.degenerate_bilevel}
