"""Online learning of the Viterbi receivers' initialization on drifting channels (Meta-ViterbiNet [110]):
the tasks a receiver learns from, the zero-step update against autograd, and the plumbing against the
fixed-initialization receiver."""

from __future__ import annotations

import pytest
import torch

import innerloop as il
from innerloop.engine import tasks
from innerloop.engine import viterbi_online as online
from innerloop.engine import viterbi_tracking as tracking
from innerloop.engine.algorithms import ALGORITHMS
from innerloop.engine.errors import ConfigError
from innerloop.engine.models import MLP
from innerloop.engine.tasks import TaskBatch
from innerloop.engine.viterbi import viterbi


def _family():
    return tasks.make("isi-channel", view="channel")


def _algorithm(name: str, dtype=torch.float32, **options):
    backend = il.backends.get("cpu", dtype=dtype)
    algorithm = ALGORITHMS[name](MLP(4, (16, 16), 1), backend, inner_lr=0.1, inner_steps=3, **options)
    return algorithm, algorithm.init_params(torch.Generator().manual_seed(3), dtype)


def _short_blocks(monkeypatch, channels: int = 2, correlation: float = 0.99):
    monkeypatch.setattr(tracking, "BLOCKS", 4)
    monkeypatch.setattr(tracking, "DATA", 40)
    return tracking.drifting_blocks(_family(), channels, seed=1, correlation=correlation)


@pytest.mark.parametrize("mode", tracking.MODES)
def test_learn_gets_the_support_each_block_was_detected_from_and_the_blocks_decisions(monkeypatch, mode):
    family, blocks = _family(), _short_blocks(monkeypatch)
    receiver = tracking.genie_receiver(family)
    seen: list[TaskBatch] = []
    errors = tracking.block_errors(family, blocks, receiver, mode, learn=seen.append)
    assert torch.equal(errors, tracking.block_errors(family, blocks, receiver, mode))  # learning changes nothing here
    first = 0 if mode == "pilots" else 1  # the first block has no previous decisions to direct
    assert len(seen) == len(blocks) - first
    decided = [tracking.decided_points(family, block, viterbi(receiver(block.support_x, block.support_y, block)))
               for block in blocks]  # the genie ignores its support: the same decisions in both modes
    for b, task in zip(range(first, len(blocks)), seen):
        assert torch.equal(task.query_x, decided[b][0]) and torch.equal(task.query_y, decided[b][1])
        assert torch.equal(task.support_x[:, :tracking.PILOTS], blocks[b].support_x)  # the block's pilots first
        assert torch.equal(task.support_y[:, :tracking.PILOTS], blocks[b].support_y)
        if mode == "decision-directed":  # then the previous block's data with its decided labels
            assert torch.equal(task.support_x[:, tracking.PILOTS:], decided[b - 1][0])
            assert torch.equal(task.support_y[:, tracking.PILOTS:], decided[b - 1][1])
        else:
            assert task.support_x.shape[1] == tracking.PILOTS


@pytest.mark.parametrize("name", ["maml", "cavia"])
def test_the_tuning_update_is_the_gradient_of_the_query_loss_at_the_initialization(name):
    """online-tuning's algorithm has no inner step: its 'meta-gradient' must be ∇θ of the query MSE at θ
    (CAVIA: at context 0), computed here by autograd on the model's forward pass in float64."""
    algorithm, theta = _algorithm(name, torch.float64)
    tuning = online.zero_step(algorithm)
    assert type(tuning) is type(algorithm) and tuning.inner_steps == 0 and tuning.model is algorithm.model
    batch = _family().sample(3, torch.Generator().manual_seed(4), shots=5, queries=30).to(torch.float64, "cpu")
    grad = tuning.compute(theta, batch).grad
    leaves = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
    per_task = ((algorithm.model.apply(leaves, batch.query_x) - batch.query_y) ** 2).mean(dim=(1, 2))
    expected = torch.autograd.grad(per_task.mean(), list(leaves.values()))
    assert set(grad) == set(theta)
    for key, reference in zip(leaves, expected):
        assert torch.allclose(grad[key], reference, rtol=1e-10, atol=1e-12), key


