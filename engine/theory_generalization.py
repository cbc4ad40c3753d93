"""The generalization-theory parts of ``innerloop experiment theory`` (monograph ch. 4) and the
theory of its outlook (§7.1.4, §7.2).

No training: each part evaluates exact (or Monte Carlo over designs only) quantities in an
environment built for it, so every bound is compared with the error it bounds, not an estimate.

* ``information-bounds`` (§4.1–4.3) — the Bernoulli environment of
  :mod:`~innerloop.engine.theory.bernoulli_environment` (tasks τ ∈ {0.6, 0.7, 0.8, 0.9}, Brier
  loss, Gibbs base-learner and Gibbs meta-learner): (a) one task (τ = 0.7) learned under a fixed prior
  (θ = 0.5) vs N — the generalization error against Theorem 4.1, the population loss against the IRM
  bound eq. 4.9, and the coverage of the PAC-Bayes bound eq. 4.12; (b) meta-learning vs K at N = 8
  and (c) vs N at K = 4 — the average meta-generalization error, its within-task and environment
  parts (eq. 4.22) against the two terms of Theorem 4.3; (d) the meta-learner's inverse temperature
  β_meta at K = 4, N = 8 — fitting the meta-training tasks harder buys a lower meta-training loss
  with a larger I(θ; D_{1:K}).
* ``task-similarity`` (§4.3.2) — (a) Example 4.1: ε_KL = Nν̄²/ν² grows without limit in N, ε_JS
  saturates at log 2; (b) Bernoulli environments of growing task spread (biases 0.5 ± s and 0.5) at
  K = 2, N = 6: the average absolute meta-generalization error (eq. 4.29) against Theorem 4.4, whose
  ε term does not vanish, and the absolute average error (eq. 4.18) that Jensen's inequality puts
  below it.
* ``excess-meta-risk`` (§4.5) — the linear-Gaussian hierarchical model of
  :mod:`~innerloop.engine.theory.excess_meta_risk` (d = 4, s_θ² = 1, s_ϕ² = 0.1, σ² = 0.25): the
  minimum excess meta-risk I(Y; ϕ | X, D) vs K for N ∈ {2, 5, 20} against the bound eq. 4.45, and the
  entropy decomposition eq. 4.44.
* ``meta-linear-regression`` (§4.6) — the same model: the meta-test risk after adapting on a new
  task's N points for joint learning (with and without test-time GD), one-step MAML, iMAML, the
  Bayesian meta-predictor and the oracle that knows θ*, vs K for N ∈ {4, 10, 20}, each method solved
  exactly by least squares (:mod:`~innerloop.engine.theory.meta_linear_regression`). α and λ are
  chosen on one set of 2000 draws and reported on another.
* ``double-descent`` (§7.2.1) — the over-parameterized regime: (a) one regression problem (n = 20,
  ‖θ‖² = 1, σ² = 0.25), the minimum-norm least-squares risk vs the dimension d by Monte Carlo against
  its exact finite-sample value (:mod:`~innerloop.engine.theory.double_descent`); (b) meta linear
  regression with K = 5 tasks of N = 8 points, s_θ² = 1/d, s_ϕ² = 0.2/d (fixed total signal) and
  σ² = 0.25, vs d: the minimum-norm meta-learners peak where their equations run out — MAML and
  iMAML at d = K·N/2 (query rows), joint learning at d = K·N — while the Bayesian meta-predictor
  has no peak. Near a threshold the risk has no finite mean, so (b) reports medians and quartiles.
  (c, d) the same with spiked inputs (3 strong directions of variance 1 that carry the weights,
  d − 3 weak ones sharing a total variance of 1; :func:`~innerloop.engine.theory.double_descent.spiked_meta_risks`)
  up to d = 3000: one problem, then joint learning and one-step MAML — where interpolation is benign.
* ``misspecification`` (§7.2.2) — the §4.5 model as the truth (d = 4, s_θ² = 1, s_ϕ² = 0.1,
  σ² = 0.25, N = 5) and a Bayesian meta-learner that assumes other variances
  (:mod:`~innerloop.engine.theory.misspecification`): vs K, its actual excess meta-risk (exact
  expected log-loss minus the aleatoric floor), the MEMR it reports as its epistemic uncertainty,
  the true MEMR, and the misspecification penalty E[KL] between them.
* ``degenerate-bilevel`` (§7.1.4) — one over-parameterized task (d = 10 weights, n = 4 support and
  20 query points; :mod:`~innerloop.engine.theory.degenerate_bilevel`): (a) the hypergradient
  estimates at one θ — unrolled through T GD steps vs T, the implicit formula's Neumann series vs its
  N terms, the proximal one vs λ — against the GD selection's exact P∇f; (b) meta-training θ by each
  hypergradient, against the optimistic value min_S f (eq. 7.1); the pessimistic one (eq. 7.2) is +∞.
"""

