"""The objectives of Born-machine learners and their gradients on a PennyLane device (issue 8, part 2).

For per-task angles θ_b and data D_b the training loss is the free energy
F(θ_b | D_b) = E_{q_θ}[−log p(D|φ)] + α·KL(q_θ ‖ p) (monograph eq. 2.32, p uniform) and the
validation loss the predictive log-loss −log E_{q_θ}[p(D|φ)] (eq. 2.35). Every mode writes them
through an expectation of a per-task function of the bit-string held fixed while differentiating,

    free energy:  h_b(φ) = −log p(D_b|φ) + α·t_b(φ),   ∇_θ F = ∇_θ E_{q_θ}[h_b]  (t frozen),
    predictive:   w_b(φ) = p(D_b|φ)·e^{m_b},           ∇_θ(−log E[p]) = −∇_θ E_{q_θ}[w_b] / E_{q_θ}[w_b],

with t_b = log q_θ − log p computed exactly (simulator) or by the classifier density-ratio
estimator of :mod:`innerloop.engine.density_ratio` (``shots``: no probabilities anywhere), and m_b
the smallest −log p(D_b|φ) among the strings at hand (it keeps w in floating-point range).

* ``exact`` (backprop): q_θ over all 2ⁿ strings, F by enumeration, autograd (second order);
* ``adjoint``: per task ⟨ψ_θ| diag(h_b) |ψ_θ⟩ as ``expval(SparseHamiltonian)``, adjoint-differentiated;
* ``parameter-shift``: the 2P shifted circuits and the unshifted one of every task in one
  broadcast call, ∂_i E[h] = (E_{θ+π/2·e_i}[h] − E_{θ−π/2·e_i}[h]) / 2 — on exact probabilities
  without shots, on sample means with ``shots``.

:class:`Executions` counts what a hardware run would pay: circuit executions and shots.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pennylane as qml
import scipy.sparse
import torch

from innerloop.backends import autograd_reference
from innerloop.engine.binary_bayes import (
    OBJECTIVE,
    PREDICTIVE,
    all_strings,
    free_energy,
    log_ratio_to_uniform,
    predictive_log_loss,
)
from innerloop.engine.born_machine import BornMachine, to_string_order
from innerloop.engine.density_ratio import fit_log_ratio

StringFunction = Callable[[torch.Tensor], torch.Tensor]  # bit-strings [B, ..., n] → values [B, ...]


@dataclass
class Executions:
    """Circuit executions and measurement shots spent so far (the cost on hardware)."""

    circuits: int = 0
    shots: int = 0

    def add(self, circuits: int, shots: int | None) -> None:
        self.circuits += circuits
        self.shots += circuits * (shots or 0)


class BornPrimitives:
    """Loss, gradient and HVP of the free energy of one :class:`BornMachine` on one device."""

    def __init__(self, model: BornMachine, device_name: str, diff_method: str, shots: int | None,
                 generator: torch.Generator, executions: Executions, shot_rng: np.random.Generator) -> None:
        self.model, self.diff_method, self.shots = model, diff_method, shots
        self.generator, self.executions = generator, executions
        device = qml.device(device_name, wires=model.qubits, **({"seed": shot_rng} if shots else {}))
        if shots:
            self._sample = qml.set_shots(qml.QNode(model.sample_circuit, device, interface="torch"), shots=shots)
        self._probs = qml.QNode(model.probability_circuit, device, interface="torch",
                                diff_method="backprop" if diff_method == "backprop" else None)
        if diff_method == "adjoint":
            self._energy = qml.QNode(self._hamiltonian_circuit, device, interface="torch", diff_method="adjoint")

    # -- circuits ---------------------------------------------------------------------------------
    def probabilities(self, weights: torch.Tensor) -> torch.Tensor:
        """Exact q_θ [..., 2ⁿ] for angles [..., L, n, 2], one broadcast execution."""
        lead, n = weights.shape[:-3], self.model.qubits
        flat = weights.reshape(-1, *weights.shape[-3:])
        self.executions.add(flat.shape[0], None)
        probs = self._probs(flat).reshape(*lead, 2 ** n)
        return to_string_order(probs, n).to(weights.dtype)

    def samples(self, weights: torch.Tensor) -> torch.Tensor:
        """``shots`` bit-strings [..., S, n] per angle set [..., L, n, 2], one broadcast execution."""
        lead = weights.shape[:-3]
        flat = weights.reshape(-1, *weights.shape[-3:]).detach()
        self.executions.add(flat.shape[0], self.shots)
        drawn = torch.as_tensor(self._sample(flat)).long()
        return drawn.reshape(*lead, self.shots, self.model.qubits)

    def _hamiltonian_circuit(self, weights: torch.Tensor, diagonal: scipy.sparse.csr_matrix):
        self.model.prepare(weights)
        return qml.expval(qml.SparseHamiltonian(diagonal, wires=range(self.model.qubits)))

    # -- the objectives ----------------------------------------------------------------------------
    def _nll(self, x: torch.Tensor, y: torch.Tensor) -> StringFunction:
        return lambda strings: self.model.likelihood.negative_log_likelihood(
            strings, x.reshape(x.shape[0], *([1] * (strings.ndim - 3)), *x.shape[1:]),
            y.reshape(y.shape[0], *([1] * (strings.ndim - 3)), *y.shape[1:]))

    def _exact_nll(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.model.likelihood.negative_log_likelihood(all_strings(self.model.bits), x, y)  # [B, 2ⁿ]

    def exact_loss(self, weights: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                   objective: str = OBJECTIVE) -> torch.Tensor:
        """The objective [B] by enumeration (differentiable in backprop mode): the free energy
        (eq. 2.32) or the predictive log-loss (eq. 2.35)."""
        probs, nll = self.probabilities(weights), self._exact_nll(x, y)
        if objective == PREDICTIVE:
            return predictive_log_loss(probs, nll)
        return free_energy(probs, nll, self.model.temperature)

    def loss(self, weights: torch.Tensor, x: torch.Tensor, y: torch.Tensor, objective: str = OBJECTIVE
             ) -> torch.Tensor:
        with torch.no_grad():
            if self.shots:
                values, offset = self._sampled_values(weights.unsqueeze(1), x, y, objective)
                return _combine(objective, values, offset)[0]
            return self.exact_loss(weights, x, y, objective)

    def loss_and_grad(self, weights: torch.Tensor, x: torch.Tensor, y: torch.Tensor, objective: str = OBJECTIVE
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-task objective and its gradient [B, L, n, 2] in the configured mode (module docstring)."""
        if self.diff_method == "backprop":
            task_losses, grad = autograd_reference.loss_and_grad(
                lambda p: self.exact_loss(p["weights"], x, y, objective), {"weights": weights})
            return task_losses, grad["weights"]
        if self.diff_method == "adjoint":
            return self._adjoint(weights, x, y, objective)
        with torch.no_grad():
            shifted = _shifted(weights)  # [B, 1 + 2P, L, n, 2]
            values, offset = (self._sampled_values if self.shots else self._exact_values)(shifted, x, y, objective)
            task_losses, grad = _combine(objective, values, offset)
        return task_losses, grad.reshape(weights.shape)

    def _exact_values(self, shifted: torch.Tensor, x: torch.Tensor, y: torch.Tensor, objective: str
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """E_q[h_b] [B, 1 + 2P] on exact probabilities (and the offset of the predictive integrand)."""
        probs = self.probabilities(shifted)  # [B, 1 + 2P, 2ⁿ]
        h, offset = self._integrand(self._exact_nll(x, y), objective, lambda: log_ratio_to_uniform(probs[:, 0]))
        return (probs * h.unsqueeze(1)).sum(-1), offset

    def _sampled_values(self, shifted: torch.Tensor, x: torch.Tensor, y: torch.Tensor, objective: str
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Sample means of h_b [B, 1 + 2P]; the free energy's t_b is the classifier logit trained on
        the unshifted circuit's samples against uniform prior samples."""
        strings = self.samples(shifted)  # [B, 1 + 2P, S, n]

        def classifier_log_ratio() -> torch.Tensor:
            prior = (torch.rand(strings[:, 0].shape, generator=self.generator) < 0.5).long()
            return fit_log_ratio(strings[:, 0], prior, self.generator)(strings).to(x.dtype)

        h, offset = self._integrand(self._nll(x, y)(strings.to(x.dtype)), objective, classifier_log_ratio)
        return h.mean(-1), offset

    def _integrand(self, nll: torch.Tensor, objective: str, log_ratio: Callable[[], torch.Tensor]
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """h over the strings of ``nll`` [B, ...]: nll + α·t (free energy, t frozen) or
        w = exp(−(nll − m)) with m_b the smallest nll of task b (predictive; m keeps w in range and
        cancels in the gradient)."""
        if objective == PREDICTIVE:
            offset = nll.flatten(1).min(dim=1).values
            return torch.exp(-(nll - offset.reshape(-1, *[1] * (nll.ndim - 1)))), offset
        return nll + self.model.temperature * log_ratio(), None

    def _adjoint(self, weights: torch.Tensor, x: torch.Tensor, y: torch.Tensor, objective: str
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per task, ⟨diag(h_b)⟩ with adjoint differentiation; h_b in PennyLane's basis order."""
        with torch.no_grad():
            h, offset = self._integrand(self._exact_nll(x, y), objective,
                                        lambda: log_ratio_to_uniform(self.probabilities(weights)))
        pennylane_order = string_order_of_pennylane_index(self.model.qubits)
        values, grads = [], []
        for b in range(weights.shape[0]):
            diagonal = scipy.sparse.diags(h[b, pennylane_order].double().numpy(), format="csr")
            with torch.enable_grad():
                angles = weights[b].detach().requires_grad_(True)
                energy = self._energy(angles, diagonal)
                self.executions.add(1, None)
                (grad,) = torch.autograd.grad(energy, angles)
            values.append(energy.detach())
            grads.append(grad)
        return _finish(objective, torch.stack(values).to(weights.dtype), torch.stack(grads).to(weights.dtype), offset)


def _combine(objective: str, values: torch.Tensor, offset: torch.Tensor | None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss [B], shift-rule gradient [B, P]) from E_q[h] at θ and at the 2P shifts [B, 1 + 2P]."""
    count = (values.shape[1] - 1) // 2
    return _finish(objective, values[:, 0], (values[:, 1:1 + count] - values[:, 1 + count:]) / 2, offset)


def _finish(objective: str, expectation: torch.Tensor, gradient: torch.Tensor, offset: torch.Tensor | None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The objective and its gradient from E = E_q[h] [B] and ∇E [B, ...]: (E, ∇E) for the free
    energy; (m − log E, −∇E/E) for the predictive log-loss."""
    if objective == PREDICTIVE:
        return offset - torch.log(expectation), -gradient / expectation.reshape(-1, *[1] * (gradient.ndim - 1))
    return expectation, gradient


def string_order_of_pennylane_index(bits: int) -> torch.Tensor:
    """For each PennyLane basis index j (wire 0 most significant), the package index of its string."""
    index = torch.arange(2 ** bits)
    return to_string_order(index.double(), bits).long().argsort()


def _shifted(weights: torch.Tensor) -> torch.Tensor:
    """[θ, θ + π/2·e_1 … θ + π/2·e_P, θ − π/2·e_1 … θ − π/2·e_P] per task: [B, 1 + 2P, L, n, 2]."""
    count = weights[0].numel()
    shifts = (math.pi / 2) * torch.eye(count, dtype=weights.dtype).reshape(count, *weights.shape[1:])
    offsets = torch.cat([torch.zeros_like(shifts[:1]), shifts, -shifts])
    return weights.unsqueeze(1) + offsets.unsqueeze(0)

