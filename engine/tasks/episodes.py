"""N-way K-shot episodes over a fixed catalog of classes, split class-disjointly.

Real few-shot data sets (digits, Omniglot, mini-ImageNet) are catalogs of labelled examples.
A task samples ``ways`` classes of the active split, then ``shots`` support and ``queries``
query examples per class without replacement, relabels the chosen classes 0..N−1 in random
order and shuffles the points — the episode protocol of Vinyals et al. (2016). The
meta-train, meta-val and meta-test splits never share a class (unless a family documents
otherwise), so held-out tasks are about unseen classes.

Inputs are flattened to [·, C·H·W] (``image_shape`` tells embeddings how to unflatten them), so
every algorithm in the engine runs on image tasks; examples are stored as uint8 when they come
from image files and scaled to [0, 1] when sampled.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from innerloop.engine.errors import ConfigError, ShapeError
from innerloop.engine.tasks.base import SPLITS, TaskBatch, TaskFamily, shuffle_points


@dataclass(frozen=True)
class ExampleClass:
    """One class: its name, where it came from (for error messages) and its examples [n, D]."""

    name: str
    source: str
    examples: torch.Tensor


class EpisodeFamily(TaskFamily):
    """Episodes over ``self.splits[split]``: a list of :class:`ExampleClass` per split."""

    loss = "cross_entropy"
    image_shape: tuple[int, int, int] | None = None

    def __init__(self, shots: int, queries: int, ways: int, splits: dict[str, list[ExampleClass]]) -> None:
        super().__init__(shots, queries)
        if int(ways) != ways or ways < 2:
            raise ConfigError(f"ways must be an integer >= 2, got {ways}", "e.g. ways=5")
        self.ways = int(ways)
        self.splits = splits
        self.active = "meta-train"
        dims = {c.examples.shape[1] for classes in splits.values() for c in classes}
        if len(dims) != 1:
            raise ShapeError(f"classes of '{self.name}' have examples of different sizes {sorted(dims)}",
                             "all examples must have one size")
        self.input_dim = dims.pop()
        for split in SPLITS:
            self._check_split(split, self.shots, self.queries)

    @property
    def output_dim(self) -> int:  # type: ignore[override]
        return self.ways

    def split_view(self, split: str) -> EpisodeFamily:
        """A view of this family that samples only the classes of ``split``."""
        super().split_view(split)
        view = copy.copy(self)
        view.active = split
        return view

    def classes(self, split: str | None = None) -> list[ExampleClass]:
        return self.splits[split or self.active]

    def _check_split(self, split: str, shots: int, queries: int) -> None:
        classes = self.splits.get(split, [])
        if len(classes) < self.ways:
            raise ShapeError(
                f"the {split} split of '{self.name}' has {len(classes)} classes, fewer than ways={self.ways}",
                "lower ways, or add classes to the data set",
            )
        need = shots + queries
        for c in classes:
            if c.examples.shape[0] < need:
                raise ShapeError(
                    f"class '{c.name}' ({c.source}) has {c.examples.shape[0]} examples, fewer than "
                    f"shots + queries = {shots} + {queries}",
                    f"lower shots/queries to at most {c.examples.shape[0]} in total, or add examples",
                )

    def _sample(self, num_tasks: int, generator: torch.Generator | None, shots: int, queries: int) -> TaskBatch:
        if (shots, queries) != (self.shots, self.queries):
            self._check_split(self.active, shots, queries)
        classes = self.classes()
        support, query = [], []
        for _ in range(num_tasks):
            chosen = torch.randperm(len(classes), generator=generator)[: self.ways]
            s, q = [], []
            for index in chosen.tolist():
                examples = classes[index].examples
                pick = torch.randperm(examples.shape[0], generator=generator)[: shots + queries]
                s.append(examples[pick[:shots]])
                q.append(examples[pick[shots:]])
            support.append(torch.cat(s))
            query.append(torch.cat(q))
        sx, sy = shuffle_points(self._scale(torch.stack(support)), self._labels(num_tasks, shots), generator)
        qx, qy = shuffle_points(self._scale(torch.stack(query)), self._labels(num_tasks, queries), generator)
        return TaskBatch(sx, sy, qx, qy)

    def _labels(self, num_tasks: int, per_class: int) -> torch.Tensor:
        return torch.arange(self.ways).repeat_interleave(per_class).expand(num_tasks, -1)

    @staticmethod
    def _scale(x: torch.Tensor) -> torch.Tensor:
        return x.float() / 255 if x.dtype == torch.uint8 else x.float()

    def summary(self) -> str:
        """Classes and examples per split, one line."""
        parts = [f"{s}: {len(self.splits[s])} classes" for s in SPLITS]
        return f"{self.name} ({math.prod(self.image_shape or (self.input_dim,))} features): " + ", ".join(parts)

    def config(self) -> dict:
        return {**super().config(), "ways": self.ways}
