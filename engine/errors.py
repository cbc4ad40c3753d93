"""Errors that innerloop raises for bad input, each naming the problem and the fix.

The CLI prints these as one message (no traceback) and exits non-zero; Python callers can
catch them by class. Configuration and shape errors are also ``ValueError`` so generic
callers that catch ``ValueError`` keep working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class InnerloopError(Exception):
    """Base class: ``str(err)`` is the problem, ``err.hint`` the way out (may be empty)."""

    exit_code = 2

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class ConfigError(InnerloopError, ValueError):
    """A setting is missing, out of range or names something that does not exist."""


class ShapeError(InnerloopError, ValueError):
    """Tensors given to a model, task batch or backend do not have compatible shapes."""


class CapabilityError(InnerloopError):
    """A backend lacks a primitive (loss, loss_and_grad, hvp, ...) an algorithm needs."""


class BackendUnavailableError(InnerloopError):
    """A backend is registered but cannot run on this machine (no GPU, missing package)."""


class CheckpointError(InnerloopError):
    """A run directory or checkpoint is missing, truncated or does not match its config."""


class NonFiniteError(InnerloopError):
    """A loss or gradient became NaN/inf during training; the last good checkpoint is kept."""

    exit_code = 3


def unknown_name(kind: str, name: str, known: Iterable[str]) -> ConfigError:
    """A ConfigError for an unknown ``kind`` called ``name``, suggesting the closest names."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return ConfigError(f"unknown {kind} '{name}'", hint + f"choose one of: {', '.join(known)}")


def require_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise ConfigError unless ``value`` is > 0 (or >= 0 with ``allow_zero``)."""
    ok = value >= 0 if allow_zero else value > 0
    if not ok or value != value:  # value != value catches NaN
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be {bound}, got {value}", f"pass a value {bound} for {name}")


def check_keywords(target, options: dict, what: str, skip: tuple[str, ...] = (), extra: Iterable[str] = ()) -> None:
    """Raise ConfigError if ``options`` has keywords that ``target``'s signature (plus ``extra``)
    does not take."""
    import inspect

    accepted = [
        name for name, p in inspect.signature(target).parameters.items()
        if name not in skip and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ] + sorted(extra)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"{what} does not take option(s) {', '.join(unknown)}", f"it takes: {', '.join(accepted)}")
