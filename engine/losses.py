"""Per-task losses: a scalar for one task's predictions and targets."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from innerloop.engine.errors import ShapeError, unknown_name


def _check_targets(pred: torch.Tensor, target: torch.Tensor, loss: str) -> None:
    """Raise ShapeError when ``target`` does not fit ``pred`` (MSE: the same shape, never a
    broadcast; cross-entropy: one label per row of logits) or holds no point (a mean over none)."""
    wanted = pred.shape if loss == "mse" else pred.shape[:-1]
    if target.shape != wanted:
        hint = ("give one target per prediction (y.unsqueeze(-1) adds a one-output axis)" if loss == "mse"
                else "give one integer label per point, without a trailing axis")
        raise ShapeError(f"{loss} targets have shape {tuple(target.shape)} but the predictions "
                         f"{tuple(pred.shape)} need {tuple(wanted)}", hint)
    if target.numel() == 0:
        raise ShapeError(f"{loss} over zero points (targets of shape {tuple(target.shape)}) is undefined",
                         "give every task at least one point")


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all points and outputs: (1/Kd)·Σ(ŷ − y)²."""
    _check_targets(pred, target, "mse")
    return ((pred - target) ** 2).mean()


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy −(1/K)·Σ log softmax(logits)[y] over a task's points."""
    _check_targets(logits, labels, "cross_entropy")
    return F.cross_entropy(logits, labels)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mse": mse,
    "cross_entropy": cross_entropy,
}


def get(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name not in LOSSES:
        raise unknown_name("loss", name, LOSSES)
    return LOSSES[name]


def batched(pred: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-task loss [B] of predictions [B, K, out]: mean cross-entropy over points (pred as logits,
    integer targets [B, K]) or MSE over points and outputs."""
    get(loss)
    _check_targets(pred, target, loss)
    if loss == "cross_entropy":
        return F.cross_entropy(pred.transpose(1, 2), target.long(), reduction="none").mean(dim=1)
    return ((pred - target) ** 2).flatten(1).mean(dim=1)


def batched_gradient(pred: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """∂L_b/∂pred [B, K, out] of :func:`batched`."""
    points = pred.shape[1]
    if loss == "cross_entropy":
        return (torch.softmax(pred, -1) - F.one_hot(target.long(), pred.shape[-1]).to(pred.dtype)) / points
    return 2 * (pred - target) / (points * pred.shape[-1])
