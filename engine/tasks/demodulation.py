"""Few-pilot demodulation for IoT devices (monograph §5.2, eqs. 5.1–5.3; Park et al. 2021).

A task is one device k: it sends square M-QAM symbols s (uniform over the constellation)
through its own I/Q imbalance (amplitude ε_k ~ U[0, ``amplitude_imbalance``], phase
δ_k ~ U[0, ``phase_imbalance``] degrees; :func:`~innerloop.engine.comms.iq_imbalance`) over a
flat Rayleigh channel h_k ~ CN(0, 1) with noise z ~ CN(0, N0), N0 = 10^(−snr_db/10) (eq. 5.2:
y = h·x + z; the average received SNR is ``snr_db``). The support set is the packet's
``shots`` pilots D_k = {(s⁽ⁱ⁾, y⁽ⁱ⁾)} (eq. 5.3), the query set ``queries`` further symbols of
the same device; inputs are (Re y, Im y), labels the symbol indices of
:func:`~innerloop.engine.comms.qam_constellation`. Classifiers score the symbol error rate
1 − accuracy (eq. 5.7). The monograph defers the imbalance ranges to its reference [109]; the
defaults here (ε ≤ 0.15, δ ≤ 15°) are ours and are recorded in every run's config.
"""

from __future__ import annotations

import math

import torch

from innerloop.engine.comms import iq_imbalance, qam_constellation
from innerloop.engine.errors import ConfigError
from innerloop.engine.tasks.base import TaskBatch, TaskFamily, uniform


class Demodulation(TaskFamily):
    """M-QAM symbols of one device through its I/Q imbalance and Rayleigh channel; pilots as support."""

    name = "demodulation"
    loss = "cross_entropy"
    input_dim = 2

    def __init__(self, shots: int = 4, queries: int = 128, order: int = 16, snr_db: float = 20.0,
                 amplitude_imbalance: float = 0.15, phase_imbalance: float = 15.0) -> None:
        super().__init__(shots, queries)
        self.constellation = qam_constellation(order)
        if not 0 <= amplitude_imbalance < 1 or not 0 <= phase_imbalance < 90 or not math.isfinite(snr_db):
            raise ConfigError(
                f"Demodulation needs 0 <= amplitude_imbalance < 1, 0 <= phase_imbalance < 90 (degrees) and a "
                f"finite snr_db; got {amplitude_imbalance}, {phase_imbalance}, {snr_db}",
                "e.g. amplitude_imbalance=0.15 phase_imbalance=15 snr_db=20")
        self.order, self.snr_db = int(order), float(snr_db)
        self.amplitude_imbalance, self.phase_imbalance = float(amplitude_imbalance), float(phase_imbalance)

    @property
    def output_dim(self) -> int:  # type: ignore[override]
        return self.order

    @property
    def noise_var(self) -> float:
        """N0 = 10^(−snr_db/10) for unit symbol energy and E|h|² = 1."""
        return 10 ** (-self.snr_db / 10)

    def _sample(self, num_tasks: int, generator: torch.Generator | None, shots: int, queries: int) -> TaskBatch:
        channel = torch.complex(*torch.randn((2, num_tasks), generator=generator, dtype=torch.float64)) / math.sqrt(2)
        epsilon = uniform((num_tasks,), 0.0, self.amplitude_imbalance, generator).double()
        delta = torch.deg2rad(uniform((num_tasks,), 0.0, self.phase_imbalance, generator).double())
        labels = torch.randint(self.order, (num_tasks, shots + queries), generator=generator)
        noise = torch.complex(*torch.randn((2, num_tasks, shots + queries), generator=generator, dtype=torch.float64))
        received = channel[:, None] * iq_imbalance(self.constellation[labels], epsilon, delta)
        received = received + math.sqrt(self.noise_var / 2) * noise
        x = torch.stack([received.real, received.imag], dim=-1).to(torch.get_default_dtype())
        params = {"channel_real": channel.real, "channel_imag": channel.imag, "epsilon": epsilon, "delta": delta}
        params = {k: v.to(torch.get_default_dtype()) for k, v in params.items()}
        return TaskBatch(x[:, :shots], labels[:, :shots], x[:, shots:], labels[:, shots:], params)

    def config(self) -> dict:
        return {**super().config(), "order": self.order, "snr_db": self.snr_db,
                "amplitude_imbalance": self.amplitude_imbalance, "phase_imbalance": self.phase_imbalance}
