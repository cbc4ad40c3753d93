"""Few-shot image loaders on folders the tests generate (Omniglot and mini-ImageNet layouts), the
digits family, episode correctness, class-disjoint splits, and named errors for bad folders."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

import innerloop as il
from conftest import gen
from innerloop.engine.tasks import Digits, MiniImageNet, Omniglot


def _png(path, value: int, size=(12, 12), mode="L"):
    """An image whose pixels all equal ``value`` (so every episode point reveals its class)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    Image.fromarray(np.full(shape, value, dtype=np.uint8), mode).save(path)


def _omniglot(root, alphabets=2, characters=6, images=4, size=(12, 12)):
    for a in range(alphabets):
        for c in range(characters):
            for i in range(images):
                _png(root / f"alphabet{a}" / f"character{c:02d}" / f"{i}.png", 10 * (a * characters + c), size)
    return root


def _classes_are_consistent(batch, ways):
    """Points labelled k share one pixel value (their class), different labels differ, in both sets."""
    for b in range(batch.num_tasks):
        support_values = {}
        for k in range(ways):
            values = batch.support_x[b][batch.support_y[b] == k].unique()
            assert len(values) == 1
            support_values[k] = float(values)
            assert batch.query_x[b][batch.query_y[b] == k].unique().tolist() == [support_values[k]]
        assert len(set(support_values.values())) == ways


def test_omniglot_layout_episodes_and_class_disjoint_splits(tmp_path):
    family = Omniglot(str(_omniglot(tmp_path / "omni")), ways=3, shots=2, queries=1, image_size=8,
                      val_fraction=0.25, test_fraction=0.25)
    names = {split: {c.name for c in family.classes(split)} for split in il.tasks.SPLITS}
    assert sum(len(n) for n in names.values()) == 12
    assert not (names["meta-train"] & names["meta-test"] or names["meta-train"] & names["meta-val"]
                or names["meta-val"] & names["meta-test"])
    assert family.image_shape == (1, 8, 8) and family.input_dim == 64 and family.output_dim == 3
    batch = family.stream("meta-test", 0).next(4)
    assert batch.support_x.shape == (4, 6, 64) and batch.query_x.shape == (4, 3, 64)
    assert sorted(batch.support_y[0].tolist()) == [0, 0, 1, 1, 2, 2]
    assert 0 <= float(batch.support_x.min()) and float(batch.support_x.max()) <= 1
    _classes_are_consistent(batch, 3)
    # pixel value 10·class, inverted (strokes bright): every test point comes from a test character
    test_values = {1 - 10 * (int(n[8]) * 6 + int(n[-2:])) / 255 for n in names["meta-test"]}
    assert {round(v, 5) for v in batch.support_x.unique().tolist()} <= {round(v, 5) for v in test_values}


def test_omniglot_official_background_evaluation_folders(tmp_path):
    _omniglot(tmp_path / "omni" / "images_background", alphabets=2, characters=5)
    _omniglot(tmp_path / "omni" / "images_evaluation", alphabets=1, characters=4)
    family = Omniglot(str(tmp_path / "omni"), ways=2, shots=1, queries=1, val_fraction=0.2)
    assert len(family.classes("meta-test")) == 4
    assert len(family.classes("meta-train")) + len(family.classes("meta-val")) == 10
    assert family.image_shape == (1, 28, 28)


