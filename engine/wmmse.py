"""WMMSE power control (Shi, Razaviyayn, Luo, He 2011), the model-based reference for monograph §5.5.

For the single-antenna interference channel with gains [G]_{j,i} = g_{j,i} (transmitter j to
receiver i), maximizing the sum-rate of eq. 5.26 is equivalent to a weighted sum-MSE
minimization solved by block-coordinate descent over the transmit amplitudes v (p = v²), the
receive gains u and the weights w:

    u_i = √g_{i,i}·v_i / (σ² + Σ_j g_{j,i}·v_j²),      w_i = 1 / (1 − u_i·√g_{i,i}·v_i),
    v_i = clip( w_i·u_i·√g_{i,i} / Σ_j w_j·u_j²·g_{i,j}, 0, √P_max ).

Each iteration does not increase the weighted sum-MSE, and the limit points are stationary points of
the sum-rate. It needs the full channel matrix of every slot (what the REGNN also sees) and no
training.
"""

from __future__ import annotations

import torch

from innerloop.engine.errors import ConfigError


def wmmse_powers(gains: torch.Tensor, noise_power: float, iterations: int = 100, max_power: float = 1.0
                 ) -> torch.Tensor:
    """Powers [..., V] in [0, max_power] for channel matrices [..., V, V], starting from full power."""
    if int(iterations) != iterations or iterations < 1 or not noise_power > 0:
        raise ConfigError(f"WMMSE needs iterations >= 1 and noise_power > 0, got {iterations}, {noise_power}",
                          "e.g. wmmse_powers(G, 0.01, iterations=100)")
    direct = torch.diagonal(gains, dim1=-2, dim2=-1).sqrt()
    active = direct > 0  # padded links (no channel) stay silent
    amplitude = torch.where(active, torch.full_like(direct, max_power ** 0.5), torch.zeros_like(direct))
    for _ in range(iterations):
        received = noise_power + torch.einsum("...ji,...j->...i", gains, amplitude ** 2)
        receive_gain = direct * amplitude / received
        mse = (1 - receive_gain * direct * amplitude).clamp_min(1e-12)
        weight = torch.where(active, 1 / mse, torch.zeros_like(direct))
        leakage = torch.einsum("...ij,...j->...i", gains, weight * receive_gain ** 2)
        amplitude = (weight * receive_gain * direct / leakage.clamp_min(1e-30)).clamp(0, max_power ** 0.5)
        amplitude = torch.where(active, amplitude, torch.zeros_like(amplitude))
    return amplitude ** 2
