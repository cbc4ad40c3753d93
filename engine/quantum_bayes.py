"""``innerloop experiment quantum-bayes``: quantum-assisted Bayesian meta-learning with Born machines
(monograph §6.2.2, free energy eq. 2.32; Nikoloska & Simeone 2022; issue 8, part 2).

On ``binary-prototype-regression`` (n = 8 binary weights, K = 3 support points) a Born machine
q_θ (8 qubits, L = 3) is the variational posterior over the weights; a task adapts it by N = 3
gradient steps on its free energy F(θ | D_support) from a shared initialization θ₀; the query set
scores the adapted q by the predictive log-loss −log E_q[p(D_query|φ)] (the Bayesian meta-training
loss, monograph eqs. 2.33–2.35). θ₀ is meta-trained by the engine's own algorithms on the
``quantum`` backend:

* ``maml`` — second order, exact simulator (backprop);
* ``fomaml`` / ``reptile`` — first order, parameter-shift rule on exact probabilities;
* ``fomaml-shots`` — the hardware path: parameter-shift rule on sample means with ``shots`` per
  circuit and the classifier density-ratio KL, no probabilities anywhere in training or in the
  test-time adaptation (at most ``SHOT_ITERS`` meta-iterations: each costs ~10× an exact one);
* ``mean-field`` — the classical baseline q_λ = Π Bernoulli(σ(λ_k)) meta-trained by MAML on ``cpu``;

against ``uniform`` (θ = 0, the prior; exact steps, and ``uniform-shots`` with shot-based
steps), ``joint`` (θ trained on the pooled free energy of meta-training tasks, then the same
steps) and the floor: exact Bayes with the true task prior. Metrics on held-out tasks, from the
exact probabilities of each adapted circuit: MSE of the posterior-predictive mean on the query
set and the probability mass q(φ*) on the true weights, mean ± 95% CI, after n = 0…5 steps, and
the paired differences (same held-out tasks) of MAML and the first-order methods against their
uniform starts and joint learning.
Gradient agreement at the MAML θ₀ (cosine of FOMAML to MAML meta-gradients, and of shot-based
to exact FOMAML ones) shows where the first-order and shot-noise gaps come from; the shot run
reports its cost in circuit executions and shots. Writes ``quantum_bayes.json`` and
``quantum_bayes.png`` (MSE and mass vs steps, learned vs true distribution over bit-strings, the
predictive mean ± std on one held-out task).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from innerloop.engine.binary_bayes import string_index
from innerloop.engine.config import TrainConfig
from innerloop.engine.experiment_setup import prepare
from innerloop.engine.inner import inner_step
from innerloop.engine.learner import Learner, loss_for
from innerloop.engine.params import Params, expand_to_tasks
from innerloop.engine.rundir import atomic_write_json
from innerloop.engine.stats import summarize
from innerloop.engine.tasks import generator_for

TASK = "binary-prototype-regression"
INNER_STEPS, INNER_LR, OUTER_LR, META_BATCH, SHOTS = 3, 0.01, 0.02, 16, 200
SHOT_ITERS = 400  # the shot-based run's meta-iterations: each costs ~10× an exact one (a classifier per step)
EVAL_STEPS = (0, 1, 2, 3, 5)
METHODS: dict[str, dict[str, Any]] = {
    "maml": {"algo": "maml", "backend": "quantum", "options": {"diff_method": "backprop"}},
    "fomaml": {"algo": "fomaml", "backend": "quantum", "options": {"diff_method": "parameter-shift"}},
    "reptile": {"algo": "reptile", "backend": "quantum", "options": {"diff_method": "parameter-shift"}},
    "fomaml-shots": {"algo": "fomaml", "backend": "quantum",
                     "options": {"diff_method": "parameter-shift", "shots": SHOTS}},
    "mean-field": {"algo": "maml", "backend": "cpu", "options": {}},
    "joint": {"algo": "maml", "backend": "quantum", "options": {"diff_method": "backprop"}},
}


def _config(method: str, iters: int, seed: int) -> TrainConfig:
    spec = METHODS[method]
    return TrainConfig(algo=spec["algo"], task=TASK, backend=spec["backend"], dtype="float64",
                       meta_batch=META_BATCH, inner_steps=INNER_STEPS, inner_lr=INNER_LR, outer_lr=OUTER_LR,
                       iters=iters, seed=seed, eval_every=max(1, iters // 4), eval_tasks=32,
                       checkpoint_every=iters, backend_options={**spec["options"], "seed": seed}
                       if spec["backend"] == "quantum" else {})


def _build(config: TrainConfig):
    from innerloop.engine import build

    family = build.family(config)
    model = build.model(config, family)
    backend = build.backend(config)
    return family, model, backend, build.algorithm(config, model, backend)


def _trajectory(algorithm, theta: Params, batch, family) -> dict[str, Any]:
    """Exact-probability metrics along one inner trajectory of the algorithm's own steps."""
    model, backend = algorithm.model, algorithm.backend
    learner = Learner(model, loss_for(model, family.loss))
    adapted = expand_to_tasks({k: v.to(backend.dtype) for k, v in theta.items()}, batch.num_tasks)
    truth = string_index(batch.task_params["bits"]).unsqueeze(1)
    mse, mass, spent = {}, {}, backend.executions.shots if hasattr(backend, "executions") else 0
    per_task: dict[str, list[float]] = {}
    for n in range(max(EVAL_STEPS) + 1):
        if n in EVAL_STEPS:
            with torch.no_grad():
                q = model.probabilities(adapted)
                prediction = model.likelihood.predictive_mean(q, batch.query_x)
            task_mse, task_mass = ((prediction - batch.query_y) ** 2).flatten(1).mean(1), q.gather(1, truth).squeeze(1)
            mse[str(n)], mass[str(n)] = summarize(task_mse), summarize(task_mass)
            if n == algorithm.inner_steps:  # kept per task for paired comparisons on the same held-out tasks
                per_task = {"mse": task_mse.tolist(), "mass": task_mass.tolist()}
        if n < max(EVAL_STEPS):
            _, adapted = inner_step(backend, learner, adapted, batch.support_x, batch.support_y, algorithm.inner_lr)
    result = {"mse": mse, "mass": mass, "per_task": per_task}
    if getattr(backend, "shots", None):
        result["shots_per_task_per_step"] = (backend.executions.shots - spent) / (batch.num_tasks * max(EVAL_STEPS))
    return result


