"""Few-shot image folders: the Omniglot and mini-ImageNet layouts (nothing is downloaded).

Omniglot (Lake et al. 2015), ``root/ALPHABET/CHARACTER/*.png``; a root holding the official
``images_background`` and ``images_evaluation`` folders is also accepted. One character is one
class. With the official folders, background characters are meta-train (a seeded
``val_fraction`` of them meta-val) and evaluation characters meta-test; otherwise the characters
are split by a seeded permutation into ``val_fraction`` / ``test_fraction`` / the rest.
Images are grey-scale, inverted so strokes are bright, resized to ``image_size`` (28 as in
Vinyals et al. and Snell et al.).

mini-ImageNet (Ravi & Larochelle 2017 splits), ``root/images/*.jpg`` plus ``root/train.csv``,
``root/val.csv``, ``root/test.csv`` with a ``filename,label`` header: 64/16/20 classes of 600
RGB images, 84×84 in the usual release.

Every image of a data set must have the same native size (a mixed folder is reported with its
path); ``image_size`` then resizes all of them.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from innerloop.engine.errors import ConfigError, ShapeError
from innerloop.engine.progress import Progress
from innerloop.engine.tasks.base import generator_for
from innerloop.engine.tasks.episodes import EpisodeFamily, ExampleClass

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


class ImageReader:
    """Loads images as uint8 arrays [C·H·W], enforcing one native size across a data set."""

    def __init__(self, mode: str, image_size: int | None, invert: bool = False) -> None:
        if image_size is not None and (int(image_size) != image_size or image_size < 1):
            raise ConfigError(f"image_size must be a positive integer, got {image_size}", "e.g. image_size=28")
        self.mode, self.image_size, self.invert = mode, image_size, invert
        self.native: tuple[tuple[int, int], Path] | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        channels = 3 if self.mode == "RGB" else 1
        if self.image_size is not None:
            return channels, self.image_size, self.image_size
        width, height = self.native[0]
        return channels, height, width

    def read(self, path: Path) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                size = image.size
                self._check_size(size, path)
                image = image.convert(self.mode)
                if self.image_size is not None and size != (self.image_size, self.image_size):
                    image = image.resize((self.image_size, self.image_size), Image.Resampling.LANCZOS)
                pixels = np.asarray(image, dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as err:
            raise ShapeError(f"cannot read image '{path}' ({type(err).__name__})",
                             "remove or replace the file") from None
        if self.invert:
            pixels = 255 - pixels
        return pixels.reshape(*pixels.shape[:2], -1).transpose(2, 0, 1).reshape(-1)

    def read_folder(self, folder: Path, name: str, progress: Progress | None = None) -> ExampleClass:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ShapeError(f"class folder '{folder}' holds no images ({', '.join(IMAGE_SUFFIXES)})",
                             "remove the empty folder or add its images")
        return self.read_files(files, name, str(folder), progress)

    def read_files(self, files: list[Path], name: str, source: str, progress: Progress | None = None
                   ) -> ExampleClass:
        rows = []
        for path in files:
            rows.append(self.read(path))
            if progress is not None:
                progress.update()
        return ExampleClass(name, source, torch.from_numpy(np.stack(rows)))

    def _check_size(self, size: tuple[int, int], path: Path) -> None:
        if self.native is None:
            self.native = (size, path)
        elif size != self.native[0]:
            (w0, h0), first = self.native
            raise ShapeError(
                f"image '{path}' in folder '{path.parent}' is {size[0]}×{size[1]} pixels but '{first}' is "
                f"{w0}×{h0}: all images of a data set must have one size",
                "resize the data set to one size first (e.g. the 84×84 mini-ImageNet release)",
            )


def _directory(root: str | Path, what: str) -> Path:
    if not str(root):
        raise ConfigError(f"the {what} task needs the data set's location",
                          f"pass --task-option root=/path/to/{what.lower()} (see README, Data sets)")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{what} root '{path}' is not a directory",
                          f"point --task-option root=... at the unpacked {what} data set (see README, Data sets)")
    return path


def _subfolders(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _seeded_split(items: list, fractions: tuple[float, ...], seed: int, purpose: str) -> list[list]:
    """Partition ``items`` by a seeded permutation into len(fractions) + 1 parts (the last: the rest)."""
    order = torch.randperm(len(items), generator=generator_for(seed, purpose)).tolist()
    parts, start = [], 0
    for fraction in fractions:
        count = max(1, round(fraction * len(items))) if fraction > 0 else 0
        parts.append([items[i] for i in sorted(order[start:start + count])])
        start += count
    parts.append([items[i] for i in sorted(order[start:])])
    return parts


class Omniglot(EpisodeFamily):
    """Omniglot characters as classes: N-way K-shot episodes from an alphabet/character folder tree."""

    name = "omniglot"

    def __init__(self, root: str = "", shots: int = 1, queries: int = 15, ways: int = 5, image_size: int = 28,
                 val_fraction: float = 0.1, test_fraction: float = 0.2, split_seed: int = 0) -> None:
        if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ConfigError(f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in [0, 1) "
                              "and sum below 1", "e.g. val_fraction=0.1 test_fraction=0.2")
        base = _directory(root, "Omniglot")
        self.root, self.image_size = str(base), image_size
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        official = [base / n for n in ("images_background", "images_evaluation") if (base / n).is_dir()]
        if official:
            train_chars = self._characters(official[0])
            test_chars = self._characters(official[1]) if len(official) == 2 else []
            val_chars, train_chars = _seeded_split(train_chars, (val_fraction,), split_seed, "omniglot/val")
        else:
            val_chars, test_chars, train_chars = _seeded_split(
                self._characters(base), (val_fraction, test_fraction), split_seed, "omniglot/split")
        reader = ImageReader("L", image_size, invert=True)
        files = {c: sorted(p for p in c.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                 for c in train_chars + val_chars + test_chars}
        progress = Progress(sum(len(f) for f in files.values()), "loading Omniglot", enabled=len(files) > 200)
        splits = {split: [reader.read_folder(c, f"{c.parent.name}/{c.name}", progress) for c in chars]
                  for split, chars in (("meta-train", train_chars), ("meta-val", val_chars),
                                       ("meta-test", test_chars))}
        progress.close()
        self.image_shape = reader.image_shape
        super().__init__(shots, queries, ways, splits)

    @staticmethod
    def _characters(path: Path) -> list[Path]:
        alphabets = _subfolders(path)
        if not alphabets:
            raise ShapeError(f"'{path}' has no alphabet folders", "expected the layout ROOT/ALPHABET/CHARACTER/*.png")
        characters = [c for a in alphabets for c in _subfolders(a)]
        if not characters:
            raise ShapeError(f"the alphabet folders of '{path}' hold no character folders",
                             "expected the layout ROOT/ALPHABET/CHARACTER/*.png")
        return characters

    def config(self) -> dict:
        return {**super().config(), "root": self.root, "image_size": self.image_size,
                "val_fraction": self.val_fraction, "test_fraction": self.test_fraction, "split_seed": self.split_seed}


class MiniImageNet(EpisodeFamily):
    """mini-ImageNet in the Ravi & Larochelle CSV-split layout: images/ plus train/val/test.csv."""

    name = "mini-imagenet"

    def __init__(self, root: str = "", shots: int = 5, queries: int = 15, ways: int = 5,
                 image_size: int | None = None) -> None:
        base = _directory(root, "mini-ImageNet")
        self.root, self.image_size = str(base), image_size
        labels = {split: self._read_csv(base, name)
                  for split, name in (("meta-train", "train"), ("meta-val", "val"), ("meta-test", "test"))}
        seen: dict[str, str] = {}
        for split, by_label in labels.items():
            for label in by_label:
                if label in seen:
                    raise ShapeError(f"class '{label}' appears in both the {seen[label]} and {split} CSV files",
                                     "meta-train/val/test classes must be disjoint")
                seen[label] = split
        reader = ImageReader("RGB", image_size)
        total = sum(len(files) for by_label in labels.values() for files in by_label.values())
        progress = Progress(total, "loading mini-ImageNet", enabled=total > 2000)
        splits = {split: [reader.read_files(files, label, f"{base / 'images'} ({split} class)", progress)
                          for label, files in by_label.items()] for split, by_label in labels.items()}
        progress.close()
        self.image_shape = reader.image_shape
        super().__init__(shots, queries, ways, splits)

    @staticmethod
    def _read_csv(base: Path, split: str) -> dict[str, list[Path]]:
        path = base / f"{split}.csv"
        if not path.is_file():
            raise ConfigError(f"'{path}' is missing", "expected ROOT/images/ and ROOT/{train,val,test}.csv "
                              "(header: filename,label), the Ravi & Larochelle split files")
        by_label: dict[str, list[Path]] = {}
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                if "filename" not in row or "label" not in row:
                    raise ConfigError(f"'{path}' needs the header 'filename,label'", "fix the CSV header")
                image = base / "images" / row["filename"]
                if not image.is_file():
                    raise ConfigError(f"'{path}' lists '{row['filename']}', which is not in '{base / 'images'}'",
                                      "check the images folder")
                by_label.setdefault(row["label"], []).append(image)
        if not by_label:
            raise ShapeError(f"'{path}' lists no images", "fill in the split file")
        return by_label

    def config(self) -> dict:
        return {**super().config(), "root": self.root, "image_size": self.image_size}
