"""Real neuromorphic data: N-way K-shot episodes over folders of event-camera recordings (issue 7).

Layout ``ROOT/CLASS/*.bin`` (the N-MNIST / N-Caltech101 binary format: 5 bytes per event — x, y,
then polarity in the top bit and a 23-bit timestamp in µs) or ``ROOT/CLASS/*.npy`` (a ``tonic``
event array: a structured NumPy array with fields x, y, t, p). Each recording is cut into
``steps`` equal time bins over its duration and turned into spikes: channel (p, y, x) spikes in
bin t when it has at least one event there, x ∈ {0, 1}^{T × 2·H·W} for a ``sensor`` of W × H.
Classes are split class-disjointly by a seeded permutation; with ``val_fraction=0`` (the
default, for 10-class sets such as N-MNIST) meta-val draws from the meta-test classes.
Nothing is downloaded: point ``root`` at an unpacked data set (e.g. N-MNIST's Train folder).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from innerloop.engine.errors import ConfigError, ShapeError
from innerloop.engine.tasks.episodes import EpisodeFamily, ExampleClass
from innerloop.engine.tasks.images import _directory, _seeded_split, _subfolders

SUFFIXES = (".bin", ".npy")


def read_events(path: Path) -> dict[str, np.ndarray]:
    """Events of one recording as arrays x, y, t (µs), p (0/1)."""
    if path.suffix == ".bin":
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size % 5:
            raise ShapeError(f"'{path}' has {raw.size} bytes, not a whole number of 5-byte events",
                             "N-MNIST .bin files hold 40-bit events (x, y, polarity + 23-bit timestamp)")
        ev = raw.reshape(-1, 5).astype(np.int64)
        return {"x": ev[:, 0], "y": ev[:, 1], "p": ev[:, 2] >> 7,
                "t": ((ev[:, 2] & 0x7F) << 16) | (ev[:, 3] << 8) | ev[:, 4]}
    if path.suffix == ".npy":
        array = np.load(path, allow_pickle=False)
        missing = {"x", "y", "t", "p"} - set(array.dtype.names or ())
        if missing:
            raise ShapeError(f"'{path}' is not a tonic event array (missing fields {sorted(missing)})",
                             "save events as a structured array with fields x, y, t, p")
        return {k: array[k].astype(np.int64) for k in ("x", "y", "t", "p")}
    raise ShapeError(f"'{path}' is not an event file", f"use one of: {', '.join(SUFFIXES)}")


def to_spikes(events: dict[str, np.ndarray], sensor: tuple[int, int], steps: int, source: str) -> np.ndarray:
    """Binary spikes [T, 2·H·W] (uint8): channel (p, y, x) in bin t of ``steps`` equal bins."""
    width, height = sensor
    x, y, t, p = events["x"], events["y"], events["t"], events["p"]
    if x.size == 0:
        raise ShapeError(f"'{source}' holds no events", "remove the empty recording")
    if x.max() >= width or y.max() >= height or x.min() < 0 or y.min() < 0:
        raise ShapeError(f"'{source}' has events at x ≤ {x.max()}, y ≤ {y.max()}, outside the {width}×{height} sensor",
                         f"pass --task-option sensor=[{x.max() + 1},{y.max() + 1}] (or larger)")
    span = max(int(t.max() - t.min()), 1)
    bins = np.minimum((t - t.min()) * steps // span, steps - 1)
    spikes = np.zeros((steps, 2 * height * width), dtype=np.uint8)
    spikes[bins, (np.clip(p, 0, 1) * height + y) * width + x] = 1
    return spikes


class EventFolder(EpisodeFamily):
    """Episodes of spike trains from event recordings in ``ROOT/CLASS/*.bin|*.npy``."""

    name = "events"
    spiking = True

    def __init__(self, root: str = "", shots: int = 1, queries: int = 5, ways: int = 5, steps: int = 30,
                 sensor: tuple[int, int] = (34, 34), val_fraction: float = 0.0, test_fraction: float = 0.5,
                 split_seed: int = 0) -> None:
        if int(steps) != steps or steps < 1 or len(sensor) != 2 or min(sensor) < 1:
            raise ConfigError(f"steps must be >= 1 and sensor a (width, height) pair, got {steps}, {sensor}",
                              "e.g. steps=30 sensor=[34,34]")
        if not (0 <= val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ConfigError(f"val_fraction={val_fraction}, test_fraction={test_fraction} must lie in [0, 1), "
                              "test_fraction > 0, and sum below 1", "e.g. test_fraction=0.5")
        base = _directory(root, "event")
        self.root, self.steps, self.sensor = str(base), int(steps), (int(sensor[0]), int(sensor[1]))
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        folders = _subfolders(base)
        if not folders:
            raise ShapeError(f"'{base}' has no class folders", "expected ROOT/CLASS/*.bin or ROOT/CLASS/*.npy")
        val, test, train = _seeded_split(folders, (val_fraction, test_fraction), split_seed, "events/split")
        splits = {"meta-train": [self._read_class(f) for f in train], "meta-test": [self._read_class(f) for f in test]}
        splits["meta-val"] = [self._read_class(f) for f in val] if val else splits["meta-test"]
        super().__init__(shots, queries, ways, splits)
        self.input_dim = 2 * self.sensor[0] * self.sensor[1]

    def _read_class(self, folder: Path) -> ExampleClass:
        files = sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES)
        if not files:
            raise ShapeError(f"class folder '{folder}' holds no event files ({', '.join(SUFFIXES)})",
                             "remove the folder or add recordings")
        examples = [to_spikes(read_events(f), self.sensor, self.steps, str(f)).reshape(-1) for f in files]
        return ExampleClass(folder.name, str(folder), torch.from_numpy(np.stack(examples)))

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened uint8 spikes [B, M, T·D] → float spike trains [B, M, T, D]."""
        return x.float().reshape(*x.shape[:-1], self.steps, -1)

    def config(self) -> dict:
        return {**super().config(), "root": self.root, "steps": self.steps, "sensor": list(self.sensor),
                "val_fraction": self.val_fraction, "test_fraction": self.test_fraction, "split_seed": self.split_seed}
