"""A communication link trained without a channel model (monograph §7.1.1, Figs. 7.1–7.2; Park et
al. [163], after Aoudia & Hoydis' model-free end-to-end training).

The decoder p_ϕR(m|y) learns as in :class:`~innerloop.engine.link_autoencoder.LinkAutoencoder`:
known (pilot) messages give the cross-entropy l = −log p_ϕR(m|y) (eq. 5.13) and its gradient. The
encoder cannot differentiate through the channel — there is no model of it. It is a Gaussian
policy instead: for message m it sends x̃ = c_ϕT(m) + p, where c_ϕT(m) is the power-normalized
codeword (‖c‖² = uses) and p ~ CN(0, σ²I) is exploration (σ = ``exploration``; each point carries
its own p). The receiver feeds every message's loss l back, and the encoder follows the
score-function (REINFORCE) estimate

    ∇_ϕT E[l] ≈ (1/K)·Σ_i (l_i − b_i)·∇_ϕT log π(x̃_i | m_i),   log π(x̃|m) = −‖x̃ − c_ϕT(m)‖²/σ² + const,

with the leave-one-out baseline b_i = mean_{j≠i} l_j, which lowers the variance and keeps the
estimate unbiased. The model's objective is the surrogate

    S(ϕ) = (1/K)·Σ_i [ l_i + sg(l_i − b_i)·(log π_i − sg(log π_i)) ]

(sg: stop-gradient; the receiver sees y = h ∗ sg(x̃) + w). Its value is the mean cross-entropy.
Its gradient is ∇_ϕR of the cross-entropy for the decoder and the REINFORCE estimate for the
encoder. So every algorithm of the suite meta-learns the link unchanged. Points without
exploration (p = 0, e.g. data after training) give the encoder no gradient, and neither does σ = 0
(a fixed encoder).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from innerloop.engine.errors import ConfigError
from innerloop.engine.link_autoencoder import LinkAutoencoder
from innerloop.engine.params import Params
from innerloop.engine.policy_gradient import leave_one_out_advantages, score_surrogate

OBJECTIVE = "model_free_cross_entropy"


class ModelFreeLink:
    """Gaussian-policy encoder → h ∗ x̃ + w → decoder, trained on the surrogate of the module docstring.

    Points are x = [one-hot(m); Re h; Im h; Re w; Im w; Re p; Im p]: the link autoencoder's points
    followed by the exploration p [uses] added to the codeword.
    """

    objective_name = OBJECTIVE

    def __init__(self, messages: int, uses: int, taps: int, hidden: Sequence[int] = (40, 40),
                 activation: str = "relu", receiver: str = "mlp", equalizer_taps: int = 3, context_dim: int = 0,
                 exploration: float = 0.15) -> None:
        if not 0 <= exploration < 1:
            raise ConfigError(f"exploration must be in [0, 1), got {exploration}",
                              "e.g. exploration=0.15 (the std of the transmitter's perturbation per use)")
        self.link = LinkAutoencoder(messages, uses, taps, hidden, activation, receiver, equalizer_taps, context_dim)
        self.exploration = float(exploration)
        self.messages, self.uses = self.link.messages, self.link.uses
        self.in_dim = self.link.in_dim + 2 * self.uses
        self.out_dim = self.link.out_dim

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return self.link.shapes()

    def num_params(self) -> int:
        return self.link.num_params()

    def init(self, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
             device: torch.device | str = "cpu") -> Params:
        """The link's parameters, with the encoder's first layer drawn U(−1, 1) like an embedding.

        A one-hot message activates one input, so torch's U(±1/√messages) rule would start every
        codeword from nearly the bias. With 256 messages and hidden (64, 64) the median distance to
        the nearest codeword is then 0.14; with this rule it is 1.07 (codewords have norm √8 = 2.8)."""
        params = self.link.init(generator, dtype, device)
        name = "encoder.layer0.weight"
        u = torch.rand(params[name].shape, generator=generator, dtype=torch.float64)
        params[name] = (2 * u - 1).to(params[name])
        return params

    def check_params(self, params: Params, task_axis: bool = False) -> None:
        self.link.check_params(params, task_axis)

    def _sent(self, params: Params, x: torch.Tensor
              ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """((Re c, Im c), (Re x̃, Im x̃)): the codewords and the sent symbols x̃ = c + p."""
        code = self.link.codewords(params, x[..., :self.messages])
        explore = x[..., self.link.in_dim:]
        return code, (code[0] + explore[..., :self.uses], code[1] + explore[..., self.uses:])

    def apply(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Message logits [..., messages] of the decoder for the points' sent symbols."""
        _, (real, imag) = self._sent(params, x)
        return self.link.decode(params, self.link.channel(x, real.detach(), imag.detach()))

    def objective(self, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The surrogate S(ϕ) of one task's points x [K, in_dim] and messages y [K]."""
        (code_real, code_imag), (real, imag) = self._sent(params, x)
        real, imag = real.detach(), imag.detach()
        logits = self.link.decode(params, self.link.channel(x, real, imag))
        losses = F.cross_entropy(logits, y.long(), reduction="none")
        if self.exploration == 0:
            return losses.mean()
        log_policy = -((real - code_real) ** 2 + (imag - code_imag) ** 2).sum(-1) / self.exploration ** 2
        return (losses + score_surrogate(log_policy, leave_one_out_advantages(losses.detach()))).mean()

    def config(self) -> dict:
        return {**self.link.config(), "exploration": self.exploration, "training": "model-free"}

    def __repr__(self) -> str:
        return f"ModelFreeLink({self.link!r}, exploration={self.exploration})"
