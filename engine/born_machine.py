"""A Born machine over binary network weights: the quantum variational family of quantum-assisted
Bayesian meta-learning (monograph §6.2.2; Nikoloska & Simeone 2022; issue 8, part 2).

On n qubits (one per binary weight) the circuit is

    U(θ) = R_L(θ) · C · R_{L−1}(θ) · C ⋯ C · R_1(θ) · H^{⊗n},   R_l = Π_q RY(θ_{l,q,0})·RZ(θ_{l,q,1}),

with C a ring of CNOTs between rotation layers (ending on rotations, the last layer steers each
bit's marginal directly; a final CNOT ring would make every bit a parity of several qubits and
the landscape flat at θ = 0),

and measuring every qubit in the computational basis draws φ ∈ {0, 1}ⁿ with probability
q_θ(φ) = |⟨φ|U(θ)|0ⁿ⟩|². The Hadamard layer makes θ = 0 the uniform distribution (|+⟩^{⊗n} is
unchanged by CNOTs), i.e. the prior. Every gate is exp(−iθP/2) with a Pauli P, so any
expectation E_{q_θ}[g(φ)] = ⟨ψ_θ|diag(g)|ψ_θ⟩ obeys the parameter-shift rule
∂_i E_{q_θ}[g] = (E_{q_{θ+π/2·e_i}}[g] − E_{q_{θ−π/2·e_i}}[g]) / 2 — also for sample means.

Qubit q carries bit k = q. PennyLane orders basis states with wire 0 as the most significant bit;
:func:`to_string_order` converts its probability vectors to this package's order (bit k at 2^k).
"""

from __future__ import annotations

import pennylane as qml
import torch

from innerloop.engine.binary_bayes import BinaryPosteriorModel, BinaryRegressionLikelihood
from innerloop.engine.errors import ConfigError
from innerloop.engine.params import Params


def to_string_order(probabilities: torch.Tensor, bits: int) -> torch.Tensor:
    """PennyLane's probability vectors [..., 2ⁿ] (wire 0 most significant) → index Σ_k φ_k·2^k."""
    lead = probabilities.shape[:-1]
    cube = probabilities.reshape(*lead, *([2] * bits))
    order = list(range(len(lead))) + [len(lead) + bits - 1 - q for q in range(bits)]
    return cube.permute(order).reshape(*lead, 2 ** bits)


class BornMachine(BinaryPosteriorModel):
    """q_θ over bit-strings from the circuit of the module docstring; ``weights`` [L, n, 2]."""

    def __init__(self, likelihood: BinaryRegressionLikelihood, layers: int = 3, temperature: float = 1.0,
                 init_std: float = 0.1) -> None:
        super().__init__(likelihood, temperature)
        if int(layers) != layers or layers < 1:
            raise ConfigError(f"layers must be a positive integer, got {layers}", "e.g. layers=3")
        if init_std < 0:
            raise ConfigError(f"init_std must be >= 0, got {init_std}", "e.g. init_std=0.1")
        self.layers, self.init_std = int(layers), float(init_std)
        self._qnode: qml.QNode | None = None

    @property
    def qubits(self) -> int:
        return self.bits

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"weights": (self.layers, self.qubits, 2)}

    def init(self, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
             device: torch.device | str = "cpu") -> Params:
        """Angles N(0, init_std²): near the uniform distribution, symmetry broken."""
        weights = self.init_std * torch.randn(self.shapes()["weights"], generator=generator, dtype=torch.float64)
        return {"weights": weights.to(dtype=dtype or torch.get_default_dtype(), device=device)}

    def prepare(self, weights: torch.Tensor) -> None:
        """The state-preparation quantum function U(θ)|0ⁿ⟩ for angles [..., L, n, 2] (the leading
        axes broadcast: PennyLane parameter broadcasting)."""
        for q in range(self.qubits):
            qml.Hadamard(wires=q)
        for layer in range(self.layers):
            if layer > 0 and self.qubits > 1:
                for q in range(self.qubits):
                    qml.CNOT(wires=[q, (q + 1) % self.qubits])
            for q in range(self.qubits):
                qml.RZ(weights[..., layer, q, 1], wires=q)
                qml.RY(weights[..., layer, q, 0], wires=q)

    def probability_circuit(self, weights: torch.Tensor):
        self.prepare(weights)
        return qml.probs(wires=range(self.qubits))

    def sample_circuit(self, weights: torch.Tensor):
        self.prepare(weights)
        return qml.sample(wires=range(self.qubits))

    def probabilities(self, params: Params) -> torch.Tensor:
        """Exact q_θ [..., 2ⁿ] (package string order) on ``default.qubit`` with backprop — the
        reference for plots and metrics; the ``quantum`` backend runs training on its own device."""
        if self._qnode is None:
            device = qml.device("default.qubit", wires=self.qubits)
            self._qnode = qml.QNode(self.probability_circuit, device, interface="torch", diff_method="backprop")
        weights = params["weights"]
        lead = weights.shape[:-3]
        flat = self._qnode(weights.reshape(-1, *self.shapes()["weights"]))
        return to_string_order(flat.reshape(*lead, 2 ** self.qubits), self.qubits).to(weights.dtype)

    def config(self) -> dict:
        return {"kind": "born-machine", "layers": self.layers, "temperature": self.temperature,
                "init_std": self.init_std, **self.likelihood.config()}

    def __repr__(self) -> str:
        return f"BornMachine(qubits={self.qubits}, layers={self.layers}, temperature={self.temperature})"
