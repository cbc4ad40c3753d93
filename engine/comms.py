"""The physical layer of few-pilot demodulation (monograph §5.2, eqs. 5.1–5.3, 5.7) and its
model-based receiver.

* :func:`qam_constellation` — square M-QAM, average symbol energy E|s|² = 1;
* :func:`iq_imbalance` — the transmitter's hardware distortion x = p_k(s) of eq. 5.1: amplitude
  imbalance ε and phase imbalance δ between the I and Q branches,
  x_I = (1 + ε)(cos δ·s_I − sin δ·s_Q),  x_Q = (1 − ε)(cos δ·s_Q − sin δ·s_I);
* :func:`mmse_channel_estimate` — the linear-model receiver's estimate of h in y = h·s + z from
  N known pilots (h ~ CN(0, σ_h²), z ~ CN(0, N0)): ĥ = σ_h² sᴴy / (σ_h²‖s‖² + N0), the posterior
  mean, whose error variance is σ_h² N0 / (σ_h²‖s‖² + N0);
* :func:`ml_detect` — maximum-likelihood detection under that model with ĥ plugged in,
  ŝ = argmin_c |y − ĥ c|²;
* :func:`qam_awgn_ser` — the closed-form symbol error rate of M-QAM with minimum-distance
  detection on an AWGN channel at SNR Es/N0, 1 − (1 − 2(1 − 1/√M)·Q(√(3·SNR/(M − 1))))².

Complex signals are complex tensors here; the task family hands the learners (Re y, Im y).
"""

from __future__ import annotations

import math

import torch

from innerloop.engine.errors import ConfigError


def qam_constellation(order: int, dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    """The M = ``order`` points of square QAM, [M] complex, unit average energy; index i is the
    point (I, Q) = (2(i mod √M) − √M + 1, 2(i div √M) − √M + 1)/scale."""
    side = math.isqrt(order) if isinstance(order, int) and order >= 4 else 0
    if side * side != order or side % 2:
        raise ConfigError(f"square QAM needs an order that is an even power of 2 (4, 16, 64, 256), got {order}",
                          "e.g. order=16 for 16-QAM")
    levels = torch.arange(side, dtype=torch.float64) * 2 - (side - 1)
    points = torch.complex(levels.repeat(side), levels.repeat_interleave(side))
    return (points / math.sqrt(2 * (order - 1) / 3)).to(dtype)  # E|s|² over the grid = 2(M − 1)/3


def iq_imbalance(symbols: torch.Tensor, epsilon: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Transmitted x for symbols s [B, N] of devices with imbalances ε, δ [B] (radians)."""
    eps, cos, sin = epsilon[:, None], torch.cos(delta)[:, None], torch.sin(delta)[:, None]
    in_phase = (1 + eps) * (cos * symbols.real - sin * symbols.imag)
    quadrature = (1 - eps) * (cos * symbols.imag - sin * symbols.real)
    return torch.complex(in_phase, quadrature)


def mmse_channel_estimate(pilots: torch.Tensor, received: torch.Tensor, noise_var: float,
                          prior_var: float = 1.0) -> torch.Tensor:
    """ĥ [B] from known pilot symbols s [B, N] and received y [B, N] under y = h·s + z."""
    correlation = (pilots.conj() * received).sum(dim=1)
    energy = (pilots.abs() ** 2).sum(dim=1)
    return prior_var * correlation / (prior_var * energy + noise_var)


def ml_detect(received: torch.Tensor, channel: torch.Tensor, constellation: torch.Tensor) -> torch.Tensor:
    """Indices [B, N] of argmin_c |y − h·c|² for received y [B, N] and channels h [B]."""
    candidates = channel[:, None, None] * constellation[None, None, :]
    return (received[..., None] - candidates).abs().argmin(dim=-1)


def qam_awgn_ser(order: int, snr: float) -> float:
    """Closed-form SER of square M-QAM, minimum-distance detection, AWGN, Es/N0 = ``snr`` (linear)."""
    qam_constellation(order)  # validates the order
    tail = 0.5 * math.erfc(math.sqrt(3 * snr / (order - 1)) / math.sqrt(2))  # Q(√(3·SNR/(M − 1)))
    per_axis = 2 * (1 - 1 / math.sqrt(order)) * tail
    return 1 - (1 - per_axis) ** 2
