"""Run directories: resolved config, metrics stream, atomic checkpoints, plots.

Layout of a run directory::

    config.json          the TrainConfig that recreates the run
    metrics.jsonl        one JSON object per line: {"iter": i, "loss": ..., ...}
    checkpoint.pt        latest checkpoint (written to a temp file, fsynced, then renamed)
    training_curve.png   adaptation.png   eval.json   eval.png

Checkpoints hold the meta-parameters, the optimizer state, the task stream's generator
state and the algorithm's own generator (context sizes, latent noise), so a resumed run draws
the same tasks and ends with the same parameters.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from innerloop.engine.config import TrainConfig
from innerloop.engine.errors import CheckpointError

CHECKPOINT_FORMAT = 2  # 2: adds the algorithm's generator state


# what torch.load raises on a truncated, corrupted or foreign file
UNREADABLE = (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError)

class RunDirectory:
    """Paths and file operations of one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def checkpoint_path(self) -> Path:
        return self.file("checkpoint.pt")

    @property
    def metrics_path(self) -> Path:
        return self.file("metrics.jsonl")

    # -- config -------------------------------------------------------------------------------
    def create(self, config: TrainConfig) -> None:
        """Start a fresh run here; refuse to overwrite an existing run's checkpoint."""
        if self.checkpoint_path.exists():
            raise CheckpointError(
                f"'{self.path}' already holds a run (checkpoint.pt exists)",
                f"continue it with `innerloop train --resume {self.path}`, or choose another --out",
            )
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.file("config.json"), json.dumps(config.to_dict(), indent=2) + "\n")
        self.metrics_path.write_text("")

    def read_config(self) -> TrainConfig:
        path = self.file("config.json")
        if not path.is_file():
            raise CheckpointError(
                f"'{self.path}' is not a run directory (no config.json)",
                "pass the --out directory of an `innerloop train` run",
            )
        try:
            return TrainConfig.from_dict(json.loads(path.read_text())).validate()
        except json.JSONDecodeError as err:
            raise CheckpointError(f"'{path}' is corrupted: {err}", "restore it or start a new run") from None

    # -- metrics ------------------------------------------------------------------------------
    def append_metrics(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            with self.metrics_path.open("a") as fh:
                fh.writelines(json.dumps(row) + "\n" for row in rows)

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        rows = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by a crash ends the usable stream
        return rows

    def truncate_metrics(self, last_iteration: int) -> None:
        """Drop rows after ``last_iteration`` (written after the checkpoint a resume starts from)."""
        rows = [r for r in self.read_metrics() if r.get("iter", 0) <= last_iteration]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))

    # -- checkpoints --------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write ``state`` atomically: temp file in the same directory, fsync, rename."""
        atomic_torch_save({"format": CHECKPOINT_FORMAT, **state}, self.checkpoint_path)

    def load_checkpoint(self) -> dict[str, Any]:
        path = self.checkpoint_path
        if not path.is_file():
            raise CheckpointError(
                f"'{self.path}' has no checkpoint.pt", "train first, or pass the --out directory of a run"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except PermissionError:
            raise CheckpointError(f"cannot read '{path}' (permission denied)", "fix the file's permissions") from None
        except UNREADABLE as err:
            raise CheckpointError(
                f"checkpoint '{path}' is corrupted or truncated ({type(err).__name__})",
                "restore it from a copy, or start the run again with a new --out",
            ) from None
        required = {"format", "iteration", "params", "optimizer", "stream_state", "algorithm_rng"}
        if not isinstance(state, dict) or required - set(state) or state["format"] != CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"checkpoint '{path}' is not an innerloop checkpoint of format {CHECKPOINT_FORMAT}",
                "it may come from another tool or version; start a new run",
            )
        return state


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers see the old or the new file, never half."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def json_document(document: Any) -> str:
    """``document`` as strict JSON text (indented, newline-terminated): a non-finite float — a
    diverged loss, say — becomes null, which every JSON reader accepts (Python's NaN is not JSON)."""
    return json.dumps(_finite_or_none(document), indent=2, allow_nan=False) + "\n"


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(item) for item in value]
    return value


def atomic_write_json(path: Path, document: Any) -> None:
    """:func:`atomic_write_text` of :func:`json_document`."""
    atomic_write_text(Path(path), json_document(document))


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file in the same directory, fsync, then rename over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
