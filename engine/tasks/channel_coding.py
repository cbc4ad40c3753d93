"""Learning an encoder and decoder for a channel (monograph §5.3, eqs. 5.11–5.13; Park et al. [118]).

A task is one channel realization h: a frequency-selective Rayleigh block-fading channel with
``taps`` taps h_t ~ CN(0, 1/taps) (eq. 5.11: y = h ∗ x + w, w ~ CN(0, N0), N0 = 10^(−snr_db/10)).
A data point is one message m, uniform over 2^``bits``; it is sent over ``uses`` complex
channel uses. The learner (:class:`~innerloop.engine.link_autoencoder.LinkAutoencoder`) is the
whole link — encoder, the differentiable channel, decoder — so a point carries what the channel
simulator needs besides the message: x = [one-hot(m); Re h; Im h; Re w; Im w] (the decoder never
sees h), y = m, and the loss is the cross-entropy of eq. 5.13. Support and query points are fresh
messages and noise over the same channel. ``receiver="rtn"`` gives the learner a radio transformer
network (an equalizer with ``equalizer_taps`` taps) in front of its decoder; ``context_dim`` gives
its decoder a context vector to adapt. :class:`ModelFreeChannelCoding` is the family for a link
trained without differentiating the channel (monograph §7.1.1).
"""

from __future__ import annotations

import copy
import math

import torch

from innerloop.engine.errors import ConfigError
from innerloop.engine.tasks.base import TaskBatch, TaskFamily


