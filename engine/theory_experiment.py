"""``innerloop experiment theory``: the theory of seed 000 §6–9 checked on trained meta-learners, and
the generalization theory of monograph ch. 4 checked exactly.

Parts (``--algos`` picks some; each writes ``OUT/<part>.json`` and ``OUT/<part>.png``):

* ``implicit-prior`` (§6.2, Theorem 2) — (a) on linear-regression tasks (float64) N GD steps equal
  the MAP estimate under the implicit prior of eq. 6.5 to rounding; (b) the implicit precision
  against its small-step forms (eq. 6.6 as printed and to first order); (c) for the meta-trained
  sinusoid MLP, how far the true N-step iterate is from the quadratic-model (Theorem 2) step, vs α.
* ``inner-steps`` (§9.3, Fig. 16) — MAML, FOMAML and Reptile meta-trained on sinusoid with N = 5,
  evaluated with N_test ∈ {0, 1, 2, 3, 5, 8, 12} steps on ``tasks`` held-out tasks.
* ``gradient-variance`` (§9.4, Fig. 17) — per-task MAML and FOMAML meta-gradients at the trained
  θ₀ on 200 fresh tasks; the variance of B-task means for B ∈ {1, 2, 5, 10, 25, 50} against 1/B.
* ``convergence`` (§8, Fig. 13) — one-step MAML (tanh MLP) trained by plain SGD with Theorem 4's
  steps α = 0.4/L and β = 1/(L_F√K) and three independent batches per task (eq. 8.2); the
  constants of Assumptions 8.1–8.4 estimated at the start, middle and end (their maxima enter
  the bound); ‖∇F(θ_k)‖² (unbiased estimate on 2000 fixed tasks of 200 points per batch) and
  its running minimum against the bound 2(F(θ₀) − F*)/(Kβ) + L_F·β·V of the proof, F* >= 0.
* ``pac-bayes`` (§7, Fig. 12) — MAML meta-trained on a finite set of T 5-way cluster tasks; the
  softened Amit–Meir bound (eq. 7.2) on its 0-1 error over a grid of Gaussian widths — κ = κ₀
  (hyperposterior and hyperprior) and s² = σ_p² (within-task posterior and prior), δ split over the
  grid by a union bound — against the Gibbs error on fresh tasks; and the bound against T and n at
  the measured KL terms.
* ``pac-bayes-learner`` (§7) — the same T tasks and widths of the seed's remedy: instead of
  softening MAML, train the hyperposterior over priors (means and per-weight widths) and the
  per-task posteriors to minimize the bound itself (Amit & Meir's algorithm,
  :mod:`~innerloop.engine.theory.pac_bayes_learner`), for two hyperprior settings (δ split over them);
  the bound evaluated with the 0-1 error against the Gibbs error on fresh tasks learned from a prior
  drawn from the trained hyperposterior.

The monograph ch. 4 parts — ``information-bounds``, ``task-similarity``, ``excess-meta-risk`` and
``meta-linear-regression`` — and ``double-descent`` (§7.2.1), ``misspecification`` (§7.2.2) and
``degenerate-bilevel`` (§7.1.4) train nothing and take seconds to a minute;
:mod:`innerloop.engine.theory_generalization` describes them.

The runs a part trains live in ``OUT/runs/`` and start afresh on every call. Sinusoid runs use the
README's quick-start settings (MLP 40-40 ReLU, N = 5, α = 0.01, 25 tasks per batch, Adam 0.001) for
``iters`` iterations.
"""

from __future__ import annotations

import shutil
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

from innerloop.engine.config import TrainConfig
from innerloop.engine.experiment_setup import prepare
from innerloop.engine.learner import Learner
from innerloop.engine.params import Params, cast, expand_to_tasks, subtract
from innerloop.engine.rundir import atomic_write_json
from innerloop.engine.stats import summarize
from innerloop.engine.tasks import generator_for
from innerloop.engine.theory_generalization import PARTS as GENERALIZATION_PARTS

PARTS = ("implicit-prior", "inner-steps", "gradient-variance", "convergence", "pac-bayes", "pac-bayes-learner",
         *GENERALIZATION_PARTS)
