"""A learner: a model's pure ``apply`` bound to a per-task loss (DESIGN.md, "Learners").

Backends receive a :class:`Learner` and realize its per-task loss on their substrate; fused
backends read ``learner.model`` and ``learner.loss_name`` to decide what they can fuse.

A model may define an objective of its own (``objective_name`` and ``objective(params, x, y)``):
the variational families over binary weights are trained on the free energy (monograph eq. 2.32),
not on a loss of their predictions. :func:`loss_for` picks it. Such a model may also define the
loss its query (validation) data is scored with — ``validation_objective_name`` and
``validation_objective`` — which differs from the training objective in Bayesian meta-learning
(the predictive log-loss of monograph eq. 2.35); :attr:`Learner.validation` is the learner of it,
and the algorithms score query sets with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from innerloop.engine import losses
from innerloop.engine.errors import ShapeError
from innerloop.engine.params import Params
from innerloop.engine.tasks import TaskBatch


def loss_for(model: Any, task_loss: str) -> str:
    """The loss a learner of ``model`` trains on: the model's own objective if it has one, else the
    task family's ``task_loss``."""
    return getattr(model, "objective_name", task_loss)


def _own_objectives(model: Any) -> dict[str, str]:
    """The model's own objectives: name → method (training and validation objective)."""
    pairs = (("objective_name", "objective"), ("validation_objective_name", "validation_objective"))
    return {getattr(model, attribute): method for attribute, method in pairs if hasattr(model, attribute)}


@dataclass(frozen=True)
class Learner:
    """``model`` with ``apply(params, x)`` and a loss name from :data:`losses.LOSSES` (or the model's
    own ``objective_name``)."""

    model: Any
    loss_name: str

    def __post_init__(self) -> None:
        if not self.own_objective:
            losses.get(self.loss_name)  # validates the name

    @property
    def own_objective(self) -> bool:
        return self.loss_name in _own_objectives(self.model)

    @property
    def validation(self) -> Learner:
        """The learner that scores query (validation) data: the model's validation objective when
        this learner trains on the model's own objective and the model has one, else this learner."""
        name = getattr(self.model, "validation_objective_name", None)
        if name is None or self.loss_name != getattr(self.model, "objective_name", None):
            return self
        return Learner(self.model, name)

    def task_loss(self, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Scalar loss of one task (no task axis): L(params; x, y)."""
        own = _own_objectives(self.model)
        if self.loss_name in own:
            return getattr(self.model, own[self.loss_name])(params, x, y)
        return losses.get(self.loss_name)(self.model.apply(params, x), y)

    def predict(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        return self.model.apply(params, x)

    def predict_tasks(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Predictions for per-task params [B, ...] and inputs [B, K, ...]: the model's own batched
        ``apply_batched`` when it has one (spiking networks), else ``vmap`` of ``apply``."""
        batched = getattr(self.model, "apply_batched", None)
        return batched(params, x) if batched is not None else torch.func.vmap(self.model.apply)(params, x)

    def check_batch(self, batch: TaskBatch) -> None:
        """Raise ShapeError when ``batch`` does not fit the model's input/output sizes."""
        model = self.model
        features = batch.support_x.shape[-1]
        if features != model.in_dim:
            raise ShapeError(
                f"the model takes inputs with {model.in_dim} features but the tasks have {features}",
                f"build the model with in_dim={features}",
            )
        if not self.own_objective and batch.is_classification != (self.loss_name == "cross_entropy"):
            kind = "class labels" if batch.is_classification else "real-valued targets"
            raise ShapeError(
                f"the tasks have {kind} but the loss is '{self.loss_name}'",
                "use loss='cross_entropy' for classification tasks and loss='mse' for regression",
            )
        if batch.is_classification:
            top = int(max(batch.support_y.max(), batch.query_y.max()))
            if top >= model.out_dim:
                raise ShapeError(
                    f"labels go up to {top} but the model has only {model.out_dim} outputs",
                    f"build the model with out_dim={top + 1} (the number of ways)",
                )
        elif batch.support_y.shape[-1] != (expected := getattr(model, "target_dim", model.out_dim)):  # a policy's task
            raise ShapeError(
                f"the model takes targets of size {expected} but the tasks' have {batch.support_y.shape[-1]}",
                f"build the model with the task family's learner(), or out_dim={batch.support_y.shape[-1]}",
            )
