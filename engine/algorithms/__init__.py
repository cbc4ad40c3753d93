"""The algorithm suite: the gradient lens (written only against the backend protocol) and the
amortized lenses (Neural Processes; ProtoNet and MatchingNet), all behind one interface."""

from __future__ import annotations

from innerloop.backends.base import Backend
from innerloop.engine.algorithms.alset import ALSET
from innerloop.engine.algorithms.amortized import AmortizedAlgorithm
from innerloop.engine.algorithms.anil import ANIL
from innerloop.engine.algorithms.base import ALGORITHMS, Algorithm, MetaAlgorithm, MetaGradient, check_capabilities
from innerloop.engine.algorithms.bmaml import BMAML
from innerloop.engine.algorithms.cavia import CAVIA
from innerloop.engine.algorithms.es_maml import ESMAML
from innerloop.engine.algorithms.imaml import iMAML
from innerloop.engine.algorithms.maml import FOMAML, MAML
from innerloop.engine.algorithms.metasgd import MetaSGD
from innerloop.engine.algorithms.metric import MatchingNet, MetricAlgorithm, ProtoNet
from innerloop.engine.algorithms.modular import ModularMetaLearning
from innerloop.engine.algorithms.neural_process import CNP, AttentiveNP, LatentNP, NeuralProcess
from innerloop.engine.algorithms.prox_maml import ProxMAML
from innerloop.engine.algorithms.reptile import Reptile
from innerloop.engine.algorithms.sharp_maml import SharpMAML
from innerloop.engine.errors import check_keywords, unknown_name


def make(name: str, model, backend: Backend, **options) -> Algorithm:
    """The algorithm registered as ``name`` (see :data:`ALGORITHMS`) with ``options``.

    Amortized algorithms build their network first: ``ALGORITHMS[name].network(family)``.
    """
    if name not in ALGORITHMS:
        raise unknown_name("algorithm", name, ALGORITHMS)
    cls = ALGORITHMS[name]
    check_keywords(cls, options, f"algorithm '{name}'", skip=("model", "backend"))
    return cls(model, backend, **options)


__all__ = [
    "ALGORITHMS", "ALSET", "ANIL", "BMAML", "CAVIA", "CNP", "ESMAML", "FOMAML", "MAML", "Algorithm",
    "AmortizedAlgorithm", "AttentiveNP", "LatentNP", "MatchingNet", "MetaAlgorithm", "MetaGradient", "MetaSGD",
    "MetricAlgorithm", "ModularMetaLearning", "NeuralProcess", "ProtoNet", "ProxMAML", "Reptile", "SharpMAML",
    "check_capabilities", "iMAML", "make",
]