@pytest.mark.parametrize("mode", online.ONLINE_MODES)
def test_online_updates_are_each_channels_own_and_descend_its_objective(mode):
    """Stacked channels must step exactly as learners that each see one channel alone (window of the
    newest 2 of 3 arrivals), and a first small step must lower each channel's objective — the updater's
    task losses: the query loss after the inner loop (online-meta) or at θ itself (online-tuning)."""
    algorithm, theta = _algorithm("maml", torch.float64)
    updater = algorithm if mode == "online-meta" else online.zero_step(algorithm)
    family, generator = _family(), torch.Generator().manual_seed(5)
    arrivals = [family.sample(3, generator, shots=8, queries=40).to(torch.float64, "cpu") for _ in range(3)]
    together = online.OnlineInitializations(theta, 3, updater, lr=1e-3, window=2, updates=3)
    for tasks_ in arrivals:
        together.learn(tasks_)
    assert len(together.tasks) == 2 and together.tasks[-1] is arrivals[-1]
    first = online.OnlineInitializations(theta, 3, updater, lr=1e-4, window=2, updates=1)
    first.learn(arrivals[0])
    for c in range(3):
        alone = online.OnlineInitializations(theta, 1, updater, lr=1e-3, window=2, updates=3)
        for tasks_ in arrivals:
            alone.learn(tasks_.select(slice(c, c + 1)))
        assert all(torch.allclose(together.params[k][c], v[0], rtol=1e-12, atol=1e-14) for k, v in alone.params.items())
        task = arrivals[0].select(slice(c, c + 1))
        before = float(updater.compute(theta, task).task_losses[0])
        after = float(updater.compute({k: v[c] for k, v in first.params.items()}, task).task_losses[0])
        assert after < before
    fresh = algorithm.init_params(torch.Generator().manual_seed(3), torch.float64)
    assert all(torch.equal(theta[k], v) for k, v in fresh.items())  # the offline θ is not updated in place


@pytest.mark.parametrize("window", [1, 2, 4])
def test_the_window_keeps_the_newest_tasks(window):
    algorithm, theta = _algorithm("maml")
    state = online.OnlineInitializations(theta, 2, algorithm, window=window, updates=0)
    family, generator = _family(), torch.Generator().manual_seed(6)
    arrivals = [family.sample(2, generator, shots=8, queries=10) for _ in range(5)]
    for t, tasks_ in enumerate(arrivals, start=1):
        state.learn(tasks_)
        assert state.tasks == arrivals[max(0, t - window):t]


def test_with_no_updates_every_online_receiver_is_the_fixed_one(monkeypatch):
    family, blocks = _family(), _short_blocks(monkeypatch, channels=3)
    algorithm, theta = _algorithm("cavia")
    monkeypatch.setattr(online, "UPDATES", 0)
    receiver = tracking.learned_receiver(family, algorithm.model, lambda b: algorithm.adapt(theta, b))
    for support in tracking.MODES:
        fixed = tracking.block_errors(family, blocks, receiver, support)
        for mode in online.ONLINE_MODES:
            assert torch.equal(online.online_errors(family, blocks, algorithm, theta, mode, support), fixed)


def test_online_scores_cover_every_correlation_support_and_update_on_the_same_channels(monkeypatch):
    _short_blocks(monkeypatch)
    monkeypatch.setattr(tracking, "CORRELATIONS", (0.9, 0.999))
    monkeypatch.setattr(online, "UPDATES", 1)
    algorithm, theta = _algorithm("maml")
    scores = online.online_scores(algorithm, theta, channels=2, seed=0, held_out=3)
    assert list(scores) == ["0.9", "0.999"]
    family = _family()
    receiver = tracking.learned_receiver(family, algorithm.model, lambda b: algorithm.adapt(theta, b))
    fixed = tracking.block_errors(family, tracking.drifting_blocks(family, 3, 0, 0.9), receiver, "pilots")
    assert scores["0.9"]["pilots"]["fixed"]["errors"] == fixed[:2].tolist()  # the tracking table's first channels
    for by_support in scores.values():
        assert set(by_support) == set(tracking.MODES)
        for by_update in by_support.values():
            assert set(by_update) == {"fixed", *online.ONLINE_MODES}
            assert all(entry["n"] == 2 and 0 <= entry["mean"] <= 1 for entry in by_update.values())


def test_bad_online_settings_are_clear_errors():
    algorithm, theta = _algorithm("maml")
    for options, match in (({"window": 0}, "window"), ({"updates": -1}, "updates"), ({"lr": 0.0}, "lr")):
        with pytest.raises(ConfigError, match=match):
            online.OnlineInitializations(theta, 2, algorithm, **options)
    with pytest.raises(ConfigError, match="unknown online mode 'meta'"):
        online.online_errors(_family(), [], algorithm, theta, "meta")
    with pytest.raises(ConfigError, match="no blocks"):
        online.online_errors(_family(), [], algorithm, theta, "online-meta")
    reptile = ALGORITHMS["reptile"](MLP(4, (16, 16), 1), il.backends.get("cpu"))
    with pytest.raises(ConfigError, match="MAML family"):
        online.online_errors(_family(), [], reptile, theta, "online-tuning")

