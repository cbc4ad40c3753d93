"""The three-factor learning rule of spiking learners (monograph eqs. 6.4–6.5).

    ∂L/∂w_ij = Σ_t e_{i,t} · Θ′(u_{i,t} − ϑ) · pre_{j,t}
               error       post             presynaptic trace (the neuron's own kernel)

for a :class:`~innerloop.engine.spiking.SpikingMLP` whose readout is the output spike count
c_i = Σ_t s_{i,t}: the output error is e_{i,t} = ∂L/∂c_i at every step. With the reset
detached this is exactly the surrogate BPTT gradient of the output layer. With the membrane
readout m_i = (1/T)·Σ_t u_{i,t} (output reset off) the post factor is ∂m/∂u_t = 1/T. Hidden layers get
their error from the layer above at the same step (no temporal credit), selectable:

* ``single_step``        e^{(l−1)}_t = (e^{(l)}_t ⊙ post^{(l)}_t) W_l     (spatial backprop)
* ``feedback_alignment`` the same with a fixed random matrix B_l in place of W_l
* ``readout_only``       only the output synapses are plastic (hidden gradients are 0)

Lateral synapses R_l of a recurrent hidden layer follow the same rule with their own
presynaptic trace, that of the layer's spikes of the previous step:
∂L/∂r_ij ≈ Σ_t e_{i,t} · Θ′(u_{i,t} − ϑ) · (β-filtered s_{j,t−1}) — an eligibility trace that,
like the hidden error, gives no credit through the recurrent path over time (e-prop style).

(``bptt``, autograd through time, is the reference the backend offers beside these.)
:func:`three_factor_gradient` is the accumulated (eligibility-trace) form of the rule;
:func:`online_update` applies it step by step inside the time loop, with the same total.
"""

from __future__ import annotations

import torch

from innerloop.engine import losses
from innerloop.engine.errors import unknown_name
from innerloop.engine.params import Params
from innerloop.engine.spiking import Record, SpikingMLP

HIDDEN_ERRORS = ("single_step", "feedback_alignment", "readout_only", "bptt")


def readout_loss(readout: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-task loss [B] of readouts [B, K, out]: cross-entropy on spike counts as logits, or MSE."""
    return losses.batched(readout, y, loss)


def output_error(readout: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """∂L_b/∂readout [B, K, out] of :func:`readout_loss`."""
    return losses.batched_gradient(readout, y, loss)


def feedback_matrices(model: SpikingMLP, generator: torch.Generator, dtype: torch.dtype,
                      device: torch.device | str) -> list[torch.Tensor]:
    """Fixed random feedback B_l (shaped like W_l, scaled like the init) for layers l ≥ 1."""
    shapes = [model.shapes()[f"layer{layer}.weight"] for layer in range(1, model.num_layers)]
    return [(torch.randn(shape, generator=generator, dtype=torch.float64) / shape[1] ** 0.5)
            .to(dtype=dtype, device=device) for shape in shapes]


def three_factor_gradient(model: SpikingMLP, params: Params, records: list[Record], y: torch.Tensor, loss: str,
                          hidden_error: str = "single_step", feedback: list[torch.Tensor] | None = None) -> Params:
    """Σ_t e·post·pre per layer, batched over tasks (eq. 6.4), from a simulation's records."""
    return _step_gradient(model, params, records, model.readout(records).detach(), y, loss, hidden_error, feedback)


def _step_gradient(model: SpikingMLP, params: Params, records: list[Record], counts: torch.Tensor, y: torch.Tensor,
                   loss: str, hidden_error: str, feedback: list[torch.Tensor] | None) -> Params:
    """Σ over the records' time steps of e·post·pre, with the output error of spike counts ``counts``."""
    if hidden_error not in HIDDEN_ERRORS[:-1]:
        raise unknown_name("hidden_error", hidden_error, HIDDEN_ERRORS[:-1])
    error = output_error(counts, y, loss).unsqueeze(2).expand_as(records[-1].spikes)
    grads: Params = {}
    for layer in reversed(range(model.num_layers)):
        record = records[layer]
        post = model.readout_sensitivity(record) if layer == model.num_layers - 1 \
            else model.surrogate_derivative(record.membranes.detach())
        factor = error * post
        grads[f"layer{layer}.weight"] = torch.einsum("bkti,bktj->bij", factor, record.pre)
        if model.is_recurrent(layer):
            grads[f"layer{layer}.recurrent"] = torch.einsum("bkti,bktj->bij", factor, record.recurrent_pre)
        if layer == 0:
            break
        if hidden_error == "readout_only":
            shapes = model.shapes()
            for name in (name for lower in range(layer) for name in model.layer_names(lower)):
                grads[name] = torch.zeros(factor.shape[0], *shapes[name], dtype=factor.dtype, device=factor.device)
            break
        if hidden_error == "single_step":
            weight = params[f"layer{layer}.weight"]
            error = torch.einsum("bkti,bij->bktj", factor, weight.expand(factor.shape[0], *weight.shape[-2:]))
        else:
            error = torch.einsum("bkti,ij->bktj", factor, feedback[layer - 1])
    return {name: grads[name] for name in model.shapes()}


def online_update(model: SpikingMLP, params: Params, records: list[Record], y: torch.Tensor, loss: str, lr: float,
                  hidden_error: str = "single_step", feedback: list[torch.Tensor] | None = None) -> Params:
    """The per-step (online) form of eq. 6.5: inside the loop over time, every synapse applies
    w ← w − η·e_t·post_t·pre_t as soon as the step's three factors are available, the way a chip
    updates its weights during a presentation (the pass's currents use the weights it started
    with; the error e_t is broadcast per step). Its total over the pass equals the eligibility
    form, θ − η·Σ_t e_t·post_t·pre_t."""
    steps = records[0].spikes.shape[2]
    counts = model.readout(records).detach()
    updated = {k: v.clone() for k, v in params.items()}
    for t in range(steps):
        window = [record.step(t) for record in records]
        step = _step_gradient(model, params, window, counts, y, loss, hidden_error, feedback)
        for name, g in step.items():
            updated[name] = updated[name] - lr * g
    return updated