from __future__ import annotations

from typing import Any

import torch

from innerloop.engine.tasks import generator_for

BERNOULLI = dict(task_biases=(0.6, 0.7, 0.8, 0.9), task_probs=(0.25, 0.25, 0.25, 0.25), beta=10.0, meta_beta=10.0)
SINGLE_TASK, SINGLE_PRIOR = 0.7, 0.5
SINGLE_POINTS = (2, 4, 8, 16, 32, 64, 128)
META_TASKS, META_POINTS = (1, 2, 4, 8, 16), (2, 4, 8, 16, 32)
META_FIXED_TASKS, META_FIXED_POINTS = 4, 8
META_BETAS = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
EXAMPLE_POINTS, EXAMPLE_RATIOS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000), (0.01, 0.1, 1.0)
SPREADS, SIMILARITY_TASKS, SIMILARITY_POINTS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.4), 2, 6
MEMR_TASKS, MEMR_POINTS, MEMR_DRAWS = (1, 2, 4, 8, 16, 32, 64), (2, 5, 20), 2000
MLR_TASKS, MLR_POINTS, MLR_REPLICATES = (2, 5, 10, 20, 50, 100), (4, 10, 20), 2000
MLR_INNER_LRS, MLR_STRENGTHS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5), (0.03, 0.1, 0.3, 1.0, 3.0)
DD_POINTS, DD_SIGNAL, DD_NOISE, DD_DRAWS = 20, 1.0, 0.25, 2000
DD_DIMS = (2, 5, 10, 15, 17, 18, 22, 23, 25, 30, 40, 60, 100)
DD_TASKS, DD_TASK_POINTS, DD_TASK_SPREAD, DD_META_DRAWS = 5, 8, 0.2, 400
DD_META_DIMS = (2, 4, 8, 12, 16, 18, 19, 20, 21, 22, 24, 28, 32, 36, 38, 39, 40, 41, 42, 44, 48, 56, 64, 80, 100)
DD_STRONG, DD_WEAK_TOTAL, DD_SPIKED_DRAWS = 3, 1.0, 400
MIS_TASKS, MIS_POINTS, MIS_DRAWS, MIS_INPUTS = (1, 2, 4, 8, 16, 32), 5, 500, 16
MIS_ASSUMPTIONS = {  # name: the assumed model's variances that differ from the truth's
    "well-specified": {}, "tasks assumed alike (s_ϕ² / 10)": {"task_var": 0.01},
    "tasks assumed diverse (10 s_ϕ²)": {"task_var": 1.0}, "noise underestimated (σ² / 4)": {"noise_var": 0.0625},
    "noise overestimated (4 σ²)": {"noise_var": 1.0}}
DD_SPIKED_DIMS = (3, 5, 10, 15, 18, 19, 20, 21, 22, 25, 30, 38, 39, 40, 41, 42, 50, 100, 200, 500, 1000, 3000)


def _bernoulli(**changes: Any):
    from innerloop.engine.theory.bernoulli_environment import BernoulliEnvironment

    return BernoulliEnvironment(**{**BERNOULLI, "points": META_FIXED_POINTS, **changes})


