"""Leaky integrate-and-fire networks as learners: plain weight tensors, snnTorch neuron dynamics.

A :class:`SpikingMLP` maps spike trains x [..., T, in] through layers of snnTorch neurons
(monograph §6.1): the input current of layer l at step t is I_t = s^{(l−1)}_t W_lᵀ and

* ``leaky``:    u_t = β·u_{t−1} + I_t − ϑ·r_{t−1}                      (snn.Leaky)
* ``synaptic``: c_t = α·c_{t−1} + I_t,  u_t = β·u_{t−1} + c_t − ϑ·r_{t−1} (snn.Synaptic)

with s_t = Θ(u_t − ϑ) (eq. 6.1) and the subtractive reset r_{t−1} = s_{t−1} detached — the
SRM of eq. 6.2 with α_t = β^t and refractory kernel −ϑβ^{t−1}. With ``recurrent=True`` every
hidden layer also hears its own spikes of the previous step through lateral synapses R_l
(eq. 6.2 with recurrent presynaptic neurons j ∈ P_i): I_t = s^{(l−1)}_t W_lᵀ + s^{(l)}_{t−1} R_lᵀ.
The surrogate derivative Θ′(x) = 1/(slope·|x| + 1)² (snnTorch's fast sigmoid) is used by the
backward pass and by the three-factor rule alike. The readout is the output layer's spike count
Σ_t s_t (``count``: logits for cross-entropy, or targets for MSE), or its mean membrane potential
(1/T)·Σ_t u_t with the output layer's reset switched off (``membrane``: a signed output, for
regression).

Parameters are ``layer{l}.weight`` [out, in] and, for recurrent hidden layers,
``layer{l}.recurrent`` [out, out] (no biases), with a leading task axis when batched; every
simulation is batched over tasks and points with ``bmm``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import snntorch as snn
import torch
from snntorch import surrogate

from innerloop.engine.errors import ConfigError, ShapeError
from innerloop.engine.params import Params, check_shapes, count

NEURONS = ("leaky", "synaptic")
READOUTS = ("count", "membrane")



@dataclass
class Record:
    """One layer's simulation: spikes s_t, membranes u_t and presynaptic traces pre_t, each
    [B, K, T, width] (pre has the layer's input width); ``recurrent_pre`` is the trace of the
    layer's own spikes of the previous step (recurrent layers only)."""

    spikes: torch.Tensor
    membranes: torch.Tensor
    pre: torch.Tensor
    recurrent_pre: torch.Tensor | None = None

    def step(self, t: int) -> Record:
        """The record of step t alone (a time axis of length 1)."""
        def cut(v: torch.Tensor | None) -> torch.Tensor | None:
            return None if v is None else v[:, :, t:t + 1]

        return Record(cut(self.spikes), cut(self.membranes), cut(self.pre), cut(self.recurrent_pre))


class SpikingMLP:
    """Feed-forward LIF network on spike trains; see the module docstring for the dynamics."""

    def __init__(self, in_dim: int, hidden: Sequence[int] = (64,), out_dim: int = 5, neuron: str = "leaky",
                 beta: float = 0.9, alpha: float = 0.8, threshold: float = 1.0, slope: float = 5.0,
                 weight_scale: float = 1.0, readout: str = "count", recurrent: bool = False) -> None:
        widths = [in_dim, *hidden, out_dim]
        if any(int(w) != w or w < 1 for w in widths):
            raise ConfigError(f"widths must be positive integers, got {widths}", "e.g. SpikingMLP(16, (64,), 5)")
        if neuron not in NEURONS:
            raise ConfigError(f"unknown neuron '{neuron}'", f"choose one of: {', '.join(NEURONS)}")
        if readout not in READOUTS:
            raise ConfigError(f"unknown readout '{readout}'", f"choose one of: {', '.join(READOUTS)}")
        self.readout_kind = readout
        if not (0 < beta < 1 and 0 < alpha < 1):
            raise ConfigError(f"decay rates must lie in (0, 1), got beta={beta}, alpha={alpha}", "e.g. beta=0.9")
        self.widths = [int(w) for w in widths]
        self.in_dim, self.out_dim, self.hidden = self.widths[0], self.widths[-1], tuple(self.widths[1:-1])
        self.neuron, self.beta, self.alpha = neuron, float(beta), float(alpha)
        self.threshold, self.slope, self.weight_scale = float(threshold), float(slope), float(weight_scale)
        if not isinstance(recurrent, bool):
            raise ConfigError(f"recurrent must be true or false, got {recurrent!r}", "e.g. recurrent=true")
        if recurrent and not self.hidden:
            raise ConfigError("recurrent=True needs a hidden layer (the output layer has no lateral synapses)",
                              "give hidden widths, e.g. --hidden 64")
        self.recurrent = recurrent

    @property
    def num_layers(self) -> int:
        return len(self.widths) - 1

    def is_recurrent(self, layer: int) -> bool:
        """Whether ``layer`` has lateral synapses (hidden layers of a recurrent network)."""
        return self.recurrent and layer < self.num_layers - 1

    def layer_names(self, layer: int) -> list[str]:
        """The parameter names of ``layer``: its feed-forward weights, then its lateral ones."""
        return [f"layer{layer}.weight"] + ([f"layer{layer}.recurrent"] if self.is_recurrent(layer) else [])

    def shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {}
        for layer, (i, o) in enumerate(zip(self.widths[:-1], self.widths[1:])):
            shapes[f"layer{layer}.weight"] = (o, i)
            if self.is_recurrent(layer):
                shapes[f"layer{layer}.recurrent"] = (o, o)
        return shapes

    def num_params(self) -> int:
        return count(self.shapes())

    def init(self, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
             device: torch.device | str = "cpu") -> Params:
        """N(0, (scale·2/√fan_in)²) weights: enough drive for the first layers to spike. Lateral
        weights start at 0, so a recurrent network starts as its feed-forward twin and the rule grows
        them (random lateral weights of half the feed-forward scale made FOMAML on double-motif
        unstable across seeds: 0.32–0.90 accuracy against 0.90–0.91 from zero)."""
        dtype = dtype or torch.get_default_dtype()
        params = {}
        for name, shape in self.shapes().items():
            if name.endswith(".recurrent"):
                params[name] = torch.zeros(shape, dtype=dtype, device=device)
            else:
                params[name] = (torch.randn(shape, generator=generator, dtype=torch.float64)
                                * self.weight_scale * 2.0 / math.sqrt(shape[1])).to(dtype=dtype, device=device)
        return params

    def check_params(self, params: Params, task_axis: bool = False) -> None:
        check_shapes(self.shapes(), params, repr(self), task_axis)

    def surrogate_derivative(self, membrane: torch.Tensor) -> torch.Tensor:
        """Θ′(u − ϑ) = 1/(slope·|u − ϑ| + 1)², the fast-sigmoid surrogate's derivative."""
        return 1.0 / (self.slope * (membrane - self.threshold).abs() + 1.0) ** 2

    def _neurons(self, dtype: torch.dtype) -> list:
        """snnTorch neurons with decay rates in the run's dtype (the traces use the same values)."""
        spike_grad = surrogate.fast_sigmoid(slope=self.slope)
        beta, alpha = torch.tensor(self.beta, dtype=dtype), torch.tensor(self.alpha, dtype=dtype)
        resets = ["subtract"] * (self.num_layers - 1) + ["none" if self.readout_kind == "membrane" else "subtract"]
        if self.neuron == "leaky":
            return [snn.Leaky(beta=beta, threshold=self.threshold, spike_grad=spike_grad, reset_mechanism=r)
                    for r in resets]
        return [snn.Synaptic(alpha=alpha, beta=beta, threshold=self.threshold, spike_grad=spike_grad,
                             reset_mechanism=r) for r in resets]

    def simulate(self, params: Params, x: torch.Tensor) -> list[Record]:
        """Run the network on spikes x [B, K, T, in] with per-task weights [B, out, in]."""
        if x.ndim != 4 or x.shape[-1] != self.in_dim:
            raise ShapeError(f"expected spikes [tasks, points, time, {self.in_dim}], got {tuple(x.shape)}",
                             "encode inputs with innerloop.engine.tasks.spike_encode")
        tasks, points, steps, _ = x.shape
        neurons = self._neurons(x.dtype)
        weights = [params[f"layer{layer}.weight"] for layer in range(self.num_layers)]
        lateral = [params[f"layer{layer}.recurrent"] if self.is_recurrent(layer) else None
                   for layer in range(self.num_layers)]
        states = [None] * self.num_layers

        def zeros(width: int) -> tuple[torch.Tensor, torch.Tensor]:
            return (torch.zeros(tasks, points, width, dtype=x.dtype, device=x.device),) * 2

        traces = [zeros(w) for w in self.widths[:-1]]
        lateral_traces = [zeros(w) for w in self.widths[1:]]
        previous = [zeros(w)[0] for w in self.widths[1:]]  # each layer's spikes of step t − 1
        spikes, membranes, pres, lateral_pres = ([[] for _ in range(self.num_layers)] for _ in range(4))
        for t in range(steps):
            signal = x[:, :, t]
            for layer, (w, neuron) in enumerate(zip(weights, neurons)):
                traces[layer] = self._trace_step(traces[layer], signal)
                pres[layer].append(traces[layer][0])
                current = torch.bmm(signal, w.transpose(1, 2))
                if lateral[layer] is not None:
                    lateral_traces[layer] = self._trace_step(lateral_traces[layer], previous[layer])
                    lateral_pres[layer].append(lateral_traces[layer][0])
                    current = current + torch.bmm(previous[layer], lateral[layer].transpose(1, 2))
                if self.neuron == "leaky":
                    spike, mem = neuron(current, states[layer]) if states[layer] is not None else neuron(current)
                    states[layer] = mem
                else:
                    syn, mem = (states[layer] if states[layer] is not None else (None, None))
                    spike, syn, mem = neuron(current, syn, mem) if syn is not None else neuron(current)
                    states[layer] = (syn, mem)
                spike = spike.to(x.dtype)  # snnTorch's surrogates emit float32 spikes
                spikes[layer].append(spike)
                membranes[layer].append(mem)
                previous[layer] = signal = spike
        return [Record(torch.stack(s, 2), torch.stack(m, 2), torch.stack(p, 2), torch.stack(r, 2) if r else None)
                for s, m, p, r in zip(spikes, membranes, pres, lateral_pres)]

    def _trace_step(self, state: tuple[torch.Tensor, torch.Tensor], signal: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(pre_t, c_t) of a presynaptic trace with the neuron's own kernel: pre_t = β·pre_{t−1} + s_t
        (leaky), or c_t = α·c_{t−1} + s_t, pre_t = β·pre_{t−1} + c_t (synaptic); detached (a trace
        is a local eligibility, not a path for gradients)."""
        pre, current = state
        signal = signal.detach()
        if self.neuron == "leaky":
            return self.beta * pre + signal, current
        current = self.alpha * current + signal
        return self.beta * pre + current, current

    def readout(self, records: list[Record]) -> torch.Tensor:
        """Output spike counts Σ_t s_t (``count``) or mean membranes (1/T)·Σ_t u_t, [B, K, out]."""
        if self.readout_kind == "membrane":
            return records[-1].membranes.mean(dim=2)
        return records[-1].spikes.sum(dim=2)

    def readout_sensitivity(self, record: Record) -> torch.Tensor:
        """∂(readout)/∂u_t of the output layer per step: Θ′(u_t − ϑ) for counts, 1/T for membranes."""
        if self.readout_kind == "membrane":
            return torch.full_like(record.membranes, 1.0 / record.membranes.shape[2])
        return self.surrogate_derivative(record.membranes.detach())

    def apply_batched(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Spike counts [B, K, out] for per-task weights [B, out, in] and spikes [B, K, T, in]."""
        return self.readout(self.simulate(params, x))

    def apply(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Spike counts of the output layer for spikes x [B, K, T, in] (or [K, T, in] for one task)."""
        single = x.ndim == 3
        if single:
            params, x = {k: v.unsqueeze(0) for k, v in params.items()}, x.unsqueeze(0)
        out = self.readout(self.simulate(params, x))
        return out[0] if single else out

    def config(self) -> dict:
        return {"in_dim": self.in_dim, "hidden": list(self.hidden), "out_dim": self.out_dim, "neuron": self.neuron,
                "beta": self.beta, "alpha": self.alpha, "threshold": self.threshold, "slope": self.slope,
                "weight_scale": self.weight_scale, "readout": self.readout_kind, "recurrent": self.recurrent}

    def __repr__(self) -> str:
        lateral = ", recurrent" if self.recurrent else ""
        return f"SpikingMLP({self.widths}, neuron={self.neuron!r}, beta={self.beta}, slope={self.slope}{lateral})"
