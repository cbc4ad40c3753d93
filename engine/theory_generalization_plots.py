"""The figures of the generalization-theory parts of ``innerloop experiment theory`` (monograph ch. 4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from innerloop.engine.plots import save_figure  # noqa: E402
from innerloop.engine.theory.double_descent import min_norm_risk  # noqa: E402

Document = dict[str, Any]


def _finish(fig, path: Path, title: str) -> None:
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def _model_settings(document: Document) -> str:
    m = document["model"]
    return f"d = {m['dim']}, s_θ² = {m['hyper_var']}, s_ϕ² = {m['task_var']}, σ² = {m['noise_var']}"


def _style(ax, legend_size: float | None = 8, **settings: Any) -> None:
    """ax.set(**settings), a light grid, and a legend unless ``legend_size`` is None."""
    ax.set(**settings)
    ax.grid(alpha=0.3, which="both")
    if legend_size is not None:
        ax.legend(fontsize=legend_size)


def _meta_panel(ax, rows: list[dict], key: str, label: str) -> None:
    x = [r[key] for r in rows]
    ax.plot(x, [r["gen_error"] for r in rows], "o-", color="k", label="|ΔL_avg| (exact)")
    ax.plot(x, [r["environment_error"] for r in rows], "s-", color="tab:blue", ms=4, label="environment part")
    ax.plot(x, [r["within_task_error"] for r in rows], "^-", color="tab:red", ms=4, label="within-task part")
    ax.plot(x, [r["bound"] for r in rows], "--", color="k", label="Theorem 4.3 bound")
    ax.plot(x, [r["environment"] for r in rows], "--", color="tab:blue", label="√(2δ²I(θ;D)/K)")
    ax.plot(x, [r["within_task"] for r in rows], "--", color="tab:red", label="E_T√(2σ²I(ϕ;D_T)/N)")
    _style(ax, None, xscale="log", yscale="log", xlabel=label, ylabel="meta-generalization error")
    _integer_ticks(ax, x)


def _integer_ticks(ax, values: list[int]) -> None:
    ax.set_xticks(values, [str(v) for v in values])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def information_bounds(document: Document, path: Path) -> None:
    """(a) Theorem 4.1, eq. 4.9 vs N; (b) Theorem 4.3 vs K; (c) vs N; (d) the β_meta trade-off."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    single = document["single_task"]
    rows = single["rows"]
    n = [r["points"] for r in rows]
    ax = axes[0, 0]
    ax.plot(n, [r["gen_error"] for r in rows], "o-", color="k", label="E[ΔL] (exact)")
    ax.plot(n, [r["xu_raginsky"] for r in rows], "--", color="k", label="Theorem 4.1: √(2σ²I(ϕ;D)/N)")
    ax.plot(n, [r["irm_bound"] - r["population_loss"] for r in rows], ":", color="tab:green",
            label="eq. 4.9 bound − population loss")
    _style(ax, xscale="log", yscale="log", xlabel="training points N",
           title=f"one task (τ = {single['bias']}), Gibbs posterior, prior at θ = {single['prior_center']}")
    _integer_ticks(ax, n)
    _meta_panel(axes[0, 1], document["vs_tasks"], "tasks", "meta-training tasks K")
    axes[0, 1].set_title(f"Gibbs meta-learner, N = {document['vs_tasks'][0]['points']}")
    axes[0, 1].legend(fontsize=7)
    _meta_panel(axes[1, 0], document["vs_points"], "points", "points per task N")
    axes[1, 0].set_title(f"Gibbs meta-learner, K = {document['vs_points'][0]['tasks']}")
    ax = axes[1, 1]
    rows = document["vs_meta_beta"]
    betas = [r["meta_beta"] for r in rows]
    ax.plot(betas, [r["meta_population_loss"] for r in rows], "o-", color="k", label="meta-population loss L")
    ax.plot(betas, [r["meta_training_loss"] for r in rows], "s-", color="tab:gray", label="meta-training loss")
    ax.plot(betas, [r["meta_training_loss"] + r["bound"] for r in rows], "--", color="k",
            label="meta-training loss + Theorem 4.3 bound")
    _style(ax, xscale="log", xlabel="meta-learner inverse temperature β_meta", ylabel="Brier loss",
           title=f"fitting the K = {rows[0]['tasks']} tasks harder (N = {rows[0]['points']})")
    env = document["environment"]
    _finish(fig, path, f"information-theoretic bounds, exact (monograph §4.1–4.3): Bernoulli tasks "
                       f"τ ∈ {env['task_biases']}, Brier loss, β = {env['beta']}")


