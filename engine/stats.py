"""Summary statistics for per-task results."""

from __future__ import annotations

import math

import torch


def summarize(values: torch.Tensor) -> dict[str, float]:
    """Mean and 95% confidence half-width 1.96·s/√n of per-task values (normal approximation);
    ``non_finite`` counts NaN/inf values (a diverged adaptation) when there are any, and the mean
    then stays non-finite rather than quietly averaging the rest."""
    v = values.detach().double().flatten().cpu()
    n = v.numel()
    std = float(v.std(unbiased=True)) if n > 1 else 0.0
    summary = {"mean": float(v.mean()), "ci95": 1.96 * std / math.sqrt(n), "std": std, "n": n}
    non_finite = int((~torch.isfinite(v)).sum())
    return {**summary, "non_finite": non_finite} if non_finite else summary


def nan_for_null(summary: dict) -> dict:
    """``json.loads`` object hook: a summary with ``non_finite`` values, whose statistics a JSON
    document holds as null (:func:`innerloop.engine.rundir.json_document`), reads back with NaN."""
    if "non_finite" not in summary:
        return summary
    return {key: math.nan if value is None and key in ("mean", "ci95", "std") else value
            for key, value in summary.items()}
