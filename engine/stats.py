"""Summary statistics for per-task results."""

from __future__ import annotations

import math

import torch


def summarize(values: torch.Tensor) -> dict[str, float]:
    """Mean and 95% confidence half-width 1.96·s/√n of per-task values (normal approximation)."""
    v = values.detach().double().flatten().cpu()
    n = v.numel()
    std = float(v.std(unbiased=True)) if n > 1 else 0.0
    return {"mean": float(v.mean()), "ci95": 1.96 * std / math.sqrt(n), "std": std, "n": n}