def task_similarity(document: Document, path: Path) -> None:
    """(a) Example 4.1's ε_KL and ε_JS vs N; (b) Theorem 4.4 vs the task spread."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    n = document["example_points"]
    for (ratio, curves), color in zip(document["example"].items(), ("tab:blue", "tab:orange", "tab:red")):
        left.plot(n, curves["kl"], "--", color=color, label=f"ε_KL, ν̄²/ν² = {ratio}")
        left.plot(n, curves["js"], "-", color=color, label=f"ε_JS, ν̄²/ν² = {ratio}")
    left.axhline(np.log(2), color="gray", ls=":", label="log 2")
    _style(left, 7, xscale="log", yscale="log", xlabel="points per task N", ylabel="ε (nats)",
           title="Example 4.1: Gaussian tasks N(τ, ν²), τ ∼ N(μ̄, ν̄²)")
    rows = document["rows"]
    spread = [r["spread"] for r in rows]
    right.plot(spread, [r["avg_abs_gen_error"] for r in rows], "o-", color="k", label="|ΔL|_avg (eq. 4.29, exact)")
    right.plot(spread, [r["abs_avg_gen_error"] for r in rows], "s-", color="tab:gray", ms=4,
               label="|ΔL_avg| (eq. 4.18, exact)")
    right.plot(spread, [r["bound"] for r in rows], "--", color="k", label="Theorem 4.4 bound (eq. 4.30)")
    right.plot(spread, [r["theorem_4_3_bound"] for r in rows], "--", color="tab:gray", label="Theorem 4.3 bound")
    right.plot(spread, [r["relatedness_kl"] for r in rows], ":", color="tab:red", label="ε_KL")
    _style(right, 7, yscale="log", xlabel="task spread s (biases 0.5 − s, 0.5, 0.5 + s)", ylabel="error / nats",
           title=f"Bernoulli environments, K = {document['tasks']}, N = {document['points']}")
    _finish(fig, path, "task relatedness (monograph §4.3.2)")


def excess_meta_risk(document: Document, path: Path) -> None:
    """MEMR vs K for each N with the eq. 4.45 bound; the entropy decomposition at the largest N."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    colors = ("tab:blue", "tab:orange", "tab:red")
    for (points, rows), color in zip(document["curves"].items(), colors):
        k = [r["tasks"] for r in rows]
        mean = np.array([r["memr"]["mean"] for r in rows])
        ci = np.array([r["memr"]["ci95"] for r in rows])
        left.errorbar(k, mean, yerr=ci, fmt="o-", color=color, ms=4, capsize=2, label=f"MEMR, N = {points}")
        left.plot(k, [r["bound"] for r in rows], "--", color=color, label=f"eq. 4.45 bound, N = {points}")
        left.plot(k, [r["within_task"] for r in rows], ":", color=color, lw=1)
    _style(left, 7, xscale="log", yscale="log", xlabel="meta-training tasks K", ylabel="nats",
           title="minimum excess meta-risk I(Y; ϕ | X, D) (dotted: I(ϕ; D_T | θ)/N)")
    points, rows = list(document["curves"].items())[0]
    k = [r["tasks"] for r in rows]
    aleatoric = [r["aleatoric_entropy"] for r in rows]
    right.fill_between(k, 0, aleatoric, color="tab:gray", alpha=0.4, label="aleatoric H(Y|X, ϕ)")
    right.fill_between(k, aleatoric, [r["predictive_entropy"] for r in rows], color="tab:blue", alpha=0.5,
                       label="epistemic = MEMR")
    _style(right, xscale="log", xlabel="meta-training tasks K", ylabel="H(Y | X, D) (nats)",
           title=f"eq. 4.44: predictive entropy, N = {points}")
    _finish(fig, path, "Bayesian meta-learning, linear-Gaussian (monograph §4.5): " + _model_settings(document))


