"""The aerial base station over vehicular traffic (monograph §7.1.2, [138]): the platoon's geometry
and the rate reward against formulas written here, the planner against closed-form optima and
random flights, the time-observing policy against a plain NumPy rollout, and the continual
experiment end to end (MAML's unroll check and train/eval on the task are in test_meta_rl.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from innerloop.engine import tasks
from innerloop.engine.errors import ConfigError, ShapeError
from innerloop.engine.rl_environments import AerialCoverage


def road(cx: float, cy: float, angle: float) -> torch.Tensor:
    return torch.tensor([[cx, cy, math.cos(angle), math.sin(angle)]], dtype=torch.float64)


def test_platoon_passes_the_road_centre_half_way_at_its_speed_and_spacing():
    env = AerialCoverage(vehicles=3, platoon_length=0.2, speed=0.05)
    p = env.platoon(road(0.1, -0.2, math.pi / 2), horizon=5)[0]  # [H, U, 2], driving north
    assert p.shape == (5, 3, 2)
    assert torch.allclose(p[2, 1], torch.tensor([0.1, -0.2], dtype=torch.float64), atol=1e-15)  # t = 3 = (H+1)/2
    assert torch.allclose(p[1:, :, 1] - p[:-1, :, 1], torch.full((4, 3), 0.05, dtype=torch.float64))
    assert torch.allclose(p[0, :, 1] - p[0, 0, 1], torch.tensor([0.0, 0.1, 0.2], dtype=torch.float64))
    assert torch.allclose(p[..., 0], torch.full((5, 3), 0.1, dtype=torch.float64))


def test_reward_is_the_mean_free_space_rate_written_out_per_vehicle():
    env = AerialCoverage(vehicles=2, platoon_length=0.3, speed=0.02, altitude=0.2, snr_db=10.0)
    y = road(0.05, 0.1, 0.7)
    positions = torch.randn((4, 3, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.3
    got = env.rewards(positions, y.expand(4, -1))
    direction = np.array([math.cos(0.7), math.sin(0.7)])
    for k in range(4):
        for t in range(3):
            rates = []
            for offset in (-0.15, 0.15):
                vehicle = np.array([0.05, 0.1]) + (0.02 * (t + 1 - 2) + offset) * direction
                distance2 = float(((positions[k, t].numpy() - vehicle) ** 2).sum())
                rates.append(math.log2(1 + 10.0 * 0.04 / (0.04 + distance2)))
            assert float(got[k, t]) == pytest.approx(np.mean(rates), abs=1e-13)


def test_planner_meets_closed_form_optima_and_beats_random_flights():
    env = AerialCoverage(vehicles=1, platoon_length=0.0, speed=0.0, snr_db=20.0)
    # a vehicle parked under the start: hover there, every step at the full nadir rate
    hover = env.best_returns(road(0.0, 0.0, 1.0), 6, 0.1, iters=50)
    assert float(hover[0]) == pytest.approx(6 * math.log2(101), abs=1e-9)
    # parked at (0.35, 0): fly straight at full speed (the rate falls with distance, and no flight is
    # closer at any step), then hover: distances 0.25, 0.15, 0.05, 0, 0
    parked = road(0.35, 0.0, 0.0)
    expected = sum(math.log2(1 + 100 * 0.01 / (0.01 + d ** 2)) for d in (0.25, 0.15, 0.05, 0.0, 0.0))
    assert float(env.best_returns(parked, 5, 0.1, iters=50)[0]) == pytest.approx(expected, abs=1e-6)
    moving = AerialCoverage()
    y = road(0.2, -0.1, 2.0)
    steps = 0.2 * torch.rand((4000, 8, 2), generator=torch.Generator().manual_seed(1), dtype=torch.float64) - 0.1
    random_flights = moving.rewards(steps.cumsum(1), y.expand(4000, -1)).sum(-1)
    chase = moving.rewards(moving.chase(y, 8, 0.1), y).sum(-1)
    best = moving.best_returns(y, 8, 0.1, iters=100)
    assert float(best[0]) >= float(chase[0]) >= float(random_flights.max())


def test_policy_observes_position_and_time_and_its_objective_is_minus_a_numpy_rollouts_return():
    family = tasks.make("aerial-base-station", shots=3, queries=2, horizon=4, init_std=0.3)
    policy = family.learner((5,), "tanh")
    assert policy.mean.in_dim == 3 and policy.target_dim == 4 and not policy.predicts_targets
    params = policy.init(torch.Generator().manual_seed(2), dtype=torch.float64)
    params["mean.layer1.weight"] = params["mean.layer1.weight"] * 100  # away from 0.01 scale: actions that move
    batch = family.sample(1, torch.Generator().manual_seed(3)).to(torch.float64, "cpu")
    x, y = batch.support_x[0], batch.support_y[0]
    p = {k: v.numpy() for k, v in params.items()}
    env, returns = family.environment(), []
    for episode, target in zip(x.numpy(), y):
        state, positions = np.zeros(2), []
        for t in range(4):
            hidden = np.tanh(p["mean.layer0.weight"] @ np.r_[state, t / 4] + p["mean.layer0.bias"])
            noise = np.exp(p["log_std"]) * episode[2 * t:2 * t + 2]
            action = p["mean.layer1.weight"] @ hidden + p["mean.layer1.bias"] + noise
            state = state + np.clip(action, -0.1, 0.1)
            positions.append(state)
        returns.append(float(env.rewards(torch.tensor(np.array(positions)), target).sum()))
    assert float(policy.objective(params, x, y)) == pytest.approx(-np.mean(returns), abs=1e-12)
    with pytest.raises(ShapeError, match="targets of size 4"):
        policy.objective(params, x, y[:, :2])


def test_family_draws_unit_directions_within_the_road_range_and_refuses_bad_options():
    family = tasks.make("aerial-base-station", horizon=5, road_range=0.1)
    batch = family.sample(40, torch.Generator().manual_seed(6))
    assert batch.support_x.shape == (40, 20, 10) and batch.query_y.shape == (40, 20, 4)
    roads = batch.support_y[:, 0]
    assert float(roads[:, :2].abs().max()) <= 0.1
    assert torch.allclose(roads[:, 2:].norm(dim=1), torch.ones(40), atol=1e-6)
    assert torch.allclose(torch.atan2(roads[:, 3], roads[:, 2]) % (2 * math.pi),
                          batch.task_params["road_angle"] % (2 * math.pi), atol=1e-5)
    for bad, match in (({"vehicles": 0}, "vehicles"), ({"altitude": 0}, "altitude"), ({"road_range": -1}, "road_range"),
                       ({"max_step": 0}, "max_step")):
        with pytest.raises(ConfigError, match=match):
            tasks.make("aerial-base-station", **bad)


def test_uabs_experiment_end_to_end(tmp_path, monkeypatch, capsys):
    from innerloop.cli import main
    from innerloop.engine import uabs_experiment as experiment

    monkeypatch.setattr(experiment, "HORIZON", 4)
    monkeypatch.setattr(experiment, "HIDDEN", (8,))
    monkeypatch.setattr(experiment, "CHECKS", 2)
    monkeypatch.setitem(experiment.METHODS, "fomaml-replay", {"algo": "fomaml", "replay": 2})
    assert main(["experiment", "uabs-trajectory", "--iters", "4", "--tasks", "3", "--algos", "fomaml-replay,joint",
                 "--out", str(tmp_path)]) == 0
    assert "planned with the road known" in capsys.readouterr().out
    document = json.loads((tmp_path / "uabs_trajectory.json").read_text())
    assert (tmp_path / "uabs_trajectory.png").stat().st_size > 0
    assert set(document["rows"]) == {"fomaml-replay", "joint"}
    row = document["rows"]["fomaml-replay"]
    assert len(row["prequential"]) == 4 and [c["patterns"] for c in row["held_out"]] == [0, 2, 4]
    assert [r["steps"] for r in row["adaptation"]] == [0, 1, 2, 3] and row["adaptation"][0]["return"]["n"] == 3
    assert len(row["paths"][0][0]) == 4  # steps, roads, horizon
    assert document["planned"]["held_out"]["mean"] > document["scratch"]["adaptation"][0]["return"]["mean"]
    with pytest.raises(ConfigError, match="uabs-trajectory method"):
        experiment.uabs_trajectory(tmp_path, iters=10, tasks=3, algorithms=["dice"])
    with pytest.raises(ConfigError, match="--iters"):
        experiment.uabs_trajectory(tmp_path, iters=1, tasks=3)
