"""The backend protocol: batched primitives over a task axis (DESIGN.md, capability lattice).

Every primitive takes a learner (an object with ``task_loss(params, x, y)`` for one task and a
``model`` attribute), per-task parameters with a leading task axis B, and per-task data
``x: [B, K, ...]``, ``y: [B, K, ...]``:

========================  ====================================================  =========================
primitive                 returns                                               needed by
========================  ====================================================  =========================
``loss``                  per-task loss L_b(θ_b), shape [B]                     ES-MAML, evaluation
``loss_and_grad``         (L_b, ∇L_b(θ_b))                                      FOMAML, Reptile, inner loops
``hvp``                   ∇²L_b(θ_b)·v_b (Pearlmutter, seed 000 eq. 2.7)        MAML (eq. 2.5), iMAML (3.9)
``autograd``              runs any torch network with reverse-mode autograd     amortized methods (NPs,
                          on the backend's dtype/device                         ProtoNet, MatchingNet)
``meta_gradient``         a whole MAML meta-gradient in one fused call, for     MAML/FOMAML when the
                          the learners ``fuses(learner)`` accepts               backend fuses the learner
========================  ====================================================  =========================

``autograd`` is not a batched primitive but a property of the substrate: the amortized
algorithms (seed 000 §4–5) train encoder/decoder or embedding networks by ordinary
backpropagation, which only torch-based backends can execute.

A backend declares what it provides in ``provides``; an instance may be restricted to fewer
capabilities (``capabilities=...``), which is how a user emulates a substrate that offers less
(e.g. a chip that only reports losses). Calling a primitive outside the instance's
capabilities raises :class:`CapabilityError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import torch

from innerloop.engine.errors import CapabilityError, ConfigError, ShapeError

CAPABILITIES: tuple[str, ...] = (
    "loss", "loss_and_grad", "hvp", "autograd", "local_update", "sample", "meta_gradient",
)

Params = dict[str, torch.Tensor]


def check_task_axes(params: Params, x: torch.Tensor, y: torch.Tensor, vector: Params | None = None) -> None:
    """Raise ShapeError unless the inputs follow the batched-primitive protocol: ``x`` and ``y``
    share their task and point axes [B, K, ...] with K ≥ 1, and every parameter (and HVP direction,
    with the parameters' names) has the leading task axis B. Shapes only: no device sync."""
    if x.ndim < 2 or y.ndim < 2 or x.shape[:2] != y.shape[:2]:
        raise ShapeError(f"x has shape {tuple(x.shape)} and y {tuple(y.shape)}: the primitives take both as "
                         "[tasks, points, ...] with the same tasks and points",
                         "give one target per input point, with a task axis in front (x.unsqueeze(0))")
    tasks = x.shape[0]
    if x.shape[1] == 0:
        raise ShapeError(f"x has shape {tuple(x.shape)}: a loss needs at least one point per task",
                         "sample at least one point per task")
    if vector is not None and set(vector) != set(params):
        raise ShapeError(f"the direction has entries {sorted(vector)} but the parameters {sorted(params)}",
                         "give the direction the parameters' names and shapes")
    for what, tensors in (("parameter", params), ("direction", vector or {})):
        for name, tensor in tensors.items():
            if tensor.ndim == 0 or tensor.shape[0] != tasks:
                raise ShapeError(f"{what} '{name}' has shape {tuple(tensor.shape)}; the primitives take one row "
                                 f"per task (a leading axis of {tasks})",
                                 "give every task its row (innerloop.engine.params.expand_to_tasks(params, tasks))")


class LearnerLike(Protocol):
    """What a backend needs of a learner: a per-task scalar loss and the model it wraps."""

    model: Any
    loss_name: str

    def task_loss(self, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...


class Backend:
    """Base class of all backends. Subclasses set ``name``, ``provides`` and the primitives."""

    name: str = "abstract"
    provides: frozenset[str] = frozenset()
    optional: dict[str, str] = {}  # capability → the option that turns it on (not offered by default)
    description: str = ""
    dtype: torch.dtype = torch.float32
    device: torch.device = torch.device("cpu")

    def __init__(self, capabilities: Iterable[str] | str | None = None) -> None:
        if capabilities is None:
            self.capabilities = frozenset(self.provides)
            return
        if isinstance(capabilities, str):
            capabilities = [c.strip() for c in capabilities.split(",") if c.strip()]
        requested = frozenset(capabilities)
        unknown = requested - set(CAPABILITIES)
        if unknown:
            raise ConfigError(
                f"unknown capabilities {sorted(unknown)}", f"choose from: {', '.join(CAPABILITIES)}"
            )
        missing = requested - self.provides
        if missing:
            raise ConfigError(
                f"backend '{self.name}' does not provide {sorted(missing)}",
                f"it provides: {', '.join(sorted(self.provides))}",
            )
        self.capabilities = requested

    def enable_hint(self, capability: str) -> str:
        """How to get ``capability`` from this backend when it provides it only when configured."""
        return ""

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities

    def _require(self, capability: str) -> None:
        if capability not in self.capabilities:
            raise CapabilityError(
                f"backend '{self.name}' was asked for '{capability}', which this instance does not offer "
                f"(it offers: {', '.join(sorted(self.capabilities)) or 'nothing'})",
                "pick an algorithm that needs only what the backend offers (innerloop list)",
            )

    # -- primitives ---------------------------------------------------------------------------
    def loss(self, learner: LearnerLike, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-task loss L_b(θ_b), shape [B]."""
        raise CapabilityError(f"backend '{self.name}' does not implement 'loss'")

    def loss_and_grad(
        self, learner: LearnerLike, params: Params, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, Params]:
        """Per-task loss [B] and gradient ∇_θ L_b(θ_b) (a dict with leading axis B)."""
        raise CapabilityError(f"backend '{self.name}' does not implement 'loss_and_grad'")

    def hvp(
        self, learner: LearnerLike, params: Params, x: torch.Tensor, y: torch.Tensor, vector: Params
    ) -> Params:
        """Per-task Hessian-vector product ∇²L_b(θ_b)·v_b (seed 000 eq. 2.7)."""
        raise CapabilityError(f"backend '{self.name}' does not implement 'hvp'")

    def fuses(self, learner: LearnerLike) -> bool:
        """True when :meth:`meta_gradient` (and any fused primitive) can realize ``learner``."""
        return False

    def meta_gradient(
        self, learner: LearnerLike, params: Params, support_x: torch.Tensor, support_y: torch.Tensor,
        query_x: torch.Tensor, query_y: torch.Tensor, inner_lr: float, inner_steps: int, first_order: bool = False,
    ) -> tuple[torch.Tensor, Params]:
        """Per-task query losses L_Q(θ_N) [B] and the MAML meta-gradient averaged over tasks at the
        shared ``params`` (no task axis): N SGD steps of size α on the support set, then the reverse
        pass of seed 000 eq. 2.5 (skipped when ``first_order``, eq. 3.1)."""
        raise CapabilityError(f"backend '{self.name}' does not implement 'meta_gradient'")

    def trains_with_autograd(self, algorithm: str, model: Any) -> None:
        """Told by an amortized algorithm (the ``autograd`` capability) that it trains ``model`` with
        plain torch autograd on this backend's device rather than through the primitives, so that a
        backend whose own kernels do not run it can say so."""

    # -- random draws (substrates with noise, e.g. measurement shots) --------------------------
    def random_state(self) -> dict[str, Any]:
        """The state of every random draw the backend makes (shot noise, estimator draws), which a
        checkpoint saves so that a resumed run draws what an uninterrupted one would; {} for
        deterministic backends."""
        return {}

    def set_random_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`random_state`."""

    def reseed(self, seed: int) -> None:
        """Restart the backend's random draws from ``seed`` (held-out evaluation draws from a fixed one)."""

    @classmethod
    def unavailable_reason(cls, **options: Any) -> str | None:
        """Why this backend cannot run here with ``options`` (None when it can)."""
        return None

    def __repr__(self) -> str:
        caps = ",".join(sorted(self.capabilities))
        return f"<{type(self).__name__} '{self.name}' dtype={self.dtype} device={self.device} [{caps}]>"
