"""Build the objects of a run (family, model, backend, algorithm) from a :class:`TrainConfig`."""

from __future__ import annotations

import inspect

from innerloop import backends
from innerloop.backends.base import Backend
from innerloop.engine import algorithms, tasks
from innerloop.engine.algorithms import Algorithm, AmortizedAlgorithm
from innerloop.engine.binary_bayes import BinaryRegressionLikelihood, MeanFieldBernoulli
from innerloop.engine.config import TrainConfig
from innerloop.engine.errors import ConfigError, check_keywords
from innerloop.engine.models import MLP
from innerloop.engine.spiking import SpikingMLP
from innerloop.engine.tasks import TaskFamily
from innerloop.engine.tasks.finite import FiniteTasks

GRADIENT_HIDDEN = (40, 40)
SPIKING_HIDDEN = (64,)
BORN_LAYERS = 3  # issue 8: n = 8 qubits, L = 3
SPIKING_INNER_LR = 0.5  # three-factor steps on spike counts (issue 7's η_in); MLP defaults are ~0.01


def family(config: TrainConfig) -> TaskFamily:
    options = dict(config.task_options)
    for name in ("shots", "queries"):
        if getattr(config, name) is not None:
            options[name] = getattr(config, name)
    fam = tasks.make(config.task, **options)
    if config.train_tasks is not None:
        fam = FiniteTasks(fam, config.train_tasks, config.seed)
    return fam


def _circuit_model(fam: TaskFamily, likelihood: object):
    """The quantum backend's learner: a Born machine over binary weights, else a re-uploading PQC.
    Imported here so that runs on other backends never import PennyLane (slow, and absent from
    some GPU images)."""
    from innerloop.engine.born_machine import BornMachine
    from innerloop.engine.quantum import ReuploadingPQC

    if isinstance(likelihood, BinaryRegressionLikelihood):
        return BornMachine(likelihood, layers=BORN_LAYERS)
    return ReuploadingPQC(fam.input_dim, qubits=max(4, fam.output_dim), layers=3, out_dim=fam.output_dim)


def model(config: TrainConfig, fam: TaskFamily):
    """The learner: an amortized algorithm's own network, otherwise an MLP.

    A linear-regression family is fit by the bias-free linear model of monograph eq. 2.9
    when no hidden layers are asked for. A family with a binary-weight likelihood
    (binary-prototype-regression) is Bayesian: its learner is a variational distribution over the
    weights trained on the free energy — a Born machine (L = 3) on the quantum backend, the
    mean-field Bernoulli family elsewhere. A family with a ``learner(hidden, activation)`` of its own
    (channel-coding: encoder, simulated channel and decoder in one forward pass) gets that learner.
    Every other gradient-lens case is an MLP with biases. ``model_options`` configure a spiking
    learner (:class:`~innerloop.engine.spiking.SpikingMLP`: neuron, recurrent, ...) and nothing else.
    """
    cls = algorithms.ALGORITHMS[config.algo]
    if config.model_options and (issubclass(cls, AmortizedAlgorithm) or not getattr(fam, "spiking", False)):
        raise ConfigError(f"model options {sorted(config.model_options)} configure the spiking learner of the "
                          f"gradient lens, which '{config.algo}' on task '{fam.name}' does not use",
                          "drop --model-option, or pick a spiking task (--backend snn) and a gradient-lens algorithm")
    if issubclass(cls, AmortizedAlgorithm):
        architecture = {k: v for k, v in config.algo_options.items() if k in cls.architecture_options()}
        return cls.network(fam, config.hidden, **architecture)
    if getattr(fam, "spiking", False):
        if config.backend != "snn":
            raise ConfigError(f"task '{fam.name}' is spike trains, which only the snn backend runs",
                              "add --backend snn")
        readout = "count" if fam.loss == "cross_entropy" else "membrane"  # signed outputs for regression
        check_keywords(SpikingMLP, config.model_options, "the spiking learner",
                       skip=("in_dim", "hidden", "out_dim", "readout"))
        return SpikingMLP(fam.input_dim, SPIKING_HIDDEN if config.hidden is None else config.hidden, fam.output_dim,
                          readout=readout, **config.model_options)
    likelihood = getattr(fam, "likelihood", None)
    if config.backend == "quantum":
        return _circuit_model(fam, likelihood)
    if isinstance(likelihood, BinaryRegressionLikelihood):
        return MeanFieldBernoulli(likelihood)
    hidden = GRADIENT_HIDDEN if config.hidden is None else config.hidden
    if hasattr(fam, "learner"):  # the family's own learner (a link whose forward pass simulates the channel)
        return fam.learner(hidden, config.activation)
    linear = fam.name == "linear" and not hidden
    return MLP(fam.input_dim, hidden, fam.output_dim, config.activation, bias=not linear)


def backend(config: TrainConfig) -> Backend:
    return backends.get(config.backend, **{"dtype": config.dtype, **config.backend_options})


def algorithm(config: TrainConfig, net, bk: Backend) -> Algorithm:
    cls = algorithms.ALGORITHMS[config.algo]
    options = dict(config.algo_options)
    if issubclass(cls, AmortizedAlgorithm):
        if config.inner_steps is not None:
            raise ConfigError(f"{config.algo} adapts by a forward pass and has no inner loop",
                              "drop --inner-steps (and --inner-lr, which it ignores)")
        architecture = cls.architecture_options()
        check_keywords(cls, options, f"algorithm '{config.algo}'", skip=("model", "backend"), extra=architecture)
        options = {k: v for k, v in options.items() if k not in architecture}
    else:
        if config.inner_lr is not None:
            options["inner_lr"] = config.inner_lr
        elif isinstance(net, SpikingMLP) and "inner_lr" in inspect.signature(cls).parameters:
            options["inner_lr"] = SPIKING_INNER_LR
        if config.inner_steps is not None:
            options["inner_steps"] = config.inner_steps
    return algorithms.make(config.algo, net, bk, **options)


def inner_steps(config: TrainConfig) -> int:
    """The run's number of inner steps: configured, or the algorithm's default."""
    if config.inner_steps is not None:
        return config.inner_steps
    return inspect.signature(algorithms.ALGORITHMS[config.algo]).parameters["inner_steps"].default