class ChannelCoding(TaskFamily):
    """Messages over one Rayleigh multi-tap channel, for an end-to-end encoder/channel/decoder learner."""

    name = "channel-coding"
    loss = "cross_entropy"

    def __init__(self, shots: int = 16, queries: int = 64, bits: int = 4, uses: int = 4, taps: int = 3,
                 snr_db: float = 15.0, receiver: str = "mlp", equalizer_taps: int = 3, context_dim: int = 0) -> None:
        super().__init__(shots, queries)
        for label, value in (("bits", bits), ("uses", uses), ("taps", taps)):
            if int(value) != value or value < 1:
                raise ConfigError(f"{label} must be a positive integer, got {value}", f"e.g. {label}=4")
        if bits > 10 or not math.isfinite(snr_db):
            raise ConfigError(f"ChannelCoding needs bits <= 10 (2^bits messages) and a finite snr_db; got {bits}, "
                              f"{snr_db}", "e.g. bits=4 snr_db=15")
        self.bits, self.uses, self.taps, self.snr_db = int(bits), int(uses), int(taps), float(snr_db)
        from innerloop.engine.link_autoencoder import check_receiver

        check_receiver(receiver, equalizer_taps, context_dim)  # a bad --task-option fails before training
        self.receiver, self.equalizer_taps, self.context_dim = receiver, int(equalizer_taps), int(context_dim)

    @property
    def messages(self) -> int:
        return 2 ** self.bits

    @property
    def received(self) -> int:
        """Complex samples at the receiver: the full convolution, uses + taps − 1."""
        return self.uses + self.taps - 1

    @property
    def input_dim(self) -> int:  # type: ignore[override]
        return self.messages + 2 * self.taps + 2 * self.received

    @property
    def output_dim(self) -> int:  # type: ignore[override]
        return self.messages

    @property
    def noise_var(self) -> float:
        return 10 ** (-self.snr_db / 10)

    def channels(self, num_tasks: int, generator: torch.Generator | None) -> torch.Tensor:
        """h [B, taps] complex, each tap CN(0, 1/taps)."""
        parts = torch.randn((2, num_tasks, self.taps), generator=generator, dtype=torch.float64)
        return torch.complex(*parts) / math.sqrt(2 * self.taps)

    def drifting_channels(self, frames: int, rho: float, generator: torch.Generator | None) -> torch.Tensor:
        """h_1, …, h_frames [frames, taps] of an AR(1) Rayleigh block-fading process (monograph §7.1.1's
        time-correlated channel, [163]): h_1 as :meth:`channels`, h_t = ρ·h_{t−1} + √(1 − ρ²)·z_t with
        z_t drawn like h_1, so every h_t has the same CN(0, 1/taps) taps and corr(h_t, h_{t−1}) = ρ."""
        if not 0 <= rho <= 1:
            raise ConfigError(f"the frame-to-frame correlation rho must be in [0, 1], got {rho}", "e.g. rho=0.9")
        if int(frames) != frames or frames < 1:
            raise ConfigError(f"frames must be a positive integer, got {frames}", "e.g. frames=100")
        fresh = self.channels(int(frames), generator)
        drifted = [fresh[0]]
        for z in fresh[1:]:
            drifted.append(rho * drifted[-1] + (1 - rho ** 2) ** 0.5 * z)
        return torch.stack(drifted)

    def transmissions(self, channels: torch.Tensor, count: int, generator: torch.Generator | None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` fresh messages and noise over each channel of ``channels`` [B, taps]: points x
        [B, count, input_dim] and messages y [B, count]."""
        b = channels.shape[0]
        labels = torch.randint(self.messages, (b, count), generator=generator)
        noise = torch.randn((b, count, 2 * self.received), generator=generator, dtype=torch.float64)
        h = torch.cat([channels.real, channels.imag], dim=-1)[:, None].expand(b, count, 2 * self.taps)
        one_hot = torch.nn.functional.one_hot(labels, self.messages).double()
        x = torch.cat([one_hot, h, math.sqrt(self.noise_var / 2) * noise], dim=-1)
        return x.to(torch.get_default_dtype()), labels

    def learner(self, hidden: tuple[int, ...], activation: str):
        """The end-to-end link this family trains: encoder, channel, decoder."""
        from innerloop.engine.link_autoencoder import LinkAutoencoder

        return LinkAutoencoder(self.messages, self.uses, self.taps, hidden, activation, self.receiver,
                               self.equalizer_taps, self.context_dim)

    def _sample(self, num_tasks: int, generator: torch.Generator | None, shots: int, queries: int) -> TaskBatch:
        channels = self.channels(num_tasks, generator)
        x, y = self.transmissions(channels, shots + queries, generator)
        params = {"channel_real": channels.real, "channel_imag": channels.imag}
        params = {k: v.to(torch.get_default_dtype()) for k, v in params.items()}
        return TaskBatch(x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:], params)

    def config(self) -> dict:
        return {**super().config(), "bits": self.bits, "uses": self.uses, "taps": self.taps, "snr_db": self.snr_db,
                "receiver": self.receiver, "equalizer_taps": self.equalizer_taps, "context_dim": self.context_dim}


class ModelFreeChannelCoding(ChannelCoding):
    """Messages over one Rayleigh multi-tap channel, for a link trained without a channel model.

    Monograph §7.1.1's setting ([163], Figs. 7.1–7.2): 8 bits over 8 complex channel uses of a 3-tap
    channel at 10 dB, 8 pilot messages per frame as the support set. Each point also carries the
    transmitter's exploration p (see :class:`~innerloop.engine.model_free_link.ModelFreeLink`), and
    the learner never differentiates the channel.
    """

    name = "model-free-link"

    def __init__(self, shots: int = 8, queries: int = 248, bits: int = 8, uses: int = 8, taps: int = 3,
                 snr_db: float = 10.0, receiver: str = "mlp", equalizer_taps: int = 3, context_dim: int = 8,
                 exploration: float = 0.15) -> None:
        super().__init__(shots, queries, bits, uses, taps, snr_db, receiver, equalizer_taps, context_dim)
        if not 0 <= exploration < 1:
            raise ConfigError(f"exploration must be in [0, 1), got {exploration}",
                              "e.g. exploration=0.15 (0: points without the transmitter's perturbation)")
        self.exploration = float(exploration)

    @property
    def input_dim(self) -> int:  # type: ignore[override]
        return super().input_dim + 2 * self.uses

    def transmissions(self, channels: torch.Tensor, count: int, generator: torch.Generator | None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`ChannelCoding.transmissions` with the transmitter's exploration p ~ CN(0, σ²I)
        [uses] appended to each point (σ = ``exploration``; p = 0 when it is 0)."""
        x, labels = super().transmissions(channels, count, generator)
        explore = torch.randn((*labels.shape, 2 * self.uses), generator=generator, dtype=torch.float64)
        return torch.cat([x, (self.exploration / math.sqrt(2) * explore).to(x.dtype)], dim=-1), labels

    def without_exploration(self) -> ModelFreeChannelCoding:
        """The same family sending its codewords unperturbed (p = 0): data after training, test frames."""
        quiet = copy.copy(self)
        quiet.exploration = 0.0
        return quiet

    def learner(self, hidden: tuple[int, ...], activation: str):
        """The link with a Gaussian-policy encoder, trained without differentiating the channel."""
        from innerloop.engine.model_free_link import ModelFreeLink

        return ModelFreeLink(self.messages, self.uses, self.taps, hidden, activation, self.receiver,
                             self.equalizer_taps, self.context_dim, exploration=self.exploration)

    def config(self) -> dict:
        return {**super().config(), "exploration": self.exploration}
