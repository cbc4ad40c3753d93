"""Classifier density-ratio estimation of KL(q ‖ p) for implicit distributions over bit-strings
(Benedetti et al. 2021; issue 8, part 2).

A Born machine gives samples, not probabilities, so log q(φ) is unavailable. A classifier
d_ψ(φ) = σ(t_ψ(φ)) trained with the logistic loss to tell q-samples (label 1) from equally many
p-samples (label 0) has, at its optimum, the logit t_ψ(φ) = log q(φ) − log p(φ). Hence

    KL(q ‖ p) = E_q[log q − log p] ≈ E_q[t_ψ(φ)],

and with the logit frozen, ∇_θ E_{q_θ}[t_ψ] = ∇_θ KL(q_θ ‖ p) at the optimum (the score term
E_q[∇ log q] vanishes), so the frozen logit can be used as a fixed function of φ in
parameter-shift gradients.

:func:`fit_log_ratio` trains one small MLP per task at once (weights with a leading task axis, full
batch Adam, weight decay against the perfect separation of strings seen only once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from innerloop.engine.binary_bayes import string_index
from innerloop.engine.errors import ShapeError


@dataclass(frozen=True)
class LogRatio:
    """Per-task logits t_b(φ) ≈ log q_b(φ) − log p(φ) of a trained batched MLP (frozen)."""

    weights: tuple[torch.Tensor, ...]  # W1 [B,n,H], b1 [B,1,H], W2 [B,H,H], b2 [B,1,H], w3 [B,H,1], b3 [B,1,1]

    def __call__(self, strings: torch.Tensor) -> torch.Tensor:
        """t_b(φ) [B, ...] for bit-strings [B, ..., n], evaluated once per distinct string of a task."""
        tasks, bits = strings.shape[0], strings.shape[-1]
        keys = torch.arange(tasks).reshape(-1, *([1] * (strings.ndim - 2))) * 2 ** bits + string_index(strings)
        unique, inverse = torch.unique(keys.flatten(), return_inverse=True)
        distinct, owner, slot = _pad_by_task(unique, tasks, bits)
        values = _logits(self.weights, distinct)[owner, slot]
        return values[inverse].reshape(strings.shape[:-1])


def _logits(weights: tuple[torch.Tensor, ...], strings: torch.Tensor) -> torch.Tensor:
    w1, b1, w2, b2, w3, b3 = weights
    h = torch.tanh((2 * strings.to(w1.dtype) - 1) @ w1 + b1)
    h = torch.tanh(h @ w2 + b2)
    return (h @ w3 + b3).squeeze(-1)


def _unique_weighted(q_samples: torch.Tensor, p_samples: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The distinct strings of each task [B, U, n] (zero-padded) with the weight of each in the
    q-class and p-class empirical distributions [B, U] (padding weighs 0): the logistic loss over
    samples equals the weighted loss over distinct strings, at a fraction of the cost."""
    tasks, bits = q_samples.shape[0], q_samples.shape[-1]
    task = torch.arange(tasks).unsqueeze(1)
    keys = torch.cat([task.expand(q_samples.shape[:2]), task.expand(p_samples.shape[:2])], 1) * 2 ** bits \
        + string_index(torch.cat([q_samples, p_samples], 1))
    is_q = torch.cat([torch.ones(q_samples.shape[:2]), torch.zeros(p_samples.shape[:2])], 1)
    unique, inverse = torch.unique(keys.flatten(), return_inverse=True)
    q_mass = torch.zeros(unique.numel()).index_add_(0, inverse, is_q.flatten()) / q_samples.shape[1]
    p_mass = torch.zeros(unique.numel()).index_add_(0, inverse, 1 - is_q.flatten()) / p_samples.shape[1]
    strings, owner, slot = _pad_by_task(unique, tasks, bits)
    weights = torch.zeros(2, *strings.shape[:2])
    weights[0, owner, slot], weights[1, owner, slot] = q_mass, p_mass
    return strings, weights[0], weights[1]


def _pad_by_task(keys: torch.Tensor, tasks: int, bits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sorted distinct keys task·2ⁿ + index → strings [B, U, n] zero-padded per task, and each key's
    (task, slot) position in that tensor."""
    owner = keys // 2 ** bits
    per_task = torch.bincount(owner, minlength=tasks)
    slot = torch.arange(keys.numel()) - (torch.cumsum(per_task, 0) - per_task)[owner]
    strings = torch.zeros(tasks, int(per_task.max()), bits, dtype=torch.long)
    strings[owner, slot] = (keys % 2 ** bits).unsqueeze(-1) >> torch.arange(bits) & 1
    return strings, owner, slot


def fit_log_ratio(q_samples: torch.Tensor, p_samples: torch.Tensor, generator: torch.Generator,
                  hidden: int = 32, steps: int = 150, lr: float = 0.05, weight_decay: float = 1e-3) -> LogRatio:
    """Train t_ψ per task on samples [B, S_q, n] from q (label 1) and [B, S_p, n] from p (label 0)
    by full-batch Adam (float32) on the logistic loss with the two classes at equal total weight, so
    that the optimal logit is log q − log p."""
    if q_samples.ndim != 3 or p_samples.shape[::2] != q_samples.shape[::2]:
        raise ShapeError(f"need samples [tasks, count, bits] for q and p with the same tasks and bits, got "
                         f"{tuple(q_samples.shape)} and {tuple(p_samples.shape)}", "sample both for every task")
    tasks, bits = q_samples.shape[0], q_samples.shape[-1]

    def layer(fan_in: int, fan_out: int) -> list[torch.Tensor]:
        bound = 1 / math.sqrt(fan_in)
        w = (2 * torch.rand(tasks, fan_in, fan_out, generator=generator) - 1) * bound
        return [w, torch.zeros(tasks, 1, fan_out)]

    weights = [t.requires_grad_(True) for t in layer(bits, hidden) + layer(hidden, hidden) + layer(hidden, 1)]
    strings, q_mass, p_mass = _unique_weighted(q_samples.cpu(), p_samples.cpu())
    optimizer = torch.optim.Adam(weights, lr=lr, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad()
            logits = _logits(tuple(weights), strings)
            loss = (q_mass * F.softplus(-logits) + p_mass * F.softplus(logits)).sum()
            loss.backward()
            optimizer.step()
    return LogRatio(tuple(w.detach() for w in weights))


def kl_estimate(log_ratio: LogRatio, q_samples: torch.Tensor) -> torch.Tensor:
    """KL(q_b ‖ p) ≈ mean over q-samples [B, S, n] of the frozen logit, shape [B]."""
    return log_ratio(q_samples).mean(dim=1)