def _held_out(family, tasks: int, seed: int):
    return family.split_view("meta-test").sample(tasks, generator_for(seed, "quantum-bayes-eval"))


def _run(args: tuple[str, int, int, int, str]) -> dict[str, Any]:
    """Meta-train one method (a run directory) and evaluate it on held-out tasks."""
    from innerloop.engine.baselines import train_start

    torch.set_num_threads(1)
    method, iters, tasks, seed, out = args
    if METHODS[method]["options"].get("shots"):
        iters = min(iters, SHOT_ITERS)
    config = _config(method, iters, seed)
    start = train_start(method, config, Path(out) / "runs" / method, meta_batch=META_BATCH, lr=OUTER_LR)
    family, algorithm, seconds, theta = start.family, start.algorithm, start.seconds, start.params
    trainer_backend = algorithm.backend
    batch = _held_out(family, tasks, seed).to(torch.float64, "cpu")
    row = {"method": method, "algo": config.algo, "backend": config.backend, "backend_options": config.backend_options,
           "iters": iters, "train_seconds": seconds, "theta": {k: v.tolist() for k, v in theta.items()},
           "meta_init": _trajectory(algorithm, theta, batch, family)}
    executions = getattr(trainer_backend, "executions", None)
    if executions is not None and config.backend_options.get("shots"):
        row["training_cost"] = {"circuits": executions.circuits, "shots": executions.shots}
    if method in ("maml", "fomaml-shots"):  # the uniform start under exact and under shot-based steps
        row["uniform"] = _trajectory(algorithm, _uniform(algorithm.model), batch, family)
    return row


def _uniform(model) -> Params:
    return {k: torch.zeros(s, dtype=torch.float64) for k, s in model.shapes().items()}


def _gradient_agreement(theta: Params, seed: int, batches: int = 4) -> dict[str, Any]:
    """Cosines between meta-gradients at the MAML θ₀ on the same task batches: FOMAML vs MAML
    (the first-order gap) and shot-based vs exact FOMAML (the shot-noise gap)."""
    built = {m: _build(_config(m, 1, seed)) for m in ("maml", "fomaml", "fomaml-shots")}
    algorithms, family = {m: b[3] for m, b in built.items()}, built["maml"][0]
    stream = family.stream("meta-val", seed)
    pairs = {"fomaml_vs_maml": ("fomaml", "maml"), "shots_vs_exact_fomaml": ("fomaml-shots", "fomaml")}
    cosines: dict[str, list[float]] = {key: [] for key in pairs}
    for _ in range(batches):
        batch = stream.next(META_BATCH).to(torch.float64, "cpu")
        grads = {m: a.meta_gradient(theta, batch)["weights"].flatten() for m, a in algorithms.items()}
        for key, (a, b) in pairs.items():
            cosines[key].append(float(torch.nn.functional.cosine_similarity(grads[a], grads[b], 0)))
    return {k: summarize(torch.tensor(v)) for k, v in cosines.items()}


