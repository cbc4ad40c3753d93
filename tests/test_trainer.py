"""Meta-training runs: resume determinism, NaN stops, checkpoint integrity, the seed 000 §2.5 setting."""

from __future__ import annotations

import json
import math

import pytest
import torch

import innerloop as il
from innerloop.engine.config import TrainConfig
from innerloop.engine.trainer import Trainer, train


def _config(**overrides) -> TrainConfig:
    base = dict(algo="maml", task="sinusoid", hidden=(16,), meta_batch=4, inner_steps=2, iters=30,
                checkpoint_every=10, eval_every=10, eval_tasks=8, dtype="float64", seed=3)
    base.update(overrides)
    return TrainConfig(**base)


def _iters(run_dir) -> list[int]:
    return [json.loads(line)["iter"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    full = train(_config(), tmp_path / "full", progress=False)
    train(_config(iters=20), tmp_path / "part", progress=False)
    resumed = Trainer.resume(tmp_path / "part", iters=30, progress=False).run()
    for k in full.params:
        assert torch.equal(full.params[k], resumed.params[k]), k
    assert _iters(tmp_path / "part") == list(range(1, 31))
    losses = lambda d: [json.loads(x)["loss"] for x in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert losses(tmp_path / "full") == losses(tmp_path / "part")
    for name in ("training_curve.png", "adaptation.png", "config.json", "checkpoint.pt"):
        assert (tmp_path / "full" / name).is_file()
    assert not list((tmp_path / "full").glob("*.tmp"))


@pytest.mark.parametrize("algo", ["es-maml", "modular"])
def test_random_algorithms_resume_exactly_and_ignore_validation(tmp_path, algo):
    """ES-MAML (random directions) and modular (annealing) draw from the algorithm's generator when
    they adapt: validation must not consume those draws — neither the validation that ends a run
    that is later extended, nor the periodic ones (training does not depend on eval_every)."""
    config = dict(algo=algo, iters=6, checkpoint_every=3, eval_every=100, eval_tasks=3)
    full = train(_config(**config), tmp_path / "full", progress=False)
    train(_config(**{**config, "iters": 3}), tmp_path / "part", progress=False)
    resumed = Trainer.resume(tmp_path / "part", iters=6, progress=False).run()
    validated = train(_config(**{**config, "eval_every": 1}), tmp_path / "validated", progress=False)
    for k in full.params:
        assert torch.equal(full.params[k], resumed.params[k]), k
        assert torch.equal(full.params[k], validated.params[k]), k


def test_interrupted_run_resumes_from_last_checkpoint(tmp_path):
    imaml = dict(algo="imaml", algo_options={"inner_tol": 1e-4})
    full = train(_config(**imaml), tmp_path / "full", progress=False)

    def interrupt(iteration):
        if iteration == 25:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(_config(**imaml), tmp_path / "cut", progress=False).run(interrupt)
    state = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 20
    resumed = Trainer.resume(tmp_path / "cut", progress=False).run()
    for k in full.params:
        assert torch.equal(full.params[k], resumed.params[k]), k
    assert _iters(tmp_path / "cut") == list(range(1, 31))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    trainer = Trainer(_config(checkpoint_every=4), tmp_path / "run", progress=False)
    real = trainer.algorithm.compute
    calls = {"n": 0}

    def compute(params, batch):  # a loss that turns NaN at iteration 6
        calls["n"] += 1
        result = real(params, batch)
        if calls["n"] == 6:
            result.task_losses = result.task_losses * float("nan")
        return result

    trainer.algorithm.compute = compute
    with pytest.raises(il.NonFiniteError) as err:
        trainer.run()
    assert "iteration 6" in str(err.value) and "last good checkpoint (iteration 4)" in str(err.value)
    assert "--inner-lr" in str(err.value)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 4
    assert all(torch.isfinite(v).all() for v in state["params"].values())
    resumed = Trainer.resume(tmp_path / "run", progress=False).run()  # the kept checkpoint is usable
    assert resumed.iterations == 30


def test_diverged_validation_is_named_once_and_training_goes_on(tmp_path, capsys):
    trainer = Trainer(_config(iters=6, eval_every=2), tmp_path / "run", progress=False)
    real = trainer.algorithm.evaluate

    def evaluate(params, batch):  # two of the eight validation tasks diverge
        losses = real(params, batch).clone()
        losses[:2] = float("nan")
        return losses

    trainer.algorithm.evaluate = evaluate
    assert trainer.run().iterations == 6
    err = capsys.readouterr().err
    assert err.count("adaptation diverged on 2 of 8 validation tasks") == 1 and "(iteration 2)" in err


def test_corrupted_and_foreign_checkpoints_are_named(tmp_path):
    train(_config(iters=10), tmp_path / "run", progress=False)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(il.CheckpointError, match="corrupted or truncated"):
        Trainer.resume(tmp_path / "run", iters=20, progress=False).run()
    torch.save({"weights": torch.zeros(2)}, ckpt)
    with pytest.raises(il.CheckpointError, match="not an innerloop checkpoint"):
        Trainer.resume(tmp_path / "run", iters=20, progress=False).run()
    with pytest.raises(il.CheckpointError, match="not a run directory"):
        Trainer.resume(tmp_path / "nowhere")
    with pytest.raises(il.CheckpointError, match="already holds a run"):
        train(_config(iters=10), tmp_path / "run", progress=False)


def test_seed_000_section_2_5_setting_trains(tmp_path):
    """Acceptance 3 (first part): B=4, N=5, α=0.01, β=1e-3 as in seed 000 §2.5, 100 meta-iterations."""
    cfg = TrainConfig(algo="maml", task="sinusoid", meta_batch=4, inner_steps=5, inner_lr=0.01, outer_lr=1e-3,
                      shots=5, iters=100, eval_every=50, eval_tasks=20)
    result = train(cfg, tmp_path / "s25", progress=False)
    assert result.iterations == 100 and 0 < result.final_loss < 50 and result.val_loss is not None


@pytest.mark.parametrize(
    ("algo", "extra"),
    [("fomaml", {}), ("reptile", {}),
     ("imaml", {"activation": "tanh", "algo_options": {"inner_steps": 10, "lam": 5.0, "cg_steps": 5}})],
)
def test_every_algorithm_trains_and_improves_on_sinusoid(tmp_path, algo, extra):
    cfg = TrainConfig(algo=algo, task="sinusoid", meta_batch=10, iters=300, outer_lr=3e-3, eval_every=300,
                      eval_tasks=100, hidden=(32, 32), seed=1, **extra)
    trainer = Trainer(cfg, tmp_path / algo, progress=False)
    init = trainer.model.init(il.tasks.generator_for(1, "init"))
    val = trainer.family.stream("meta-val", 1).next(100)
    before = float(trainer.algorithm.evaluate(init, val).mean())
    result = trainer.run()
    assert result.val_loss < 0.8 * before


def test_classification_runs_with_decision_region_plot(tmp_path):
    cfg = TrainConfig(algo="maml", task="clusters", meta_batch=4, inner_lr=0.5, inner_steps=2, iters=20,
                      eval_every=10, eval_tasks=8, hidden=(16,))
    train(cfg, tmp_path / "clusters", progress=False)
    assert (tmp_path / "clusters" / "adaptation.png").stat().st_size > 1000


def test_config_validation_messages():
    with pytest.raises(il.ConfigError, match="outer_lr must be > 0"):
        _config(outer_lr=-1).validate()
    with pytest.raises(il.ConfigError, match="meta_batch must be an integer >= 1"):
        _config(meta_batch=0).validate()
    with pytest.raises(il.ConfigError, match="unknown algorithm 'mamal'"):
        _config(algo="mamal").validate()
    with pytest.raises(il.ConfigError, match="unknown configuration key"):
        TrainConfig.from_dict({"algorithm": "maml"})
    with pytest.raises(il.ConfigError, match="does not take option"):
        Trainer(_config(algo_options={"lamda": 1.0}), "unused", progress=False)


def test_json_documents_hold_null_for_non_finite_and_read_back_nan(tmp_path):
    """summarize counts non-finite values and keeps the mean non-finite; a JSON document writes
    them as null (strict JSON) and nan_for_null reads such a summary back with NaN."""
    from innerloop.engine.rundir import atomic_write_json
    from innerloop.engine.stats import nan_for_null, summarize

    diverged = summarize(torch.tensor([1.0, float("nan"), float("inf")]))
    assert diverged["non_finite"] == 2 and math.isnan(diverged["mean"])
    assert "non_finite" not in summarize(torch.tensor([1.0, 2.0]))
    atomic_write_json(tmp_path / "doc.json", {"rows": [{"mse": diverged, "fine": summarize(torch.ones(3))}],
                                              "pair": (1.5, float("-inf"))})
    text = (tmp_path / "doc.json").read_text()
    assert "NaN" not in text and "Infinity" not in text and text.endswith("\n")
    document = json.loads(text, object_hook=nan_for_null)
    assert math.isnan(document["rows"][0]["mse"]["mean"]) and document["rows"][0]["mse"]["n"] == 3
    assert document["rows"][0]["fine"]["mean"] == 1.0 and document["pair"] == [1.5, None]
