"""The ``quantum`` backend: PQC learners on PennyLane devices (monograph §6.2; issue 8).

Two kinds of learner: data re-uploading regressors/classifiers (:class:`ReuploadingPQC`, the
squared/cross-entropy loss of their expectation readout) and Born machines over binary network
weights (:class:`BornMachine`, the variational free energy; :mod:`.born_primitives`).

Options: ``device`` (any PennyLane device name, e.g. "default.qubit", "lightning.qubit"),
``diff_method`` and ``shots``:

* ``backprop`` (default.qubit, exact): ``loss_and_grad`` by torch autograd through the simulator,
  and ``hvp`` by double backward — the only mode with second order (MAML, iMAML);
* ``adjoint`` (lightning.qubit, exact expectations): first-order gradients;
* ``parameter-shift``: the hardware-realistic path, ∂⟨Z⟩/∂θ_i = (⟨Z⟩(θ + π/2·e_i) − ⟨Z⟩(θ − π/2·e_i))/2
  for every rotation angle, all 2P shifted circuits of every task and point in one broadcast
  call; with ``shots`` each expectation is a sample mean (first order only).

Every mode offers ``loss`` (ES-MAML needs only that). Task batches run as one broadcast circuit
over (task, point) pairs. ``seed`` fixes the shot noise (one NumPy generator shared by the
backend's devices) and the classifier KL estimator's draws; :meth:`QuantumBackend.random_state`
is what a run's checkpoint keeps of them, so a resumed shot-based run draws what an uninterrupted
one would. ``executions`` counts circuit executions and shots spent by the Born-machine primitives.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pennylane as qml
import torch

from innerloop.backends import autograd_reference
from innerloop.backends.base import Backend, LearnerLike, Params
from innerloop.backends.born_primitives import BornPrimitives, Executions
from innerloop.backends.torch_func import parse_dtype
from innerloop.engine import losses
from innerloop.engine.born_machine import BornMachine
from innerloop.engine.errors import ConfigError
from innerloop.engine.quantum import ReuploadingPQC

DIFF_METHODS = ("backprop", "adjoint", "parameter-shift")


class QuantumBackend(Backend):
    """PennyLane circuits as learners; see the module docstring for the modes."""

    name = "quantum"
    provides = frozenset({"loss", "loss_and_grad", "hvp"})
    optional = {"hvp": "diff_method=backprop (the default) without shots"}
    description = "parametrized quantum circuits on PennyLane devices (backprop, adjoint or parameter-shift + shots)"

    def __init__(self, dtype: torch.dtype | str = torch.float64, device: str = "default.qubit",
                 diff_method: str = "backprop", shots: int | None = None, seed: int = 0,
                 capabilities: Iterable[str] | str | None = None) -> None:
        if diff_method not in DIFF_METHODS:
            raise ConfigError(f"unknown diff_method '{diff_method}'", f"choose one of: {', '.join(DIFF_METHODS)}")
        if shots is not None and (int(shots) != shots or shots < 1):
            raise ConfigError(f"shots must be a positive integer or None, got {shots}", "e.g. shots=1000")
        if shots is not None and diff_method != "parameter-shift":
            raise ConfigError(f"shots need diff_method='parameter-shift' (got '{diff_method}')",
                              "pass --backend-option diff_method=parameter-shift with shots")
        second_order = diff_method == "backprop"
        if capabilities is None:
            capabilities = sorted(self.provides if second_order else self.provides - {"hvp"})
        super().__init__(capabilities)
        if "hvp" in self.capabilities and not second_order:
            raise ConfigError(f"hvp needs diff_method='backprop' without shots (got '{diff_method}')",
                              "drop hvp, or use the exact simulator's backprop mode")
        self.dtype, self.device = parse_dtype(dtype), torch.device("cpu")
        self.device_name, self.diff_method, self.shots = device, diff_method, shots
        self.seed, self.generator = int(seed), torch.Generator().manual_seed(int(seed))
        # one NumPy generator draws the shot noise of every device of this backend (a PennyLane
        # device keeps the Generator it is given), so its state is the backend's to save and restore
        self.shot_rng = np.random.default_rng(self.seed)
        self.executions = Executions()
        self._qnodes: dict[int, qml.QNode] = {}
        self._born: dict[int, BornPrimitives] = {}

    def random_state(self) -> dict[str, Any]:
        """Shot noise (NumPy) and the classifier KL estimator's draws (torch)."""
        return {"shots": self.shot_rng.bit_generator.state, "estimator": self.generator.get_state()}

    def set_random_state(self, state: dict[str, Any]) -> None:
        self.shot_rng.bit_generator.state = state["shots"]
        self.generator.set_state(state["estimator"])

    def reseed(self, seed: int) -> None:
        self.shot_rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state
        self.generator.manual_seed(seed)

    def enable_hint(self, capability: str) -> str:
        return "--backend-option diff_method=backprop (exact simulator, no shots)" if capability == "hvp" else ""

    # -- circuits -----------------------------------------------------------------------------
    def _model(self, learner: LearnerLike) -> ReuploadingPQC:
        if not isinstance(learner.model, ReuploadingPQC | BornMachine):
            raise ConfigError(f"the quantum backend runs PQC learners, got {type(learner.model).__name__}",
                              "build the model with innerloop.engine.quantum.ReuploadingPQC or "
                              "innerloop.engine.born_machine.BornMachine")
        return learner.model

    def born(self, model: BornMachine) -> BornPrimitives:
        """The free-energy primitives of a Born machine on this backend's device and mode."""
        key = id(model)
        if key not in self._born:
            self._born[key] = BornPrimitives(model, self.device_name, self.diff_method, self.shots, self.generator,
                                             self.executions, self.shot_rng)
        return self._born[key]

    def _qnode(self, model: ReuploadingPQC) -> qml.QNode:
        key = id(model)
        if key not in self._qnodes:
            device = qml.device(self.device_name, wires=model.qubits, **({"seed": self.shot_rng} if self.shots else {}))
            method = None if self.diff_method == "parameter-shift" else self.diff_method  # our shift rule
            node = qml.QNode(model.circuit, device, interface="torch", diff_method=method)
            self._qnodes[key] = qml.set_shots(node, shots=self.shots) if self.shots else node
        return self._qnodes[key]

    def expectations(self, model: ReuploadingPQC, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """⟨Z_j⟩ [..., out] for angles [..., L, n, 2] and inputs [..., d] with matching leading axes,
        run as one broadcast circuit over all of them."""
        lead = x.shape[:-1]
        flat_w = weights.reshape(-1, *weights.shape[-3:])
        flat_x = x.reshape(-1, x.shape[-1])
        out = self._qnode(model)(flat_w, flat_x)
        values = torch.stack(list(out), dim=-1) if isinstance(out, (list, tuple)) else out.unsqueeze(-1)
        return values.reshape(*lead, model.out_dim).to(x.dtype)

    def _predict(self, model: ReuploadingPQC, params: Params, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(⟨Z⟩ [B, K, out], predictions s⊙⟨Z⟩) for per-task params and inputs [B, K, d]."""
        tasks, points = x.shape[:2]
        weights = params["weights"].expand(tasks, *params["weights"].shape[-3:])
        z = self.expectations(model, weights.unsqueeze(1).expand(tasks, points, *weights.shape[1:]), x)
        return z, z * params["scale"].expand(tasks, model.out_dim).unsqueeze(1)

    # -- primitives ---------------------------------------------------------------------------
    def loss(self, learner: LearnerLike, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self._require("loss")
        model = self._model(learner)
        if isinstance(model, BornMachine):
            return self.born(model).loss(params["weights"], x, y, learner.loss_name)
        return losses.batched(self._predict(self._model(learner), params, x)[1], y, learner.loss_name)

    def loss_and_grad(
        self, learner: LearnerLike, params: Params, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, Params]:
        self._require("loss_and_grad")
        model = self._model(learner)
        if isinstance(model, BornMachine):
            task_losses, grad = self.born(model).loss_and_grad(params["weights"], x, y, learner.loss_name)
            return task_losses, {"weights": grad}
        if self.diff_method == "parameter-shift":
            return self._shift_rule(model, params, x, y, learner.loss_name)
        return autograd_reference.loss_and_grad(
            lambda p: losses.batched(self._predict(model, p, x)[1], y, learner.loss_name), params)

    def _shift_rule(self, model: ReuploadingPQC, params: Params, x: torch.Tensor, y: torch.Tensor,
                    loss: str) -> tuple[torch.Tensor, Params]:
        """Parameter-shift gradients: all 2P shifted circuits of every (task, point) in one call."""
        tasks, points = x.shape[:2]
        with torch.no_grad():
            z, pred = self._predict(model, params, x)
            task_losses = losses.batched(pred, y, loss)
            weights = params["weights"].expand(tasks, *params["weights"].shape[-3:])
            count = weights[0].numel()
            shifts = (math.pi / 2) * torch.eye(count, dtype=weights.dtype).reshape(count, *weights.shape[1:])
            shifted = weights[:, None, None] + torch.stack([shifts, -shifts])[None, :, :]  # [B, 2, P, L, n, 2]
            shifted = shifted.unsqueeze(3).expand(tasks, 2, count, points, *weights.shape[1:])
            inputs = x[:, None, None].expand(tasks, 2, count, points, x.shape[-1])
            values = self.expectations(model, shifted, inputs)  # [B, 2, P, K, out]
            dz = (values[:, 0] - values[:, 1]) / 2  # ∂⟨Z_j⟩/∂θ_i at each point: [B, P, K, out]
            scale = params["scale"].expand(tasks, model.out_dim)
            upstream = losses.batched_gradient(pred, y, loss)  # [B, K, out]
            grad_w = torch.einsum("bko,bpko->bp", upstream * scale.unsqueeze(1), dz).reshape(weights.shape)
            grad_s = (upstream * z).sum(dim=1)
        return task_losses, {"weights": grad_w, "scale": grad_s}

    def hvp(
        self, learner: LearnerLike, params: Params, x: torch.Tensor, y: torch.Tensor, vector: Params
    ) -> Params:
        self._require("hvp")
        model = self._model(learner)
        if isinstance(model, BornMachine):
            primitives = self.born(model)
            return autograd_reference.hvp(lambda p: primitives.exact_loss(p["weights"], x, y, learner.loss_name),
                                          params, vector)
        return autograd_reference.hvp(
            lambda p: losses.batched(self._predict(model, p, x)[1], y, learner.loss_name), params, vector)
