"""Backend registry: ``get(name, **options)``, ``available()`` and ``describe()``.

Backends register themselves by name with a loader (imported lazily, so a backend whose
dependencies are missing — triton on a machine without a GPU, say — never breaks the engine).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from innerloop.backends.base import CAPABILITIES, Backend
from innerloop.engine.errors import BackendUnavailableError, check_keywords, unknown_name


@dataclass(frozen=True)
class BackendInfo:
    """What ``innerloop list`` shows for one backend."""

    name: str
    description: str
    capabilities: frozenset[str]
    available: bool
    reason: str | None
    optional: dict[str, str]  # capabilities offered only with an option: capability → option


_REGISTRY: dict[str, str] = {}


def register(name: str, target: str) -> None:
    """Register backend class ``target`` ("module:Class") under ``name``."""
    _REGISTRY[name] = target


def _load(name: str) -> type[Backend]:
    if name not in _REGISTRY:
        raise unknown_name("backend", name, _REGISTRY)
    module, _, cls = _REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def get(name: str, **options: Any) -> Backend:
    """An instance of backend ``name`` built with ``options`` (dtype, device, capabilities, ...)."""
    cls = _load(name)
    check_keywords(cls, options, f"backend '{name}'")
    reason = cls.unavailable_reason(**options)
    if reason:
        raise BackendUnavailableError(f"backend '{name}' is unavailable: {reason}", "see `innerloop list`")
    return cls(**options)


def names() -> list[str]:
    """Every registered backend name."""
    return sorted(_REGISTRY)


def describe(name: str) -> BackendInfo:
    cls = _load(name)
    reason = cls.unavailable_reason()
    return BackendInfo(name, cls.description, frozenset(cls.provides), reason is None, reason, dict(cls.optional))


def available() -> list[str]:
    """Names of the backends that can run on this machine with default options."""
    return [n for n in names() if describe(n).available]


register("cpu", "innerloop.backends.torch_func:CPUBackend")
register("torch", "innerloop.backends.torch_func:TorchFuncBackend")
register("triton", "innerloop.backends.triton_backend:TritonBackend")
register("snn", "innerloop.backends.snn_backend:SNNBackend")
register("quantum", "innerloop.backends.quantum_backend:QuantumBackend")

__all__ = ["CAPABILITIES", "Backend", "BackendInfo", "available", "describe", "get", "names", "register"]
