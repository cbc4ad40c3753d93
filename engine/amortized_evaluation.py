"""Held-out evaluation of the amortized lenses.

* Neural Processes — the sample-efficiency sweep of seed 000 §9.2: per-target predictive NLL on
  ``targets`` held-out query points vs context size K_C, mean ± 95% CI over tasks. Context sets
  are nested (the first K_C support points of the same tasks), so the curve is a paired
  comparison. On GP tasks the exact posterior with the task's true lengthscale is evaluated on
  the same points: the ceiling (lowest expected NLL) any model can reach.
* ProtoNet / MatchingNet — query accuracy over held-out episodes (≥ 600 is the standard
  protocol), against 1-nearest-neighbour and nearest-class-mean classifiers on the raw inputs.
"""

from __future__ import annotations

from typing import Any

import torch

from innerloop.engine import amortized_plots
from innerloop.engine.algorithms.metric import nearest_neighbour_predictions, prototypes, squared_distances
from innerloop.engine.errors import ConfigError
from innerloop.engine.gp_posterior import gp_nll
from innerloop.engine.params import Params
from innerloop.engine.progress import Progress
from innerloop.engine.rundir import RunDirectory
from innerloop.engine.stats import summarize
from innerloop.engine.tasks import TaskBatch, TaskFamily, generator_for

CONTEXT_SIZES = (2, 4, 8, 12, 16, 20)
NP_TARGETS = 30
CHUNK = 100


def evaluate_bayesian(run: RunDirectory, header: dict[str, Any], family: TaskFamily, algorithm, params: Params,
                      tasks: int, contexts: list[int] | None = None) -> dict[str, Any]:
    """NLL vs context size on ``tasks`` held-out tasks; writes the predictive figure too."""
    contexts = sorted(set(contexts or CONTEXT_SIZES))
    if contexts[0] < 1:
        raise ConfigError(f"context sizes must be >= 1, got {contexts}", "e.g. --contexts 2,4,8,12,16,20")
    batch = family.split_view("meta-test").sample(
        tasks, generator_for(header["seed"], "meta-test"), shots=contexts[-1], queries=NP_TARGETS)
    result = {**header, "lens": "bayesian", "metric": "nll", "targets": NP_TARGETS, "contexts": {},
              "reference": {}}
    gp = family.name == "gp"
    if gp:
        result["reference"]["exact GP"] = {}
    for k in contexts:
        result["contexts"][str(k)] = summarize(algorithm.evaluate(params, batch, context=k))
        if gp:
            nll = gp_nll(batch.support_x[:, :k], batch.support_y[:, :k], batch.query_x, batch.query_y,
                         batch.task_params["lengthscale"], family.output_scale, family.noise)
            result["reference"]["exact GP"][str(k)] = summarize(nll)
    series = {header["algo"]: result["contexts"], **result["reference"]}
    amortized_plots.sample_efficiency(series, run.file("eval.png"),
                                      title=f"{header['algo']} on {header['task']}: {tasks} held-out tasks")
    amortized_plots.np_predictive(algorithm, family.split_view("meta-test"), params, run.file("predictive.png"),
                                  generator_for(header["seed"], "eval/plot"), title=f"{header['algo']}, held-out task")
    return result


def evaluate_metric(run: RunDirectory, header: dict[str, Any], family: TaskFamily, algorithm, params: Params,
                    tasks: int, progress: bool = True) -> dict[str, Any]:
    """Accuracy of the run and of raw-input baselines on ``tasks`` held-out episodes."""
    stream = family.stream("meta-test", header["seed"])
    scores: dict[str, list[torch.Tensor]] = {"accuracy": [], "loss": [], "nearest_neighbour": [],
                                             "raw_prototypes": []}
    bar = Progress((tasks + CHUNK - 1) // CHUNK, "held-out episodes", enabled=progress)
    for start in range(0, tasks, CHUNK):
        batch = stream.next(min(CHUNK, tasks - start))
        loss, accuracy = algorithm.loss_and_accuracy(params, batch)
        scores["accuracy"].append(accuracy.cpu())
        scores["loss"].append(loss.cpu())
        scores["nearest_neighbour"].append(_accuracy(nearest_neighbour_predictions(
            batch.support_x, batch.support_y, batch.query_x), batch))
        scores["raw_prototypes"].append(_accuracy(_raw_prototype_predictions(batch), batch))
        bar.update()
    bar.close()
    stats = {name: summarize(torch.cat(values)) for name, values in scores.items()}
    result = {**header, "lens": "metric", "ways": family.output_dim, "queries": family.queries,
              "accuracy": stats["accuracy"], "loss": stats["loss"],
              "baselines": {"nearest_neighbour": stats["nearest_neighbour"],
                            "raw_prototypes": stats["raw_prototypes"]}}
    bars = {header["algo"]: stats["accuracy"], **result["baselines"]}
    amortized_plots.accuracy_bars(bars, run.file("eval.png"), title=f"{header['task']}: {tasks} held-out "
                                  f"{family.output_dim}-way {family.shots}-shot episodes")
    amortized_plots.adaptation(algorithm, family, params, run.file("episode.png"), header["seed"],
                               title=f"{header['algo']} on held-out {header['task']} tasks")
    return result


def format_bayesian(result: dict[str, Any]) -> str:
    names = [result["algo"], *result["reference"]]
    tables = [result["contexts"], *result["reference"].values()]
    lines = [f"held-out predictive NLL per target ({result['targets']} targets): {result['tasks']} tasks, "
             "mean ± 95% CI", f"{'K_C':>4}  " + "  ".join(f"{n:>20}" for n in names)]
    lines.append("-" * len(lines[-1]))
    for k in result["contexts"]:
        lines.append(f"{k:>4}  " + "  ".join(f"{t[k]['mean']:>11.4f} ± {t[k]['ci95']:<6.4f}" for t in tables))
    return "\n".join(lines)


def format_metric(result: dict[str, Any]) -> str:
    rows = {result["algo"]: result["accuracy"], **result["baselines"]}
    lines = [f"held-out {result['ways']}-way {result['shots']}-shot accuracy: {result['tasks']} episodes, "
             "mean ± 95% CI"]
    lines += [f"  {name.replace('_', ' '):<20} {s['mean']:.4f} ± {s['ci95']:.4f}" for name, s in rows.items()]
    return "\n".join(lines)


def _accuracy(predicted: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
    return (predicted == batch.query_y).double().mean(dim=1)


def _raw_prototype_predictions(batch: TaskBatch) -> torch.Tensor:
    """Nearest class mean in input space (ProtoNet with the identity embedding)."""
    return squared_distances(batch.query_x, prototypes(batch.support_x, batch.support_y)).argmin(dim=-1)
