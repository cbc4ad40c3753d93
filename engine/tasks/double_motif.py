"""DoubleMotif: an offline, generated analogue of Double-NMNIST for spiking learners (issue 7).

A fixed bank of 10 spatio-temporal rate motifs on 16 channels: each channel of a motif is active
with probability 0.35, firing at rate 0.7 on an 8-step window (random start) and at the
background rate 0.01 elsewhere, over T = 30 steps. A class is an ordered pair (a, b): motif a on
channels 0–15 and motif b on channels 16–31 — 100 classes, 64 meta-train pairs and 36 disjoint
held-out pairs (meta-val and meta-test both draw from the held-out pairs). A sample shifts its
class's rates by a global temporal jitter of ±2 steps (background fills the gap) and draws
Bernoulli spikes, x ∈ {0, 1}^{T×32}. Tasks are N-way K-shot episodes; labels 0..N−1 are assigned
to the chosen pairs in random order in every task, so no label means anything across tasks.
"""

from __future__ import annotations

import torch

from innerloop.engine.errors import ConfigError
from innerloop.engine.tasks.base import TaskBatch, TaskFamily, shuffle_points

MOTIFS, CHANNELS, STEPS, WINDOW = 10, 16, 30, 8
ACTIVE, RATE, BACKGROUND, JITTER = 0.35, 0.7, 0.01, 2
TRAIN_PAIRS = 64


def motif_bank(seed: int) -> torch.Tensor:
    """Rates [10, T, 16] of the motif bank drawn from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    active = torch.rand(MOTIFS, CHANNELS, generator=g) < ACTIVE
    start = torch.randint(0, STEPS - WINDOW + 1, (MOTIFS, CHANNELS), generator=g)
    t = torch.arange(STEPS).view(1, STEPS, 1)
    window = (t >= start.unsqueeze(1)) & (t < start.unsqueeze(1) + WINDOW) & active.unsqueeze(1)
    return torch.where(window, RATE, BACKGROUND)


class DoubleMotif(TaskFamily):
    """N-way K-shot spike-pattern classification; inputs are spike trains [T, 32]."""

    name = "double-motif"
    loss = "cross_entropy"
    input_dim = 2 * CHANNELS
    spiking = True

    def __init__(self, shots: int = 1, queries: int = 10, ways: int = 5, seed: int = 7) -> None:
        super().__init__(shots, queries)
        if int(ways) != ways or not 2 <= ways <= 100 - TRAIN_PAIRS:
            raise ConfigError(f"ways must be an integer in [2, {100 - TRAIN_PAIRS}], got {ways}", "e.g. ways=5")
        self.ways, self.seed = int(ways), int(seed)
        self.bank = motif_bank(self.seed)
        pairs = torch.cartesian_prod(torch.arange(MOTIFS), torch.arange(MOTIFS))
        order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(self.seed + 1))
        held_out = pairs[order[TRAIN_PAIRS:]]
        self.pairs = {"meta-train": pairs[order[:TRAIN_PAIRS]], "meta-val": held_out, "meta-test": held_out}
        self.active = "meta-train"

    @property
    def output_dim(self) -> int:  # type: ignore[override]
        return self.ways

    @property
    def steps(self) -> int:
        return STEPS

    def split_view(self, split: str) -> DoubleMotif:
        super().split_view(split)
        view = DoubleMotif.__new__(DoubleMotif)
        view.__dict__.update(self.__dict__)
        view.active = split
        return view

    def class_rates(self, pairs: torch.Tensor) -> torch.Tensor:
        """Rates [..., T, 32] of classes given as motif pairs [..., 2]."""
        return torch.cat([self.bank[pairs[..., 0]], self.bank[pairs[..., 1]]], dim=-1)

    def _sample(self, num_tasks: int, generator: torch.Generator | None, shots: int, queries: int) -> TaskBatch:
        pairs = self.pairs[self.active]
        chosen = torch.stack([torch.randperm(len(pairs), generator=generator)[: self.ways] for _ in range(num_tasks)])
        rates = self.class_rates(pairs[chosen])  # [B, N, T, 32]; label n = the n-th chosen pair
        support = self._spikes(rates, shots, generator)
        query = self._spikes(rates, queries, generator)
        return TaskBatch(*support, *query, {"pairs": pairs[chosen]})

    def _spikes(self, rates: torch.Tensor, per_class: int, generator: torch.Generator | None):
        tasks = rates.shape[0]
        per_point = rates.repeat_interleave(per_class, dim=1)  # [B, N·k, T, 32]
        shift = torch.randint(-JITTER, JITTER + 1, per_point.shape[:2], generator=generator)
        source = torch.arange(STEPS).view(1, 1, STEPS) - shift.unsqueeze(-1)  # t − s
        valid = (source >= 0) & (source < STEPS)
        index = source.clamp(0, STEPS - 1).unsqueeze(-1).expand_as(per_point)
        shifted = torch.where(valid.unsqueeze(-1), per_point.gather(2, index), BACKGROUND)
        spikes = torch.bernoulli(shifted, generator=generator)
        labels = torch.arange(self.ways).repeat_interleave(per_class).expand(tasks, -1)
        return shuffle_points(spikes, labels, generator)

    def config(self) -> dict:
        return {**super().config(), "ways": self.ways, "seed": self.seed}

