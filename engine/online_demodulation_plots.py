"""The figure of ``innerloop experiment online-demodulation``: (a) the prequential SER of arriving
devices (a moving average) against the number of devices seen, with the model-based receiver on
the same devices; (b) the SER on held-out devices of the meta-parameters reached after t arrivals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from innerloop.engine.plots import save_figure  # noqa: E402

STYLE = {"cavia": "tab:red", "cavia-replay": "tab:purple", "cavia-active": "tab:orange", "maml": "tab:blue",
         "bmaml": "tab:green", "bmaml-active": "tab:olive"}
WINDOW = 50  # devices per moving-average point


def moving_average(values: list[float], window: int) -> tuple[np.ndarray, np.ndarray]:
    """(arrival index at each window's end, mean over the window), for ``window`` <= len(values)."""
    data = np.asarray(values, dtype=float)
    window = max(1, min(window, len(data)))
    means = np.convolve(data, np.ones(window) / window, mode="valid")
    return np.arange(window, len(data) + 1), means


def plot(document: dict[str, Any], path: Path) -> None:
    """Write the experiment's figure to ``path``."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    reference = document["mmse_ml"]
    for method, row in document["rows"].items():
        left.plot(*moving_average(row["prequential"], WINDOW), color=STYLE.get(method), label=method)
        curve = row["held_out"]
        devices = np.array([c["devices"] for c in curve])
        mean, ci = np.array([c["mean"] for c in curve]), np.array([c["ci95"] for c in curve])
        right.plot(devices, mean, marker="o", ms=3, color=STYLE.get(method), label=method)
        right.fill_between(devices, mean - ci, mean + ci, color=STYLE.get(method), alpha=0.15, lw=0)
    left.plot(*moving_average(reference["prequential"], WINDOW), color="k", ls="--", lw=1, label="MMSE + ML")
    right.axhline(reference["held_out"]["mean"], color="k", ls="--", lw=1, label="MMSE + ML")
    left.set(xlabel="devices arrived", ylabel=f"SER of arriving devices ({WINDOW}-device moving average)",
             title=f"test-then-train: {document['pilots']} pilots per device")
    right.set(xlabel="devices arrived", ylabel="SER on held-out devices",
              title=f"{document['held_out_devices']} held-out devices, {document['pilots']} pilots")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("online meta-learning of a demodulator (monograph §5.2, §7.1.1)", fontsize=10)
    save_figure(fig, path)