def meta_linear_regression(document: Document, path: Path) -> None:
    """Meta-test risk vs K for every method, one panel per N."""
    curves = document["curves"]
    fig, axes = plt.subplots(1, len(curves), figsize=(5.2 * len(curves), 4.6), squeeze=False)
    styles = {"joint": ("tab:gray", "x"), "joint-gd": ("tab:brown", "+"), "maml": ("tab:red", "o"),
              "imaml": ("tab:blue", "s"), "bayes": ("k", "D"), "oracle": ("tab:green", "")}
    for ax, (points, rows) in zip(axes[0], curves.items()):
        k = [r["tasks"] for r in rows]
        ceiling = 1.5 * max(r["joint"]["risk"]["mean"] for r in rows)
        for method, (color, marker) in styles.items():
            mean = np.array([r[method]["risk"]["mean"] for r in rows])
            ci = np.array([r[method]["risk"]["ci95"] for r in rows])
            ls = ":" if method == "oracle" else "-"
            ax.errorbar(k, mean, yerr=ci, color=color, marker=marker, ls=ls, ms=4, capsize=2, label=method)
            for tasks, value in zip(k, mean):
                if value > ceiling:  # an under-determined meta-objective (K·N/2 query rows for d unknowns)
                    ax.annotate(f"{method}: {value:.3g}", (tasks, ceiling), xytext=(4, -12 - 10 * (method == "maml")),
                                textcoords="offset points", color=color, fontsize=7)
        _style(ax, None, xscale="log", yscale="log", ylim=(None, ceiling), xlabel="meta-training tasks K",
               title=f"N = {points} points per task")
        _integer_ticks(ax, k)
    axes[0, 0].set_ylabel("meta-test risk E[(y − ϕ̂ᵀx)²]")
    axes[0, 0].legend(fontsize=8)
    _finish(fig, path, f"meta linear regression (monograph §4.6): {_model_settings(document)}; α, λ tuned on "
                       f"separate draws; {document['replicates']} draws")


def _quartile_curves(ax, rows: list[dict], styles: dict[str, str]) -> None:
    """Median lines with quartile bands of rows[i][method] against rows[i]["dim"]."""
    dims = [r["dim"] for r in rows]
    for method, color in styles.items():
        ax.plot(dims, [r[method]["median"] for r in rows], color=color, marker="o", ms=3, label=method,
                ls=":" if method == "oracle" else "-")
        ax.fill_between(dims, [r[method]["q25"] for r in rows], [r[method]["q75"] for r in rows], color=color,
                        alpha=0.12, lw=0)


