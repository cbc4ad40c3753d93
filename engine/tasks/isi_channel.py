"""BPSK over a finite-memory intersymbol-interference channel, for learned Viterbi detection
(monograph §7.3: data-driven branch metrics [198] and their meta-learning [110]).

A task is one block-fading channel: L = ``memory`` real taps h = g ⊙ √p / ‖g ⊙ √p‖ with
g_l ~ N(0, 1) and the exponential power-delay profile p_l ∝ exp(−``decay``·l), normalized to
‖h‖ = 1 so that every channel has the same received energy and tasks differ in shape only.
Bits b_t are uniform, symbols s_t = 2b_t − 1, and the receiver sees

    y_t = A·tanh(u_t / A) + w_t,   u_t = Σ_{l<L} h_l s_{t−l},   w_t ~ N(0, σ²),  σ² = 10^(−snr_db/10),

with A = ``saturation`` the clipping level of the receiver front end (``inf``: the linear
channel). A point is one time step, in one of two views:

* ``view="classifier"`` (ViterbiNet [198]): x = y_t [1], labelled with the channel state
  (s_t, …, s_{t−L+1}) as the index of :mod:`~innerloop.engine.viterbi` (2^L classes), so a
  classifier of p(state | y_t) gives the Viterbi branch metrics;
* ``view="channel"``: x = the state's symbols (s_t, …, s_{t−L+1}) [L], y = y_t [1], so a
  regressor learns the noiseless channel output f(s) ≈ A·tanh(u/A) and the branch metric is the
  Gaussian log-likelihood −(y_t − f(s))²/2σ².

The support set is a block of ``shots`` pilots, the query set the ``queries`` data symbols that
follow it, in time order.
"""

from __future__ import annotations

import math

import torch

from innerloop.engine.errors import ConfigError
from innerloop.engine.tasks.base import TaskBatch, TaskFamily
from innerloop.engine.viterbi import state_count, state_symbols, states_of

VIEWS = ("classifier", "channel")


class ISIChannel(TaskFamily):
    """BPSK through one random finite-memory ISI channel with a saturating receiver; states as labels."""

    name = "isi-channel"

    def __init__(self, shots: int = 32, queries: int = 256, memory: int = 4, decay: float = 0.5,
                 snr_db: float = 14.0, saturation: float = 1.0, view: str = "classifier") -> None:
        super().__init__(shots, queries)
        if view not in VIEWS:
            raise ConfigError(f"unknown isi-channel view '{view}'", f"choose one of: {', '.join(VIEWS)}")
        self.view = view
        try:
            decay, snr_db, saturation = float(decay), float(snr_db), float(saturation)  # "inf" from the CLI too
        except (TypeError, ValueError):
            raise ConfigError(f"decay, snr_db and saturation must be numbers; got {decay!r}, {snr_db!r}, "
                              f"{saturation!r}", "e.g. decay=0.5 snr_db=14 saturation=inf") from None
        if isinstance(memory, bool) or not isinstance(memory, int) or not 1 <= memory <= 8:
            raise ConfigError(f"memory must be an integer in 1..8 (2^memory states), got {memory!r}", "e.g. memory=4")
        if not (math.isfinite(decay) and decay >= 0 and math.isfinite(snr_db) and saturation > 0):
            raise ConfigError(f"ISIChannel needs decay >= 0, a finite snr_db and saturation > 0 (inf: linear); got "
                              f"decay={decay}, snr_db={snr_db}, saturation={saturation}",
                              "e.g. decay=0.5 snr_db=14 saturation=1")
        self.memory, self.decay, self.snr_db, self.saturation = memory, decay, snr_db, saturation

    @property
    def loss(self) -> str:  # type: ignore[override]
        return "cross_entropy" if self.view == "classifier" else "mse"

    @property
    def input_dim(self) -> int:  # type: ignore[override]
        return 1 if self.view == "classifier" else self.memory

    @property
    def output_dim(self) -> int:  # type: ignore[override]
        return state_count(self.memory) if self.view == "classifier" else 1

    @property
    def noise_var(self) -> float:
        """σ² = 10^(−snr_db/10) for unit received energy ‖h‖² = 1."""
        return 10 ** (-self.snr_db / 10)

    def profile(self) -> torch.Tensor:
        """The power-delay profile p [L], p_l ∝ exp(−decay·l), Σ p_l = 1."""
        power = torch.exp(-self.decay * torch.arange(self.memory, dtype=torch.float64))
        return power / power.sum()

    def front_end(self, clean: torch.Tensor) -> torch.Tensor:
        """A·tanh(u / A): the saturating receiver (identity for A = inf)."""
        if math.isinf(self.saturation):
            return clean
        return self.saturation * torch.tanh(clean / self.saturation)

    def noiseless(self, taps: torch.Tensor) -> torch.Tensor:
        """The noiseless output A·tanh(Σ_l h_l s_l / A) of every state, [B, 2^L], for taps [B, L]."""
        return self.front_end(taps.double() @ state_symbols(self.memory).T)

    def draw_taps(self, num_tasks: int, generator: torch.Generator | None) -> torch.Tensor:
        """Taps [B, L]: g ⊙ √p normalized to ‖h‖ = 1, g ~ N(0, I)."""
        taps = torch.randn((num_tasks, self.memory), generator=generator, dtype=torch.float64) * self.profile().sqrt()
        return taps / taps.norm(dim=1, keepdim=True)

    def drift(self, taps: torch.Tensor, correlation: float, generator: torch.Generator | None) -> torch.Tensor:
        """The taps of the next block of a slowly varying channel: ρ·h + √(1 − ρ²)·(g ⊙ √p), renormalized
        to ‖h‖ = 1 (a first-order autoregressive drift with correlation ρ = ``correlation``)."""
        if not 0 <= correlation <= 1:
            raise ConfigError(f"the block correlation must lie in [0, 1], got {correlation}", "e.g. 0.95")
        innovation = self.draw_taps(taps.shape[0], generator)
        taps = correlation * taps.double() + math.sqrt(1 - correlation ** 2) * innovation
        return taps / taps.norm(dim=1, keepdim=True)

    def transmit(self, taps: torch.Tensor, generator: torch.Generator | None, shots: int, queries: int) -> TaskBatch:
        """A block over the channels with taps [B, L]: ``shots`` pilots, then ``queries`` data symbols."""
        num_tasks = taps.shape[0]
        bits = torch.randint(2, (num_tasks, self.memory - 1 + shots + queries), generator=generator)
        states = states_of(bits, self.memory)
        noise = torch.randn(states.shape, generator=generator, dtype=torch.float64)
        received = self.noiseless(taps).gather(1, states) + math.sqrt(self.noise_var) * noise
        received = received[..., None].to(torch.get_default_dtype())
        params = {f"tap{lag}": taps[:, lag].to(torch.get_default_dtype()) for lag in range(self.memory)}
        if self.view == "classifier":
            x, y = received, states
        else:
            x, y = state_symbols(self.memory, torch.get_default_dtype())[states], received
        return TaskBatch(x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:], params)

    def _sample(self, num_tasks: int, generator: torch.Generator | None, shots: int, queries: int) -> TaskBatch:
        return self.transmit(self.draw_taps(num_tasks, generator), generator, shots, queries)

    def config(self) -> dict:
        return {**super().config(), "memory": self.memory, "decay": self.decay, "snr_db": self.snr_db,
                "saturation": self.saturation, "view": self.view}
