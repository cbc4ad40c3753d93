"""Sequence detection on a finite-memory channel by the Viterbi algorithm (monograph §7.3, [197]).

BPSK symbols s_t = 2b_t − 1 (bits b_t ∈ {0, 1}) pass a channel with memory L: the output at
time t depends on the state (s_t, s_{t−1}, …, s_{t−L+1}). A state is indexed by its bits,
least significant first:  state_t = Σ_{l=0}^{L−1} b_{t−l}·2^l,  so the newest bit is state_t mod 2
and the transition from state_{t−1} is  state_t = (2·state_{t−1} + b_t) mod 2^L.

Given per-time branch metrics c_t(state) = log p(y_t | state) (up to a constant per t, which
no path can tell apart), the Viterbi algorithm returns the symbol sequence that maximizes
Σ_t c_t(state_t) — the maximum-likelihood sequence — by dynamic programming over the 2^L
states in O(T·2^L) instead of enumerating 2^(T+L−1) sequences. The L − 1 symbols before the
block are unknown: every state starts with path metric 0.
"""

from __future__ import annotations

import torch

from innerloop.engine.errors import NonFiniteError, ShapeError


def state_count(memory: int) -> int:
    """2^L states of a channel with memory L ≥ 1."""
    if int(memory) != memory or memory < 1:
        raise ShapeError(f"channel memory must be a positive integer, got {memory}", "e.g. memory=4")
    return 2 ** int(memory)


def states_of(bits: torch.Tensor, memory: int) -> torch.Tensor:
    """States [B, T − L + 1] of bit sequences [B, T]: state_t = Σ_l b_{t−l}·2^l for t ≥ L − 1."""
    state_count(memory)
    if bits.shape[-1] < memory:
        raise ShapeError(f"{bits.shape[-1]} bits cannot fill a state of memory {memory}",
                         f"pass at least {memory} bits")
    windows = bits.unfold(-1, memory, 1).flip(-1)  # [..., l] = b_{t−l}
    return (windows.long() << torch.arange(memory)).sum(-1)


def state_symbols(memory: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """[2^L, L] symbols of every state: row i holds (s_t, s_{t−1}, …, s_{t−L+1}) with s = 2b − 1."""
    index = torch.arange(state_count(memory))
    return (((index[:, None] >> torch.arange(memory)) & 1) * 2 - 1).to(dtype)


def viterbi(metrics: torch.Tensor) -> torch.Tensor:
    """Maximum-likelihood bits [B, T] for branch metrics [B, T, 2^L] (larger is likelier).

    Forward pass: m_t(s) = c_t(s) + max over the two predecessors s' = ⌊s/2⌋ + b'·2^{L−1}
    (b' the bit that leaves the window) of m_{t−1}(s'); backward pass along the stored choices.
    """
    if metrics.ndim != 3:
        raise ShapeError(f"branch metrics must have shape [blocks, time, states], got {tuple(metrics.shape)}",
                         "add the block axis with metrics.unsqueeze(0)")
    states = metrics.shape[-1]
    memory = states.bit_length() - 1
    if states < 2 or states != 2 ** memory:
        raise ShapeError(f"the state axis must have 2^L entries (L >= 1), got {states}", "e.g. 16 states for L = 4")
    if not torch.isfinite(metrics).all():
        raise NonFiniteError("branch metrics contain NaN or ±inf",
                             "clip log-probabilities, e.g. log_softmax(...).clamp_min(-1e4)")
    index = torch.arange(states)
    predecessors = torch.stack([index >> 1, (index >> 1) | (1 << (memory - 1))])  # [2, S]
    path = metrics[:, 0]
    choices = []
    for t in range(1, metrics.shape[1]):
        candidates = path[:, predecessors]  # [B, 2, S]
        best, choice = candidates.max(dim=1)
        choices.append(choice)
        path = best + metrics[:, t]
    state = path.argmax(dim=-1)
    bits = [state & 1]
    for choice in reversed(choices):
        state = predecessors[choice.gather(1, state[:, None])[:, 0], state]
        bits.append(state & 1)
    return torch.stack(bits[::-1], dim=1)
