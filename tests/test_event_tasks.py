"""Event-stream loader (issue 7): N-MNIST binary and tonic .npy recordings the tests write."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import innerloop as il
from conftest import gen
from innerloop.engine.tasks.events import read_events, to_spikes


def _write_bin(path, x, y, t, p):
    """N-MNIST format: x, y, then polarity (top bit) and a 23-bit timestamp, 5 bytes per event."""
    ev = np.zeros((len(x), 5), dtype=np.uint8)
    ev[:, 0], ev[:, 1] = x, y
    ev[:, 2] = (np.asarray(p) << 7) | ((np.asarray(t) >> 16) & 0x7F)
    ev[:, 3], ev[:, 4] = (np.asarray(t) >> 8) & 0xFF, np.asarray(t) & 0xFF
    ev.tofile(path)


def _write_npy(path, x, y, t, p):
    array = np.zeros(len(x), dtype=[("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i1")])
    array["x"], array["y"], array["t"], array["p"] = x, y, t, p
    np.save(path, array)


def _dataset(root, classes=6, files=4, fmt="bin"):
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(files):
            n = 200
            x, y = rng.integers(0, 8, n), rng.integers(0, 6, n)
            t, p = np.sort(rng.integers(0, 300_000, n)), rng.integers(0, 2, n)
            write = _write_bin if fmt == "bin" else _write_npy
            write(folder / f"r{i}.{fmt}", x, y, t, p)


def test_binary_events_round_trip_and_bin_into_spikes(tmp_path):
    x, y, t, p = [0, 7, 3], [5, 0, 2], [10, 4_000_000, 8_388_607], [1, 0, 1]
    _write_bin(tmp_path / "a.bin", x, y, t, p)
    events = read_events(tmp_path / "a.bin")
    assert events["x"].tolist() == x and events["y"].tolist() == y and events["t"].tolist() == t
    assert events["p"].tolist() == p
    spikes = to_spikes(events, (8, 6), 4, "a.bin")
    assert spikes.shape == (4, 2 * 6 * 8) and spikes.sum() == 3
    assert spikes[0, (1 * 6 + 5) * 8 + 0] == 1 and spikes[3, (1 * 6 + 2) * 8 + 3] == 1  # first and last bins
    assert spikes[1, (0 * 6 + 0) * 8 + 7] == 1


@pytest.mark.parametrize("fmt", ["bin", "npy"])
def test_event_folder_episodes(tmp_path, fmt):
    _dataset(tmp_path, fmt=fmt)
    family = il.tasks.make("events", root=str(tmp_path), sensor=[8, 6], steps=10, ways=3, shots=1, queries=2)
    batch = family.sample(2, gen(0))
    assert batch.support_x.shape == (2, 3, 10, 96) and batch.query_x.shape == (2, 6, 10, 96)
    assert set(batch.query_x.unique().tolist()) <= {0.0, 1.0} and family.input_dim == 96
    names = {s: {c.name for c in family.classes(s)} for s in ("meta-train", "meta-test")}
    assert not names["meta-train"] & names["meta-test"] and len(names["meta-test"]) == 3


def test_spiking_fomaml_runs_on_event_data(tmp_path):
    _dataset(tmp_path)
    family = il.tasks.make("events", root=str(tmp_path), sensor=[8, 6], steps=10, ways=3, shots=1, queries=2)
    from innerloop.engine.spiking import SpikingMLP

    model = SpikingMLP(family.input_dim, (16,), 3)
    algo = il.algorithms.FOMAML(model, il.backends.get("snn"), inner_lr=0.5, inner_steps=2)
    assert torch.isfinite(algo.compute(model.init(gen(0)), family.sample(2, gen(1))).task_losses).all()


def test_event_errors_are_clear(tmp_path):
    (tmp_path / "bad.bin").write_bytes(b"\x00" * 7)
    with pytest.raises(il.ShapeError, match="5-byte events"):
        read_events(tmp_path / "bad.bin")
    _write_bin(tmp_path / "wide.bin", [40], [1], [5], [0])
    with pytest.raises(il.ShapeError, match="outside the 34×34 sensor"):
        to_spikes(read_events(tmp_path / "wide.bin"), (34, 34), 5, "wide.bin")
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(il.ShapeError, match="not a tonic event array"):
        read_events(tmp_path / "plain.npy")
    root = tmp_path / "data"
    (root / "empty").mkdir(parents=True)
    with pytest.raises(il.ShapeError, match="holds no event files"):
        il.tasks.make("events", root=str(root))
    with pytest.raises(il.ConfigError, match="needs the data set's location"):
        il.tasks.make("events")
