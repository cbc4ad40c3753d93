"""The algorithm interface every meta-learner shares, and the capability check.

An algorithm holds a model and a backend, and exposes (scikit-learn style, same names on all):

* ``meta_gradient(params, batch)`` — the batch meta-gradient (mean over tasks), a dict like params;
* ``compute(params, batch)`` — the same plus per-task losses and diagnostics (for trainers);
* ``evaluate(params, batch)`` — per-task query loss after adaptation, shape [B];
* gradient-lens algorithms add ``adapt(params, batch, steps=None)`` (per-task adapted
  parameters, leading task axis B) and accept ``steps`` in ``evaluate``.

Gradient-lens algorithms call only backend primitives (loss / loss_and_grad / hvp); amortized
ones (:mod:`.amortized`) need the ``autograd`` capability. Each declares what it
needs in ``requires``; building one on a backend that lacks a capability raises a
:class:`CapabilityError` naming the gap and the algorithms that would run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch

from innerloop.backends.base import Backend
from innerloop.engine.errors import CapabilityError, ConfigError, ShapeError, require_positive
from innerloop.engine.inner import sgd_trajectory
from innerloop.engine.learner import Learner, loss_for
from innerloop.engine.params import Params, cast, expand_to_tasks
from innerloop.engine.tasks import TaskBatch

ALGORITHMS: dict[str, type[Algorithm]] = {}


def register(cls: type[Algorithm]) -> type[Algorithm]:
    """Class decorator adding an algorithm to :data:`ALGORITHMS` under ``cls.name``."""
    ALGORITHMS[cls.name] = cls
    return cls


@dataclass
class MetaGradient:
    """A meta-gradient (mean over tasks), the per-task training losses [B], diagnostics, and
    warnings a trainer should show the user (e.g. an inner solve that stopped short of tolerance)."""

    grad: Params
    task_losses: torch.Tensor
    diagnostics: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class Algorithm(ABC):
    """Root of every meta-learner: holds ``model`` and ``backend`` and checks capabilities.

    ``lens`` says how the algorithm adapts to a task (seed 000 §1): ``"gradient"`` (an inner
    loop), ``"bayesian"`` (amortized posterior inference, Neural Processes) or ``"metric"``
    (embeddings and a non-parametric rule, ProtoNet/MatchingNet). The trainer treats all
    lenses alike; evaluation and plots differ by lens. Algorithms that draw random numbers
    use ``self.generator``, whose state the trainer checkpoints.
    """

    name: str = "abstract"
    lens: str = "gradient"
    requires: frozenset[str] = frozenset({"loss"})
    summary: str = ""

    def __init__(self, model, backend: Backend) -> None:
        if not isinstance(backend, Backend):
            raise ConfigError(
                f"backend must be a Backend instance, got {type(backend).__name__}",
                "build one with innerloop.backends.get('cpu')",
            )
        self.model = model
        self.backend = backend
        self.generator = torch.Generator().manual_seed(0)
        check_capabilities(self)

    def init_params(self, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
                    device: torch.device | str = "cpu") -> Params:
        """Fresh meta-parameters: the model's, plus any the algorithm meta-learns (e.g. Meta-SGD's
        step sizes)."""
        return self.model.init(generator, dtype=dtype, device=device)

    def check_params(self, params: Params) -> None:
        """Raise ShapeError unless ``params`` are meta-parameters of this algorithm."""
        self.model.check_params(params)

    def seed(self, seed: int) -> None:
        """Reseed the algorithm's own random draws (context sizes, latent noise, perturbations)."""
        self.generator.manual_seed(int(seed))

    def meta_gradient(self, params: Params, batch: TaskBatch) -> Params:
        """Mean over the batch's tasks of the per-task meta-gradient (backend dtype/device)."""
        return self.compute(params, batch).grad

    @abstractmethod
    def compute(self, params: Params, batch: TaskBatch) -> MetaGradient:
        """Meta-gradient, per-task losses and diagnostics for one batch of tasks."""

    @abstractmethod
    def evaluate(self, params: Params, batch: TaskBatch) -> torch.Tensor:
        """Per-task held-out query loss after adapting to the support set, shape [B]."""

    def capability_hint(self, backend: Backend) -> str:
        """Extra advice for a capability error (e.g. a first-order variant that would fit)."""
        return ""

    def options(self) -> dict:
        """Hyperparameters that recreate this algorithm (besides model and backend)."""
        return {}

    def _check_batch(self, batch: TaskBatch) -> None:
        if not isinstance(batch, TaskBatch):
            raise ConfigError(f"expected a TaskBatch, got {type(batch).__name__}", "sample one with family.sample(B)")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({args}, backend={self.backend.name!r})"