def double_descent(document: Document, path: Path) -> None:
    """(a) minimum-norm least squares vs d: Monte Carlo and the exact risk; (b) meta-test risk
    medians (quartile bands) vs d for the meta-learners, with their interpolation thresholds;
    (c, d) the same with spiked inputs, where interpolation is benign."""
    single, meta, spiked = document["single"], document["meta"], document["spiked"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    (left, right), (spiked_left, spiked_right) = axes
    dims = [r["dim"] for r in single["rows"]]
    left.errorbar(dims, [r["monte_carlo"]["mean"] for r in single["rows"]],
                  yerr=[r["monte_carlo"]["ci95"] for r in single["rows"]], fmt="o", ms=4, capsize=2,
                  label=f"Monte Carlo ({single['draws']} draws)")
    fine = [d for d in range(1, max(dims) + 1) if abs(d - single["points"]) > 1]
    exact = [min_norm_risk(d, single["points"], single["signal"], single["noise_var"]) for d in fine]
    for ax, label, style in ((left, "exact", {"lw": 1}), (spiked_left, "isotropic inputs, exact",
                                                         {"lw": 0.8, "alpha": 0.5})):
        for side in ([(d, r) for d, r in zip(fine, exact) if d < single["points"]],
                     [(d, r) for d, r in zip(fine, exact) if d > single["points"]]):
            ax.plot(*zip(*side), "k-", label=label, **style)
            label = None
    left.axvline(single["points"], color="k", lw=0.5, ls=":")
    _style(left, xscale="log", yscale="log", xlabel="dimension d", ylabel="σ² + E‖θ̂ − θ‖²",
           title=f"(a) min-norm least squares, n = {single['points']}, ‖θ‖² = {single['signal']:g}, "
                 f"σ² = {single['noise_var']:g}")
    styles = {"joint": "tab:gray", "joint-gd": "tab:brown", "maml": "tab:red", "imaml": "tab:blue", "bayes": "k",
              "oracle": "tab:green"}
    _quartile_curves(right, meta["rows"], styles)
    for name, threshold in meta["thresholds"].items():
        right.axvline(threshold, color=styles[name], lw=0.8, ls="--")
        spiked_right.axvline(threshold, color=styles[name], lw=0.8, ls="--")
    _style(right, xscale="log", yscale="log", xlabel="dimension d", ylabel="meta-test risk (median, quartile band)",
           title=f"(b) K = {meta['tasks']} tasks of N = {meta['points']}: thresholds K·N/2 and K·N")
    _quartile_curves(spiked_left, [{"dim": r["dim"], "spiked inputs": r["min_norm"]} for r in spiked["single"]],
                     {"spiked inputs": "tab:purple"})
    spiked_left.axvline(single["points"], color="k", lw=0.5, ls=":")
    _style(spiked_left, xscale="log", yscale="log", xlabel="dimension d", ylabel="σ² + E(θ̂ − θ)ᵀΣ(θ̂ − θ)",
           title=f"(c) spiked inputs: {spiked['strong']} strong directions, weak total {spiked['weak_total']:g}")
    _quartile_curves(spiked_right, spiked["meta"], {k: styles[k] for k in ("joint", "joint-gd", "maml")})
    _style(spiked_right, xscale="log", yscale="log", xlabel="dimension d", ylabel="meta-test risk (median)",
           title="(d) spiked inputs, meta-learning: benign interpolation")
    _finish(fig, path, "double descent of minimum-norm (meta-)learners, and benign overfitting (monograph §7.2.1)")


def misspecification(document: Document, path: Path) -> None:
    """(a) actual excess meta-risk (solid) and the MEMR each learner reports (dashed) vs K;
    (b) the misspecification penalty E[KL(true ‖ assumed predictive)] vs K."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for color, (name, rows) in zip(colors, document["curves"].items()):
        k = [r["tasks"] for r in rows]
        left.plot(k, [r["actual_excess"]["mean"] for r in rows], color=color, marker="o", ms=3, label=name)
        left.plot(k, [r["reported_memr"]["mean"] for r in rows], color=color, ls="--", lw=1)
        right.plot(k, [r["penalty"]["mean"] for r in rows], color=color, marker="o", ms=3, label=name)
    _style(left, None, xscale="log", xlabel="meta-training tasks K", ylabel="nats",
           title="(a) actual excess meta-risk (solid), reported MEMR (dashed)")
    _integer_ticks(left, [r["tasks"] for r in next(iter(document["curves"].values()))])
    _style(right, xscale="log", xlabel="meta-training tasks K", ylabel="E[KL(true ‖ assumed predictive)] (nats)",
           title="(b) the price of misspecification")
    _integer_ticks(right, [r["tasks"] for r in next(iter(document["curves"].values()))])
    model = document["model"]
    _finish(fig, path, f"Bayesian meta-learning under misspecification (monograph §7.2.2): truth d = {model['dim']}, "
                       f"s_θ² = {model['hyper_var']}, s_ϕ² = {model['task_var']}, σ² = {model['noise_var']}, "
                       f"N = {document['points']}")


def degenerate_bilevel(document: Document, path: Path) -> None:
    """(a) hypergradient estimates against the GD selection's P∇f, vs T, N or 1/λ; (b) meta-training
    by each hypergradient against the optimistic value of eq. 7.1."""
    estimates = document["estimates"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    left.plot([r["steps"] for r in estimates["unrolled"]], [r["error"] for r in estimates["unrolled"]], "o-",
              color="tab:red", ms=3, label="unrolled through T GD steps: ‖error‖ vs T")
    left.plot([1 / r["strength"] for r in estimates["proximal"]], [r["error"] for r in estimates["proximal"]], "s-",
              color="tab:blue", ms=3, label="proximal λ(H + λI)⁻¹∇f: ‖error‖ vs 1/λ")
    left.plot([r["terms"] for r in estimates["neumann"]], [r["null_norm"] for r in estimates["neumann"]], "^-",
              color="k", ms=3, label="Neumann series for H⁻¹∇f, N terms: null-space part")
    left.plot([r["terms"] for r in estimates["neumann"]], [r["range_error"] for r in estimates["neumann"]], "v:",
              color="k", ms=3, label="… its range part minus H⁺∇f")
    left.axhline(document["exact_norm"], color="gray", lw=0.8, ls="--", label="‖P∇f‖ (the exact hypergradient)")
    _style(left, 7, xscale="log", yscale="log", xlabel="T, N or 1/λ", ylabel="norm",
           title=f"(a) hypergradients at one θ (d = {document['dim']}, n = {document['support']})")
    for name, losses in document["training"].items():
        right.plot(losses, label=name)
    right.axhline(document["optimistic"], color="k", ls="--", lw=0.8, label="optimistic value min_S f (eq. 7.1)")
    _style(right, 7, yscale="log", xlabel="meta-iteration", ylabel="query loss f at the learner's ϕ(θ)",
           title="(b) meta-training θ; the pessimistic value (eq. 7.2) is +∞")
    _finish(fig, path, "bilevel meta-learning with a degenerate lower level (monograph §7.1.4)")
