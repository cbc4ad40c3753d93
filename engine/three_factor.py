"""The three-factor learning rule of spiking learners (monograph eqs. 6.4–6.5).

    ∂L/∂w_ij = Σ_t e_{i,t} · Θ′(u_{i,t} − ϑ) · pre_{j,t}
               error       post             presynaptic trace (the neuron's own kernel)

for a :class:`~innerloop.engine.spiking.SpikingMLP` whose readout is the output spike count
c_i = Σ_t s_{i,t}: the output error is e_{i,t} = ∂L/∂c_i at every step. With the reset
detached this is exactly the surrogate BPTT gradient of the output layer. Hidden layers get
their error from the layer above at the same step (no temporal credit), selectable:

* ``single_step``        e^{(l−1)}_t = (e^{(l)}_t ⊙ post^{(l)}_t) W_l     (spatial backprop)
* ``feedback_alignment`` the same with a fixed random matrix B_l in place of W_l
* ``readout_only``       only the output synapses are plastic (hidden gradients are 0)

(``bptt``, autograd through time, is the reference the backend offers beside these.)
This is the accumulated (eligibility-trace) form of the rule.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from innerloop.engine.errors import unknown_name
from innerloop.engine.params import Params
from innerloop.engine.spiking import Record, SpikingMLP

HIDDEN_ERRORS = ("single_step", "feedback_alignment", "readout_only", "bptt")


def readout_loss(counts: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-task loss [B] of spike counts [B, K, out]: cross-entropy on counts as logits, or MSE."""
    if loss == "cross_entropy":
        return F.cross_entropy(counts.transpose(1, 2), y.long(), reduction="none").mean(dim=1)
    return ((counts - y) ** 2).flatten(1).mean(dim=1)


def output_error(counts: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """∂L_b/∂c [B, K, out] of :func:`readout_loss`."""
    points = counts.shape[1]
    if loss == "cross_entropy":
        return (torch.softmax(counts, dim=-1) - F.one_hot(y.long(), counts.shape[-1]).to(counts.dtype)) / points
    return 2.0 * (counts - y) / (points * counts.shape[-1])


def feedback_matrices(model: SpikingMLP, generator: torch.Generator, dtype: torch.dtype,
                      device: torch.device | str) -> list[torch.Tensor]:
    """Fixed random feedback B_l (shaped like W_l, scaled like the init) for layers l ≥ 1."""
    shapes = list(model.shapes().values())
    return [(torch.randn(shape, generator=generator, dtype=torch.float64) / shape[1] ** 0.5)
            .to(dtype=dtype, device=device) for shape in shapes[1:]]


def three_factor_gradient(model: SpikingMLP, params: Params, records: list[Record], y: torch.Tensor, loss: str,
                          hidden_error: str = "single_step", feedback: list[torch.Tensor] | None = None) -> Params:
    """Σ_t e·post·pre per layer, batched over tasks (eq. 6.4), from a simulation's records."""
    if hidden_error not in HIDDEN_ERRORS[:-1]:
        raise unknown_name("hidden_error", hidden_error, HIDDEN_ERRORS[:-1])
    error = output_error(model.readout(records).detach(), y, loss).unsqueeze(2).expand_as(records[-1].spikes)
    grads: Params = {}
    for layer in reversed(range(model.num_layers)):
        record = records[layer]
        factor = error * model.surrogate_derivative(record.membranes.detach())
        grads[f"layer{layer}.weight"] = torch.einsum("bkti,bktj->bij", factor, record.pre)
        if layer == 0:
            break
        if hidden_error == "readout_only":
            for lower in range(layer):
                name = f"layer{lower}.weight"
                grads[name] = torch.zeros_like(params[name].expand(factor.shape[0], *params[name].shape[-2:]))
            break
        if hidden_error == "single_step":
            weight = params[f"layer{layer}.weight"]
            error = torch.einsum("bkti,bij->bktj", factor, weight.expand(factor.shape[0], *weight.shape[-2:]))
        else:
            error = torch.einsum("bkti,ij->bktj", factor, feedback[layer - 1])
    return {name: grads[name] for name in model.shapes()}
