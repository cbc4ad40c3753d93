"""A finite meta-training set: K fixed tasks instead of an endless stream (monograph §2.4.1, Fig. 2.4).

Meta-learning theory and the monograph's Figure 2.4 vary the number of meta-training tasks K
and the data per task N. ``FiniteTasks(family, K)`` draws K tasks once (support and query
points included, from the run seed) and meta-training batches then resample those K tasks;
meta-val and meta-test stay fresh draws from the underlying family, so held-out numbers measure
generalization to new tasks.
"""

from __future__ import annotations

import torch

from innerloop.engine.errors import ConfigError, ShapeError
from innerloop.engine.tasks.base import TaskBatch, TaskFamily, generator_for


class FiniteTasks(TaskFamily):
    """``family`` with its meta-train split replaced by ``count`` fixed tasks."""

    def __init__(self, family: TaskFamily, count: int, seed: int = 0) -> None:
        if int(count) != count or count < 1:
            raise ConfigError(f"the number of meta-training tasks must be a positive integer, got {count}",
                              "e.g. --train-tasks 20")
        super().__init__(family.shots, family.queries)
        self.family, self.count, self.seed = family, int(count), int(seed)
        self.name, self.loss = family.name, family.loss
        self.input_dim, self.output_dim = family.input_dim, family.output_dim
        self.image_shape = getattr(family, "image_shape", None)
        self.pool = family.split_view("meta-train").sample(self.count, generator_for(seed, "meta-train/pool"))

    def __getattr__(self, name: str):
        """Other attributes (a GP's noise, an image family's classes) are the wrapped family's."""
        if name == "family":
            raise AttributeError(name)
        return getattr(self.family, name)

    def split_view(self, split: str) -> TaskFamily:
        super().split_view(split)
        if split != "meta-train":
            return self.family.split_view(split)
        return self

    def _sample(self, num_tasks: int, generator: torch.Generator | None, shots: int, queries: int) -> TaskBatch:
        if (shots, queries) != (self.shots, self.queries):
            raise ShapeError(f"the {self.count} meta-training tasks were drawn with {self.shots} shots and "
                             f"{self.queries} queries; cannot sample {shots}/{queries}",
                             "sample held-out tasks from another split")
        return self.pool.select(torch.randint(0, self.count, (num_tasks,), generator=generator))

    def config(self) -> dict:
        return {**self.family.config(), "train_tasks": self.count}
