"""What every multi-run experiment checks before it starts: the names it was asked to run, the
number of worker processes, and its output directory."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from innerloop.engine.errors import ConfigError, unknown_name


def prepare(kind: str, asked: Sequence[str] | None, known: Sequence[str], jobs: int,
            out: str | Path) -> tuple[list[str], Path]:
    """(the names to run — ``asked`` or all ``known`` —, the created output directory); a
    ConfigError names an unknown ``kind`` or a bad ``jobs``."""
    names = list(asked or known)
    for name in names:
        if name not in known:
            raise unknown_name(kind, name, known)
    if int(jobs) != jobs or jobs < 1:
        raise ConfigError(f"jobs must be a positive integer, got {jobs}", "e.g. --jobs 2")
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    return names, path