def _mini_imagenet(root, classes=(("train", 5), ("val", 3), ("test", 3)), images=4):
    label = 0
    root.mkdir(parents=True, exist_ok=True)
    for split, count in classes:
        with (root / f"{split}.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["filename", "label"])
            for _ in range(count):
                for i in range(images):
                    name = f"n{label:04d}_{i}.jpg"
                    _png(root / "images" / name, 20 * label, (10, 10), "RGB")
                    writer.writerow([name, f"n{label:04d}"])
                label += 1
    return root


def test_mini_imagenet_csv_layout(tmp_path):
    family = MiniImageNet(str(_mini_imagenet(tmp_path / "mini")), ways=3, shots=1, queries=2)
    assert [len(family.classes(s)) for s in il.tasks.SPLITS] == [5, 3, 3]
    assert family.image_shape == (3, 10, 10) and family.input_dim == 300
    batch = family.stream("meta-val", 0).next(2)
    assert batch.support_x.shape == (2, 3, 300) and batch.query_x.shape == (2, 6, 300)
    # JPEG is lossy on flat colours only at the edges of the 8×8 blocks; compare rounded class means
    for b in range(2):
        for k in range(3):
            s = batch.support_x[b][batch.support_y[b] == k].mean()
            q = batch.query_x[b][batch.query_y[b] == k].mean()
            assert abs(float(s - q)) < 0.02


def test_digits_hold_out_classes_and_split_images():
    family = Digits(pseudo_classes="none")
    assert [c.name for c in family.classes("meta-test")] == ["5", "6", "7", "8", "9"]
    assert [c.name for c in family.classes("meta-train")] == ["0", "1", "2", "3", "4"]
    train = torch.cat([c.examples for c in family.classes("meta-train")])
    val = torch.cat([c.examples for c in family.classes("meta-val")])
    assert len(train) + len(val) == 901 and not (train[:, None] == val[None]).all(-1).any()  # disjoint images
    batch = family.stream("meta-test", 0).next(3)
    assert batch.support_x.shape == (3, 25, 64) and batch.query_y.shape == (3, 75)
    with pytest.raises(il.ConfigError, match="proper subset"):
        Digits(test_classes=list(range(10)))


def test_digit_pseudo_classes_are_the_eight_symmetries_of_each_training_digit():
    plain, augmented = Digits(pseudo_classes="none"), Digits()
    train = augmented.classes("meta-train")
    assert len(train) == 40 and train[0].name == "0/rot0" and train[13].name == "1/rot90-transposed"
    assert [c.name for c in augmented.classes("meta-test")] == ["5", "6", "7", "8", "9"]  # never augmented
    assert [c.name for c in augmented.classes("meta-val")] == ["0", "1", "2", "3", "4"]
    upright = plain.classes("meta-train")[1].examples.reshape(-1, 8, 8)
    assert torch.equal(train[8].examples, plain.classes("meta-train")[1].examples)  # 1/rot0 is the digit itself
    assert torch.equal(train[9].examples.reshape(-1, 8, 8), torch.rot90(upright, 1, dims=(-2, -1)))
    assert torch.equal(train[12].examples.reshape(-1, 8, 8), upright.transpose(-1, -2))
    assert torch.equal(train[14].examples.reshape(-1, 8, 8), upright.transpose(-1, -2).flip(-1).flip(-2))
    with pytest.raises(il.ConfigError, match="unknown pseudo_classes 'rotations'"):
        Digits(pseudo_classes="rotations")


def test_bad_folders_name_the_problem(tmp_path):
    root = _omniglot(tmp_path / "empty")
    (root / "alphabet1" / "character99").mkdir()
    with pytest.raises(il.ShapeError, match="class folder '.*alphabet1/character99' holds no images"):
        Omniglot(str(root), ways=2, shots=1, queries=1)

    root = _omniglot(tmp_path / "sizes")
    _png(root / "alphabet0" / "character03" / "odd.png", 5, size=(14, 12))
    with pytest.raises(il.ShapeError, match="in folder '.*alphabet0/character03' is 14×12 pixels but"):
        Omniglot(str(root), ways=2, shots=1, queries=1)

    root = _omniglot(tmp_path / "few", images=3)
    with pytest.raises(il.ShapeError, match="class 'alphabet.*/character.*' \\(.*\\) has 3 examples, fewer than "
                                            "shots \\+ queries = 2 \\+ 2"):
        Omniglot(str(root), ways=2, shots=2, queries=2)
    family = Omniglot(str(root), ways=2, shots=1, queries=1, val_fraction=0.25, test_fraction=0.25)
    with pytest.raises(il.ShapeError, match="has 3 examples, fewer than shots \\+ queries = 1 \\+ 5"):
        family.sample(1, gen(0), queries=5)
    with pytest.raises(il.ShapeError, match="the meta-val split of 'omniglot' has 3 classes, fewer than ways=5"):
        Omniglot(str(root), ways=5, shots=1, queries=1, val_fraction=0.25, test_fraction=0.25)

    with pytest.raises(il.ConfigError, match="needs the data set's location"):
        Omniglot()
    with pytest.raises(il.ConfigError, match="Omniglot root '.*nowhere' is not a directory"):
        Omniglot(str(tmp_path / "nowhere"))
    mini = _mini_imagenet(tmp_path / "mini")
    (mini / "val.csv").unlink()
    with pytest.raises(il.ConfigError, match="val.csv' is missing"):
        MiniImageNet(str(mini))
    with (mini / "val.csv").open("w") as fh:
        fh.write("filename,label\nn0000_0.jpg,n0000\n")
    with pytest.raises(il.ShapeError, match="class 'n0000' appears in both the meta-train and meta-val CSV"):
        MiniImageNet(str(mini), ways=2, shots=1, queries=1)


def test_protonet_trains_on_image_folders_from_the_cli(tmp_path, capsys):
    from innerloop.cli import main
    from innerloop.engine.algorithms import ProtoNet
    from innerloop.engine.conv import Conv4

    root = _omniglot(tmp_path / "omni", alphabets=3, characters=6, images=5)
    out = tmp_path / "run"
    assert main(["train", "--algo", "protonet", "--task", "omniglot", "--task-option", f"root={root}",
                 "--task-option", "ways=3", "--task-option", "val_fraction=0.2", "--shots", "1", "--queries", "2",
                 "--algo-option", "channels=8",
                 "--meta-batch", "2", "--iters", "3", "--eval-tasks", "4", "--out", str(out), "--quiet"]) == 0
    assert main(["eval", str(out), "--tasks", "6", "--quiet"]) == 0
    assert "3-way 1-shot accuracy: 6 episodes" in capsys.readouterr().out
    assert (out / "episode.png").is_file()
    rgb = MiniImageNet(str(_mini_imagenet(tmp_path / "mini")), ways=3, shots=1, queries=2)
    net = ProtoNet.network(rgb, channels=4)
    assert isinstance(net, Conv4) and net.image_shape == (3, 10, 10) and (net.blocks, net.pooling) == (2, False)
    pooled = ProtoNet.network(rgb, channels=4, pooling=True)
    assert (pooled.blocks, pooled.pooling) == (3, True)
    algorithm = ProtoNet(net, il.backends.get("cpu"))
    assert algorithm.accuracy(net.init(gen(0)), rgb.stream("meta-test", 0).next(2)).shape == (2,)
