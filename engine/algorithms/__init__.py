"""The gradient-based algorithm suite, written only against the backend protocol."""

from __future__ import annotations

from innerloop.backends.base import Backend
from innerloop.engine.algorithms.base import ALGORITHMS, MetaAlgorithm, MetaGradient, check_capabilities
from innerloop.engine.algorithms.imaml import iMAML
from innerloop.engine.algorithms.maml import FOMAML, MAML
from innerloop.engine.algorithms.reptile import Reptile
from innerloop.engine.errors import check_keywords, unknown_name


def make(name: str, model, backend: Backend, **options) -> MetaAlgorithm:
    """The algorithm registered as ``name`` (see :data:`ALGORITHMS`) with ``options``."""
    if name not in ALGORITHMS:
        raise unknown_name("algorithm", name, ALGORITHMS)
    cls = ALGORITHMS[name]
    check_keywords(cls, options, f"algorithm '{name}'", skip=("model", "backend"))
    return cls(model, backend, **options)


__all__ = [
    "ALGORITHMS", "FOMAML", "MAML", "MetaAlgorithm", "MetaGradient", "Reptile", "check_capabilities",
    "iMAML", "make",
]
