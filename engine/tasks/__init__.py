"""Task families: distributions over few-shot tasks, sampled with a leading task axis."""

from __future__ import annotations

from innerloop.engine.errors import check_keywords, unknown_name
from innerloop.engine.tasks.aerial import AerialBaseStation
from innerloop.engine.tasks.base import SPLITS, TaskBatch, TaskFamily, TaskStream, derive_seed, generator_for
from innerloop.engine.tasks.binary_prototype import BinaryPrototypeRegression
from innerloop.engine.tasks.channel_coding import ChannelCoding, ModelFreeChannelCoding
from innerloop.engine.tasks.channel_prediction import ChannelPrediction
from innerloop.engine.tasks.clusters import Clusters2D
from innerloop.engine.tasks.demodulation import Demodulation
from innerloop.engine.tasks.digits import Digits
from innerloop.engine.tasks.double_motif import DoubleMotif
from innerloop.engine.tasks.episodes import EpisodeFamily, ExampleClass
from innerloop.engine.tasks.events import EventFolder
from innerloop.engine.tasks.gp import GaussianProcess1D
from innerloop.engine.tasks.images import MiniImageNet, Omniglot
from innerloop.engine.tasks.isi_channel import ISIChannel
from innerloop.engine.tasks.linear import LinearRegression
from innerloop.engine.tasks.navigation import Navigation2D
from innerloop.engine.tasks.power_control import PowerControl
from innerloop.engine.tasks.sinusoid import Sinusoid
from innerloop.engine.tasks.spike_encoded import SpikingClusters, SpikingSinusoid

FAMILIES: dict[str, type[TaskFamily]] = {
    cls.name: cls
    for cls in (Sinusoid, GaussianProcess1D, Clusters2D, LinearRegression, Digits, Omniglot, MiniImageNet,
                DoubleMotif, EventFolder, SpikingSinusoid, SpikingClusters, BinaryPrototypeRegression, Demodulation,
                ChannelPrediction, ChannelCoding, ModelFreeChannelCoding, PowerControl, ISIChannel, Navigation2D,
                AerialBaseStation)
}


def make(name: str, **options) -> TaskFamily:
    """The task family registered as ``name`` (see :data:`FAMILIES`), built with ``options``."""
    if name not in FAMILIES:
        raise unknown_name("task", name, FAMILIES)
    check_keywords(FAMILIES[name], options, f"task '{name}'")
    return FAMILIES[name](**options)


__all__ = [
    "FAMILIES", "SPLITS", "AerialBaseStation", "ChannelCoding", "ChannelPrediction", "Clusters2D", "Demodulation",
    "Digits", "DoubleMotif", "EpisodeFamily", "EventFolder", "ExampleClass",
    "GaussianProcess1D", "ISIChannel", "LinearRegression", "MiniImageNet", "ModelFreeChannelCoding", "Navigation2D",
    "Omniglot", "PowerControl", "Sinusoid",
    "TaskBatch", "TaskFamily", "TaskStream", "derive_seed", "generator_for", "make",
]
