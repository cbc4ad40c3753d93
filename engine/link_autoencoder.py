"""A communication link as one learner: encoder, differentiable channel, decoder (monograph §5.3,
Fig. 5.6, eqs. 5.11–5.13; O'Shea & Hoydis' autoencoder view).

The encoder f_ϕT maps the one-hot message s_m to ``uses`` complex symbols x, normalized to unit
average energy per use (x ← √n·x/‖x‖); the channel applies eq. 5.11, y = h ∗ x + w (full
convolution with the point's taps h, plus the point's noise w, both read from the input — see
:class:`~innerloop.engine.tasks.channel_coding.ChannelCoding`); the decoder p_ϕR(m|y) maps
[Re y; Im y] to message logits. Encoder and decoder are MLPs (parameters ``encoder.*`` and
``decoder.*``), so ϕ = (ϕT, ϕR) is one parameter dict and every gradient-lens algorithm —
MAML's one-step update of eq. 5.16 included — adapts the whole link through the channel.

``context_dim = c > 0`` gives the receiver a context vector φ_R ∈ R^c (parameter ``context``,
starting at 0) appended to the decoder's input: p_ϕR(m | [y; φ_R]). Adapting φ_R alone in the inner
loop (``MAML(..., inner_params=["context"])``) is CAVIA's mechanism (monograph eq. 2.39) with a
meta-learned start — a few numbers to fit a new channel from a handful of pilots, where adapting
every decoder weight needs many.

``receiver="rtn"`` puts a radio transformer network [115] in front of the decoder (§5.3): an
estimator MLP (parameters ``estimator.*``) reads y and outputs an L-tap complex filter
w = δ + g(y) (the identity filter plus a learned correction, so a fresh estimator starts near
"no equalization"), and the decoder sees ȳ = y ∗ w — an explicit, learned channel equalizer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from innerloop.engine.errors import ConfigError
from innerloop.engine.models import MLP
from innerloop.engine.params import Params, check_shapes, count

RECEIVERS = ("mlp", "rtn")
CONTEXT = "context"


def check_receiver(receiver: str, equalizer_taps: int, context_dim: int = 0) -> None:
    """Raise ConfigError for an unknown receiver, a non-positive equalizer length or a negative
    context size."""
    if receiver not in RECEIVERS:
        raise ConfigError(f"unknown receiver {receiver!r}", f"choose one of {', '.join(RECEIVERS)} "
                          "(on the command line: --task-option receiver=rtn)")
    if int(equalizer_taps) != equalizer_taps or equalizer_taps < 1:
        raise ConfigError(f"equalizer_taps must be a positive integer, got {equalizer_taps}", "e.g. 3")
    if int(context_dim) != context_dim or context_dim < 0:
        raise ConfigError(f"context_dim must be an integer >= 0, got {context_dim}", "e.g. 8 (0: no context)")


def convolve(a_real: torch.Tensor, a_imag: torch.Tensor, taps_real: torch.Tensor,
             taps_imag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The full complex convolution (a ∗ taps)_i = Σ_τ taps_τ·a_{i−τ} along the last axis, length
    len(a) + len(taps) − 1, for signals [..., n] and taps [..., L] (eq. 5.11's h ∗ x)."""
    length = taps_real.shape[-1]
    out_real = out_imag = 0
    for tap in range(length):  # tap τ delays the signal by τ samples
        delay = (tap, length - 1 - tap)
        tr, ti = taps_real[..., tap:tap + 1], taps_imag[..., tap:tap + 1]
        out_real = out_real + torch.nn.functional.pad(tr * a_real - ti * a_imag, delay)
        out_imag = out_imag + torch.nn.functional.pad(tr * a_imag + ti * a_real, delay)
    return out_real, out_imag


def through_channel(x: torch.Tensor, sent_real: torch.Tensor, sent_imag: torch.Tensor, messages: int,
                    taps: int) -> torch.Tensor:
    """[Re y; Im y] [..., 2(uses + taps − 1)] of eq. 5.11, y = h ∗ s + w, for sent symbols s [..., uses]
    and points x = [one-hot(m) (``messages``); Re h; Im h (``taps`` each); Re w; Im w; …]."""
    m, t = messages, taps
    received = sent_real.shape[-1] + taps - 1
    y_real, y_imag = convolve(sent_real, sent_imag, x[..., m:m + t], x[..., m + t:m + 2 * t])
    return torch.cat([y_real, y_imag], dim=-1) + x[..., m + 2 * t:m + 2 * t + 2 * received]


