"""Random-edge graph neural network for power control (monograph §5.5, eq. 5.27; Eisen & Ribeiro).

Layer l maps node features Z_{l−1} [V, F_{l−1}] through a graph filter of K taps on the graph shift
S = G/‖G‖_F (the slot's channel matrix, scaled so that ‖S‖₂ <= 1 keeps its powers bounded):

    Z_l = σ( Σ_{k<K} S^k·Z_{l−1}·A_{l,k} + b_l ),         A_{l,k} ∈ R^{F_{l−1}×F_l},

with node inputs Z_0 = [1, log₁₀(1 + g_{i,i}/σ²)] (a constant and link i's own SNR in bels; with
the constant alone the network saw the direct links only through S and, in our trials, collapsed
to full power) and the last layer a single feature squashed to a transmit power
p = sigmoid(Z_L) ∈ (0, 1) per link. The edge weights are the random channel, so
the same filters serve any number of links and any topology, and the map is permutation
equivariant. Parameters are ``layer{l}.weight`` [K, F_{l−1}, F_l] and ``layer{l}.bias`` [F_l], so
modular meta-learning can pick filters layer by layer.

The learner's objective is minus the slot-averaged sum-rate (eqs. 5.26, 5.28) of the powers it
chooses, with interference treated as noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from innerloop.engine.errors import ConfigError, ShapeError, unknown_name
from innerloop.engine.models import ACTIVATIONS
from innerloop.engine.params import Params, check_shapes, count

OBJECTIVE = "negative_sum_rate"


def sum_rate(gains: torch.Tensor, powers: torch.Tensor, noise_power: float) -> torch.Tensor:
    """Eq. 5.26: Σ_j log₂(1 + g_{j,j}p_j / (σ² + Σ_{i≠j} g_{i,j}p_i)) for channel matrices
    [..., V, V] ([j, i] from transmitter j to receiver i) and powers [..., V] → [...]."""
    received = torch.einsum("...ij,...i->...j", gains, powers)  # Σ_i g_{i,j} p_i at receiver j
    wanted = torch.diagonal(gains, dim1=-2, dim2=-1) * powers
    return torch.log2(1 + wanted / (noise_power + received - wanted)).sum(-1)


class REGNN:
    """Graph filters over the channel matrix; ``hidden`` feature widths, ``taps`` filter taps."""

    objective_name = OBJECTIVE
    predicts_targets = False  # its outputs are powers and its y the link mask: no prediction error to report

    def __init__(self, links: int, hidden: Sequence[int] = (8, 8), taps: int = 3, noise_power: float = 0.01,
                 activation: str = "relu") -> None:
        widths = [2, *hidden, 1]
        if any(int(w) != w or w < 1 for w in widths) or int(taps) != taps or taps < 1 or links < 1:
            raise ConfigError(f"REGNN needs positive integer widths, taps and links; got hidden={list(hidden)}, "
                              f"taps={taps}, links={links}", "e.g. REGNN(10, (8, 8), taps=3)")
        if activation not in ACTIVATIONS:
            raise unknown_name("activation", activation, ACTIVATIONS)
        if not noise_power > 0:
            raise ConfigError(f"noise_power must be > 0, got {noise_power}", "e.g. 0.01 (20 dB)")
        self.links, self.taps, self.noise_power = int(links), int(taps), float(noise_power)
        self.widths, self.activation = [int(w) for w in widths], activation
        self.features = list(zip(self.widths[:-1], self.widths[1:]))  # (F_{l−1}, F_l) per layer
        self.num_layers = len(self.features)
        self.in_dim, self.out_dim = self.links ** 2, self.links

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """``layer{l}.weight`` [K, F_{l−1}, F_l] (the filter taps A_{l,k}) and ``layer{l}.bias`` [F_l]."""
        return {name: shape for layer, (fan_in, fan_out) in enumerate(self.features)
                for name, shape in ((f"layer{layer}.weight", (self.taps, fan_in, fan_out)),
                                    (f"layer{layer}.bias", (fan_out,)))}

    def num_params(self) -> int:
        return count(self.shapes())

    def init(self, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
             device: torch.device | str = "cpu") -> Params:
        """Taps and biases U(−1/√(K·F_in), 1/√(K·F_in)) (torch.nn.Linear's rule over the K taps)."""
        params = {}
        for layer, (fan_in, _) in enumerate(self.features):
            bound = 1 / math.sqrt(self.taps * fan_in)
            for kind in ("weight", "bias"):
                name = f"layer{layer}.{kind}"
                draw = torch.rand(self.shapes()[name], generator=generator, dtype=torch.float64)
                params[name] = ((2 * draw - 1) * bound).to(dtype=dtype or torch.get_default_dtype(), device=device)
        return params

    def graphs(self, x: torch.Tensor) -> torch.Tensor:
        """Channel matrices [..., V, V] from flattened points [..., V²]."""
        if x.shape[-1] != self.in_dim:
            raise ShapeError(f"REGNN over {self.links} links takes points of {self.in_dim} features (a flattened "
                             f"channel matrix), got {x.shape[-1]}", "build it with the task family's max_links")
        return x.reshape(*x.shape[:-1], self.links, self.links)

    def apply(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Transmit powers [..., V] in (0, 1) for channel matrices x [..., V²] (eq. 5.27)."""
        gains = self.graphs(x)
        shift = gains / gains.flatten(start_dim=-2).norm(dim=-1).clamp_min(1e-30)[..., None, None]
        act = ACTIVATIONS[self.activation]
        direct = torch.diagonal(gains, dim1=-2, dim2=-1)
        z = torch.stack([torch.ones_like(direct), torch.log10(1 + direct / self.noise_power)], dim=-1)
        for layer in range(self.num_layers):
            weight, bias = params[f"layer{layer}.weight"], params[f"layer{layer}.bias"]
            diffused, total = z, z @ weight[0]
            for tap in range(1, self.taps):
                diffused = shift.transpose(-1, -2) @ diffused  # S^k Z: node i gathers from its interferers
                total = total + diffused @ weight[tap]
            z = total + bias
            z = act(z) if layer < self.num_layers - 1 else z
        return torch.sigmoid(z[..., 0])

    def objective(self, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """−(1/N)·Σ_t c(f(G(t)|ϕ)) of one task's N slots (eq. 5.28); ``y`` is the link mask, whose
        padded links have no channel and so add nothing."""
        rates = sum_rate(self.graphs(x), self.apply(params, x) * y, self.noise_power)
        return -rates.mean()

    def check_params(self, params: Params, task_axis: bool = False) -> None:
        check_shapes(self.shapes(), params, repr(self), task_axis)

    def config(self) -> dict:
        return {"links": self.links, "hidden": self.widths[1:-1], "taps": self.taps,
                "noise_power": self.noise_power, "activation": self.activation}

    def __repr__(self) -> str:
        return f"REGNN(links={self.links}, hidden={tuple(self.widths[1:-1])}, taps={self.taps})"
