"""Channel prediction per frame (monograph §5.4, eqs. 5.18–5.20, 5.24).

A task is one frame k: channel vectors h_{l,k} ∈ C^S, S = N_R·N_T·W, over consecutive slots l,
with frame-specific statistics. The frame's long-term structure is R paths (eq. 5.24,
h_{l,k} = B_k d_{l,k}): path r has angles of arrival and departure φ_r, ψ_r ~ U[−π/2, π/2] seen
by half-wavelength linear arrays, a delay tap w_r ~ U{0, …, W−1}, so b_r = a_R(φ_r) ⊗ a_T(ψ_r) ⊗ e_{w_r}
(unit norm); its short-term amplitude is one Doppler-shifted ray,
d_{r,l} = g_r·exp(j(2π f_D cos β_r·l + ϑ_r)) with g_r ~ CN(0, 1/R), β_r, ϑ_r ~ U[0, 2π) and the
frame's normalized maximum Doppler f_D ~ U[``doppler_min``, ``doppler_max``] (cycles per slot).
The predictor sees noisy channel estimates, h + CN(0, N0/S·I) with E‖h‖² = 1 and
N0 = 10^(−snr_db/10). This is our stand-in for the monograph's 3GPP SCM set-up (its ref. [132]),
which is not reproduced here.

A sample i is the window of the L latest channels x_i = vec(H^L_i) = [h_i; h_{i−1}; …; h_{i−L+1}]
(eq. 5.18) and the target y_i = h_{i+δ} (eq. 5.19); the support set is the first ``shots``
windows of the frame, the query set the ``queries`` windows that follow them (no slot of a query
target is in a support window's target). Inputs and targets are real: [Re; Im] of the complex
vectors (:func:`complex_of` undoes it), so every gradient-lens algorithm trains on the family.
"""

from __future__ import annotations

import math

import torch

from innerloop.engine.errors import ConfigError
from innerloop.engine.tasks.base import TaskBatch, TaskFamily, uniform


def complex_of(t: torch.Tensor) -> torch.Tensor:
    """The complex tensor whose [Re; Im] is the last axis of ``t``."""
    half = t.shape[-1] // 2
    return torch.complex(t[..., :half].double(), t[..., half:].double())


def real_of(t: torch.Tensor) -> torch.Tensor:
    """[Re; Im] of a complex tensor along its last axis."""
    return torch.cat([t.real, t.imag], dim=-1)


def steering(angles: torch.Tensor, antennas: int) -> torch.Tensor:
    """Half-wavelength uniform linear array responses [..., antennas], unit norm."""
    n = torch.arange(antennas, dtype=torch.float64)
    return torch.exp(1j * math.pi * n * torch.sin(angles)[..., None]) / math.sqrt(antennas)


class ChannelPrediction(TaskFamily):
    """δ-step linear channel prediction from the L latest channels of one frame (multipath, Doppler)."""

    name = "channel-prediction"
    loss = "mse"

    def __init__(self, shots: int = 8, queries: int = 50, receive: int = 2, transmit: int = 4, taps: int = 2,
                 paths: int = 4, window: int = 5, lag: int = 1, doppler_min: float = 0.01,
                 doppler_max: float = 0.1, snr_db: float = 20.0) -> None:
        super().__init__(shots, queries)
        sizes = {"receive": receive, "transmit": transmit, "taps": taps, "paths": paths, "window": window,
                 "lag": lag}
        for label, value in sizes.items():
            if int(value) != value or value < 1:
                raise ConfigError(f"{label} must be a positive integer, got {value}", f"e.g. {label}=2")
        if not 0 <= doppler_min <= doppler_max <= 0.5 or not math.isfinite(snr_db):
            raise ConfigError(f"ChannelPrediction needs 0 <= doppler_min <= doppler_max <= 0.5 (cycles per slot) and "
                              f"a finite snr_db; got {doppler_min}, {doppler_max}, {snr_db}",
                              "e.g. doppler_min=0.01 doppler_max=0.1 snr_db=20")
        self.receive, self.transmit, self.taps, self.paths = int(receive), int(transmit), int(taps), int(paths)
        self.window, self.lag = int(window), int(lag)
        self.doppler_min, self.doppler_max, self.snr_db = float(doppler_min), float(doppler_max), float(snr_db)

    @property
    def antennas(self) -> int:
        """S = N_R·N_T·W, the entries of one channel vector."""
        return self.receive * self.transmit * self.taps

    @property
    def input_dim(self) -> int:  # type: ignore[override]
        return 2 * self.antennas * self.window

    @property
    def output_dim(self) -> int:  # type: ignore[override]
        return 2 * self.antennas

    def channels(self, num_tasks: int, slots: int, generator: torch.Generator | None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Noisy channel estimates [B, slots, S] of ``num_tasks`` frames, and the frames' Doppler."""
        b, r = num_tasks, self.paths

        def angles() -> torch.Tensor:
            return uniform((b, r), -math.pi / 2, math.pi / 2, generator).double()

        tap = torch.nn.functional.one_hot(torch.randint(self.taps, (b, r), generator=generator), self.taps)
        arrival, departure = steering(angles(), self.receive), steering(angles(), self.transmit)
        paths = (arrival[..., :, None, None] * departure[..., None, :, None]
                 * tap[..., None, None, :]).reshape(b, r, self.antennas)  # b_r = a_R ⊗ a_T ⊗ e_w
        gain = torch.complex(*torch.randn((2, b, r), generator=generator, dtype=torch.float64)) / math.sqrt(2 * r)
        doppler = uniform((b,), self.doppler_min, self.doppler_max, generator).double()
        shift = doppler[:, None] * torch.cos(uniform((b, r), 0, 2 * math.pi, generator).double())
        phase = uniform((b, r), 0, 2 * math.pi, generator).double()
        slot = torch.arange(slots, dtype=torch.float64)
        amplitude = gain[:, None] * torch.exp(1j * (2 * math.pi * shift[:, None] * slot[:, None] + phase[:, None]))
        clean = amplitude @ paths  # [B, slots, S] = Σ_r d_{r,l} b_r
        noise_var = 10 ** (-self.snr_db / 10) / self.antennas
        noise = torch.complex(*torch.randn((2, b, slots, self.antennas), generator=generator, dtype=torch.float64))
        return clean + math.sqrt(noise_var / 2) * noise, {"doppler": doppler}

    def windows(self, channels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs vec(H^L_i) [B, N, S·L] (newest channel first) and targets h_{i+δ} [B, N, S] of every
        window in ``channels`` [B, slots, S], N = slots − L − δ + 1."""
        count = channels.shape[1] - self.window - self.lag + 1
        latest = torch.arange(self.window - 1, self.window - 1 + count)
        x = torch.cat([channels[:, latest - j] for j in range(self.window)], dim=-1)
        return x, channels[:, latest + self.lag]

    def _sample(self, num_tasks: int, generator: torch.Generator | None, shots: int, queries: int) -> TaskBatch:
        slots = shots + queries + self.window + self.lag - 1
        channels, params = self.channels(num_tasks, slots, generator)
        x, y = self.windows(channels)
        x, y = real_of(x).to(torch.get_default_dtype()), real_of(y).to(torch.get_default_dtype())
        params = {k: v.to(torch.get_default_dtype()) for k, v in params.items()}
        return TaskBatch(x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:], params)

    def config(self) -> dict:
        return {**super().config(), "receive": self.receive, "transmit": self.transmit, "taps": self.taps,
                "paths": self.paths, "window": self.window, "lag": self.lag, "doppler_min": self.doppler_min,
                "doppler_max": self.doppler_max, "snr_db": self.snr_db}