def information_bounds(seed: int) -> dict[str, Any]:
    """Part ``information-bounds`` (see the module docstring); exact, so ``seed`` is unused."""
    task = BERNOULLI["task_biases"].index(SINGLE_TASK)
    single = []
    for points in SINGLE_POINTS:
        env = _bernoulli(points=points)
        prior = int(torch.argmin((env.hyper_grid - SINGLE_PRIOR).abs()))
        result = {name: float(values[task, prior]) for name, values in env.single_task(delta=0.05).items()}
        single.append({"points": points, **result})
    keep = ("tasks", "points", "gen_error", "within_task_error", "environment_error", "environment_information",
            "task_informations", "environment", "within_task", "bound", "meta_population_loss")

    def meta(**changes: Any) -> dict[str, Any]:
        tasks = changes.pop("tasks", META_FIXED_TASKS)
        env = _bernoulli(**changes)
        result = env.meta_generalization(tasks)
        return {**{k: result[k] for k in keep}, "meta_beta": env.meta_beta,
                "meta_training_loss": result["meta_population_loss"] - result["gen_error"]}

    grid = _bernoulli()
    return {"environment": {**BERNOULLI, "prior_width": grid.prior_width, "models": grid.models,
                            "hypers": grid.hypers},
            "single_task": {"bias": SINGLE_TASK, "prior_center": SINGLE_PRIOR, "delta": 0.05, "rows": single},
            "vs_tasks": [meta(tasks=k) for k in META_TASKS],
            "vs_points": [meta(points=n) for n in META_POINTS],
            "vs_meta_beta": [meta(meta_beta=b) for b in META_BETAS],
            "all_bounds_hold": all(abs(r["gen_error"]) <= r["xu_raginsky"] and r["population_loss"] <= r["irm_bound"]
                                   and r["pac_bayes_coverage"] >= 0.95 for r in single)}


def task_similarity(seed: int) -> dict[str, Any]:
    """Part ``task-similarity`` (see the module docstring); exact, so ``seed`` is unused."""
    from innerloop.engine.theory.relatedness import gaussian_mean_js_relatedness, gaussian_mean_kl_relatedness

    example = {str(ratio): {"kl": [gaussian_mean_kl_relatedness(n, ratio, 1.0) for n in EXAMPLE_POINTS],
                            "js": [gaussian_mean_js_relatedness(n, ratio, 1.0) for n in EXAMPLE_POINTS]}
               for ratio in EXAMPLE_RATIOS}
    rows = []
    for spread in SPREADS:
        env = _bernoulli(task_biases=(0.5 - spread, 0.5, 0.5 + spread), task_probs=(1 / 3, 1 / 3, 1 / 3),
                         points=SIMILARITY_POINTS)
        similarity = env.task_similarity(SIMILARITY_TASKS)
        average = env.meta_generalization(SIMILARITY_TASKS)
        rows.append({"spread": spread, "relatedness_js": env.relatedness("js"),
                     **{k: similarity[k] for k in ("avg_abs_gen_error", "conditional_environment_information",
                                                   "relatedness_kl", "environment", "within_task", "bound")},
                     "abs_avg_gen_error": abs(average["gen_error"]), "theorem_4_3_bound": average["bound"]})
    return {"example_points": list(EXAMPLE_POINTS), "example": example, "tasks": SIMILARITY_TASKS,
            "points": SIMILARITY_POINTS, "rows": rows,
            "bounds_hold": all(r["avg_abs_gen_error"] <= r["bound"] for r in rows)}


