"""Finite meta-training sets (--train-tasks) and the multi-run experiments (tiny settings)."""

from __future__ import annotations

import json

import pytest
import torch

import innerloop as il
from conftest import gen
from innerloop.engine.experiments import algorithm_table, figure_2_4
from innerloop.engine.tasks.finite import FiniteTasks


def test_finite_tasks_resample_a_fixed_pool_and_hold_out_fresh_tasks():
    family = FiniteTasks(il.tasks.Sinusoid(shots=4, queries=3), 5, seed=1)
    pool = set(family.pool.task_params["amplitude"].tolist())
    batch = family.stream("meta-train", 0).next(40)
    assert set(batch.task_params["amplitude"].tolist()) <= pool and len(pool) == 5
    held_out = family.stream("meta-test", 0).next(40)
    assert not set(held_out.task_params["amplitude"].tolist()) & pool
    assert family.config()["train_tasks"] == 5
    with pytest.raises(il.ShapeError, match="drawn with 4 shots and 3 queries"):
        family.sample(2, gen(0), shots=6)
    gp = FiniteTasks(il.tasks.GaussianProcess1D(noise=0.2), 3)
    assert gp.noise == 0.2 and gp.name == "gp"  # other attributes come from the wrapped family


def test_train_tasks_flag(tmp_path):
    from innerloop.cli import main

    out = tmp_path / "run"
    assert main(["train", "--train-tasks", "3", "--hidden", "8", "--meta-batch", "4", "--iters", "4", "--eval-tasks",
                 "4", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["train_tasks"] == 3


def test_algorithm_table_and_figure_2_4_write_their_results(tmp_path):
    document = algorithm_table(tmp_path / "table", iters=3, tasks=4, algorithms=["fomaml", "es-maml"], jobs=2)
    assert {(r["algo"], r["shots"]) for r in document["rows"]} == {(a, k) for a in ("fomaml", "es-maml")
                                                                   for k in (5, 10)}
    for row in document["rows"]:
        assert row["mse"]["ci95"] > 0 and row["train_seconds"] > 0 and isinstance(row["clearly_below_baselines"], bool)
    for name in ("algorithm_table.json", "algorithm_table.md", "algorithm_table.png"):
        assert (tmp_path / "table" / name).is_file()
    written = json.loads((tmp_path / "table" / "algorithm_table.json").read_text())
    kept = [r for r in written["rows"] if r["algo"] == "es-maml" and r["shots"] == 5]
    rerun = algorithm_table(tmp_path / "table", iters=3, tasks=4, algorithms=["fomaml"], shots=(5,))
    assert [r for r in rerun["rows"] if r["algo"] == "es-maml"] == kept  # rows not re-run are kept
    assert [(r["algo"], r["shots"]) for r in rerun["rows"] if r["algo"] == "fomaml"] == [("fomaml", 5)]
    assert not any("error" in r for r in rerun["rows"])  # the re-run replaced fomaml's run directory
    assert "| es-maml |" in (tmp_path / "table" / "algorithm_table.md").read_text()
    other = algorithm_table(tmp_path / "table", iters=2, tasks=4, algorithms=["fomaml"], shots=(5,))
    assert [r["algo"] for r in other["rows"]] == ["fomaml"] and "error" not in other["rows"][0]  # not merged
    with pytest.raises(il.ConfigError, match="unknown gradient-lens algorithm 'protonet'"):
        algorithm_table(tmp_path / "bad", algorithms=["protonet"])
    figure = figure_2_4(tmp_path / "figure", iters=4, tasks=4, algorithms=["joint", "bmaml"], data=(4, 6),
                        task_counts=(2, 3), fixed_data=4, fixed_tasks=2)
    assert {(r["method"], r["data"], r["tasks"]) for r in figure["rows"]} == {
        (m, n, k) for m in ("joint", "bmaml") for n, k in ((4, 2), (6, 2), (4, 3))}
    assert figure["leader_smallest_data"] in ("joint", "bmaml") and (tmp_path / "figure" / "figure_2_4.png").is_file()
    assert all(torch.isfinite(torch.tensor(r["best"])) for r in figure["rows"])