class MetaAlgorithm(Algorithm):
    """Gradient-lens base: an inner loop of ``inner_steps`` steps of size ``inner_lr``.

    Adds ``adapt(params, batch, steps=None)`` (per-task adapted parameters) to the shared
    interface, and ``evaluate`` takes an optional ``steps``.
    """

    def __init__(self, model, backend: Backend, inner_lr: float, inner_steps: int, loss: str | None = None):
        require_positive("inner_lr", inner_lr)
        if int(inner_steps) != inner_steps or inner_steps < 0:
            raise ConfigError(f"inner_steps must be a whole number >= 0, got {inner_steps}", "e.g. inner_steps=5")
        self.inner_lr = float(inner_lr)
        self.inner_steps = int(inner_steps)
        self.loss = loss
        super().__init__(model, backend)

    # -- the shared interface ---------------------------------------------------------------
    def compute(self, params: Params, batch: TaskBatch) -> MetaGradient:
        """Meta-gradient, per-task losses and diagnostics for one batch of tasks."""
        learner, theta, batch = self._prepare(params, batch)
        return self._compute(learner, theta, batch)

    def adapt(self, params: Params, batch: TaskBatch, steps: int | None = None) -> Params:
        """Per-task adapted parameters (leading task axis B) after ``steps`` inner steps."""
        learner, theta, batch = self._prepare(params, batch)
        return self._adapt(learner, theta, batch, self._steps(steps))

    def evaluate(self, params: Params, batch: TaskBatch, steps: int | None = None) -> torch.Tensor:
        """Per-task query loss after adaptation on the support set, shape [B]."""
        learner, theta, batch = self._prepare(params, batch)
        adapted = self._adapt(learner, theta, batch, self._steps(steps))
        return self.backend.loss(learner.validation, adapted, batch.query_x, batch.query_y)

    # -- for subclasses ---------------------------------------------------------------------
    @abstractmethod
    def _compute(self, learner: Learner, theta: Params, batch: TaskBatch) -> MetaGradient: ...

    def _adapt(self, learner: Learner, theta: Params, batch: TaskBatch, steps: int) -> Params:
        """Default adaptation: ``steps`` plain SGD steps on the support set (seed 000 eq. 2.1)."""
        return sgd_trajectory(
            self.backend, learner, self._expand(theta, batch), batch.support_x, batch.support_y,
            self.inner_lr, steps,
        ).final

    def _steps(self, steps: int | None) -> int:
        if steps is None:
            return self.inner_steps
        if int(steps) != steps or steps < 0:
            raise ConfigError(f"steps must be a whole number >= 0, got {steps}", "e.g. steps=5")
        return int(steps)

    def _prepare(self, params: Params, batch: TaskBatch, task_axis: bool = False
                 ) -> tuple[Learner, Params, TaskBatch]:
        """Validate and move params and batch to the backend's dtype and device; ``task_axis``:
        params are per task, [B, ...] for the batch's B tasks."""
        self._check_batch(batch)
        if task_axis:
            self.model.check_params(params, task_axis=True)
            lead = {v.shape[0] for v in params.values()}
            if lead != {batch.num_tasks}:
                raise ShapeError(f"per-task parameters need a leading axis of the batch's {batch.num_tasks} tasks, "
                                 f"got {sorted(lead)}", "stack one initialization per task of the batch")
        else:
            self.check_params(params)
        loss = self.loss or loss_for(self.model, "cross_entropy" if batch.is_classification else "mse")
        learner = Learner(self.model, loss)
        learner.check_batch(batch)
        backend = self.backend
        theta = cast(params, backend.dtype, backend.device)
        return learner, theta, batch.to(backend.dtype, backend.device)

    def _expand(self, theta: Params, batch: TaskBatch) -> Params:
        return expand_to_tasks(theta, batch.num_tasks)

    def options(self) -> dict:
        return {"inner_lr": self.inner_lr, "inner_steps": self.inner_steps}


def check_capabilities(algorithm: Algorithm) -> None:
    """Raise CapabilityError if the backend lacks something ``algorithm.requires``."""
    backend = algorithm.backend
    missing = sorted(set(algorithm.requires) - set(backend.capabilities))
    if not missing:
        return
    runnable = [n for n, cls in sorted(ALGORITHMS.items()) if set(cls.requires) <= set(backend.capabilities)]
    offered = ", ".join(sorted(backend.capabilities)) or "nothing"
    enable = "; ".join(f"for {c}: {backend.enable_hint(c)}" for c in missing if backend.enable_hint(c))
    raise CapabilityError(
        f"{type(algorithm).__name__} needs {', '.join(missing)}, which backend '{backend.name}' does not "
        f"offer (it offers: {offered})",
        f"algorithms that run on this backend: {', '.join(runnable) or 'none'}"
        + algorithm.capability_hint(backend) + (f"; {enable}" if enable else ""),
    )
