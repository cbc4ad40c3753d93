"""innerloop: one meta-learning algorithm suite on pluggable backends.

>>> import innerloop as il
>>> fam = il.tasks.Sinusoid(shots=10, queries=10)
>>> model = il.models.MLP(1, (40, 40), 1, activation="relu")
>>> backend = il.backends.get("cpu")
>>> algo = il.algorithms.MAML(model, backend=backend, inner_lr=0.01, inner_steps=5)
"""

from innerloop import backends
from innerloop.engine import algorithms, losses, models, tasks, theory
from innerloop.engine.errors import (
    BackendUnavailableError,
    CapabilityError,
    CheckpointError,
    ConfigError,
    InnerloopError,
    NonFiniteError,
    ShapeError,
)

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError", "CapabilityError", "CheckpointError", "ConfigError", "InnerloopError",
    "NonFiniteError", "ShapeError", "algorithms", "backends", "losses", "models", "tasks", "theory",
]
