"""Build the objects of a run (family, model, backend, algorithm) from a :class:`TrainConfig`."""

from __future__ import annotations

import inspect

from innerloop import backends
from innerloop.backends.base import Backend
from innerloop.engine import algorithms, tasks
from innerloop.engine.algorithms import MetaAlgorithm
from innerloop.engine.config import TrainConfig
from innerloop.engine.models import MLP
from innerloop.engine.tasks import TaskFamily


def family(config: TrainConfig) -> TaskFamily:
    options = dict(config.task_options)
    for name in ("shots", "queries"):
        if getattr(config, name) is not None:
            options[name] = getattr(config, name)
    return tasks.make(config.task, **options)


def model(config: TrainConfig, fam: TaskFamily) -> MLP:
    # A linear-regression family is fit by the bias-free linear model of monograph eq. 2.9
    # when no hidden layers are asked for; every other case is an MLP with biases.
    linear = fam.name == "linear" and not config.hidden
    return MLP(fam.input_dim, config.hidden, fam.output_dim, config.activation, bias=not linear)


def backend(config: TrainConfig) -> Backend:
    return backends.get(config.backend, **{"dtype": config.dtype, **config.backend_options})


def algorithm(config: TrainConfig, net: MLP, bk: Backend) -> MetaAlgorithm:
    options = dict(config.algo_options)
    options["inner_lr"] = config.inner_lr
    if config.inner_steps is not None:
        options["inner_steps"] = config.inner_steps
    return algorithms.make(config.algo, net, bk, **options)


def inner_steps(config: TrainConfig) -> int:
    """The run's number of inner steps: configured, or the algorithm's default."""
    if config.inner_steps is not None:
        return config.inner_steps
    return inspect.signature(algorithms.ALGORITHMS[config.algo]).parameters["inner_steps"].default