TEST_STEPS, TRAIN_STEPS = (0, 1, 2, 3, 5, 8, 12), 5
BATCH_SIZES, VARIANCE_TASKS = (1, 2, 5, 10, 25, 50), 200
PRIOR_LRS = (0.0001, 0.0003, 0.001, 0.003, 0.01)
CONVERGENCE_CHECKS, CONVERGENCE_BATCH, FULL_TASKS, FULL_POINTS = 20, 25, 2000, 200
CONSTANT_TASKS, CONSTANT_POPULATION = 32, 1000
PAC_TASKS, PAC_WAYS, PAC_SHOTS, PAC_QUERIES, PAC_LR, PAC_DELTA = 1000, 5, 5, 15, 0.5, 0.05
PAC_HYPER_STDS, PAC_POSTERIOR_STDS = (0.03, 0.1, 0.3), (0.1, 0.2, 0.4)
PAC_LEARNER_GRID = ((0.1, 0.1, 0.3), (0.03, 1.0, 0.3))  # (κ₀, κ_ρ₀, σ_p)
PAC_LEARNER_STEPS, PAC_LEARNER_TEST_STEPS = 1000, 200


def _sinusoid_config(algo: str, iters: int, seed: int, **changes: Any) -> TrainConfig:
    return TrainConfig(algo=algo, task="sinusoid", iters=iters, seed=seed, eval_every=max(1, iters // 10),
                       checkpoint_every=iters, eval_tasks=100, **changes)


def _train(config: TrainConfig, run_dir: Path) -> Params:
    """Train into ``run_dir``, which the experiment owns: a run left there by an earlier call starts afresh."""
    from innerloop.engine.trainer import Trainer

    if run_dir.is_dir():
        shutil.rmtree(run_dir)
    return Trainer(config, run_dir, progress=False).run().params


def _float64(params: Params) -> Params:
    return cast({k: v.detach() for k, v in params.items()}, torch.float64, "cpu")


def _sinusoid_tools(hidden=(40, 40), activation: str = "relu"):
    from innerloop import backends
    from innerloop.engine.models import MLP
    from innerloop.engine.tasks import Sinusoid

    learner = Learner(MLP(1, hidden, 1, activation=activation), "mse")
    return Sinusoid(), learner, backends.get("cpu", dtype=torch.float64)


class _Trained:
    """The sinusoid meta-learners the parts share, trained on first use into ``OUT/runs/``."""

    def __init__(self, out: Path, iters: int, seed: int) -> None:
        self.out, self.iters, self.seed, self.params = out, iters, seed, {}

    def __call__(self, algo: str) -> Params:
        if algo not in self.params:
            began = time.perf_counter()
            self.params[algo] = _float64(_train(_sinusoid_config(algo, self.iters, self.seed), self.run_dir(algo)))
            print(f"[theory] trained {algo} on sinusoid ({time.perf_counter() - began:.0f}s)", flush=True)
        return self.params[algo]

    def run_dir(self, algo: str) -> Path:
        return self.out / "runs" / algo


def implicit_prior(trained: _Trained, tasks: int, seed: int) -> dict[str, Any]:
    """Part ``implicit-prior`` (see the module docstring)."""
    from innerloop import backends
    from innerloop.engine.inner import sgd_trajectory
    from innerloop.engine.models import MLP
    from innerloop.engine.tasks import LinearRegression
    from innerloop.engine.theory.implicit_prior import (
        implicit_prior_matrix,
        implicit_prior_precision,
        map_step,
        quadratic_model_step,
        small_step_precision,
    )
    from innerloop.engine.theory.pac_bayes_maml import flatten

    backend = backends.get("cpu", dtype=torch.float64)
    linear = LinearRegression(dim=5).sample(tasks, generator_for(seed, "theory/linear")).to(torch.float64, "cpu")
    learner = Learner(MLP(5, (), 1, bias=False), "mse")
    start = expand_to_tasks({"layer0.weight": torch.zeros(1, 5, dtype=torch.float64)}, tasks)
    _, grad = backend.loss_and_grad(learner, start, linear.support_x, linear.support_y)
    hessians = 2 * linear.support_x.transpose(1, 2) @ linear.support_x / linear.support_x.shape[1]
    exact = []
    for lr in (0.01, 0.05, 0.1):
        for steps in (1, 5, 20):
            moved = flatten(subtract(sgd_trajectory(backend, learner, start, linear.support_x, linear.support_y, lr,
                                                    steps).final, start))
            maps = torch.stack([map_step(h, g, implicit_prior_matrix(h, lr, steps))
                                for h, g in zip(hessians, flatten(grad))])
            exact.append({"inner_lr": lr, "inner_steps": steps,
                          "max_relative_gap": float(((maps - moved).norm(dim=1) / moved.norm(dim=1)).max())})
    scaled = torch.linspace(1e-3, 0.3, 60, dtype=torch.float64)  # αλ at α = 1, N = 5
    curve = {"n_alpha_lambda": (5 * scaled).tolist(),
             "exact": (5 * implicit_prior_precision(scaled, 1.0, 5)).tolist(),
             "first_order": (5 * small_step_precision(scaled, 1.0, 5)).tolist(),
             "printed": (1 - 5 * scaled).tolist()}
    family, net, backend = _sinusoid_tools()
    theta0 = trained("maml")
    batch = family.sample(tasks, generator_for(seed, "theory/implicit-prior")).to(torch.float64, "cpu")
    start = expand_to_tasks(theta0, tasks)
    _, grad = backend.loss_and_grad(net, start, batch.support_x, batch.support_y)
    nonlinear = []
    for lr in PRIOR_LRS:
        moved = flatten(subtract(sgd_trajectory(backend, net, start, batch.support_x, batch.support_y, lr, 5).final,
                                 start))
        quad = flatten(quadratic_model_step(lambda v: backend.hvp(net, start, batch.support_x, batch.support_y, v),
                                            grad, lr, 5))
        nonlinear.append({"inner_lr": lr, "relative_gap": summarize((moved - quad).norm(dim=1) / moved.norm(dim=1)),
                          "displacement": summarize(moved.norm(dim=1))})
    return {"linear": exact, "precision_curve": curve, "sinusoid": nonlinear, "inner_steps": 5,
            "max_linear_gap": max(row["max_relative_gap"] for row in exact)}


def inner_steps(trained: _Trained, tasks: int, seed: int) -> dict[str, Any]:
    """Part ``inner-steps`` (see the module docstring)."""
    from innerloop.engine.evaluation import evaluate_run

    rows = {}
    for algo in ("maml", "fomaml", "reptile"):
        trained(algo)
        result = evaluate_run(trained.run_dir(algo), tasks=tasks, steps=list(TEST_STEPS), joint_iters=0,
                              progress=False)
        mse = {str(n): result["steps"][str(n)] for n in TEST_STEPS}
        nearby = [str(n) for n in TEST_STEPS if TRAIN_STEPS / 2 <= n <= 2 * TRAIN_STEPS and n != TRAIN_STEPS]
        rows[algo] = {"inner_lr": result["inner_lr"], "mse": mse, "compared_steps": nearby,
                      "tolerates_factor_two": all(mse[n]["mean"] <= 2 * mse[str(TRAIN_STEPS)]["mean"] for n in nearby)}
    return {"test_steps": list(TEST_STEPS), "train_steps": TRAIN_STEPS, "rows": rows}


def gradient_variance(trained: _Trained, tasks: int, seed: int) -> dict[str, Any]:
    """Part ``gradient-variance`` (see the module docstring)."""
    from innerloop.engine.theory.gradient_variance import per_task_meta_gradients, variance_curve

    family, learner, backend = _sinusoid_tools()
    theta0 = trained("maml")
    batch = family.sample(VARIANCE_TASKS, generator_for(seed, "theory/gradient-variance")).to(torch.float64, "cpu")
    curves = {}
    for name, first_order in (("maml", False), ("fomaml", True)):
        grads = per_task_meta_gradients(backend, learner, theta0, batch, 0.01, 5, first_order=first_order)
        curves[name] = variance_curve(grads, list(BATCH_SIZES))
    return {"tasks": VARIANCE_TASKS, "curves": curves}


def convergence(iters: int, seed: int) -> dict[str, Any]:
    """Part ``convergence`` (see the module docstring)."""
    from innerloop.engine.params import add_scaled, mean_over_tasks
    from innerloop.engine.theory import convergence as fmo
    from innerloop.engine.theory.constants import estimate_constants
    from innerloop.engine.theory.pac_bayes_maml import flatten

    family, learner, backend = _sinusoid_tools(activation="tanh")
    theta = learner.model.init(generator_for(seed, "theory/convergence-init"), dtype=torch.float64)
    draws = generator_for(seed, "theory/convergence")

    def constants_at(params: Params, lr: float):
        return estimate_constants(backend, learner, params, family, inner_lr=lr, tasks=CONSTANT_TASKS,
                                  population=CONSTANT_POPULATION, generator=draws)

    evaluation = family.sample(FULL_TASKS, generator_for(seed, "theory/convergence-evaluation"),
                               shots=2 * FULL_POINTS, queries=FULL_POINTS).to(torch.float64, "cpu")

    def full_gradient(params: Params) -> dict[str, float]:
        """F(θ) and ‖∇F(θ)‖² on the same FULL_TASKS tasks at every check (paired across checks)."""
        losses, grads = fmo.fmo_meta_gradients(backend, learner, expand_to_tasks(params, FULL_TASKS),
                                           *_three_batches(evaluation, FULL_POINTS), inner_lr)
        squared, error = fmo.squared_norm_of_mean(flatten(grads))
        return {"meta_loss": float(losses.mean()), "grad_norm_sq": squared, "grad_norm_sq_se": error}

    inner_lr = 0.4 / constants_at(theta, 0.01).lipschitz_gradient  # Theorem 4 needs α <= 1/(2L); 20% margin
    start = constants_at(theta, inner_lr)  # G_Q at the α chosen
    planned = fmo.meta_smoothness(start.lipschitz_gradient, start.lipschitz_hessian, start.query_gradient_bound,
                                  inner_lr)
    outer_lr = fmo.fmo_outer_lr(planned, iters)
    checks = sorted({0, *(round(iters * (i + 1) / CONVERGENCE_CHECKS) for i in range(CONVERGENCE_CHECKS))})
    trajectory, seen = [], [start]
    for k in range(iters + 1):
        if k in checks:
            trajectory.append({"iteration": k, **full_gradient(theta)})
        if k == iters // 2 or k == iters:
            seen.append(constants_at(theta, inner_lr))
        if k < iters:
            batch = family.sample(CONVERGENCE_BATCH, draws, shots=20, queries=10).to(torch.float64, "cpu")
            _, grads = fmo.fmo_meta_gradients(backend, learner, expand_to_tasks(theta, CONVERGENCE_BATCH),
                                          *_three_batches(batch, 10), inner_lr)
            theta = add_scaled(theta, mean_over_tasks(grads), -outer_lr)
    worst = seen[0]
    for c in seen[1:]:
        worst = worst.maximum(c)
    document = {"iters": iters, "inner_lr": inner_lr, "outer_lr": outer_lr, "planned_smoothness": planned,
                "evaluation_tasks": FULL_TASKS, "evaluation_points": FULL_POINTS,
                "constants": [c.as_dict() for c in seen], "trajectory": trajectory,
                "gap": trajectory[0]["meta_loss"],  # F(θ₀) − F* <= F(θ₀): an MSE is >= 0
                "alpha_within_lemma": inner_lr <= 1 / (2 * worst.lipschitz_gradient)}
    if not document["alpha_within_lemma"]:
        return {**document, "bound_holds": None}
    smoothness = fmo.meta_smoothness(worst.lipschitz_gradient, worst.lipschitz_hessian, worst.query_gradient_bound,
                                 inner_lr)
    variance = fmo.variance_bound(worst.gradient_std, worst.hessian_std, worst.query_gradient_bound, inner_lr)
    document.update(smoothness=smoothness, variance=variance, step_within_lemma=outer_lr <= 1 / smoothness)
    if not document["step_within_lemma"]:
        return {**document, "bound_holds": None}
    for before, row in zip(trajectory, trajectory[1:]):
        row["running_min"] = min(r["grad_norm_sq"] for r in trajectory if r["iteration"] <= before["iteration"])
        row["bound"] = fmo.sgd_bound(smoothness, document["gap"], variance, outer_lr, row["iteration"])
    return {**document, "bound_holds": all(r["running_min"] <= r["bound"] for r in trajectory[1:])}


def _three_batches(batch, points: int):
    """(g̃_S, H̃_S, g̃_Q) batches of the same tasks: the support split in two halves, then the query."""
    return ((batch.support_x[:, :points], batch.support_y[:, :points]),
            (batch.support_x[:, points:], batch.support_y[:, points:]), (batch.query_x, batch.query_y))


def _cluster_pool(iters: int, tasks: int, seed: int):
    """The PAC-Bayes parts' setting: (MAML config, learner, data-independent reference θ_ref = the run's
    random initialization, the T observed tasks' points x, y [T, n, ...], ``tasks`` fresh tasks)."""
    from innerloop.engine import build

    config = TrainConfig(algo="maml", task="clusters", hidden=(16, 16), inner_lr=PAC_LR, train_tasks=PAC_TASKS,
                         shots=PAC_SHOTS, queries=PAC_QUERIES, iters=iters, seed=seed, eval_every=max(1, iters // 10),
                         checkpoint_every=iters, eval_tasks=100)
    family = build.family(config)
    model = build.model(config, family)
    reference = model.init(generator_for(seed, "init"), dtype=torch.float64)  # data-independent (the run's seed)
    pool = family.pool.to(torch.float64, "cpu")
    x, y = torch.cat([pool.support_x, pool.query_x], 1), torch.cat([pool.support_y, pool.query_y], 1)
    fresh = family.family.sample(tasks, generator_for(seed, "theory/pac-fresh"), shots=PAC_SHOTS + PAC_QUERIES,
                                 queries=20).to(torch.float64, "cpu")
    return config, Learner(model, "cross_entropy"), reference, x, y, fresh


def _what_if(empirical: float, hyper_kl: float, task_kl: float, delta: float) -> dict[str, list[dict]]:
    """Eq. 7.2 at the measured KL terms for other T and n."""
    from innerloop.engine.theory.pac_bayes import amit_meir_bound

    return {str(n): [amit_meir_bound(empirical, hyper_kl, torch.tensor([task_kl] * t), n, delta).as_dict()
                     for t in (10, 30, 100, 300, 1000, 3000, 10000)]
            for n in (5, 25, 100, 1000)}


def pac_bayes(out: Path, iters: int, tasks: int, seed: int) -> dict[str, Any]:
    """Part ``pac-bayes`` (see the module docstring)."""
    from innerloop import backends
    from innerloop.engine.theory.pac_bayes_maml import Softening, meta_risk, softened_maml_bound

    config, learner, reference, x, y, fresh = _cluster_pool(iters, tasks, seed)
    backend = backends.get("cpu", dtype=torch.float64)
    theta0 = _float64(_train(config, out / "runs" / "maml-clusters"))
    grid = [Softening(k, k, s, prior_var=s ** 2) for k in PAC_HYPER_STDS for s in PAC_POSTERIOR_STDS]
    delta = PAC_DELTA / len(grid)  # a union bound over the grid keeps the best bound valid at δ
    rows = []
    for softening in grid:
        draws = generator_for(seed, f"theory/pac/{softening.hyper_std}/{softening.posterior_std}")
        bound = softened_maml_bound(backend, learner, theta0, reference, x, y, PAC_LR, 5, softening, delta=delta,
                                    generator=draws)
        risk = meta_risk(backend, learner, theta0, fresh.support_x, fresh.support_y, fresh.query_x, fresh.query_y,
                         PAC_LR, 5, softening, generator=draws)
        rows.append({"hyper_std": softening.hyper_std, "posterior_std": softening.posterior_std,
                     "prior_var": softening.prior_var, **bound.as_dict(), "fresh_task_error": summarize(risk)})
    best = min(rows, key=lambda r: r["bound"])
    points = x.shape[1]
    what_if = _what_if(best["empirical"], best["hyper_kl"], best["mean_task_kl"], delta)
    return {"tasks": PAC_TASKS, "points": points, "ways": PAC_WAYS, "inner_lr": PAC_LR, "inner_steps": 5,
            "hidden": [16, 16], "delta": PAC_DELTA, "grid_size": len(grid),
            "rows": rows, "best": best, "bound_holds": best["bound"] >= best["fresh_task_error"]["mean"],
            "non_vacuous": best["bound"] < 1 - 1 / PAC_WAYS, "what_if": what_if}


def pac_bayes_learner(tasks: int, seed: int) -> dict[str, Any]:
    """Part ``pac-bayes-learner`` (see the module docstring)."""
    from innerloop.engine.theory import pac_bayes_learner as learned

    _, learner, reference, x, y, fresh = _cluster_pool(0, tasks, seed)
    delta = PAC_DELTA / len(PAC_LEARNER_GRID)  # a union bound over the grid keeps the best bound valid at δ
    rows = []
    for mean_width, scale_width, prior_std in PAC_LEARNER_GRID:
        settings = learned.BoundSettings(hyperprior_std=mean_width, scale_hyperprior_std=scale_width,
                                         prior_std=prior_std, delta=delta, steps=PAC_LEARNER_STEPS)
        draws = generator_for(seed, f"theory/pac-learner/{mean_width}/{scale_width}/{prior_std}")
        began = time.perf_counter()
        posterior, history = learned.minimize_meta_bound(learner, reference, x, y, settings, draws, progress=True)
        bound = learned.evaluate_meta_bound(learner, posterior, reference, x, y, settings, draws)
        error = learned.meta_test_error(learner, posterior, fresh.support_x, fresh.support_y, fresh.query_x,
                                        fresh.query_y, settings, x.shape[0], draws, steps=PAC_LEARNER_TEST_STEPS)
        widths = torch.exp(posterior.hyper_log_std).tolist()
        rows.append({"hyperprior_std": mean_width, "scale_hyperprior_std": scale_width, "prior_std": prior_std,
                     **bound.as_dict(), "fresh_task_error": summarize(error), "mean_noise_std": widths[0],
                     "scale_noise_std": widths[1], "history": history[:: max(1, len(history) // 100)],
                     "seconds": time.perf_counter() - began})
    best = min(rows, key=lambda r: r["bound"])
    return {"tasks": PAC_TASKS, "points": x.shape[1], "ways": PAC_WAYS, "hidden": [16, 16], "delta": PAC_DELTA,
            "steps": PAC_LEARNER_STEPS, "test_steps": PAC_LEARNER_TEST_STEPS, "rows": rows, "best": best,
            "bound_holds": best["bound"] >= best["fresh_task_error"]["mean"],
            "non_vacuous": best["bound"] < 1 - 1 / PAC_WAYS,
            "what_if": _what_if(best["empirical"], best["hyper_kl"], best["mean_task_kl"], delta)}


def theory(out: str | Path, iters: int = 2000, tasks: int = 500, algorithms: list[str] | None = None, seed: int = 0,
           jobs: int = 1) -> dict[str, Any]:
    """Run the chosen parts (see the module docstring); returns {part: its JSON document}."""
    from innerloop.engine.theory_plots import PLOTS

    parts, out = prepare("theory part", algorithms, list(PARTS), jobs, out)
    trained = _Trained(out, iters, seed)
    runners = {"implicit-prior": lambda: implicit_prior(trained, tasks, seed),
               "inner-steps": lambda: inner_steps(trained, tasks, seed),
               "gradient-variance": lambda: gradient_variance(trained, tasks, seed),
               "convergence": lambda: convergence(iters, seed),
               "pac-bayes": lambda: pac_bayes(out, iters, tasks, seed),
               "pac-bayes-learner": lambda: pac_bayes_learner(tasks, seed),
               **{part: partial(run, seed) for part, run in GENERALIZATION_PARTS.items()}}
    documents = {}
    for part in parts:
        began = time.perf_counter()
        document = {"experiment": "theory", "part": part, "iters": iters, "tasks": tasks, "seed": seed,
                    **runners[part]()}
        document["seconds"] = time.perf_counter() - began
        atomic_write_json(out / f"{part}.json", document)
        PLOTS[part](document, out / f"{part}.png")
        print(f"[theory] {part} done ({document['seconds']:.0f}s)", flush=True)
        documents[part] = document
    return documents


def theory_summary(documents: dict[str, dict[str, Any]]) -> str:
    """One line per part with its headline numbers (what ``innerloop experiment theory`` prints)."""
    lines = []
    for part, d in documents.items():
        if part == "implicit-prior":
            gaps = ", ".join(f"α={r['inner_lr']:g}: {r['relative_gap']['mean']:.3f}" for r in d["sinusoid"])
            lines.append(f"implicit-prior: linear tasks GD = MAP to {d['max_linear_gap']:.1e}; sinusoid MLP relative "
                         f"gap to the quadratic-model step {gaps}")
        elif part == "inner-steps":
            for algo, row in d["rows"].items():
                lines.append(f"inner-steps: {algo:<8} MSE vs N_test " + ", ".join(
                    f"{n}: {v['mean']:.3f}" for n, v in row["mse"].items()))
        elif part == "gradient-variance":
            lines.append("gradient-variance: log-log slope " + ", ".join(
                f"{name} {c['slope']:.2f}" for name, c in d["curves"].items()) + " (theory −1)")
        elif part == "convergence":
            smoothness, variance = d.get("smoothness", float("nan")), d.get("variance", float("nan"))
            lines.append(f"convergence: α={d['inner_lr']:.3g}, β={d['outer_lr']:.3g}, L_F={smoothness:.3g}, "
                         f"V={variance:.3g}; ‖∇F‖² {d['trajectory'][0]['grad_norm_sq']:.3g} → "
                         f"{d['trajectory'][-1]['grad_norm_sq']:.3g}; bound holds: {d['bound_holds']}")
        elif part == "pac-bayes":
            b = d["best"]
            lines.append(f"pac-bayes: best bound {b['bound']:.3f} = empirical {b['empirical']:.3f} + across "
                         f"{b['across_task']:.3f} + within {b['within_task']:.3f}; fresh-task Gibbs error "
                         f"{b['fresh_task_error']['mean']:.3f}; non-vacuous: {d['non_vacuous']}")
        elif part == "pac-bayes-learner":
            b = d["best"]
            lines.append(f"pac-bayes-learner: best bound {b['bound']:.3f} = empirical {b['empirical']:.3f} + across "
                         f"{b['across_task']:.3f} + within {b['within_task']:.3f} (mean task KL "
                         f"{b['mean_task_kl']:.0f}); fresh-task Gibbs error {b['fresh_task_error']['mean']:.3f}; "
                         f"non-vacuous: {d['non_vacuous']}")
        elif part == "information-bounds":
            one, many = d["single_task"]["rows"][0], d["vs_tasks"]
            lines.append(f"information-bounds: one task, N={one['points']}: E[ΔL] {one['gen_error']:.4f} <= "
                         f"Theorem 4.1 {one['xu_raginsky']:.4f}; meta, N={many[0]['points']}: " + ", ".join(
                             f"K={r['tasks']}: {r['gen_error']:.4f} <= {r['bound']:.4f}" for r in many))
        elif part == "task-similarity":
            lines.append("task-similarity: K=2, N=6, |ΔL|_avg vs Theorem 4.4 by spread: " + ", ".join(
                f"s={r['spread']:g}: {r['avg_abs_gen_error']:.3f} <= {r['bound']:.3f}" for r in d["rows"]))
        elif part == "excess-meta-risk":
            lines.append("excess-meta-risk: MEMR vs eq. 4.45 at K=1 and K=64: " + ", ".join(
                f"N={n}: {rows[0]['memr']['mean']:.3f} <= {rows[0]['bound']:.3f}, "
                f"{rows[-1]['memr']['mean']:.3f} <= {rows[-1]['bound']:.3f}" for n, rows in d["curves"].items()))
        elif part == "meta-linear-regression":
            for points, rows in d["curves"].items():
                last = rows[-1]
                lines.append(f"meta-linear-regression: N={points}, K={last['tasks']}: " + ", ".join(
                    f"{m} {last[m]['risk']['mean']:.3f}" for m in ("joint", "joint-gd", "maml", "imaml", "bayes",
                                                                    "oracle")))
        elif part == "double-descent":
            meta = d["meta"]
            lines.append(f"double-descent: K={meta['tasks']}, N={meta['points']}: median-risk peaks at d = "
                         + ", ".join(f"{m} {dim}" for m, dim in meta["peaks"].items())
                         + f" (thresholds K·N/2 = {meta['thresholds']['maml']}, K·N = {meta['thresholds']['joint']})")
        elif part == "degenerate-bilevel":
            lines.append(f"degenerate-bilevel: optimistic value {d['optimistic']:.4f}; final query loss "
                         + ", ".join(f"{name} {losses[-1]:.4f}" for name, losses in d["training"].items()))
        elif part == "misspecification":
            for name, rows in d["curves"].items():
                lines.append(f"misspecification: {name}, K={rows[-1]['tasks']}: actual excess "
                             f"{rows[-1]['actual_excess']['mean']:.3f} nats, reported MEMR "
                             f"{rows[-1]['reported_memr']['mean']:.3f}, penalty {rows[-1]['penalty']['mean']:.3f}")
    return "\n".join(lines)
