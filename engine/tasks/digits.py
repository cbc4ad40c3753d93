"""scikit-learn's bundled 8×8 handwritten digits as a small real few-shot data set (no download).

1797 images of the digits 0–9 (about 180 per class), 16 grey levels. Ten classes leave room
for only two class-disjoint splits, so meta-test episodes use the held-out ``test_classes``
(default 5–9: 5-way episodes over digits never seen in meta-training) and meta-val uses a held-out
``val_fraction`` of the *images* of the meta-train classes (it monitors training, it does not
measure transfer to new classes). Inputs are the 64 pixel values scaled to [0, 1].
"""

from __future__ import annotations

import torch

from innerloop.engine.errors import ConfigError
from innerloop.engine.tasks.base import generator_for
from innerloop.engine.tasks.episodes import EpisodeFamily, ExampleClass


class Digits(EpisodeFamily):
    """N-way K-shot episodes of sklearn's 8×8 digits; meta-test classes held out of meta-training."""

    name = "digits"
    image_shape = (1, 8, 8)

    def __init__(self, shots: int = 5, queries: int = 15, ways: int = 5,
                 test_classes: tuple[int, ...] | list[int] = (5, 6, 7, 8, 9), val_fraction: float = 0.2) -> None:
        from sklearn.datasets import load_digits

        test = sorted({int(c) for c in test_classes})
        if not test or any(c not in range(10) for c in test) or len(test) == 10:
            raise ConfigError(f"test_classes must be a proper subset of the digits 0–9, got {list(test_classes)}",
                              "e.g. test_classes=[5,6,7,8,9]")
        if not 0 < val_fraction < 1:
            raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}", "e.g. val_fraction=0.2")
        self.test_classes, self.val_fraction = test, float(val_fraction)
        data = load_digits()
        images = torch.tensor(data.data, dtype=torch.float32) / 16
        labels = torch.tensor(data.target)
        splits: dict[str, list[ExampleClass]] = {"meta-train": [], "meta-val": [], "meta-test": []}
        source = "sklearn.datasets.load_digits"
        for digit in range(10):
            examples = images[labels == digit]
            if digit in test:
                splits["meta-test"].append(ExampleClass(str(digit), source, examples))
                continue
            order = torch.randperm(len(examples), generator=generator_for(digit, "digits/val"))
            cut = round(val_fraction * len(examples))
            splits["meta-val"].append(ExampleClass(str(digit), source, examples[order[:cut]]))
            splits["meta-train"].append(ExampleClass(str(digit), source, examples[order[cut:]]))
        super().__init__(shots, queries, ways, splits)

    def config(self) -> dict:
        return {**super().config(), "test_classes": self.test_classes, "val_fraction": self.val_fraction}
