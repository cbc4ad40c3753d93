"""Meta-reinforcement learning on 2D navigation (monograph §7.1.2): the policy's rollouts and
returns against a plain loop written here, the surrogate's gradient against the REINFORCE sum
written out one step at a time, and against the pathwise gradient of the expected return (both
estimate ∇E[R]), the LVC surrogate's extra curvature in closed form, and MAML on the task against
an autograd unroll."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import flat_hessian, unrolled_maml_gradient
from innerloop.engine import tasks
from innerloop.engine.algorithms import MAML
from innerloop.engine.errors import ConfigError
from innerloop.engine.policy_gradient import rewards_to_go, score_surrogate


def small_task(**options) -> tuple[tasks.Navigation2D, object]:
    family = tasks.make("navigation-2d", **{"shots": 4, "queries": 5, "horizon": 3, **options})
    return family, family.learner((6,), "tanh")


def sample64(family, seed: int, num_tasks: int = 1):
    return family.sample(num_tasks, torch.Generator().manual_seed(seed)).to(torch.float64, "cpu")


def test_rewards_to_go_discount_the_future():
    rewards = torch.tensor([[1.0, 2.0, 4.0]], dtype=torch.float64)
    assert torch.allclose(rewards_to_go(rewards, 0.5), torch.tensor([[1 + 1 + 1.0, 2 + 2.0, 4.0]], dtype=torch.float64))
    assert torch.allclose(rewards_to_go(rewards, 1.0), torch.tensor([[7.0, 6.0, 4.0]], dtype=torch.float64))


def test_objective_value_is_minus_the_return_of_a_rollout_written_as_a_plain_loop():
    family, policy = small_task(max_step=0.05, init_std=0.3)
    params = policy.init(torch.Generator().manual_seed(0), dtype=torch.float64)
    batch = sample64(family, 1)
    x, goals = batch.support_x[0], batch.support_y[0]
    p = {k: v.numpy() for k, v in params.items()}
    returns, finals = [], []
    for episode, goal in zip(x.numpy(), goals.numpy()):
        state, total = np.zeros(2), 0.0
        for t in range(family.horizon):
            hidden = np.tanh(p["mean.layer0.weight"] @ state + p["mean.layer0.bias"])
            mean = p["mean.layer1.weight"] @ hidden + p["mean.layer1.bias"]
            action = mean + np.exp(p["log_std"]) * episode[2 * t:2 * t + 2]
            state = state + np.clip(action, -0.05, 0.05)
            total -= np.linalg.norm(state - goal)
        returns.append(total)
        finals.append(state)
    assert float(policy.objective(params, x, goals)) == pytest.approx(-np.mean(returns), abs=1e-12)
    assert np.allclose(policy.apply(params, x).numpy(), np.array(finals), atol=1e-12)


def test_surrogate_gradient_is_the_reinforce_sum_with_rewards_to_go_and_leave_one_out_baselines():
    family, policy = small_task(discount=0.9, init_std=0.2)
    params = policy.init(torch.Generator().manual_seed(2), dtype=torch.float64)
    x, goals = (t[0] for t in (sample64(family, 3).support_x, sample64(family, 3).support_y))
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    got = torch.autograd.grad(policy.objective(leaves, x, goals), list(leaves.values()))
    with torch.no_grad():
        states, actions = policy.rollout(params, x)
        positions = states + actions.clamp(-family.max_step, family.max_step)
        rewards = -(positions - goals[:, None]).norm(dim=-1)
    episodes, horizon = rewards.shape
    cost_to_go = [[-sum(0.9 ** (s - t) * float(rewards[i, s]) for s in range(t, horizon)) for t in range(horizon)]
                  for i in range(episodes)]
    advantages = np.array([[cost_to_go[i][t] - sum(cost_to_go[j][t] for j in range(episodes) if j != i)
                            / (episodes - 1) for t in range(horizon)] for i in range(episodes)])
    advantages /= advantages.std(ddof=1)  # normalize_advantages: one scale per task
    expected = [torch.zeros_like(v) for v in leaves.values()]
    for i in range(episodes):
        for t in range(horizon):
            mean = policy._mean(leaves, states[i, t], torch.tensor(float(t), dtype=torch.float64))
            std = leaves["log_std"].exp()
            log_pi = (-0.5 * ((actions[i, t] - mean) / std) ** 2 - leaves["log_std"]).sum()
            for total, g in zip(expected, torch.autograd.grad(log_pi, list(leaves.values()))):
                total += float(advantages[i, t]) * g / episodes
    for name, a, b in zip(leaves, got, expected):
        assert torch.allclose(a, b, atol=1e-12), name
    assert all(float(g.abs().max()) > 1e-4 for g in expected)


def test_reinforce_and_the_pathwise_gradient_of_the_expected_return_agree():
    """Without clipping the episode is a smooth function of the policy's parameters, so
    differentiating the rollout itself (reparameterization) also estimates ∇E[−R]. Over 20,000
    pairs of episodes (a pair: the leave-one-out baseline) the two means must agree within their
    Monte-Carlo error; a wrong 1/σ² or sign in log π fails this."""
    family, policy = small_task(horizon=2, max_step=100.0, discount=1.0, init_std=0.3, normalize_advantages=False)
    params = policy.init(torch.Generator().manual_seed(4), dtype=torch.float64)
    x = torch.randn((20_000, 2, family.input_dim), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    goals = torch.tensor([0.3, -0.2], dtype=torch.float64).expand(20_000, 2, 2)

    def pathwise(p, xs, ys):
        positions = policy.trajectory(p, xs)
        return (positions - ys[:, None]).norm(dim=-1).sum(-1).mean()

    def per_pair(objective) -> torch.Tensor:
        def flat(xs, ys):
            grads = torch.func.grad(objective)(params, xs, ys)
            return torch.cat([g.reshape(-1) for g in grads.values()])
        return torch.func.vmap(flat)(x, goals)

    score, path = per_pair(policy.objective), per_pair(pathwise)
    error = (score - path).std(0) / len(x) ** 0.5  # paired: both estimate the same gradient
    assert int((path.mean(0).abs() > 5 * error).sum()) >= 10  # components well above the Monte-Carlo error
    assert float(((score.mean(0) - path.mean(0)).abs() / error).max()) < 4.5


def test_lvc_keeps_value_and_gradient_and_adds_the_outer_product_of_scores_to_the_hessian():
    family, policy = small_task(init_std=0.4, normalize_advantages=False)
    _, lvc = small_task(init_std=0.4, estimator="lvc", normalize_advantages=False)
    params = policy.init(torch.Generator().manual_seed(6), dtype=torch.float64)
    x, goals = (t[0] for t in (sample64(family, 7).query_x, sample64(family, 7).query_y))
    for value in (policy.objective, lvc.objective):
        assert float(value(params, x, goals)) == pytest.approx(float(policy.objective(params, x, goals)), abs=1e-12)
    g_reinforce, g_lvc = (torch.func.grad(m.objective)(params, x, goals) for m in (policy, lvc))
    assert all(torch.allclose(g_reinforce[k], g_lvc[k], atol=1e-12) for k in params)
    difference = (flat_hessian(lvc, lvc.objective_name, params, x, goals)
                  - flat_hessian(policy, policy.objective_name, params, x, goals))
    # Σ_it A_it ∇log π_it ∇log π_itᵀ / K, the scores and advantages computed independently here
    states, actions = policy.rollout(params, x)
    positions = states + actions.clamp(-family.max_step, family.max_step)
    costs = rewards_to_go((positions - goals[:, None]).norm(dim=-1), family.discount)
    advantages = (costs - (costs.sum(0) - costs) / (len(x) - 1)).detach()
    scores = torch.func.jacrev(lambda p: policy.log_policy(p, states, actions))(params)  # [K, H, ·] per name
    flat = torch.cat([scores[k].reshape(len(x), family.horizon, -1) for k in params], dim=-1)
    expected = torch.einsum("kh,khp,khq->pq", advantages, flat, flat) / len(x)
    assert float(expected.abs().max()) > 1e-3
    assert torch.allclose(difference, expected, atol=1e-10)
    assert torch.equal(score_surrogate(torch.ones(2), torch.ones(2), "lvc"), torch.zeros(2))


@pytest.mark.parametrize("task, estimator", [("navigation-2d", "reinforce"), ("navigation-2d", "lvc"),
                                             ("aerial-base-station", "reinforce")])
def test_maml_on_the_policy_tasks_matches_an_autograd_unroll(cpu64, task, estimator):
    family = tasks.make(task, shots=4, queries=5, horizon=3, estimator=estimator)
    policy = family.learner((6,), "tanh")
    batch = sample64(family, 8, num_tasks=3)
    params = policy.init(torch.Generator().manual_seed(9), dtype=torch.float64)
    reference = unrolled_maml_gradient(policy, params, batch, 0.05, 2, loss_name=policy.objective_name)
    got = MAML(policy, cpu64, inner_lr=0.05, inner_steps=2).meta_gradient(params, batch)
    for name in reference:
        assert torch.allclose(got[name], reference[name], atol=1e-11, rtol=1e-9), name


def test_family_draws_goals_in_the_square_and_refuses_bad_options():
    family = tasks.make("navigation-2d", horizon=5, goal_range=0.25)
    batch = family.sample(50, torch.Generator().manual_seed(10))
    assert batch.support_x.shape == (50, 20, 10) and batch.query_y.shape == (50, 20, 2)
    assert float(batch.support_y.abs().max()) <= 0.25
    goals = torch.stack([batch.task_params["goal_x"], batch.task_params["goal_y"]], 1)
    assert torch.equal(batch.support_y[:, 0], goals)
    assert torch.equal(batch.support_y, batch.query_y)  # one goal per task
    for bad, match in (({"horizon": 0}, "horizon"), ({"discount": 1.5}, "discount"), ({"goal_range": -1}, "goal_range"),
                       ({"estimator": "dice"}, "estimator")):
        with pytest.raises(ConfigError, match=match):
            tasks.make("navigation-2d", **bad)
    policy = family.learner((4,), "relu")
    with pytest.raises(Exception, match="noise values"):
        policy.apply(policy.init(), torch.zeros(3, 7))


@pytest.mark.parametrize("task, algo, goal", [("navigation-2d", "maml", True),
                                            ("aerial-base-station", "fomaml", False)])
def test_train_and_eval_meta_learn_the_policy_tasks(tmp_path, task, algo, goal):
    """The evaluation reports the final position's error only where there is a goal to reach."""
    from innerloop.cli import main

    out = tmp_path / "run"
    assert main(["train", "--algo", algo, "--task", task, "--task-option", "horizon=4",
                 "--inner-steps", "1", "--inner-lr", "0.002", "--hidden", "8", "--iters", "3", "--meta-batch", "2",
                 "--out", str(out), "--quiet"]) == 0
    assert main(["eval", str(out), "--tasks", "4", "--joint-iters", "2", "--steps", "0,1"]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["loss"] == "negative_return" and ("predictive_mse" in result["steps"]["1"]) == goal


def test_optimal_return_is_the_straight_clipped_path_and_no_action_sequence_beats_it():
    family = tasks.make("navigation-2d", horizon=3)
    goal = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    assert float(family.best_returns(goal)[0]) == pytest.approx(-(0.05 ** 0.5 + 0.1), abs=1e-12)
    steps = 0.2 * torch.rand((5000, 3, 2), generator=torch.Generator().manual_seed(11), dtype=torch.float64) - 0.1
    returns = -(steps.cumsum(1) - goal).norm(dim=-1).sum(-1)
    assert float(returns.max()) <= float(family.best_returns(goal)[0])


def test_meta_rl_experiment_end_to_end(tmp_path, monkeypatch, capsys):
    from innerloop.cli import main
    from innerloop.engine import meta_rl_experiment as experiment

    monkeypatch.setattr(experiment, "HORIZON", 4)
    monkeypatch.setattr(experiment, "HIDDEN", (8,))
    assert main(["experiment", "meta-rl", "--iters", "2", "--tasks", "4", "--algos", "maml,joint",
                 "--out", str(tmp_path)]) == 0
    assert "optimal return" in capsys.readouterr().out
    document = json.loads((tmp_path / "meta_rl.json").read_text())
    assert (tmp_path / "meta_rl.png").stat().st_size > 0
    assert set(document["rows"]) == {"maml", "joint"} and set(document["minus_joint"]) == {"maml"}
    assert [r["steps"] for r in document["rows"]["maml"]] == [0, 1, 2, 3]
    assert document["rows"]["joint"][0]["return"]["n"] == 4
    assert len(document["paths"]["maml"]) == 4 and len(document["paths"]["maml"][0][0]) == 4  # steps, goals, horizon
    assert document["optimal_return"]["mean"] > document["scratch"][0]["return"]["mean"]
    with pytest.raises(ConfigError, match="meta-rl method"):
        experiment.meta_rl(tmp_path, iters=2, tasks=4, algorithms=["dice"])


@pytest.mark.parametrize("name", ["imaml", "anil", "metasgd", "sharp-maml", "prox-maml", "es-maml", "alset"])
def test_the_other_gradient_algorithms_meta_learn_the_policy_unchanged(cpu64, name):
    from innerloop.engine import algorithms

    family, policy = small_task()
    algorithm = algorithms.make(name, policy, cpu64, inner_lr=0.001)
    params = algorithm.init_params(torch.Generator().manual_seed(12), dtype=torch.float64)
    result = algorithm.meta_gradient(params, sample64(family, 13, num_tasks=2))
    grads = result if isinstance(result, dict) else result.grads
    assert set(grads) == set(params) and all(bool(torch.isfinite(g).all()) for g in grads.values())
    assert any(float(g.abs().max()) > 0 for g in grads.values())


@pytest.mark.parametrize("name, match", [("cavia", "context"), ("bmaml", "likelihood"), ("modular", "module")])
def test_algorithms_that_cannot_use_the_policy_refuse_it_with_a_clear_error(cpu64, name, match):
    from innerloop.engine import algorithms

    _, policy = small_task()
    with pytest.raises(ConfigError, match=match):
        algorithms.make(name, policy, cpu64)
