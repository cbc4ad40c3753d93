"""MAML and FOMAML (seed 000 §2–3.1; monograph Algorithms 1 and 3).

Inner loop: N steps θ^(n) = θ^(n−1) − α∇L_S(θ^(n−1)) (seed 000 eq. 2.1).
Second-order meta-gradient by the explicit reverse pass over the stored iterates (eq. 2.5):

    g ← ∇L_Q(θ^(N));   for n = N, …, 1:  g ← g − α·∇²L_S(θ^(n−1))·g

using only the backend's ``hvp`` — the full Hessian is never formed. A backend that fuses the
learner (``meta_gradient`` capability, e.g. ``cpu`` on MLPs) computes the same quantity in one
call; the variants with per-parameter step sizes or partial adaptation compose primitives.
FOMAML drops the
Hessian terms (eq. 3.1): the meta-gradient is ∇L_Q(θ^(N)), biased by −α∇²L_S·∇L_Q at N = 1
(eq. 3.2).

``inner_params`` names the parameters the inner loop adapts by prefix (e.g. ``("context",)``: a
link whose receiver fits only its context vector to a new channel from the pilots, monograph
§7.1.1); the others keep θ in the inner loop and get the query gradient plus the reverse pass's
cross terms, as ANIL's body does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from innerloop.backends.base import Backend
from innerloop.engine.algorithms.base import MetaAlgorithm, MetaGradient, register
from innerloop.engine.errors import ConfigError
from innerloop.engine.inner import StepSize, sgd_reverse, sgd_trajectory
from innerloop.engine.learner import Learner
from innerloop.engine.params import Params, expand_to_tasks, mean_over_tasks
from innerloop.engine.tasks import TaskBatch


@register
class MAML(MetaAlgorithm):
    """Model-agnostic meta-learning; ``first_order=True`` gives FOMAML's meta-gradient."""

    name = "maml"
    requires = frozenset({"loss", "loss_and_grad", "hvp"})
    summary = "second-order MAML, reverse pass with HVPs (seed 000 eq. 2.5)"

    def __init__(
        self,
        model,
        backend: Backend,
        inner_lr: float = 0.01,
        inner_steps: int = 5,
        first_order: bool = False,
        loss: str | None = None,
        inner_params: Sequence[str] | None = None,
    ) -> None:
        self.first_order = bool(first_order)
        if self.first_order:
            self.requires = frozenset({"loss", "loss_and_grad"})
        super().__init__(model, backend, inner_lr, inner_steps, loss)
        self.inner_params = self._check_inner_params(inner_params)

    def _check_inner_params(self, prefixes: Sequence[str] | None) -> tuple[str, ...] | None:
        """The validated prefixes: each names at least one of the model's parameters."""
        if prefixes is None:
            return None
        if isinstance(prefixes, str) or not prefixes:
            raise ConfigError(f"inner_params must be a non-empty list of parameter-name prefixes, got {prefixes!r}",
                              'e.g. inner_params=["context"]')
        names = list(self.model.shapes())
        for prefix in prefixes:
            if not any(name.startswith(prefix) for name in names):
                raise ConfigError(f"inner_params prefix {prefix!r} names none of the model's parameters",
                                  f"choose prefixes of {', '.join(names[:8])}{' …' if len(names) > 8 else ''}")
        return tuple(prefixes)

    def _compute(self, learner: Learner, theta: Params, batch: TaskBatch) -> MetaGradient:
        backend = self.backend
        weights, lr = self._weights_and_steps(theta)
        adapt = self._adapted_names(weights)
        if self._fusable(learner, lr, adapt):
            query_loss, grad = backend.meta_gradient(
                learner, weights, batch.support_x, batch.support_y, batch.query_x, batch.query_y,
                lr, self.inner_steps, first_order=self.first_order,
            )
            return MetaGradient(self._meta_gradient(grad, None, lr), query_loss)
        g, query_loss, lr_grad = self._task_gradients(learner, self._expand(weights, batch), batch, lr, adapt)
        return MetaGradient(self._meta_gradient(mean_over_tasks(g), lr_grad, lr), query_loss)

    # -- one initialization per task (e.g. independent online learners) -----------------------
    def per_task_meta_gradients(self, params: Params, batch: TaskBatch) -> MetaGradient:
        """The meta-gradient of every task at its own initialization.

        ``params`` carry a leading task axis — one initialization θ_b per task of ``batch``, e.g. those
        of independent online learners — and so does the result's ``grad``: task b's ∇_{θ_b} of its query
        loss after the inner loop from θ_b (seed 000 eq. 2.5), the per-task terms whose mean
        :meth:`compute` returns when every θ_b is the same θ.
        """
        learner, theta, batch = self._prepare_per_task(params, batch)
        g, query_loss, _ = self._task_gradients(learner, self._start(theta), batch, self.inner_lr,
                                                self._adapted_names(theta))
        return MetaGradient(self._meta_gradient(g, None, self.inner_lr), query_loss)

    def per_task_adapt(self, params: Params, batch: TaskBatch, steps: int | None = None) -> Params:
        """:meth:`adapt` with one initialization per task (``params`` with a leading task axis)."""
        learner, theta, batch = self._prepare_per_task(params, batch)
        return sgd_trajectory(self.backend, learner, self._start(theta), batch.support_x, batch.support_y,
                              self.inner_lr, self._steps(steps), adapt=self._adapted_names(theta)).final

    def _prepare_per_task(self, params: Params, batch: TaskBatch) -> tuple[Learner, Params, TaskBatch]:
        if type(self)._weights_and_steps is not MAML._weights_and_steps:
            raise ConfigError(f"{self.name} meta-learns step sizes with its initialization; per-task "
                              "initializations are not supported for it", "use maml, fomaml, anil or cavia")
        return self._prepare(params, batch, task_axis=True)

    def _task_gradients(self, learner: Learner, start: Params, batch: TaskBatch, lr: StepSize,
                        adapt: frozenset[str] | None) -> tuple[Params, torch.Tensor, Params | None]:
        """Per-task meta-gradients [B, ...] from per-task starting points: the inner loop, the query
        gradient and (second order or per-parameter step sizes) the reverse pass; with the query losses
        and the step-size gradient."""
        backend = self.backend
        reverse = not self.first_order or isinstance(lr, dict)
        trajectory = sgd_trajectory(
            backend, learner, start, batch.support_x, batch.support_y,
            lr, self.inner_steps, keep_states=reverse, adapt=adapt,
        )
        query_loss, g = backend.loss_and_grad(learner.validation, trajectory.final, batch.query_x,
                                               batch.query_y)
        lr_grad = None
        if reverse:  # Hessians at θ^(N−1), …, θ^(0)
            g, lr_grad = sgd_reverse(backend, learner, trajectory.states[:-1], batch.support_x, batch.support_y, g,
                                     lr, adapt, trajectory.grads, hessian=not self.first_order)
        return g, query_loss, lr_grad

    def _adapt(self, learner: Learner, theta: Params, batch: TaskBatch, steps: int) -> Params:
        weights, lr = self._weights_and_steps(theta)
        return sgd_trajectory(self.backend, learner, self._expand(weights, batch), batch.support_x, batch.support_y,
                              lr, steps, adapt=self._adapted_names(weights)).final

    def _fusable(self, learner: Learner, lr: StepSize, adapt: frozenset[str] | None) -> bool:
        """Plain MAML/FOMAML (one step size, every parameter adapted, no task-specific
        expansion, query scored with the training loss) on a backend that fuses the learner."""
        backend = self.backend
        return (
            backend.supports("meta_gradient") and not isinstance(lr, dict) and adapt is None
            and type(self)._start is MAML._start and backend.fuses(learner) and learner.validation == learner
        )

    # -- hooks for the variants (ANIL, Meta-SGD, CAVIA) --------------------------------------
    def _expand(self, theta: Params, batch: TaskBatch) -> Params:
        return self._start(expand_to_tasks(theta, batch.num_tasks))

    def _start(self, weights: Params) -> Params:
        """The inner loop's per-task starting point from per-task weights [B, ...]."""
        return weights

    def _weights_and_steps(self, theta: Params) -> tuple[Params, StepSize]:
        """The model's parameters and the inner step size(s) α."""
        return theta, self.inner_lr

    def _adapted_names(self, weights: Params) -> frozenset[str] | None:
        """The parameters the inner loop updates (None: all of them)."""
        if self.inner_params is None:
            return None
        return frozenset(k for k in weights if k.startswith(self.inner_params))

    def _meta_gradient(self, grad: Params, lr_grad: Params | None, lr: StepSize) -> Params:
        """The meta-gradient over the meta-parameters from the model-parameter gradient (and, for
        per-parameter step sizes ``lr``, the per-task step-size gradient ``lr_grad``)."""
        return grad

    def capability_hint(self, backend: Backend) -> str:
        if not self.first_order and {"loss", "loss_and_grad"} <= backend.capabilities:
            return " (or MAML with first_order=True)"
        return ""

    def options(self) -> dict:
        inner = {} if self.inner_params is None else {"inner_params": list(self.inner_params)}
        return {**super().options(), "first_order": self.first_order, **inner}


@register
class FOMAML(MAML):
    """First-order MAML (seed 000 eq. 3.1, monograph Algorithm 3): meta-gradient ∇L_Q(θ^(N))."""

    name = "fomaml"
    requires = frozenset({"loss", "loss_and_grad"})
    summary = "first-order MAML, meta-gradient ∇L_Q at the adapted point (seed 000 eq. 3.1)"

    def __init__(
        self, model, backend: Backend, inner_lr: float = 0.01, inner_steps: int = 5, loss: str | None = None,
        inner_params: Sequence[str] | None = None,
    ) -> None:
        super().__init__(model, backend, inner_lr, inner_steps, first_order=True, loss=loss,
                         inner_params=inner_params)

    def options(self) -> dict:
        return {k: v for k, v in super().options().items() if k != "first_order"}
