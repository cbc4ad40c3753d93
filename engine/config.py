"""Training configuration: one validated record that recreates a run exactly.

Options that belong to one task family, algorithm, backend or (spiking) learner travel in
``task_options``, ``algo_options``, ``backend_options`` and ``model_options`` and are checked
against the constructor they feed,
so a typo is an error that names the accepted options rather than a silent default.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from innerloop.engine.errors import ConfigError, require_positive, unknown_name

OPTIMIZERS = ("adam", "sgd")


@dataclass
class TrainConfig:
    """Everything ``innerloop train`` needs; defaults reproduce the README's quick start."""

    algo: str = "maml"
    task: str = "sinusoid"
    backend: str = "cpu"
    dtype: str = "float32"
    shots: int | None = None
    queries: int | None = None
    train_tasks: int | None = None  # a finite meta-training set of this many tasks (None: endless stream)
    hidden: tuple[int, ...] | None = None  # None: the algorithm's default (40,40 for the gradient lens)
    activation: str = "relu"
    meta_batch: int = 25
    inner_steps: int | None = None
    inner_lr: float | None = None  # None: the algorithm's default (0.01 for MAML)
    outer_lr: float = 0.001
    optimizer: str = "adam"
    iters: int = 1000
    seed: int = 0
    checkpoint_every: int = 100
    eval_every: int = 100
    eval_tasks: int = 100
    task_options: dict[str, Any] = field(default_factory=dict)
    algo_options: dict[str, Any] = field(default_factory=dict)
    backend_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)  # the spiking learner's (neuron, recurrent, ...)

    def validate(self) -> TrainConfig:
        """Check every field; raise ConfigError naming the first bad one."""
        from innerloop import backends
        from innerloop.engine import algorithms, models, tasks

        if self.task not in tasks.FAMILIES:
            raise unknown_name("task", self.task, tasks.FAMILIES)
        if self.algo not in algorithms.ALGORITHMS:
            raise unknown_name("algorithm", self.algo, algorithms.ALGORITHMS)
        if self.backend not in backends.names():
            raise unknown_name("backend", self.backend, backends.names())
        if self.activation not in models.ACTIVATIONS:
            raise unknown_name("activation", self.activation, models.ACTIVATIONS)
        if self.optimizer not in OPTIMIZERS:
            raise unknown_name("optimizer", self.optimizer, OPTIMIZERS)
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"dtype must be float32 or float64, got '{self.dtype}'", "use --dtype float64")
        for name in ("meta_batch", "iters", "checkpoint_every", "eval_every", "eval_tasks"):
            _require_int(name, getattr(self, name), minimum=1)
        for name in ("shots", "queries", "train_tasks"):
            if getattr(self, name) is not None:
                _require_int(name, getattr(self, name), minimum=1)
        if self.inner_steps is not None:
            _require_int("inner_steps", self.inner_steps, minimum=0)
        if self.hidden is not None and any(int(h) != h or h < 1 for h in self.hidden):
            raise ConfigError(
                f"hidden widths must be positive integers, got {list(self.hidden)}", "e.g. --hidden 40,40"
            )
        if self.inner_lr is not None:
            require_positive("inner_lr", self.inner_lr)
        require_positive("outer_lr", self.outer_lr)
        _require_int("seed", self.seed, minimum=0)
        for name in ("task_options", "algo_options", "backend_options", "model_options"):
            if not isinstance(getattr(self, name), dict):
                raise ConfigError(f"{name} must be a mapping, got {getattr(self, name)!r}", "use KEY=VALUE pairs")
        return self

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["hidden"] = None if self.hidden is None else list(self.hidden)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown configuration key(s): {', '.join(unknown)}", f"known keys: {', '.join(sorted(known))}"
            )
        data = dict(data)
        if data.get("hidden") is not None:
            data["hidden"] = tuple(data["hidden"])
        return cls(**data)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or TOML config file into a dict (keys as in :class:`TrainConfig`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist", "check the path given to --config")
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"config file '{path}' is not valid {path.suffix[1:] or 'JSON'}: {err}",
                          "fix the syntax, or use a .json or .toml file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of settings", "e.g. {\"algo\": \"maml\"}")
    return {k.replace("-", "_"): v for k, v in data.items()}


def _require_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}", f"pass a whole number >= {minimum}")
