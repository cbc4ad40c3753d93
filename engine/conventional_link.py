"""The conventional link of monograph Figs. 7.1–7.2: BPSK with a maximum-likelihood receiver that
estimates the channel from the frame's pilots.

Message m's ``bits`` bits go out as BPSK symbols s_k = 1 − 2·b_k, one per channel use (so
‖s‖² = uses, the learned encoder's power). The receiver takes the least-squares estimate of the
taps from the P pilot messages it knows,

    ĥ = argmin_h Σ_p ‖y_p − S_p·h‖² = (SᴴS)⁻¹Sᴴy,   S_p the convolution matrix of pilot p's symbols,

and decides each data message by maximum likelihood under ĥ (Gaussian noise):
m̂ = argmin_m ‖y − ĥ ∗ s_m‖² over all 2^bits codewords.
"""

from __future__ import annotations

import torch

from innerloop.engine.errors import ConfigError
from innerloop.engine.link_autoencoder import through_channel
from innerloop.engine.tasks import TaskBatch


def bpsk_codebook(bits: int) -> torch.Tensor:
    """[2^bits, bits] of ±1: row m is message m's bits b_k (most significant first) as 1 − 2·b_k."""
    if int(bits) != bits or not 1 <= bits <= 16:
        raise ConfigError(f"bits must be an integer in [1, 16], got {bits}", "e.g. bits=8")
    weights = 2 ** torch.arange(bits - 1, -1, -1)
    return 1.0 - 2.0 * ((torch.arange(2 ** bits)[:, None] // weights) % 2).double()


def convolution_matrix(symbols: torch.Tensor, taps: int) -> torch.Tensor:
    """S [..., n + taps − 1, taps] with S·h = h ∗ s for symbols s [..., n]: column τ is s delayed by τ."""
    n = symbols.shape[-1]
    columns = [torch.nn.functional.pad(symbols, (tau, taps - 1 - tau)) for tau in range(taps)]
    return torch.stack(columns, dim=-1).reshape(*symbols.shape[:-1], n + taps - 1, taps)


def received(family, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Complex y [..., uses + taps − 1] when the points' messages go out in BPSK."""
    symbols = bpsk_codebook(family.bits).to(x.dtype)[labels]
    signal = through_channel(x, symbols, torch.zeros_like(symbols), family.messages, family.taps)
    half = signal.shape[-1] // 2
    return torch.complex(signal[..., :half].double(), signal[..., half:].double())


def least_squares_channel(family, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ĥ [B, taps] from the pilots x [B, P, in_dim] with messages labels [B, P] (module docstring)."""
    symbols = bpsk_codebook(family.bits)[labels].to(torch.complex128)
    design = convolution_matrix(symbols, family.taps).flatten(1, 2)  # [B, P·(n + L − 1), L]
    observed = received(family, x, labels).flatten(1)[..., None]
    return torch.linalg.lstsq(design, observed).solution[..., 0]


def ml_decisions(family, channel: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """argmin_m ‖y − ĥ ∗ s_m‖² [B, K] for channel estimates [B, taps] and received y [B, K, n + L − 1]."""
    codebook = convolution_matrix(bpsk_codebook(family.bits).to(torch.complex128), family.taps)  # [M, R, L]
    candidates = torch.einsum("mrl,bl->bmr", codebook, channel)  # ĥ ∗ s_m, [B, M, R]
    distances = (y.abs() ** 2).sum(-1, keepdim=True) - 2 * torch.einsum("bkr,bmr->bkm", y, candidates.conj()).real \
        + (candidates.abs() ** 2).sum(-1)[:, None]
    return distances.argmin(-1)


def conventional_bler(family, batch: TaskBatch) -> torch.Tensor:
    """Per-frame BLER [B] on the query messages, with ĥ from the support (pilot) messages."""
    channel = least_squares_channel(family, batch.support_x, batch.support_y)
    decisions = ml_decisions(family, channel, received(family, batch.query_x, batch.query_y))
    return (decisions != batch.query_y).double().mean(dim=1)
