"""``innerloop experiment theory`` end to end at toy sizes: every part writes its JSON and figure
with the structure the README describes."""

import json

import pytest

from innerloop.engine import theory_experiment as experiment
from innerloop.engine import theory_generalization as generalization
from innerloop.engine.errors import ConfigError


@pytest.fixture
def small(monkeypatch):
    for name, value in (("VARIANCE_TASKS", 12), ("BATCH_SIZES", (1, 2, 3)), ("CONVERGENCE_CHECKS", 2),
                        ("FULL_TASKS", 6), ("FULL_POINTS", 8), ("PAC_TASKS", 6), ("PAC_HYPER_STDS", (0.1,)),
                        ("PAC_POSTERIOR_STDS", (0.1, 0.2)), ("TEST_STEPS", (0, 1, 5)), ("CONSTANT_TASKS", 4),
                        ("CONSTANT_POPULATION", 40), ("PAC_LEARNER_GRID", ((0.1, 0.1, 0.3),)),
                        ("PAC_LEARNER_STEPS", 4), ("PAC_LEARNER_TEST_STEPS", 2)):
        monkeypatch.setattr(experiment, name, value)
    for name, value in (("SINGLE_POINTS", (2, 8)), ("META_TASKS", (1, 3)), ("META_POINTS", (2, 4)),
                        ("META_BETAS", (1.0, 30.0)), ("EXAMPLE_POINTS", (1, 10)), ("SPREADS", (0.1, 0.3)),
                        ("MEMR_TASKS", (1, 4)), ("MEMR_DRAWS", 50), ("MLR_TASKS", (3, 8)), ("MLR_POINTS", (6,)),
                        ("MLR_REPLICATES", 300), ("MLR_INNER_LRS", (0.1, 0.3)), ("MLR_STRENGTHS", (0.3,)),
                        ("DD_DIMS", (5, 25)), ("DD_DRAWS", 50), ("DD_META_DIMS", (4, 20, 40)), ("DD_META_DRAWS", 20),
                        ("DD_SPIKED_DIMS", (5, 50)), ("DD_SPIKED_DRAWS", 20), ("MIS_TASKS", (1, 4)),
                        ("MIS_DRAWS", 50)):
        monkeypatch.setattr(generalization, name, value)


def test_theory_experiment_writes_every_part(tmp_path, small, capsys):
    from innerloop.cli import main

    assert main(["experiment", "theory", "--out", str(tmp_path), "--iters", "4", "--tasks", "6"]) == 0
    printed = capsys.readouterr().out
    for part in experiment.PARTS:
        assert (tmp_path / f"{part}.png").stat().st_size > 10_000
        assert f"{part}:" in printed
    prior = json.loads((tmp_path / "implicit-prior.json").read_text())
    assert prior["max_linear_gap"] < 1e-12  # Theorem 2 is exact for a quadratic loss
    assert [r["inner_lr"] for r in prior["sinusoid"]] == list(experiment.PRIOR_LRS)
    steps = json.loads((tmp_path / "inner-steps.json").read_text())
    assert set(steps["rows"]) == {"maml", "fomaml", "reptile"}
    assert all(set(row["mse"]) == {"0", "1", "5"} for row in steps["rows"].values())
    variance = json.loads((tmp_path / "gradient-variance.json").read_text())
    assert variance["curves"]["maml"]["batch_sizes"] == [1, 2, 3]
    convergence = json.loads((tmp_path / "convergence.json").read_text())
    assert [r["iteration"] for r in convergence["trajectory"]] == [0, 2, 4]
    assert len(convergence["constants"]) == 3 and convergence["inner_lr"] > 0
    pac = json.loads((tmp_path / "pac-bayes.json").read_text())
    assert pac["grid_size"] == 2 and pac["points"] == 5 * (experiment.PAC_SHOTS + experiment.PAC_QUERIES)
    best = pac["best"]
    assert best["bound"] == pytest.approx(best["empirical"] + best["across_task"] + best["within_task"])
    assert best["delta"] == pytest.approx(experiment.PAC_DELTA / 2)  # union bound over the grid
    learned = json.loads((tmp_path / "pac-bayes-learner.json").read_text())
    row = learned["best"]
    assert len(learned["rows"]) == 1 and len(row["history"]) == 4 and row["delta"] == experiment.PAC_DELTA
    assert row["bound"] == pytest.approx(row["empirical"] + row["across_task"] + row["within_task"])
    assert row["fresh_task_error"]["n"] == 6 and set(learned["what_if"]) == {"5", "25", "100", "1000"}
    information = json.loads((tmp_path / "information-bounds.json").read_text())
    assert [r["points"] for r in information["single_task"]["rows"]] == [2, 8] and information["all_bounds_hold"]
    assert [r["tasks"] for r in information["vs_tasks"]] == [1, 3]
    assert [r["meta_beta"] for r in information["vs_meta_beta"]] == [1.0, 30.0]
    for row in information["vs_tasks"] + information["vs_points"]:
        assert row["gen_error"] == pytest.approx(row["within_task_error"] + row["environment_error"])
        assert abs(row["gen_error"]) <= row["bound"]
    similarity = json.loads((tmp_path / "task-similarity.json").read_text())
    assert [r["spread"] for r in similarity["rows"]] == [0.1, 0.3] and similarity["bounds_hold"]
    assert all(r["avg_abs_gen_error"] >= r["abs_avg_gen_error"] - 1e-12 for r in similarity["rows"])  # Jensen
    assert similarity["example"]["0.1"]["kl"] == pytest.approx([0.1, 1.0])  # N·ν̄²/ν² (eq. 4.27)
    memr = json.loads((tmp_path / "excess-meta-risk.json").read_text())
    assert set(memr["curves"]) == {"2", "5", "20"} and memr["bound_holds"]
    assert [r["tasks"] for r in memr["curves"]["5"]] == [1, 4]
    regression = json.loads((tmp_path / "meta-linear-regression.json").read_text())
    rows = regression["curves"]["6"]
    assert [r["tasks"] for r in rows] == [3, 8] and regression["bayes_lowest"]
    assert rows[0]["maml"]["setting"] in (0.1, 0.3) and rows[0]["imaml"]["setting"] == 0.3
    assert rows[0]["bayes"]["minus_bayes"]["mean"] == 0.0


def test_theory_experiment_rejects_unknown_parts(tmp_path):
    with pytest.raises(ConfigError, match="unknown theory part 'pac'"):
        experiment.theory(tmp_path, algorithms=["pac"])
