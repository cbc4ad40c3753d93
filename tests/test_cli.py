"""The innerloop command: train/eval/list and one clear message for every kind of bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from innerloop.cli import main

SMALL = ["--hidden", "16", "--meta-batch", "4", "--inner-steps", "2", "--eval-tasks", "8", "--quiet"]


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_console_script_train_eval_list(tmp_path):
    """The installed entry point end to end: train, eval (eval.json schema), list."""
    out = tmp_path / "run"
    subprocess.run(["innerloop", "train", "--iters", "30", "--checkpoint-every", "10", "--eval-every", "10",
                    "--out", str(out), *SMALL], check=True, capture_output=True, text=True)
    done = subprocess.run([sys.executable, "-m", "innerloop", "eval", str(out), "--tasks", "40",
                           "--steps", "0,1,2,5", "--joint-iters", "20", "--quiet"],
                          check=True, capture_output=True, text=True)
    assert "meta-learned" in done.stdout and "random_init" in done.stdout
    result = json.loads((out / "eval.json").read_text())
    assert set(result["steps"]) == {"0", "1", "2", "5"}
    for entry in result["steps"].values():
        assert entry["ci95"] > 0 and entry["mean"] > 0
    assert set(result["baselines"]) == {"random_init", "joint"}
    assert set(result["baselines"]["joint"]) == {"0", "1", "2", "5"}
    assert result["tasks"] == 40 and result["shots"] == 10
    assert (out / "eval.png").is_file()
    listing = subprocess.run(["innerloop", "list"], check=True, capture_output=True, text=True).stdout
    for word in ("maml", "fomaml", "reptile", "imaml", "cnp", "latent-np", "attentive-np", "protonet", "matchingnet",
                 "bayesian lens", "metric lens", "embedding='auto'", "sinusoid", "gp", "clusters", "linear", "digits",
                 "omniglot", "mini-imagenet", "cpu", "torch", "hvp", "autograd", "demodulation", "channel-coding",
                 "channel-prediction", "experiments (innerloop experiment NAME)", "demodulation-devices"):
        assert word in listing


def test_every_experiment_has_a_summary_and_every_summary_an_experiment():
    from innerloop.engine.experiment_setup import SUMMARIES
    from innerloop.engine.experiments import EXPERIMENTS, OUTPUTS

    assert list(SUMMARIES) == list(EXPERIMENTS) == list(OUTPUTS)


def test_eval_of_classification_reports_accuracy(tmp_path, capsys):
    out = tmp_path / "cls"
    code, _, _ = run_cli(["train", "--task", "clusters", "--inner-lr", "0.5", "--iters", "10", "--out", str(out),
                          *SMALL], capsys)
    assert code == 0
    code, stdout, _ = run_cli(["eval", str(out), "--tasks", "20", "--steps", "0,2", "--joint-iters", "5",
                               "--quiet"], capsys)
    assert code == 0 and "acc" in stdout
    result = json.loads((out / "eval.json").read_text())
    assert 0 <= result["steps"]["2"]["accuracy"]["mean"] <= 1


def test_eval_names_diverged_adaptation_and_writes_strict_json(tmp_path, capsys):
    """A step size that blows up on some tasks: the table says 'diverged k/N' instead of 'nan', a
    warning names the series, the steps and the fix, and eval.json stays strict JSON (null, not NaN)."""
    out = tmp_path / "run"
    assert run_cli(["train", "--iters", "2", "--inner-lr", "0.25", "--inner-steps", "1", "--out", str(out),
                    *SMALL], capsys)[0] == 0
    code, stdout, err = run_cli(["eval", str(out), "--tasks", "20", "--steps", "0,20", "--joint-iters", "5",
                                 "--quiet"], capsys)
    assert code == 0 and "diverged" in stdout and "nan ±" not in stdout
    assert "meta-learned: adaptation diverged (non-finite query loss) on" in err and "after 20 steps" in err
    assert "smaller step size than the run's inner_lr 0.25" in err and "--baseline-lr 0.25" in err

    def no_constants(token):
        raise AssertionError(f"eval.json holds {token}, which is not JSON")

    result = json.loads((out / "eval.json").read_text(), parse_constant=no_constants)
    diverged = result["steps"]["20"]
    assert diverged["mean"] is None and 0 < diverged["non_finite"] <= 20 and result["warnings"]
    assert result["steps"]["0"]["mean"] > 0 and "non_finite" not in result["steps"]["0"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--algo", "mamll"], "unknown algorithm 'mamll'"),
        (["train", "--task", "sinus"], "unknown task 'sinus'"),
        (["train", "--backend", "gpu9"], "unknown backend 'gpu9'"),
        (["train", "--inner-lr", "0"], "inner_lr must be > 0"),
        (["train", "--outer-lr", "-0.1"], "outer_lr must be > 0"),
        (["train", "--inner-steps", "-1"], "inner_steps must be an integer >= 0"),
        (["train", "--hidden", "4,x"], "--hidden takes comma-separated integers"),
        (["train", "--task-option", "amplitude"], "--task-option takes KEY=VALUE"),
        (["train", "--task-option", "amp=3"], "does not take option(s) amp"),
        (["train", "--algo", "maml", "--backend-option", "capabilities=loss,loss_and_grad"],
         "MAML needs hvp, which backend 'cpu' does not offer"),
        (["train", "--config", "missing.toml"], "config file 'missing.toml' does not exist"),
        (["eval", "no-such-run"], "is not a run directory"),
        (["train", "--algo", "protonet", "--task", "clusters", "--backend-option", "capabilities=loss,loss_and_grad"],
         "ProtoNet needs autograd, which backend 'cpu' does not offer"),
        (["train", "--algo", "cnp", "--task", "gp", "--inner-steps", "3"], "cnp adapts by a forward pass"),
        (["train", "--algo", "cnp", "--task", "clusters"], "Neural Processes model real-valued outputs"),
        (["train", "--algo", "protonet", "--task", "clusters", "--algo-option", "latent_dim=3"],
         "does not take option(s) latent_dim"),
        (["train", "--algo", "protonet", "--task", "omniglot"], "needs the data set's location"),
        (["train", "--algo", "protonet", "--task", "omniglot", "--task-option", "root=nowhere"],
         "Omniglot root 'nowhere' is not a directory"),
    ],
)
def test_bad_input_gives_one_message_and_nonzero_exit(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(args + ["--quiet"] if args[0] == "train" else args, capsys)
    assert code != 0
    assert message in err
    assert "Traceback" not in err and err.startswith("innerloop: error:")


def test_nan_loss_exits_with_message(tmp_path, capsys):
    code, _, err = run_cli(["train", "--inner-lr", "1e12", "--iters", "5", "--out", str(tmp_path / "nan"), *SMALL],
                           capsys)
    assert code == 3 and "non-finite" in err and "lower --inner-lr" in err and "Traceback" not in err


def test_corrupted_checkpoint_via_cli(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(["train", "--iters", "5", "--out", str(out), *SMALL], capsys)[0] == 0
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    code, _, err = run_cli(["train", "--resume", str(out), "--iters", "10", "--quiet"], capsys)
    assert code == 2 and "corrupted or truncated" in err
    code, _, err = run_cli(["eval", str(out), "--quiet"], capsys)
    assert code == 2 and "corrupted or truncated" in err


def test_eval_retrains_an_unreadable_joint_baseline_cache(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(["train", "--iters", "2", "--out", str(out), *SMALL], capsys)[0] == 0
    evaluate = ["eval", str(out), "--tasks", "4", "--steps", "0,1", "--joint-iters", "3", "--quiet"]
    assert run_cli(evaluate, capsys)[0] == 0
    first = json.loads((out / "eval.json").read_text())["baselines"]["joint"]
    cache = out / "joint_baseline.pt"
    cache.write_bytes(cache.read_bytes()[:100])
    code, _, err = run_cli(evaluate, capsys)
    assert code == 0 and f"the joint-learning baseline cached in {cache} is unreadable" in err
    assert json.loads((out / "eval.json").read_text())["baselines"]["joint"] == first  # same seed, same baseline


def test_resume_refuses_changed_settings_and_extends_runs(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(["train", "--iters", "5", "--out", str(out), *SMALL], capsys)[0] == 0
    code, _, err = run_cli(["train", "--resume", str(out), "--inner-lr", "0.1", "--quiet"], capsys)
    assert code == 2 and "cannot change: inner_lr" in err
    code, stdout, _ = run_cli(["train", "--resume", str(out), "--iters", "8", "--quiet"], capsys)
    assert code == 0 and "trained 8 iterations" in stdout


def test_config_file_with_flag_override(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text('algo = "fomaml"\niters = 50\nhidden = [8]\nmeta-batch = 3\n')
    out = tmp_path / "run"
    code, _, _ = run_cli(["train", "--config", str(cfg), "--iters", "4", "--out", str(out), "--quiet"], capsys)
    assert code == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["algo"] == "fomaml" and saved["iters"] == 4 and saved["hidden"] == [8] and saved["meta_batch"] == 3


AMORTIZED = [
    ("cnp", "gp", ["--shots", "12", "--algo-option", "representation_dim=16"]),
    ("latent-np", "gp", ["--shots", "12", "--algo-option", "latent_dim=4"]),
    ("attentive-np", "gp", ["--shots", "12", "--algo-option", "heads=2"]),
    ("protonet", "clusters", []),
    ("matchingnet", "digits", ["--algo-option", "scale=5"]),
]


@pytest.mark.parametrize(("algo", "task", "extra"), AMORTIZED)
def test_amortized_algorithms_train_and_evaluate_from_the_cli(tmp_path, capsys, algo, task, extra):
    out = tmp_path / algo
    code, stdout, err = run_cli(["train", "--algo", algo, "--task", task, "--hidden", "16", "--meta-batch", "4",
                                 "--iters", "6", "--eval-every", "3", "--eval-tasks", "4", "--out", str(out),
                                 "--quiet", *extra], capsys)
    assert code == 0, err
    for name in ("training_curve.png", "adaptation.png", "checkpoint.pt"):
        assert (out / name).is_file()
    code, stdout, err = run_cli(["eval", str(out), "--tasks", "12", "--contexts", "1,3,6", "--quiet"], capsys)
    assert code == 0, err
    result = json.loads((out / "eval.json").read_text())
    if task == "gp":
        assert set(result["contexts"]) == {"1", "3", "6"} and set(result["reference"]["exact GP"]) == {"1", "3", "6"}
        assert "exact GP" in stdout and (out / "predictive.png").is_file()
    else:
        assert 0 <= result["accuracy"]["mean"] <= 1 and result["tasks"] == 12
        assert set(result["baselines"]) == {"nearest_neighbour", "raw_prototypes"}
        assert "nearest neighbour" in stdout and (out / "episode.png").is_file()


def test_eval_compares_several_runs(tmp_path, capsys):
    runs = []
    for algo in ("cnp", "latent-np"):
        runs.append(str(tmp_path / algo))
        assert run_cli(["train", "--algo", algo, "--task", "gp", "--hidden", "8", "--iters", "3", "--eval-tasks", "4",
                        "--meta-batch", "2", "--out", runs[-1], "--quiet"], capsys)[0] == 0
    code, stdout, _ = run_cli(["eval", *runs, "--tasks", "10", "--out", str(tmp_path / "cmp"), "--quiet"], capsys)
    assert code == 0 and "comparison.json" in stdout
    comparison = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert set(comparison["series"]) == {"cnp", "latent-np", "exact GP"}
    assert set(comparison["series"]["cnp"]) == {"2", "4", "8", "12", "16", "20"}  # seed 000 §9.2's sweep
    assert (tmp_path / "cmp" / "comparison.png").is_file()
    protonet = str(tmp_path / "proto")
    assert run_cli(["train", "--algo", "protonet", "--task", "clusters", "--iters", "2", "--eval-tasks", "4",
                    "--out", protonet, "--quiet"], capsys)[0] == 0
    code, _, err = run_cli(["eval", runs[0], protonet, "--tasks", "10", "--quiet"], capsys)
    assert code == 2 and "cannot compare runs of different kinds" in err


def test_experiment_help_states_every_non_standard_default():
    """The --iters/--tasks help is hand-written (building it must not import torch): it names every
    experiment whose default differs from 2000 iterations / 500 tasks, with that default."""
    import inspect
    import re

    from innerloop.cli import _parser
    from innerloop.engine.experiments import EXPERIMENTS

    sub = next(a for a in _parser()._actions if a.dest == "command").choices["experiment"]
    for option, standard in (("iters", 2000), ("tasks", 500)):
        text = " ".join(next(a.help for a in sub._actions if a.dest == option).split())
        stated = {}  # "(default 2000; a, b: 1000; c: 300 ...)" -> {a: 1000, b: 1000, c: 300}
        for group in text[text.index("(") + 1:text.rindex(")")].split(";")[1:]:
            names, value = group.split(":")
            for name in names.split(","):
                stated[name.strip()] = int(re.match(r"\s*(\d+)", value).group(1))
        for name, fn in EXPERIMENTS.items():
            default = inspect.signature(fn).parameters[option].default
            if default not in (standard, None):
                assert stated.get("figure" if name == "figure-2.4" else name) == default, (name, option, default)
