"""A communication link as one learner: encoder, differentiable channel, decoder (monograph §5.3,
Fig. 5.6, eqs. 5.11–5.13; O'Shea & Hoydis' autoencoder view).

The encoder f_ϕT maps the one-hot message s_m to ``uses`` complex symbols x, normalized to unit
average energy per use (x ← √n·x/‖x‖); the channel applies eq. 5.11, y = h ∗ x + w (full
convolution with the point's taps h, plus the point's noise w, both read from the input — see
:class:`~innerloop.engine.tasks.channel_coding.ChannelCoding`); the decoder p_ϕR(m|y) maps
[Re y; Im y] to message logits. Encoder and decoder are MLPs (parameters ``encoder.*`` and
``decoder.*``), so ϕ = (ϕT, ϕR) is one parameter dict and every gradient-lens algorithm —
MAML's one-step update of eq. 5.16 included — adapts the whole link through the channel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from innerloop.engine.models import MLP
from innerloop.engine.params import Params, check_shapes, count


class LinkAutoencoder:
    """Encoder MLP → power normalization → h ∗ x + w → decoder MLP, for 2^bits messages."""

    def __init__(self, messages: int, uses: int, taps: int, hidden: Sequence[int] = (40, 40),
                 activation: str = "relu") -> None:
        self.messages, self.uses, self.taps = int(messages), int(uses), int(taps)
        self.received = self.uses + self.taps - 1
        self.encoder = MLP(self.messages, hidden, 2 * self.uses, activation)
        self.decoder = MLP(2 * self.received, hidden, self.messages, activation)
        self.in_dim = self.messages + 2 * self.taps + 2 * self.received
        self.out_dim = self.messages
        self.parts = {"encoder": self.encoder, "decoder": self.decoder}

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {f"{part}.{k}": s for part, net in self.parts.items() for k, s in net.shapes().items()}

    def num_params(self) -> int:
        return count(self.shapes())

    def init(self, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
             device: torch.device | str = "cpu") -> Params:
        return {f"{part}.{k}": v for part, net in self.parts.items()
                for k, v in net.init(generator, dtype=dtype, device=device).items()}

    def _part(self, params: Params, part: str) -> Params:
        prefix = part + "."
        return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}

    def codewords(self, params: Params, one_hot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Re x, Im x) [..., uses] for one-hot messages, with ‖x‖² = uses."""
        code = self.encoder.apply(self._part(params, "encoder"), one_hot)
        code = code * math.sqrt(self.uses) / code.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return code[..., :self.uses], code[..., self.uses:]

    def apply(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Message logits [..., messages] for points x = [one-hot(m); Re h; Im h; Re w; Im w]."""
        return self.decoder.apply(self._part(params, "decoder"), self.received_signal(params, x))

    def received_signal(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """[Re y; Im y] [..., 2(uses + taps − 1)] of eq. 5.11, y = h ∗ x + w, for points ``x``."""
        m, t = self.messages, self.taps
        real, imag = self.codewords(params, x[..., :m])
        h_real, h_imag = x[..., m:m + t], x[..., m + t:m + 2 * t]
        noise = x[..., m + 2 * t:]
        y_real = y_imag = 0
        for tap in range(t):  # y_i = Σ_τ h_τ x_{i−τ}: tap τ delays the codeword by τ samples
            delay = (tap, t - 1 - tap)
            hr, hi = h_real[..., tap:tap + 1], h_imag[..., tap:tap + 1]
            y_real = y_real + torch.nn.functional.pad(hr * real - hi * imag, delay)
            y_imag = y_imag + torch.nn.functional.pad(hr * imag + hi * real, delay)
        return torch.cat([y_real, y_imag], dim=-1) + noise

    def check_params(self, params: Params, task_axis: bool = False) -> None:
        check_shapes(self.shapes(), params, repr(self), task_axis)

    def config(self) -> dict:
        return {"messages": self.messages, "uses": self.uses, "taps": self.taps,
                "encoder": self.encoder.config(), "decoder": self.decoder.config()}

    def __repr__(self) -> str:
        return (f"LinkAutoencoder({self.messages} messages, {self.uses} uses, {self.taps} taps, "
                f"hidden={self.encoder.hidden})")
