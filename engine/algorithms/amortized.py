"""Amortized meta-learners: adaptation is a forward pass, not an inner loop (seed 000 §4–5).

Their meta-parameters are the weights of an encoder–decoder (Neural Processes) or an embedding
network (ProtoNet, MatchingNet), trained by ordinary backpropagation of a per-task objective
averaged over the batch. They therefore need the backend's ``autograd`` capability, and a
backend that cannot run torch networks is refused with the usual capability error.

Each class builds its own network with the classmethod ``network(family, hidden, ...)``
(architecture options are that method's keywords); the algorithm's constructor takes the
training options.
"""

from __future__ import annotations

import inspect
from abc import abstractmethod

import torch

from innerloop.engine.algorithms.base import Algorithm, MetaGradient
from innerloop.engine.params import Params, cast
from innerloop.engine.tasks import TaskBatch, TaskFamily


class AmortizedAlgorithm(Algorithm):
    """Base of the amortized lenses: ``compute`` backpropagates ``_objective`` (per task, [B])."""

    requires = frozenset({"autograd"})
    default_hidden: tuple[int, ...] = (128, 128)

    def __init__(self, model, backend) -> None:
        super().__init__(model, backend)
        backend.trains_with_autograd(self.name, model)

    @classmethod
    @abstractmethod
    def network(cls, family: TaskFamily, hidden: tuple[int, ...] | None = None, **architecture):
        """The network this algorithm meta-trains, sized for ``family``."""

    @classmethod
    def architecture_options(cls) -> set[str]:
        """Names of the keyword options that shape the network (the rest go to the constructor)."""
        params = inspect.signature(cls.network).parameters
        return {name for name in params if name not in ("family", "hidden")}

    def compute(self, params: Params, batch: TaskBatch) -> MetaGradient:
        """∇θ of the batch-mean objective, per-task objectives and diagnostics."""
        theta, batch = self._prepare(params, batch)
        leaves = {k: v.detach().requires_grad_(True) for k, v in theta.items()}
        with torch.enable_grad():
            losses, diagnostics = self._objective(leaves, batch)
            grads = torch.autograd.grad(losses.mean(), list(leaves.values()), allow_unused=True)
        grad = {k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(leaves.items(), grads)}
        return MetaGradient(grad, losses.detach(), diagnostics)

    @abstractmethod
    def _objective(self, params: Params, batch: TaskBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Per-task training objective [B] (differentiable in ``params``) and diagnostics."""

    def _prepare(self, params: Params, batch: TaskBatch) -> tuple[Params, TaskBatch]:
        """Validate and move params and batch to the backend's dtype and device."""
        self._check_batch(batch)
        self.check_params(params)
        backend = self.backend
        return cast(params, backend.dtype, backend.device), batch.to(backend.dtype, backend.device)
