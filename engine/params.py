"""Arithmetic on parameter dicts (``dict[str, Tensor]``), the currency of every learner.

Per-task parameters carry a leading task axis B; shared parameters (the meta-parameters θ0)
do not. These helpers keep the algorithms free of dict comprehensions and make the task-axis
conventions explicit.
"""

from __future__ import annotations

import math

import torch

from innerloop.engine.errors import ShapeError

Params = dict[str, torch.Tensor]


def expand_to_tasks(params: Params, num_tasks: int) -> Params:
    """Broadcast shared parameters to ``num_tasks`` per-task copies (a view, no copy)."""
    return {k: v.unsqueeze(0).expand(num_tasks, *v.shape) for k, v in params.items()}


def add_scaled(params: Params, direction: Params, scale: float | torch.Tensor) -> Params:
    """params + scale·direction (scale may be a per-task tensor of shape [B])."""
    out = {}
    for k, p in params.items():
        s = scale
        if isinstance(s, torch.Tensor) and s.ndim == 1:
            s = s.reshape(-1, *([1] * (p.ndim - 1)))
        out[k] = p + s * direction[k]
    return out


def subtract(a: Params, b: Params) -> Params:
    """a − b, key by key."""
    return {k: a[k] - b[k] for k in a}


def mean_over_tasks(params: Params) -> Params:
    """Average over the leading task axis: the batch meta-gradient of eq. 2.3 (seed 000)."""
    return {k: v.mean(dim=0) for k, v in params.items()}


def dot_per_task(a: Params, b: Params) -> torch.Tensor:
    """Per-task inner product ⟨a_b, b_b⟩ over all parameters, shape [B]."""
    total = None
    for k in a:
        term = (a[k] * b[k]).flatten(start_dim=1).sum(dim=1)
        total = term if total is None else total + term
    return total


def norm_per_task(a: Params) -> torch.Tensor:
    """Per-task Euclidean norm over all parameters, shape [B]."""
    return dot_per_task(a, a).sqrt()


def all_finite(params: Params) -> bool:
    """True when every entry of every tensor is finite."""
    return all(bool(torch.isfinite(v).all()) for v in params.values())


def cast(params: Params, dtype: torch.dtype, device: torch.device | str) -> Params:
    """Copy of ``params`` in ``dtype`` on ``device`` (no copy when already there)."""
    return {k: v.to(device=device, dtype=dtype) for k, v in params.items()}


def clone(params: Params) -> Params:
    """Independent copy of every tensor."""
    return {k: v.clone() for k, v in params.items()}


def count(shapes: dict[str, tuple[int, ...]]) -> int:
    """Total number of entries of parameters with the given shapes."""
    return sum(math.prod(s) for s in shapes.values())


def check_shapes(expected: dict[str, tuple[int, ...]], params: Params, owner: str, task_axis: bool = False) -> None:
    """Raise ShapeError unless ``params`` has exactly the names and shapes in ``expected``
    (ignoring a leading task axis when ``task_axis``); ``owner`` names the model in messages."""
    if set(params) != set(expected):
        missing, extra = sorted(set(expected) - set(params)), sorted(set(params) - set(expected))
        raise ShapeError(
            f"parameters do not match the model {owner}: missing {missing[:4]}, unexpected {extra[:4]}",
            "create parameters with model.init(...) for this model",
        )
    for name, shape in expected.items():
        got = tuple(params[name].shape[1:] if task_axis else params[name].shape)
        if got != shape:
            raise ShapeError(
                f"parameter '{name}' has shape {got}, the model expects {shape} ({owner})",
                "create parameters with model.init(...) for this model",
            )