def excess_meta_risk(seed: int) -> dict[str, Any]:
    """Part ``excess-meta-risk`` (see the module docstring)."""
    from innerloop.engine.theory.excess_meta_risk import HierarchicalLinearModel

    model = HierarchicalLinearModel()
    curves = {}
    for points in MEMR_POINTS:
        generator = generator_for(seed, f"theory/memr/{points}")
        curves[str(points)] = [model.excess_meta_risk(k, points, draws=MEMR_DRAWS, generator=generator)
                               for k in MEMR_TASKS]
    return {"model": {"dim": model.dim, "hyper_var": model.hyper_var, "task_var": model.task_var,
                      "noise_var": model.noise_var}, "draws": MEMR_DRAWS, "curves": curves,
            "bound_holds": all(r["memr"]["mean"] <= r["bound"] for rows in curves.values() for r in rows)}


def meta_linear_regression(seed: int) -> dict[str, Any]:
    """Part ``meta-linear-regression`` (see the module docstring)."""
    from innerloop.engine.stats import summarize
    from innerloop.engine.theory.excess_meta_risk import HierarchicalLinearModel
    from innerloop.engine.theory.meta_linear_regression import meta_test_risks

    model = HierarchicalLinearModel()
    grids = {"inner_lrs": MLR_INNER_LRS, "strengths": MLR_STRENGTHS}
    curves = {}
    for points in MLR_POINTS:
        rows = []
        for tasks in MLR_TASKS:
            tuning = meta_test_risks(model, tasks, points, MLR_REPLICATES,
                                     generator_for(seed, f"theory/mlr/tune/{points}/{tasks}"), **grids)
            test = meta_test_risks(model, tasks, points, MLR_REPLICATES,
                                   generator_for(seed, f"theory/mlr/test/{points}/{tasks}"), **grids)
            row = {"tasks": tasks}
            for method, settings in tuning.items():
                chosen = min(settings, key=lambda key: float(settings[key].mean()))
                risk = test[method][chosen]
                row[method] = {"setting": chosen, "risk": summarize(risk),
                               "minus_bayes": summarize(risk - test["bayes"][None])}
            rows.append(row)
        curves[str(points)] = rows
    return {"model": {"dim": model.dim, "hyper_var": model.hyper_var, "task_var": model.task_var,
                      "noise_var": model.noise_var}, "replicates": MLR_REPLICATES, "inner_steps": 1,
            "inner_lrs": list(MLR_INNER_LRS), "strengths": list(MLR_STRENGTHS), "curves": curves,
            "bayes_lowest": all(row[m]["minus_bayes"]["mean"] >= 0 for rows in curves.values() for row in rows
                                for m in ("joint", "joint-gd", "maml", "imaml"))}


