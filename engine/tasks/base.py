"""Task batches and task families (seed 000 §1.2: a task is a support/query pair).

A family samples B tasks at once as tensors with a leading task axis: support x/y of shape
[B, K, ·] and query x/y of shape [B, M, ·]. Sampling is driven by a ``torch.Generator`` so it is
reproducible; :meth:`TaskFamily.stream` derives independent generators for the meta-train,
meta-val and meta-test splits from one seed, so held-out tasks never come from the training
stream.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch

from innerloop.engine.errors import ShapeError, require_positive

SPLITS = ("meta-train", "meta-val", "meta-test")


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for ``purpose`` (a split or role name) derived from the run seed.

    Different purposes give unrelated seeds (SHA-256), so the streams they drive are
    independent and a held-out stream is unaffected by how many training tasks were drawn.
    """
    digest = hashlib.sha256(f"innerloop:{purpose}:{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator_for(seed: int, purpose: str) -> torch.Generator:
    """A CPU generator seeded by :func:`derive_seed`."""
    return torch.Generator().manual_seed(derive_seed(seed, purpose))


@dataclass(frozen=True)
class TaskBatch:
    """B tasks, each a support set (K points) and a query set (M points).

    Inputs are ``[B, K, features]``, or ``[B, K, T, features]`` for spike trains (any axes between
    points and features are per-point structure, e.g. time). Regression targets are float
    ``[B, K, out]``; classification labels are int64 ``[B, K]``.
    ``task_params`` holds the generating parameters (amplitude, lengthscale, ...), each of
    shape [B], for plots and diagnostics; algorithms never read it.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    task_params: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in ("support", "query"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.ndim < 3:
                raise ShapeError(
                    f"{split}_x must have shape [tasks, points, (time,) features], got {tuple(x.shape)}",
                    "add the task axis with x.unsqueeze(0) or the feature axis with x.unsqueeze(-1)",
                )
            if y.shape[:2] != x.shape[:2]:
                raise ShapeError(
                    f"{split}_y has shape {tuple(y.shape)} but {split}_x has {tuple(x.shape)}: "
                    "the first two axes (tasks, points) must agree",
                    "give one target per input point",
                )
            if y.is_floating_point() and y.ndim != 3:
                raise ShapeError(
                    f"regression targets {split}_y must have shape [tasks, points, outputs], "
                    f"got {tuple(y.shape)}",
                    "add the output axis with y.unsqueeze(-1)",
                )
            if not y.is_floating_point() and y.ndim != 2:
                raise ShapeError(
                    f"class labels {split}_y must have shape [tasks, points], got {tuple(y.shape)}",
                    "pass integer labels without a trailing axis",
                )
        if self.support_x.shape[0] != self.query_x.shape[0]:
            raise ShapeError(
                f"support has {self.support_x.shape[0]} tasks but query has {self.query_x.shape[0]}",
                "sample support and query sets for the same tasks",
            )
        if self.support_x.shape[2:] != self.query_x.shape[2:]:
            raise ShapeError(
                f"support inputs have per-point shape {tuple(self.support_x.shape[2:])}, query inputs "
                f"{tuple(self.query_x.shape[2:])}",
                "support and query must come from the same input space",
            )

    @property
    def num_tasks(self) -> int:
        return self.support_x.shape[0]

    @property
    def is_classification(self) -> bool:
        return not self.support_y.is_floating_point()

    def to(self, dtype: torch.dtype, device: torch.device | str) -> TaskBatch:
        """Floating tensors cast to ``dtype``; every tensor moved to ``device``."""

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device)

        tensors = (self.support_x, self.support_y, self.query_x, self.query_y)
        moved = tuple(move(t) for t in tensors)
        task_params = {k: move(v) for k, v in self.task_params.items()}
        unmoved = all(a is b for a, b in zip(moved, tensors))
        if unmoved and all(task_params[k] is v for k, v in self.task_params.items()):
            return self  # already there: no copy, no re-validation (every meta-step of a training loop)
        return TaskBatch(*moved, task_params)

    def first_support(self, count: int) -> TaskBatch:
        """The same tasks with only their first ``count`` support points (e.g. the first pilots)."""
        return TaskBatch(self.support_x[:, :count], self.support_y[:, :count], self.query_x, self.query_y,
                         self.task_params)

    def select(self, index: slice | torch.Tensor) -> TaskBatch:
        """The sub-batch of tasks ``index`` (a slice or index tensor over the task axis)."""
        return TaskBatch(
            self.support_x[index], self.support_y[index], self.query_x[index], self.query_y[index],
            {k: v[index] for k, v in self.task_params.items()},
        )


class TaskFamily(ABC):
    """A distribution over tasks p(T) that samples :class:`TaskBatch` objects.

    Subclasses set ``name`` (the CLI name), ``loss`` ("mse" or "cross_entropy"),
    ``input_dim`` and ``output_dim`` and implement :meth:`_sample`.
    """

    name: str
    loss: str
    input_dim: int
    output_dim: int

    def __init__(self, shots: int, queries: int) -> None:
        for label, value in (("shots", shots), ("queries", queries)):
            if int(value) != value:
                raise ShapeError(f"{label} must be an integer, got {value}", f"pass a whole number of {label}")
            require_positive(label, value)
        self.shots = int(shots)
        self.queries = int(queries)

    def sample(
        self,
        num_tasks: int,
        generator: torch.Generator | None = None,
        *,
        shots: int | None = None,
        queries: int | None = None,
    ) -> TaskBatch:
        """Draw ``num_tasks`` tasks; ``shots``/``queries`` override the family's sizes."""
        require_positive("num_tasks", num_tasks)
        shots = self.shots if shots is None else shots
        queries = self.queries if queries is None else queries
        require_positive("shots", shots)
        require_positive("queries", queries)
        return self._sample(int(num_tasks), generator, int(shots), int(queries))

    @abstractmethod
    def _sample(self, num_tasks: int, generator: torch.Generator | None, shots: int, queries: int) -> TaskBatch:
        """Draw tasks with the given sizes (already validated)."""

    def stream(self, split: str, seed: int) -> TaskStream:
        """An endless, reproducible stream of batches for ``split`` (see :data:`SPLITS`)."""
        return TaskStream(self.split_view(split), generator_for(seed, split))

    def split_view(self, split: str) -> TaskFamily:
        """The family restricted to ``split``. Synthetic families draw fresh task parameters for
        every task, so all splits are the family itself (independence comes from the stream's
        seed); families over a fixed set of classes return a view on that split's classes."""
        if split not in SPLITS:
            raise ShapeError(f"unknown split '{split}'", f"use one of {', '.join(SPLITS)}")
        return self

    def config(self) -> dict:
        """The constructor arguments that recreate this family."""
        return {"shots": self.shots, "queries": self.queries}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class TaskStream:
    """Batches drawn one after another from a family with a private generator.

    Its state can be saved and restored (checkpoints), so a resumed run sees the same tasks.
    """

    def __init__(self, family: TaskFamily, generator: torch.Generator) -> None:
        self.family = family
        self.generator = generator

    def next(self, num_tasks: int) -> TaskBatch:
        return self.family.sample(num_tasks, self.generator)

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def load_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


def uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    """Samples from U[low, high) in the default float dtype."""
    return low + (high - low) * torch.rand(shape, generator=generator)


def shuffle_points(x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle points [B, N, ...] and their labels [B, N] within each task (same permutation)."""
    order = torch.rand(labels.shape, generator=generator).argsort(dim=1)
    x = torch.gather(x, 1, order.view(*order.shape, *([1] * (x.ndim - 2))).expand_as(x))
    return x, torch.gather(labels, 1, order)
