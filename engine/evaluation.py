"""Held-out evaluation of a run: query loss after n inner steps, against two baselines.

For each n in ``steps`` the meta-learned initialization is adapted with the run's own
algorithm (``algorithm.adapt``), the random-init and joint-learning baselines with n SGD steps
at the same inner learning rate, all on the same ``tasks`` held-out tasks from the meta-test
stream. Results are mean ± 95% CI over tasks (and accuracy for classification).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from innerloop import backends
from innerloop.engine import build
from innerloop.engine.baselines import finetune_loss, random_inits, train_joint
from innerloop.engine.errors import ConfigError, require_positive
from innerloop.engine.learner import Learner, loss_for
from innerloop.engine.params import Params, expand_to_tasks
from innerloop.engine.rundir import UNREADABLE, RunDirectory, atomic_torch_save, atomic_write_json
from innerloop.engine.stats import summarize
from innerloop.engine.tasks import TaskBatch

DEFAULT_TASKS = {"gradient": 500, "bayesian": 500, "metric": 600}


def evaluate_run(
    run_dir: str | Path,
    tasks: int | None = None,
    steps: list[int] | None = None,
    joint_iters: int | None = None,
    progress: bool = True,
    contexts: list[int] | None = None,
    baseline_lr: float | None = None,
) -> dict[str, Any]:
    """Evaluate the final checkpoint in ``run_dir``; writes eval.json and eval.png there.

    Gradient-lens runs: loss after ``steps`` inner steps vs baselines (``tasks`` default 500),
    the baselines fine-tuned with step ``baseline_lr`` (default: the run's inner step size).
    Neural Processes: NLL vs ``contexts`` (default 2..20) with the exact GP on GP tasks (500).
    ProtoNet/MatchingNet: accuracy vs raw-input baselines over ``tasks`` episodes (default 600).
    """
    from innerloop.engine import amortized_evaluation

    run = RunDirectory(run_dir)
    config = run.read_config()
    family = build.family(config)
    model = build.model(config, family)
    backend = build.backend(config)
    algorithm = build.algorithm(config, model, backend)
    tasks = DEFAULT_TASKS[algorithm.lens] if tasks is None else tasks
    if int(tasks) != tasks or tasks < 2:
        raise ConfigError(f"--tasks must be an integer >= 2, got {tasks}", "e.g. --tasks 500")
    state = run.load_checkpoint()
    params = {k: v.to(backend.device, backend.dtype) for k, v in state["params"].items()}
    algorithm.check_params(params)
    if algorithm.lens == "gradient":
        result = _evaluate_gradient(run, config, family, model, backend, algorithm, params, state, tasks, steps,
                                    joint_iters, progress, baseline_lr)
    else:
        header = {"algo": config.algo, "task": config.task, "backend": config.backend,
                  "iteration": int(state["iteration"]), "tasks": int(tasks), "shots": family.shots,
                  "seed": config.seed}
        if algorithm.lens == "bayesian":
            result = amortized_evaluation.evaluate_bayesian(run, header, family, algorithm, params, tasks, contexts)
        else:
            result = amortized_evaluation.evaluate_metric(run, header, family, algorithm, params, tasks, progress)
    atomic_write_json(run.file("eval.json"), result)
    return result


def _evaluate_gradient(run, config, family, model, backend, algorithm, params, state, tasks, steps, joint_iters,
                       progress, baseline_lr) -> dict[str, Any]:
    own = build.inner_steps(config)
    steps = sorted(set(steps if steps is not None else [0, 1, own, 2 * own]))
    if any(int(n) != n or n < 0 for n in steps):
        raise ConfigError(f"--steps must be whole numbers >= 0, got {steps}", "e.g. --steps 0,1,5,10")
    baseline_lr = algorithm.inner_lr if baseline_lr is None else baseline_lr
    require_positive("baseline_lr", baseline_lr)
    batch = family.stream("meta-test", config.seed).next(tasks).to(backend.dtype, backend.device)
    learner = Learner(model, loss_for(model, family.loss))  # the baselines' plain model
    meta_learner = Learner(algorithm.model, loss_for(algorithm.model, family.loss))  # may differ (CAVIA's context)
    joint_iters = joint_iters if joint_iters is not None else min(config.iters, 2000)
    reference = _baseline_backend(config, backend)
    joint = _joint_params(run, family, model, reference, config, joint_iters, progress)
    starts = {"random_init": random_inits(model, tasks, config.seed, backend),
              "joint": expand_to_tasks(joint, tasks)}

    result: dict[str, Any] = {
        "lens": "gradient", "algo": config.algo, "task": config.task, "backend": config.backend,
        "iteration": int(state["iteration"]), "tasks": int(tasks), "shots": family.shots,
        "loss": meta_learner.validation.loss_name,
        "inner_lr": algorithm.inner_lr, "baseline_lr": baseline_lr, "baseline_backend": repr(reference),
        "joint_iters": joint_iters, "steps": {},
        "baselines": {name: {} for name in starts},
    }
    for n in steps:
        adapted = algorithm.adapt(params, batch, steps=n)
        losses = backend.loss(meta_learner.validation, adapted, batch.query_x, batch.query_y)
        result["steps"][str(n)] = _entry(losses, meta_learner, adapted, batch)
        for name, start in starts.items():
            losses, adapted = finetune_loss(reference, learner, start, batch, baseline_lr, n)
            result["baselines"][name][str(n)] = _entry(losses, learner, adapted, batch)
    result["warnings"] = _divergences(result)
    from innerloop.engine import plots

    plots.evaluation(result, run.file("eval.png"),
                     title=f"{config.algo} on {config.task}: {tasks} held-out tasks, K={family.shots}")
    return result


def _divergences(result: dict[str, Any]) -> list[str]:
    """One line per series whose adaptation gave non-finite query losses, naming where and the fix."""
    tasks, lines = result["tasks"], []
    series = {"meta-learned": (result["steps"], f"the run's inner_lr {result['inner_lr']}")}
    series |= {name: (table, f"--baseline-lr {result['baseline_lr']}") for name, table in result["baselines"].items()}
    for name, (table, step_size) in series.items():
        counts = [f"{entry['non_finite']}/{tasks} tasks after {n} steps" for n, entry in table.items()
                  if entry.get("non_finite")]
        if counts:
            lines.append(f"{name}: adaptation diverged (non-finite query loss) on {', '.join(counts)}; "
                         f"a smaller step size than {step_size}, or fewer --steps, keeps it finite")
    return lines


def compare_runs(results: dict[str, dict[str, Any]], out: str | Path) -> dict[str, Any]:
    """Overlay the evaluations of several runs of one lens (e.g. CNP vs LatentNP vs AttentiveNP vs
    the exact GP); writes comparison.json and comparison.png into ``out``."""
    from innerloop.engine import amortized_plots

    lenses = {r.get("lens", "gradient") for r in results.values()}
    if len(lenses) != 1:
        raise ConfigError(f"cannot compare runs of different kinds ({', '.join(sorted(lenses))})",
                          "compare Neural Processes with Neural Processes, metric runs with metric runs, ...")
    lens = lenses.pop()
    algos = [r["algo"] for r in results.values()]
    labels = {run: (r["algo"] if algos.count(r["algo"]) == 1 else Path(run).name) for run, r in results.items()}
    first = next(iter(results.values()))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{first['task']}: {first['tasks']} held-out tasks"
    if lens == "metric":
        series = {labels[run]: r["accuracy"] for run, r in results.items()} | first["baselines"]
        amortized_plots.accuracy_bars(series, out / "comparison.png", title=title)
    else:
        key, extra = ("contexts", first["reference"]) if lens == "bayesian" else ("steps", first["baselines"])
        series = {labels[run]: r[key] for run, r in results.items()} | extra
        xlabel = "context size K_C" if lens == "bayesian" else "inner steps on the support set"
        ylabel = "held-out predictive NLL per target point" if lens == "bayesian" else f"query {first['loss']}"
        amortized_plots.curves(series, out / "comparison.png", xlabel, ylabel, title)
    comparison = {"lens": lens, "series": series, "runs": results}
    atomic_write_json(out / "comparison.json", comparison)
    return comparison


def format_table(result: dict[str, Any]) -> str:
    """The evaluation as a fixed-width text table."""
    from innerloop.engine import amortized_evaluation

    if result.get("lens") == "bayesian":
        return amortized_evaluation.format_bayesian(result)
    if result.get("lens") == "metric":
        return amortized_evaluation.format_metric(result)
    names = ["meta-learned", *result["baselines"]]
    tables = [result["steps"], *result["baselines"].values()]
    header = f"{'steps':>5}  " + "  ".join(f"{n:>22}" for n in names)
    lines = [
        f"held-out query {result['loss']} after n inner steps: {result['tasks']} tasks, "
        f"{result['shots']} shots, mean ± 95% CI",
        header, "-" * len(header),
    ]
    for n in result["steps"]:
        cells = [f"{t[n]['mean']:>12.4f} ± {t[n]['ci95']:<7.4f}" if not t[n].get("non_finite")
                 else f"{'diverged ' + str(t[n]['non_finite']) + '/' + str(t[n]['n']):>22}" for t in tables]
        lines.append(f"{n:>5}  " + "  ".join(cells))
        if "accuracy" in result["steps"][n]:
            acc = [f"{'acc ' + format(t[n]['accuracy']['mean'], '.3f'):>12} ± {t[n]['accuracy']['ci95']:<7.3f}"
                   for t in tables]
            lines.append(f"{'':>5}  " + "  ".join(acc))
        if "predictive_mse" in result["steps"][n]:
            mse = [f"{'mse ' + format(t[n]['predictive_mse']['mean'], '.4f'):>12} ± "
                   f"{t[n]['predictive_mse']['ci95']:<7.4f}" for t in tables]
            lines.append(f"{'':>5}  " + "  ".join(mse))
    return "\n".join(lines)


def _entry(losses: torch.Tensor, learner: Learner, adapted: Params, batch: TaskBatch) -> dict[str, Any]:
    entry: dict[str, Any] = summarize(losses)
    regression = not batch.is_classification
    if learner.own_objective and regression and getattr(learner.model, "predicts_targets", True):  # free energy
        entry["predictive_mse"] = summarize(
            ((learner.predict_tasks(adapted, batch.query_x) - batch.query_y) ** 2).flatten(1).mean(1))
    if batch.is_classification:
        logits = learner.predict_tasks(adapted, batch.query_x)
        correct = (logits.argmax(dim=-1) == batch.query_y).double().mean(dim=1)
        entry["accuracy"] = summarize(correct)
    return entry


def _baseline_backend(config, backend):
    """The backend the gradient baselines fine-tune on: the run's, or — when the run's was restricted
    below ``loss_and_grad`` (e.g. ES-MAML on a loss-only substrate) — the unrestricted backend of
    the same name, which eval.json records as ``baseline_backend``."""
    if backend.supports("loss_and_grad"):
        return backend
    options = {k: v for k, v in config.backend_options.items() if k != "capabilities"}
    return backends.get(config.backend, **{"dtype": config.dtype, **options})


def _joint_params(run, family, model, backend, config, iters: int, progress: bool) -> Params:
    """The joint-learning baseline, trained once per run directory and cached there."""
    cache = run.file("joint_baseline.pt")
    if cache.is_file():
        try:
            saved = torch.load(cache, map_location="cpu", weights_only=True)
        except UNREADABLE as err:
            print(f"innerloop: warning: the joint-learning baseline cached in {cache} is unreadable "
                  f"({type(err).__name__}); training it again", file=sys.stderr)
            saved = {}
        if isinstance(saved, dict) and saved.get("iters") == iters:
            return {k: v.to(backend.device, backend.dtype) for k, v in saved["params"].items()}
    params = train_joint(family, model, backend, iters=iters, meta_batch=config.meta_batch,
                         lr=config.outer_lr, seed=config.seed, progress=progress)
    atomic_torch_save({"iters": iters, "params": {k: v.detach().cpu() for k, v in params.items()}}, cache)
    return params
