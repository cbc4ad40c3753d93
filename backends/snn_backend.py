"""The ``snn`` backend: spiking learners trained by the three-factor rule (monograph §6.1; issue 7).

Learners are :class:`~innerloop.engine.spiking.SpikingMLP` networks of snnTorch neurons on spike
trains x [B, K, T, in]. Primitives:

* ``loss`` — simulate and score the output spike counts;
* ``loss_and_grad`` — the three-factor gradient Σ_t e·post·pre (eq. 6.4) with the hidden-layer
  error ``hidden_error`` = single_step | feedback_alignment | readout_only; exact (equal to
  surrogate BPTT) for the output layer, an approximation of the true gradient for hidden
  layers. ``hidden_error="bptt"`` uses autograd through time instead (reference only);
* ``local_update`` — one three-factor step θ ← θ − η·∇̂L (eq. 6.5), what a chip would run, with
  its own error mode ``inner_error`` (default: ``hidden_error``); the engine's inner loops
  (FOMAML's, Reptile's, evaluation's adaptation) use it, the meta-gradient uses ``hidden_error``
  — so e.g. ``inner_error="readout_only"`` adapts only the readout on the chip while the outer
  loop still trains every layer; ``online=True`` applies it per time step inside the
  simulation loop (:func:`~innerloop.engine.three_factor.online_update`, same total);
* ``hvp`` — only with ``second_order=True``: double backward through the surrogate simulation,
  the reference for second-order MAML (Stewart & Neftci 2022). Without it, asking for MAML is a
  capability error that names FOMAML and Reptile.

So FOMAML on this backend is fully local: the inner loop is three-factor steps on the support
spikes and the meta-gradient is the same rule on the query spikes at the adapted weights.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from innerloop.backends import autograd_reference
from innerloop.backends.base import Backend, LearnerLike, Params
from innerloop.backends.torch_func import parse_dtype
from innerloop.engine.errors import ConfigError, unknown_name
from innerloop.engine.spiking import SpikingMLP
from innerloop.engine.three_factor import (
    HIDDEN_ERRORS,
    feedback_matrices,
    online_update,
    readout_loss,
    three_factor_gradient,
)


class SNNBackend(Backend):
    """Spiking networks (snnTorch neurons) with three-factor local learning."""

    name = "snn"
    provides = frozenset({"loss", "loss_and_grad", "local_update", "hvp"})
    description = "spiking LIF networks (snnTorch) trained by the three-factor rule"
    optional = {"hvp": "second_order=true"}

    def __init__(
        self,
        dtype: torch.dtype | str = torch.float32,
        hidden_error: str = "single_step",
        inner_error: str | None = None,
        online: bool = False,
        second_order: bool = False,
        feedback_seed: int = 0,
        capabilities: Iterable[str] | str | None = None,
    ) -> None:
        for option, mode in (("hidden_error", hidden_error), ("inner_error", inner_error or hidden_error)):
            if mode not in HIDDEN_ERRORS:
                raise unknown_name(option, mode, HIDDEN_ERRORS)
        self.second_order = bool(second_order)
        if capabilities is None:
            capabilities = sorted(self.provides if self.second_order else self.provides - {"hvp"})
        elif "hvp" in (capabilities.split(",") if isinstance(capabilities, str) else capabilities) \
                and not self.second_order:
            raise ConfigError("the snn backend offers 'hvp' only with second_order=True",
                              "pass --backend-option second_order=true (surrogate-gradient reference)")
        super().__init__(capabilities)
        self.dtype, self.device = parse_dtype(dtype), torch.device("cpu")
        self.hidden_error = hidden_error
        self.inner_error = inner_error or hidden_error
        self.online = bool(online)
        if self.online and self.inner_error == "bptt":
            raise ConfigError("online=True applies the three-factor rule per step; it has no BPTT form",
                              "pick inner_error single_step, feedback_alignment or readout_only")
        self.feedback_seed = int(feedback_seed)
        self._feedback: dict[int, list[torch.Tensor]] = {}

    def enable_hint(self, capability: str) -> str:
        return "--backend-option second_order=true (the surrogate-gradient reference)" if capability == "hvp" else ""

    @staticmethod
    def _model(learner: LearnerLike) -> SpikingMLP:
        if not isinstance(learner.model, SpikingMLP):
            raise ConfigError(
                f"the snn backend runs spiking learners, got {type(learner.model).__name__}",
                "build the model with innerloop.engine.spiking.SpikingMLP (task families with spike encoding)",
            )
        return learner.model

    def _feedback_for(self, model: SpikingMLP) -> list[torch.Tensor]:
        key = id(model)
        if key not in self._feedback:
            generator = torch.Generator().manual_seed(self.feedback_seed)
            self._feedback[key] = feedback_matrices(model, generator, self.dtype, self.device)
        return self._feedback[key]

    def loss(self, learner: LearnerLike, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self._require("loss")
        model = self._model(learner)
        return readout_loss(model.readout(model.simulate(params, x)), y, learner.loss_name)

    def loss_and_grad(
        self, learner: LearnerLike, params: Params, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, Params]:
        self._require("loss_and_grad")
        return self._rule(learner, params, x, y, self.hidden_error)

    def local_update(self, learner: LearnerLike, params: Params, x: torch.Tensor, y: torch.Tensor,
                     lr: float) -> tuple[torch.Tensor, Params]:
        """One three-factor step (monograph eq. 6.5) with the inner-loop error mode ``inner_error``:
        per-task losses and θ − η·∇̂L. The engine's inner loops call this on backends that have it."""
        self._require("local_update")
        if self.online:
            model = self._model(learner)
            with torch.no_grad():
                records = model.simulate(params, x)
                feedback = self._feedback_for(model) if self.inner_error == "feedback_alignment" else None
                updated = online_update(model, params, records, y, learner.loss_name, lr, self.inner_error, feedback)
                return readout_loss(model.readout(records), y, learner.loss_name), updated
        losses, grads = self._rule(learner, params, x, y, self.inner_error)
        return losses, {k: v - lr * grads[k] for k, v in params.items()}

    def _rule(self, learner: LearnerLike, params: Params, x: torch.Tensor, y: torch.Tensor,
              mode: str) -> tuple[torch.Tensor, Params]:
        """Per-task losses and the gradient estimate of error mode ``mode``."""
        model = self._model(learner)
        if mode == "bptt":
            return self._autograd(learner, params, x, y)
        with torch.no_grad():
            records = model.simulate(params, x)
            losses = readout_loss(model.readout(records), y, learner.loss_name)
            feedback = self._feedback_for(model) if mode == "feedback_alignment" else None
            grads = three_factor_gradient(model, params, records, y, learner.loss_name, mode, feedback)
        return losses, grads

    def hvp(
        self, learner: LearnerLike, params: Params, x: torch.Tensor, y: torch.Tensor, vector: Params
    ) -> Params:
        self._require("hvp")
        return autograd_reference.hvp(self._surrogate_losses(learner, x, y), params, vector)

    def _autograd(self, learner: LearnerLike, params: Params, x: torch.Tensor,
                  y: torch.Tensor) -> tuple[torch.Tensor, Params]:
        """Surrogate-gradient BPTT through the snnTorch simulation (the reference)."""
        return autograd_reference.loss_and_grad(self._surrogate_losses(learner, x, y), params)

    def _surrogate_losses(self, learner: LearnerLike, x: torch.Tensor, y: torch.Tensor):
        """params → per-task losses through the simulation (differentiable via the surrogate)."""
        model = self._model(learner)
        return lambda p: readout_loss(model.readout(model.simulate(p, x)), y, learner.loss_name)
