"""Baselines every meta-learned initialization is compared against, on the same held-out tasks.

* random initialization: a fresh init per task, then the same inner SGD steps;
* joint learning (monograph eq. 1.2): one model trained on the pooled data of meta-training
  tasks, min_φ (1/K)Σ_k L_{D_k}(φ), then fine-tuned with the same inner SGD steps. Joint
  learning ignores adaptation while training, which is what meta-learning fixes (§1.2.3).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from innerloop.backends.base import Backend
from innerloop.engine.inner import sgd_trajectory
from innerloop.engine.learner import Learner, loss_for
from innerloop.engine.params import Params, expand_to_tasks, mean_over_tasks
from innerloop.engine.progress import Progress
from innerloop.engine.tasks import TaskBatch, TaskFamily, TaskStream, generator_for


def random_inits(model, num_tasks: int, seed: int, backend: Backend) -> Params:
    """``num_tasks`` independent initializations stacked on a leading task axis."""
    gen = generator_for(seed, "baseline/random-init")
    inits = [model.init(gen, dtype=backend.dtype, device=backend.device) for _ in range(num_tasks)]
    return {k: torch.stack([p[k] for p in inits]) for k in inits[0]}


def train_joint(
    family: TaskFamily,
    model,
    backend: Backend,
    *,
    iters: int,
    meta_batch: int,
    lr: float,
    seed: int,
    progress: bool = True,
    callback: Callable[[int, Params], None] | None = None,
) -> Params:
    """Adam on the pooled support ∪ query loss of meta-training tasks (monograph eq. 1.2);
    ``callback(iteration, params)`` runs after every step."""
    learner = Learner(model, loss_for(model, family.loss))
    stream = TaskStream(family.split_view("meta-train"), generator_for(seed, "meta-train/joint-baseline"))
    params = model.init(generator_for(seed, "baseline/joint-init"), dtype=backend.dtype, device=backend.device)
    optimizer = torch.optim.Adam(list(params.values()), lr=lr)
    bar = Progress(iters, "joint-learning baseline", progress)
    for it in range(1, iters + 1):
        batch = stream.next(meta_batch).to(backend.dtype, backend.device)
        x = torch.cat([batch.support_x, batch.query_x], dim=1)
        y = torch.cat([batch.support_y, batch.query_y], dim=1)
        _, grads = backend.loss_and_grad(learner, expand_to_tasks(params, batch.num_tasks), x, y)
        for name, g in mean_over_tasks(grads).items():
            params[name].grad = g
        optimizer.step()
        bar.update()
        if callback is not None:
            callback(it, params)
    bar.close()
    return params


def finetune_loss(
    backend: Backend, learner: Learner, params: Params, batch: TaskBatch, lr: float, steps: int
) -> tuple[torch.Tensor, Params]:
    """Per-task query loss after ``steps`` SGD steps from per-task ``params``; also the adapted params."""
    adapted = sgd_trajectory(backend, learner, params, batch.support_x, batch.support_y, lr, steps).final
    return backend.loss(learner.validation, adapted, batch.query_x, batch.query_y), adapted


@dataclass
class Start:
    """What a multi-run experiment scores: the learned parameters, the family they were trained on,
    the algorithm that adapts them (with its backend and model) and the training seconds."""

    params: Params
    family: TaskFamily
    algorithm: Any
    seconds: float


def train_start(method: str, config: Any, run_dir: Path, *, meta_batch: int, lr: float) -> Start:
    """For ``method == "joint"``: the joint-learning model (monograph eq. 1.2) trained on ``config``'s
    family (``config.iters`` Adam steps of size ``lr`` on ``meta_batch`` pooled tasks), with
    ``config``'s algorithm built to adapt it and no run directory. Otherwise ``config`` meta-trained
    into ``run_dir``."""
    from innerloop.engine import build
    from innerloop.engine.trainer import Trainer

    began = time.perf_counter()
    if method == "joint":
        family = build.family(config)
        model, backend = build.model(config, family), build.backend(config)
        algorithm = build.algorithm(config, model, backend)
        params = train_joint(family, model, backend, iters=config.iters, meta_batch=meta_batch, lr=lr,
                             seed=config.seed, progress=False)
    else:
        trainer = Trainer(config, run_dir, progress=False)
        params = trainer.run().params
        family, algorithm = trainer.family, trainer.algorithm
    return Start({k: v.detach() for k, v in params.items()}, family, algorithm, time.perf_counter() - began)