class LinkAutoencoder:
    """Encoder MLP → power normalization → h ∗ x + w → [RTN equalizer →] decoder MLP, for 2^bits messages."""

    def __init__(self, messages: int, uses: int, taps: int, hidden: Sequence[int] = (40, 40),
                 activation: str = "relu", receiver: str = "mlp", equalizer_taps: int = 3,
                 context_dim: int = 0) -> None:
        check_receiver(receiver, equalizer_taps, context_dim)
        self.context_dim = int(context_dim)
        self.messages, self.uses, self.taps = int(messages), int(uses), int(taps)
        self.receiver, self.equalizer_taps = receiver, int(equalizer_taps) if receiver == "rtn" else 0
        self.received = self.uses + self.taps - 1
        decoded = self.received + self.equalizer_taps - 1 if receiver == "rtn" else self.received
        self.encoder = MLP(self.messages, hidden, 2 * self.uses, activation)
        self.decoder = MLP(2 * decoded + self.context_dim, hidden, self.messages, activation)
        self.in_dim = self.messages + 2 * self.taps + 2 * self.received
        self.out_dim = self.messages
        self.parts = {"encoder": self.encoder, "decoder": self.decoder}
        if receiver == "rtn":
            self.parts["estimator"] = MLP(2 * self.received, hidden, 2 * self.equalizer_taps, activation)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {f"{part}.{k}": s for part, net in self.parts.items() for k, s in net.shapes().items()}
        return {**shapes, CONTEXT: (self.context_dim,)} if self.context_dim else shapes

    def num_params(self) -> int:
        return count(self.shapes())

    def init(self, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
             device: torch.device | str = "cpu") -> Params:
        params = {f"{part}.{k}": v for part, net in self.parts.items()
                  for k, v in net.init(generator, dtype=dtype, device=device).items()}
        if self.context_dim:
            params[CONTEXT] = torch.zeros(self.context_dim, dtype=dtype or torch.get_default_dtype(), device=device)
        return params

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
        return self.decode(params, self.received_signal(params, x))

    def decode(self, params: Params, received: torch.Tensor) -> torch.Tensor:
        """Message logits from [Re y; Im y] (equalized first when the receiver is an RTN)."""
        if self.receiver == "rtn":
            received = self.equalized(params, received)
        if self.context_dim:
            context = params[CONTEXT]
            received = torch.cat([received, context.expand(*received.shape[:-1], self.context_dim)], dim=-1)
        return self.decoder.apply(self._part(params, "decoder"), received)

    def equalized(self, params: Params, received: torch.Tensor) -> torch.Tensor:
        """The RTN's [Re ȳ; Im ȳ], ȳ = y ∗ w with w = δ + g(y) from the estimator."""
        correction = self.parts["estimator"].apply(self._part(params, "estimator"), received)
        n, length = self.received, self.equalizer_taps
        identity = torch.nn.functional.one_hot(torch.tensor(0), length).to(correction)
        out_real, out_imag = convolve(received[..., :n], received[..., n:], identity + correction[..., :length],
                                      correction[..., length:])
        return torch.cat([out_real, out_imag], dim=-1)

    def received_signal(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """[Re y; Im y] [..., 2(uses + taps − 1)] of eq. 5.11, y = h ∗ x + w, for points ``x``."""
        return self.channel(x, *self.codewords(params, x[..., :self.messages]))

    def channel(self, x: torch.Tensor, sent_real: torch.Tensor, sent_imag: torch.Tensor) -> torch.Tensor:
        """[Re y; Im y] of eq. 5.11 for the sent symbols and the points' channel and noise."""
        return through_channel(x, sent_real, sent_imag, self.messages, self.taps)

    def check_params(self, params: Params, task_axis: bool = False) -> None:
        check_shapes(self.shapes(), params, repr(self), task_axis)

    def config(self) -> dict:
        return {"messages": self.messages, "uses": self.uses, "taps": self.taps, "receiver": self.receiver,
                "equalizer_taps": self.equalizer_taps, "context_dim": self.context_dim,
                **{part: net.config() for part, net in self.parts.items()}}

    def __repr__(self) -> str:
        return (f"LinkAutoencoder({self.messages} messages, {self.uses} uses, {self.taps} taps, "
                f"hidden={self.encoder.hidden}, receiver={self.receiver!r})")