def _exact_bayes(family, batch) -> dict[str, Any]:
    posterior = family.posterior(batch.support_x, batch.support_y)
    prediction = family.predictive_mean(posterior, batch.query_x)
    truth = string_index(batch.task_params["bits"]).unsqueeze(1)
    return {"mse": summarize(((prediction - batch.query_y.double()) ** 2).flatten(1).mean(1)),
            "mass": summarize(posterior.gather(1, truth).squeeze(1))}


def quantum_bayes(out: str | Path, iters: int = 1000, tasks: int = 200, algorithms: list[str] | None = None,
                  seed: int = 0, jobs: int = 1) -> dict[str, Any]:
    """Run the experiment (see the module docstring); returns the JSON document it writes."""
    from innerloop.engine.quantum_bayes_plots import plot

    methods, out = prepare("quantum-bayes method", algorithms, list(METHODS), jobs, out)
    work = [(m, iters, tasks, seed, str(out)) for m in methods]
    rows = {}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for row in pool.map(_run, work):
            last = row["meta_init"]
            print(f"[quantum-bayes] {row['method']:<12} after {INNER_STEPS} steps: MSE "
                  f"{last['mse'][str(INNER_STEPS)]['mean']:.3f} ± {last['mse'][str(INNER_STEPS)]['ci95']:.3f}, "
                  f"mass {last['mass'][str(INNER_STEPS)]['mean']:.3f}  ({row['train_seconds']:.0f}s)", flush=True)
            rows[row["method"]] = row
    family = _build(_config(methods[0], 1, seed))[0]
    batch = _held_out(family, tasks, seed)
    document: dict[str, Any] = {
        "experiment": "quantum-bayes", "task": TASK, "task_options": family.config(), "iters": iters,
        "held_out_tasks": tasks, "seed": seed, "inner_steps": INNER_STEPS, "inner_lr": INNER_LR,
        "outer_lr": OUTER_LR, "meta_batch": META_BATCH, "shots": SHOTS, "eval_steps": list(EVAL_STEPS),
        "exact_bayes": _exact_bayes(family, batch), "rows": rows,
    }
    if "maml" in rows:
        theta = {k: torch.tensor(v, dtype=torch.float64) for k, v in rows["maml"]["theta"].items()}
        document["gradient_agreement_at_maml_init"] = _gradient_agreement(theta, seed)
    document["summary"] = summary(document)
    atomic_write_json(out / "quantum_bayes.json", document)
    plot(document, family, batch, out / "quantum_bayes.png")
    return document


def trajectories(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every method's held-out trajectory from its meta-learned start, plus the uniform starts
    (exact steps, kept in the MAML row; shot-based steps, in the FOMAML-shots row)."""
    rows = document["rows"]
    curves = {m: r["meta_init"] for m, r in rows.items()}
    curves.update({name: rows[m]["uniform"] for m, name in (("maml", "uniform"), ("fomaml-shots", "uniform-shots"))
                   if m in rows})
    return curves


def summary(document: dict[str, Any]) -> dict[str, Any]:
    """MSE and mass after the inner steps per method and baseline, and the acceptance checks."""
    key = str(document["inner_steps"])
    curves = trajectories(document)
    table = {m: {"mse": c["mse"][key], "mass": c["mass"][key]} for m, c in curves.items()}
    table["exact-bayes"] = document["exact_bayes"]
    checks: dict[str, Any] = {}
    paired = {f"{a} - {b}": {metric: summarize(torch.tensor(curves[a]["per_task"][metric])
                                               - torch.tensor(curves[b]["per_task"][metric]))
                             for metric in ("mse", "mass")}
              for a, b in (("maml", "uniform"), ("maml", "joint"), ("fomaml", "uniform"), ("reptile", "uniform"),
                           ("fomaml-shots", "uniform-shots")) if a in curves and b in curves}
    if {"maml", "uniform", "joint"} <= set(table):
        maml = table["maml"]
        # paired over the same held-out tasks: the 95% CI of the MSE difference lies below zero
        checks["maml_beats_uniform_and_joint"] = all(
            paired[f"maml - {b}"]["mse"]["mean"] + paired[f"maml - {b}"]["mse"]["ci95"] < 0
            for b in ("uniform", "joint"))
        checks["maml_mass_over_uniform"] = maml["mass"]["mean"] / table["uniform"]["mass"]["mean"]
    if {"fomaml-shots", "uniform-shots"} <= set(table):
        checks["shots_mass_over_uniform_shots"] = (table["fomaml-shots"]["mass"]["mean"]
                                                   / table["uniform-shots"]["mass"]["mean"])
    return {"after_inner_steps": table, "paired_differences": paired, "checks": checks}
