"""Long-short-term decomposition of channel prediction (monograph §5.4, eq. 5.24; Park & Simeone [127]).

Within a frame the channel is h_l = B·d_l (eq. 5.24): long-term space-time features B ∈ C^{S×R}
that stay fixed over the frame and short-term fading amplitudes d_l ∈ C^R that change from slot
to slot. Here

* B̂ is estimated per frame from the channels its training windows contain: the R dominant
  eigenvectors of their sample covariance (1/n)·Σ h hᴴ (orthonormal columns), so d_l = B̂ᴴh_l;
* the predictor is decomposed the same way: one scalar L-tap filter w ∈ C^L predicts every
  amplitude from its own past, d̂^r_{i+δ} = Σ_{j<L} w_j·d^r_{i−j}, and ĥ_{i+δ} = B̂·d̂_{i+δ}.

The filter has L parameters instead of the naïve predictor's S·L·S, and its meaning does not
depend on the frame's basis (a filter that predicts each of the R amplitudes predicts any mix of
them), so a bias for it can be shared across frames: every window of a frame gives R samples
(x = [d^r_i, …, d^r_{i−L+1}], y = d^r_{i+δ}) of one scalar regression task, to which iMAML's closed
form (monograph eqs. 2.11–2.12) and joint learning apply unchanged.
"""

from __future__ import annotations

import torch

from innerloop.engine.errors import ConfigError


def long_term_basis(support_x: torch.Tensor, support_y: torch.Tensor, rank: int) -> torch.Tensor:
    """B̂ [B, S, R] per frame: the ``rank`` dominant eigenvectors of the sample covariance of every
    channel in the frame's training windows (inputs vec(H^L) [B, N, S·L] and targets [B, N, S])."""
    frames, count, antennas = support_y.shape
    if int(rank) != rank or not 1 <= rank <= antennas:
        raise ConfigError(f"the number of long-term features R must be an integer in [1, {antennas}], got {rank}",
                          "e.g. rank=4 (the resolvable paths)")
    channels = torch.cat([support_x.reshape(frames, -1, antennas), support_y], dim=1)
    covariance = channels.mT @ channels.conj() / channels.shape[1]  # (1/n) Σ h hᴴ as [S, S]
    _, vectors = torch.linalg.eigh(covariance)  # ascending eigenvalues
    return vectors[..., -rank:].flip(-1)


def _amplitudes(x: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """d = B̂ᴴh of every channel of windows x [B, N, S·L] → [B, N, R, L] (newest first)."""
    frames, count, antennas = x.shape[0], x.shape[1], basis.shape[1]
    return (x.reshape(frames, count, -1, antennas) @ basis.conj()[:, None]).transpose(-1, -2)


def short_term_windows(x: torch.Tensor, y: torch.Tensor, basis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The amplitude regression samples of a frame: inputs [B, N·R, L] (newest first) and targets
    [B, N·R, 1], from windows x [B, N, S·L] and targets y [B, N, S] projected on ``basis`` [B, S, R]."""
    frames, count = y.shape[:2]
    inputs = _amplitudes(x, basis).reshape(frames, count * basis.shape[-1], -1)
    return inputs, (y @ basis.conj()).reshape(frames, -1, 1)


def predict_channels(x: torch.Tensor, basis: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """ĥ_{i+δ} [B, N, S] = B̂·d̂_{i+δ} for windows x [B, N, S·L], the frame bases [B, S, R] and one
    filter per frame [B, L] (or [L] shared)."""
    window = x.shape[-1] // basis.shape[1]
    amplitudes = _amplitudes(x, basis) @ filters.reshape(-1, 1, window, 1)  # [B, N, R, 1]
    return amplitudes[..., 0] @ basis.mT
