"""Power control in wireless networks of changing topology (monograph §5.5, eqs. 5.26–5.28;
Eisen & Ribeiro's random-edge GNN setting, Nikoloska & Simeone's meta-learning of it [120]).

A task is one period k of a network with V_k ∈ {``min_links`` … ``max_links``} links that share the
spectrum. Transmitters are uniform in a square of side √V_k·``spacing`` (the density stays fixed as
the network grows); each receiver lies at a uniform distance in [``near``, ``far``] from its
transmitter, in a uniform direction. The large-scale gain between transmitter j and receiver i is
d_{j,i}^(−``path_loss``) (d clamped to >= 1), and in every time slot t each gain is multiplied by
an independent Exp(1) Rayleigh fading power: g_{j,i}(t) = d_{j,i}^(−γ)·|h|². All links interfere
(the interference graph is complete) and the noise power is σ² = 10^(−snr_db/10) for unit maximum
transmit power.

A data point is one slot: x = the channel matrix G(t) with [G]_{j,i} = g_{j,i}(t), flattened and
zero-padded to ``max_links``² (padded links have no channel, so they neither receive nor cause
interference), y = the link mask [max_links] (1 for the V_k links of the period). The learning
problem is unsupervised (eq. 5.28): the learner is a REGNN
(:class:`~innerloop.engine.regnn.REGNN`) trained on minus the sum-rate of eq. 5.26.
"""

from __future__ import annotations

import math

import torch

from innerloop.engine.errors import ConfigError
from innerloop.engine.tasks.base import TaskBatch, TaskFamily


class PowerControl(TaskFamily):
    """Periods of a dynamic interference network; points are time slots of Rayleigh-faded channels."""

    name = "power-control"
    loss = "negative_sum_rate"

    def __init__(self, shots: int = 10, queries: int = 50, min_links: int = 5, max_links: int = 10,
                 spacing: float = 3.0, near: float = 1.0, far: float = 3.0, path_loss: float = 3.0,
                 snr_db: float = 20.0, filter_taps: int = 3) -> None:
        super().__init__(shots, queries)
        for label, value in (("min_links", min_links), ("max_links", max_links), ("filter_taps", filter_taps)):
            if int(value) != value or value < 1:
                raise ConfigError(f"{label} must be a positive integer, got {value}", f"e.g. {label}=5")
        if min_links > max_links or min_links < 2:
            raise ConfigError(f"need 2 <= min_links <= max_links, got {min_links} and {max_links}",
                              "e.g. min_links=5 max_links=10")
        if not (0 < near <= far and spacing > 0 and path_loss > 0 and math.isfinite(snr_db)):
            raise ConfigError(f"need 0 < near <= far, spacing > 0, path_loss > 0 and a finite snr_db; got near={near}, "
                              f"far={far}, spacing={spacing}, path_loss={path_loss}, snr_db={snr_db}",
                              "e.g. near=1 far=3 spacing=5 path_loss=3 snr_db=20")
        self.min_links, self.max_links, self.filter_taps = int(min_links), int(max_links), int(filter_taps)
        self.spacing, self.near, self.far = float(spacing), float(near), float(far)
        self.path_loss, self.snr_db = float(path_loss), float(snr_db)

    @property
    def input_dim(self) -> int:  # type: ignore[override]
        return self.max_links ** 2

    @property
    def output_dim(self) -> int:  # type: ignore[override]
        return self.max_links

    @property
    def noise_power(self) -> float:
        return 10 ** (-self.snr_db / 10)

    def topologies(self, num_tasks: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(large-scale gains [B, V_max, V_max] with [j, i] from transmitter j to receiver i, zero on
        padded links; link mask [B, V_max])."""
        links = torch.randint(self.min_links, self.max_links + 1, (num_tasks,), generator=generator)
        mask = (torch.arange(self.max_links)[None] < links[:, None]).double()
        side = (links.double() * self.spacing ** 2).sqrt()[:, None, None]
        transmitters = torch.rand((num_tasks, self.max_links, 2), generator=generator, dtype=torch.float64) * side
        distance = self.near + (self.far - self.near) * torch.rand((num_tasks, self.max_links, 1), generator=generator,
                                                                   dtype=torch.float64)
        angle = 2 * math.pi * torch.rand((num_tasks, self.max_links, 1), generator=generator, dtype=torch.float64)
        receivers = transmitters + distance * torch.cat([angle.cos(), angle.sin()], dim=-1)
        d = torch.cdist(transmitters, receivers).clamp_min(1.0)
        return d ** -self.path_loss * mask[:, :, None] * mask[:, None, :], mask

    def slots(self, gains: torch.Tensor, count: int, generator: torch.Generator | None) -> torch.Tensor:
        """``count`` slots of channel matrices G(t) [B, count, V_max²] over large-scale ``gains``."""
        fading = -torch.log1p(-torch.rand((gains.shape[0], count, *gains.shape[1:]), generator=generator,
                                          dtype=torch.float64))  # Exp(1): |h|² of Rayleigh fading
        return (gains[:, None] * fading).flatten(start_dim=2)

    def learner(self, hidden: tuple[int, ...], activation: str):
        """The REGNN this family trains (graph filters of ``filter_taps`` taps, features ``hidden``)."""
        from innerloop.engine.regnn import REGNN

        return REGNN(self.max_links, hidden, self.filter_taps, self.noise_power, activation)

    def _sample(self, num_tasks: int, generator: torch.Generator | None, shots: int, queries: int) -> TaskBatch:
        gains, mask = self.topologies(num_tasks, generator)
        x = self.slots(gains, shots + queries, generator).to(torch.get_default_dtype())
        y = mask[:, None].expand(num_tasks, shots + queries, self.max_links).to(torch.get_default_dtype())
        return TaskBatch(x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:],
                         {"links": mask.sum(1).to(torch.get_default_dtype())})

    def config(self) -> dict:
        return {**super().config(), "min_links": self.min_links, "max_links": self.max_links,
                "spacing": self.spacing, "near": self.near, "far": self.far, "path_loss": self.path_loss,
                "snr_db": self.snr_db, "filter_taps": self.filter_taps}