def double_descent(seed: int) -> dict[str, Any]:
    """Part ``double-descent`` (see the module docstring)."""
    from innerloop.engine.stats import summarize
    from innerloop.engine.theory.double_descent import min_norm_risk, spiked_meta_risks
    from innerloop.engine.theory.excess_meta_risk import HierarchicalLinearModel
    from innerloop.engine.theory.meta_linear_regression import least_squares, meta_test_risks

    def quartiles(values: torch.Tensor) -> dict[str, float]:
        return dict(zip(("q25", "median", "q75"),
                        torch.quantile(values, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)).tolist()))

    single = []
    for dim in DD_DIMS:
        generator = generator_for(seed, f"theory/double-descent/single/{dim}")
        theta = torch.randn(DD_DRAWS, dim, generator=generator, dtype=torch.float64)
        theta = theta / theta.norm(dim=1, keepdim=True) * DD_SIGNAL ** 0.5
        design = torch.randn(DD_DRAWS, DD_POINTS, dim, generator=generator, dtype=torch.float64)
        noise = torch.randn(DD_DRAWS, DD_POINTS, generator=generator, dtype=torch.float64)
        targets = (design @ theta[..., None])[..., 0] + DD_NOISE ** 0.5 * noise
        risk = DD_NOISE + ((least_squares(design, targets) - theta) ** 2).sum(-1)
        single.append({"dim": dim, "monte_carlo": summarize(risk),
                       "exact": min_norm_risk(dim, DD_POINTS, DD_SIGNAL, DD_NOISE)})
    meta = []
    for dim in DD_META_DIMS:
        model = HierarchicalLinearModel(dim=dim, hyper_var=DD_SIGNAL / dim, task_var=DD_TASK_SPREAD / dim,
                                        noise_var=DD_NOISE)
        risks = meta_test_risks(model, DD_TASKS, DD_TASK_POINTS, DD_META_DRAWS,
                                generator_for(seed, f"theory/double-descent/meta/{dim}"))
        meta.append({"dim": dim, **{method: quartiles(next(iter(settings.values())))
                                    for method, settings in risks.items()}})

    spiked_single, spiked_meta = [], []
    for dim in DD_SPIKED_DIMS:
        one = spiked_meta_risks(dim, DD_STRONG, DD_WEAK_TOTAL, 1, DD_POINTS, DD_SPIKED_DRAWS,
                                generator_for(seed, f"theory/double-descent/spiked-single/{dim}"), signal=DD_SIGNAL,
                                spread=0.0, noise_var=DD_NOISE)
        spiked_single.append({"dim": dim, "min_norm": quartiles(one["joint"])})
        risks = spiked_meta_risks(dim, DD_STRONG, DD_WEAK_TOTAL, DD_TASKS, DD_TASK_POINTS, DD_SPIKED_DRAWS,
                                  generator_for(seed, f"theory/double-descent/spiked-meta/{dim}"), signal=DD_SIGNAL,
                                  spread=DD_TASK_SPREAD, noise_var=DD_NOISE)
        spiked_meta.append({"dim": dim, **{method: quartiles(values) for method, values in risks.items()}})

    def peak(method: str) -> int:
        return max(meta, key=lambda row: row[method]["median"])["dim"]

    return {"single": {"points": DD_POINTS, "signal": DD_SIGNAL, "noise_var": DD_NOISE, "draws": DD_DRAWS,
                       "rows": single},
            "meta": {"tasks": DD_TASKS, "points": DD_TASK_POINTS, "hyper_var_times_dim": DD_SIGNAL,
                     "task_var_times_dim": DD_TASK_SPREAD, "noise_var": DD_NOISE, "draws": DD_META_DRAWS,
                     "inner_lr": 0.1, "strength": 1.0, "rows": meta,
                     "thresholds": {"maml": DD_TASKS * DD_TASK_POINTS // 2, "joint": DD_TASKS * DD_TASK_POINTS},
                     "peaks": {method: peak(method) for method in ("joint", "joint-gd", "maml", "imaml", "bayes")}},
            "spiked": {"strong": DD_STRONG, "weak_total": DD_WEAK_TOTAL, "draws": DD_SPIKED_DRAWS,
                       "single": spiked_single, "meta": spiked_meta}}


def misspecification(seed: int) -> dict[str, Any]:
    """Part ``misspecification`` (see the module docstring)."""
    import dataclasses

    from innerloop.engine.theory.excess_meta_risk import HierarchicalLinearModel
    from innerloop.engine.theory.misspecification import misspecified_meta_risk

    truth = HierarchicalLinearModel()
    curves = {}
    for name, changes in MIS_ASSUMPTIONS.items():
        assumed = dataclasses.replace(truth, **changes)
        curves[name] = [{"tasks": tasks, "assumed": dataclasses.asdict(assumed),
                         **misspecified_meta_risk(truth, assumed, tasks, MIS_POINTS, MIS_DRAWS, MIS_INPUTS,
                                                  generator_for(seed, f"theory/misspecification/{tasks}"))}
                        for tasks in MIS_TASKS]
    return {"model": dataclasses.asdict(truth), "points": MIS_POINTS, "draws": MIS_DRAWS, "inputs": MIS_INPUTS,
            "curves": curves}


DB_DIM, DB_SUPPORT, DB_QUERY, DB_INNER_LR, DB_META_LR, DB_META_STEPS = 10, 4, 20, 0.1, 0.5, 300
DB_STEPS, DB_TERMS = (1, 2, 5, 10, 20, 50, 100, 200, 500), (1, 2, 5, 10, 20, 50, 100, 200, 500)
DB_STRENGTHS = (10.0, 1.0, 0.1, 0.01, 1e-3, 1e-4, 1e-5)


def degenerate_bilevel(seed: int) -> dict[str, Any]:
    """Part ``degenerate-bilevel`` (see the module docstring)."""
    from innerloop.engine.theory.degenerate_bilevel import DegenerateBilevel

    generator = generator_for(seed, "theory/degenerate-bilevel")

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    weights, support, query = normal(DB_DIM), normal(DB_SUPPORT, DB_DIM), normal(DB_QUERY, DB_DIM)
    problem = DegenerateBilevel(support, support @ weights + 0.1 * normal(DB_SUPPORT), query,
                                query @ weights + 0.1 * normal(DB_QUERY))
    theta = normal(DB_DIM)
    exact = problem.unrolled_hypergradient(theta, DB_INNER_LR, None)
    limit = problem.gd_solution(theta, DB_INNER_LR, None)
    lipschitz = 1.2 * float(torch.linalg.matrix_norm(problem.hessian, ord=2))
    range_part = torch.linalg.pinv(problem.hessian) @ problem.upper_gradient(limit)

    def error(estimate: torch.Tensor) -> float:
        return float((estimate - exact).norm())

    estimates = {
        "unrolled": [{"steps": t, "error": error(problem.unrolled_hypergradient(theta, DB_INNER_LR, t))}
                     for t in DB_STEPS],
        "neumann": [{"terms": n, "null_norm": float((problem.null_projector @ v).norm()),
                     "range_error": float(((torch.eye(DB_DIM, dtype=torch.float64) - problem.null_projector) @ v
                                           - range_part).norm())}
                    for n in DB_TERMS for v in [problem.neumann_inverse_gradient(limit, n, lipschitz)]],
        "proximal": [{"strength": lam, "error": error(problem.proximal_hypergradient(theta, lam))}
                     for lam in DB_STRENGTHS]}
    optimistic, _ = problem.optimistic_value()
    lower_and_hypergradient = {  # each learner: its lower-level solution ϕ(θ) and the hypergradient it follows
        "unrolled, T = ∞ (P∇f)": (lambda t: problem.gd_solution(t, DB_INNER_LR, None),
                                  lambda t: problem.unrolled_hypergradient(t, DB_INNER_LR, None)),
        "unrolled, T = 5": (lambda t: problem.gd_solution(t, DB_INNER_LR, 5),
                            lambda t: problem.unrolled_hypergradient(t, DB_INNER_LR, 5)),
        "proximal, λ = 0.1": (lambda t: problem.proximal_solution(t, 0.1),
                              lambda t: problem.proximal_hypergradient(t, 0.1)),
        "implicit formula (0)": (lambda t: problem.gd_solution(t, DB_INNER_LR, None), torch.zeros_like)}
    curves = {}
    for name, (lower, hypergradient) in lower_and_hypergradient.items():
        current, losses = theta.clone(), []
        for _ in range(DB_META_STEPS + 1):
            losses.append(float(problem.upper_loss(lower(current))))
            current = current - DB_META_LR * hypergradient(current)
        curves[name] = losses
    return {"dim": DB_DIM, "support": DB_SUPPORT, "query": DB_QUERY, "inner_lr": DB_INNER_LR, "meta_lr": DB_META_LR,
            "exact_norm": float(exact.norm()), "lipschitz": lipschitz,
            "null_gradient_norm": float((problem.null_projector @ problem.upper_gradient(limit)).norm()),
            "estimates": estimates, "optimistic": float(optimistic),
            "pessimistic_unbounded": problem.pessimistic_is_unbounded(), "training": curves}


PARTS = {"information-bounds": information_bounds, "task-similarity": task_similarity,
         "excess-meta-risk": excess_meta_risk, "meta-linear-regression": meta_linear_regression,
         "double-descent": double_descent, "misspecification": misspecification,
         "degenerate-bilevel": degenerate_bilevel}
