"""Parametrized quantum circuit (PQC) learners: data re-uploading circuits (monograph §6.2).

A :class:`ReuploadingPQC` on n qubits with L layers computes, for an input x ∈ R^d,

    |ψ(x; θ)⟩ = Π_{l=L..1} [ CNOT ring · Π_q RZ(θ_{l,q,1}) RY(θ_{l,q,0}) RY(x_{q mod d}) ] |0ⁿ⟩

(a hardware-efficient ansatz that re-uploads the data in every layer) and reads out
f_j(x) = s_j·⟨Z_j⟩ for j < out_dim, with a classical output scale s (expectations live in
[−1, 1]; sinusoid targets do not). Parameters: ``weights`` [L, n, 2] (rotation angles) and
``scale`` [out_dim]. The circuit is a PennyLane quantum function; which device runs it, how it
is differentiated and with how many shots is the ``quantum`` backend's choice.
"""

from __future__ import annotations

import math

import pennylane as qml
import torch

from innerloop.engine.errors import ConfigError
from innerloop.engine.params import Params, check_shapes, count


class ReuploadingPQC:
    """Data re-uploading PQC regressor/classifier (see the module docstring)."""

    def __init__(self, in_dim: int = 1, qubits: int = 4, layers: int = 3, out_dim: int = 1,
                 initial_scale: float = 1.0) -> None:
        if min(in_dim, qubits, layers, out_dim) < 1 or out_dim > qubits:
            raise ConfigError(f"need in_dim, qubits, layers >= 1 and 1 <= out_dim <= qubits; got in_dim={in_dim}, "
                              f"qubits={qubits}, layers={layers}, out_dim={out_dim}", "e.g. ReuploadingPQC(1, 4, 3, 1)")
        self.in_dim, self.qubits, self.layers, self.out_dim = int(in_dim), int(qubits), int(layers), int(out_dim)
        self.initial_scale = float(initial_scale)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"weights": (self.layers, self.qubits, 2), "scale": (self.out_dim,)}

    def num_params(self) -> int:
        return count(self.shapes())

    def init(self, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
             device: torch.device | str = "cpu") -> Params:
        """Angles U(0, 2π); output scale ``initial_scale``."""
        dtype = dtype or torch.get_default_dtype()
        weights = 2 * math.pi * torch.rand(self.shapes()["weights"], generator=generator, dtype=torch.float64)
        return {"weights": weights.to(dtype=dtype, device=device),
                "scale": torch.full((self.out_dim,), self.initial_scale, dtype=dtype, device=device)}

    def check_params(self, params: Params, task_axis: bool = False) -> None:
        check_shapes(self.shapes(), params, repr(self), task_axis)

    def circuit(self, weights: torch.Tensor, x: torch.Tensor) -> list:
        """The quantum function: angles ``weights`` [..., L, n, 2] and inputs ``x`` [..., d] (the leading
        axes broadcast: PennyLane parameter broadcasting), returning ⟨Z_j⟩ for j < out_dim."""
        for layer in range(self.layers):
            for q in range(self.qubits):
                qml.RY(x[..., q % self.in_dim], wires=q)
                qml.RY(weights[..., layer, q, 0], wires=q)
                qml.RZ(weights[..., layer, q, 1], wires=q)
            if self.qubits > 1:
                for q in range(self.qubits):
                    qml.CNOT(wires=[q, (q + 1) % self.qubits])
        return [qml.expval(qml.PauliZ(j)) for j in range(self.out_dim)]

    def _reference_qnode(self) -> qml.QNode:
        """The circuit on ``default.qubit`` with backprop: exact predictions for evaluation and plots
        (the backend's device and differentiation mode serve the training primitives)."""
        if getattr(self, "_qnode", None) is None:
            device = qml.device("default.qubit", wires=self.qubits)
            self._qnode = qml.QNode(self.circuit, device, interface="torch", diff_method="backprop")
        return self._qnode

    def apply_batched(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Predictions s⊙⟨Z⟩ [B, K, out] for per-task params [B, ...] and inputs [B, K, d]."""
        tasks, points = x.shape[:2]
        weights = params["weights"].expand(tasks, *self.shapes()["weights"])
        flat_w = weights.unsqueeze(1).expand(tasks, points, *weights.shape[1:]).reshape(-1, *weights.shape[1:])
        out = self._reference_qnode()(flat_w, x.reshape(-1, x.shape[-1]))
        z = torch.stack(list(out), -1) if isinstance(out, (list, tuple)) else out.unsqueeze(-1)
        return z.reshape(tasks, points, self.out_dim).to(x.dtype) * params["scale"].expand(tasks, self.out_dim)[:, None]

    def apply(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Predictions [K, out] for one task's params and inputs [K, d]."""
        return self.apply_batched({k: v.unsqueeze(0) for k, v in params.items()}, x.unsqueeze(0))[0]

    def config(self) -> dict:
        return {"in_dim": self.in_dim, "qubits": self.qubits, "layers": self.layers, "out_dim": self.out_dim,
                "initial_scale": self.initial_scale}

    def __repr__(self) -> str:
        return f"ReuploadingPQC(in_dim={self.in_dim}, qubits={self.qubits}, layers={self.layers}, out={self.out_dim})"
