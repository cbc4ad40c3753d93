"""Calibration of probabilistic classifiers (monograph §5.2, eqs. 5.8–5.10).

A classifier's decision is ŝ = argmax_s p(s|y) and its confidence conf(y) = p(ŝ|y) (eq. 5.8);
it is calibrated when acc(p) = P[ŝ = s | conf = p] equals p for every p (eqs. 5.9–5.10).
:func:`reliability` estimates acc(p) in equal-width confidence bins (the reliability diagram);
the expected calibration error is ECE = Σ_b (n_b/n)·|acc_b − conf_b|.

:func:`class_probabilities` gives p(s|y) for per-task parameters: the softmax of the model's
logits, or for an :class:`~innerloop.engine.ensemble.Ensemble` (BMAML's particles) the
posterior-predictive mixture (1/M)Σ_m softmax(f(y; φ_m)) — averaging probabilities, not logits.
"""

from __future__ import annotations

from typing import Any

import torch

from innerloop.engine.ensemble import Ensemble
from innerloop.engine.errors import ConfigError
from innerloop.engine.learner import Learner
from innerloop.engine.params import Params


def class_probabilities(model: Any, params: Params, x: torch.Tensor) -> torch.Tensor:
    """p(s|x) [B, K, classes] for per-task ``params`` (leading axis B) and inputs x [B, K, d]."""
    if isinstance(model, Ensemble) and not model.classifier:
        model = Ensemble(model.inner, model.particles, classifier=True)  # mix probabilities, not logits
    return torch.softmax(Learner(model, "cross_entropy").predict_tasks(params, x), dim=-1)


def reliability(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 10) -> dict[str, Any]:
    """Reliability diagram and ECE of predictions ``probabilities`` [..., classes] for ``labels`` [...].

    Returns per-bin ``confidence`` (mean conf), ``accuracy`` (acc(p), None for an empty bin) and
    ``count``, the bin ``edges``, the overall ``ece``, ``accuracy`` and mean ``confidence``.
    """
    if int(bins) != bins or bins < 1:
        raise ConfigError(f"bins must be a positive integer, got {bins}", "e.g. bins=10")
    if probabilities.shape[:-1] != labels.shape:
        raise ConfigError(f"probabilities {tuple(probabilities.shape)} do not match labels {tuple(labels.shape)}",
                          "give one probability vector per label")
    confidence, decision = probabilities.detach().double().flatten(0, -2).max(dim=-1)
    correct = (decision == labels.flatten()).double()
    index = (confidence * bins).long().clamp(max=bins - 1)  # bin b holds conf in [b/bins, (b+1)/bins)
    count = torch.bincount(index, minlength=bins).double()
    conf_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, confidence)
    acc_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, correct)
    filled = count > 0
    conf_mean, acc_mean = conf_sum / count.clamp(min=1), acc_sum / count.clamp(min=1)
    ece = float(((count / count.sum()) * (acc_mean - conf_mean).abs())[filled].sum())
    return {
        "edges": torch.linspace(0, 1, bins + 1).tolist(),
        "confidence": [float(c) if f else None for c, f in zip(conf_mean, filled)],
        "accuracy": [float(a) if f else None for a, f in zip(acc_mean, filled)],
        "count": [int(c) for c in count],
        "ece": ece, "accuracy_overall": float(correct.mean()), "confidence_overall": float(confidence.mean()),
    }
