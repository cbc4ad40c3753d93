"""scikit-learn's bundled 8×8 handwritten digits as a small real few-shot data set (no download).

1797 images of the digits 0–9 (about 180 per class), 16 grey levels. Ten classes leave room
for only two class-disjoint splits, so meta-test episodes use the held-out ``test_classes``
(default 5–9: 5-way episodes over digits never seen in meta-training) and meta-val uses a held-out
``val_fraction`` of the *images* of the meta-train classes (it monitors training, it does not
measure transfer to new classes). Inputs are the 64 pixel values scaled to [0, 1].

Five meta-training classes are few: an embedding meta-trained on them learns to tell exactly
those five apart. ``pseudo_classes="dihedral"`` (the default; ``"none"`` keeps five) enlarges
the meta-training catalog to 40 classes: each meta-train digit under each of the 8 symmetries of
the square (rotations by 0/90/180/270° and their transposes) counts as a class of its own, so
training episodes mix e.g. an upright 2 with a mirrored 3 (rotated characters as new classes,
as Vinyals et al. 2016 and Snell et al. 2017 do on Omniglot, here over the whole symmetry
group). Meta-val and meta-test classes are not augmented.
"""

from __future__ import annotations

import torch

from innerloop.engine.errors import ConfigError, unknown_name
from innerloop.engine.tasks.base import generator_for
from innerloop.engine.tasks.episodes import EpisodeFamily, ExampleClass

PSEUDO_CLASSES = ("none", "dihedral")


def dihedral_images(images: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """The 8 images of each [n, H, W] square image under the dihedral group D4, with their names."""
    out = []
    for transposed in (False, True):
        base = images.transpose(-1, -2) if transposed else images
        for quarter_turns in range(4):
            name = f"rot{90 * quarter_turns}" + ("-transposed" if transposed else "")
            out.append((name, torch.rot90(base, quarter_turns, dims=(-2, -1))))
    return out


class Digits(EpisodeFamily):
    """N-way K-shot episodes of sklearn's 8×8 digits; meta-test classes held out of meta-training."""

    name = "digits"
    image_shape = (1, 8, 8)

    def __init__(self, shots: int = 5, queries: int = 15, ways: int = 5,
                 test_classes: tuple[int, ...] | list[int] = (5, 6, 7, 8, 9), val_fraction: float = 0.2,
                 pseudo_classes: str = "dihedral") -> None:
        from sklearn.datasets import load_digits

        test = sorted({int(c) for c in test_classes})
        if not test or any(c not in range(10) for c in test) or len(test) == 10:
            raise ConfigError(f"test_classes must be a proper subset of the digits 0–9, got {list(test_classes)}",
                              "e.g. test_classes=[5,6,7,8,9]")
        if not 0 < val_fraction < 1:
            raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}", "e.g. val_fraction=0.2")
        if pseudo_classes not in PSEUDO_CLASSES:
            raise unknown_name("pseudo_classes", pseudo_classes, PSEUDO_CLASSES)
        self.test_classes, self.val_fraction, self.pseudo_classes = test, float(val_fraction), pseudo_classes
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
            train = examples[order[cut:]]
            if pseudo_classes == "none":
                splits["meta-train"].append(ExampleClass(str(digit), source, train))
                continue
            for name, variant in dihedral_images(train.reshape(-1, 8, 8)):
                splits["meta-train"].append(ExampleClass(f"{digit}/{name}", source, variant.reshape(-1, 64)))
        super().__init__(shots, queries, ways, splits)

    def config(self) -> dict:
        return {**super().config(), "test_classes": self.test_classes, "val_fraction": self.val_fraction,
                "pseudo_classes": self.pseudo_classes}
