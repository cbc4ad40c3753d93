"""A link trained without a channel model (monograph §7.1.1, [163]): the surrogate's gradient against
the decoder's autograd gradient and a per-message REINFORCE sum written out, its encoder gradient
against the pathwise gradient through the channel (both estimate ∇E[l]), the receiver's context,
the family's time-correlated channels, and MAML adapting only named parameters."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import unrolled_maml_gradient
from innerloop.engine import tasks
from innerloop.engine.algorithms import MAML
from innerloop.engine.errors import ConfigError
from innerloop.engine.model_free_link import ModelFreeLink
from innerloop.engine.policy_gradient import leave_one_out_advantages


def small_link(exploration: float = 0.3, context_dim: int = 0) -> tuple[tasks.TaskFamily, ModelFreeLink]:
    family = tasks.make("model-free-link", shots=4, queries=6, bits=2, uses=2, taps=2, snr_db=5.0,
                        exploration=exploration, context_dim=context_dim)
    return family, family.learner((5,), "tanh")


def test_leave_one_out_advantages_subtract_the_mean_of_the_others():
    losses = torch.tensor([1.0, 2.0, 6.0], dtype=torch.float64)
    assert torch.allclose(leave_one_out_advantages(losses), torch.tensor([-3.0, -1.5, 4.5], dtype=torch.float64))
    assert torch.equal(leave_one_out_advantages(losses[:1]), losses[:1])


def test_surrogate_is_the_cross_entropy_with_the_decoder_gradient_and_a_reinforce_encoder_gradient():
    family, model = small_link()
    params = model.init(torch.Generator().manual_seed(0), dtype=torch.float64)
    batch = family.sample(1, torch.Generator().manual_seed(1)).to(torch.float64, "cpu")
    x, y = batch.query_x[0], batch.query_y[0]
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    objective = model.objective(leaves, x, y)
    got = dict(zip(leaves, torch.autograd.grad(objective, list(leaves.values()))))
    cross_entropy = torch.nn.functional.cross_entropy(model.apply(leaves, x), y, reduction="none")
    assert float(objective.detach()) == pytest.approx(float(cross_entropy.mean().detach()), abs=1e-12)
    decoder = [k for k in leaves if k.startswith("decoder.")]
    expected = torch.autograd.grad(cross_entropy.mean(), [leaves[k] for k in decoder], retain_graph=True)
    for name, g in zip(decoder, expected):
        assert torch.allclose(got[name], g, atol=1e-12), name
    # the encoder: (1/K)·Σ_i (l_i − mean_{j≠i} l_j)·∇ log π(x̃_i | m_i), one message at a time
    encoder = [k for k in leaves if k.startswith("encoder.")]
    losses, count = cross_entropy.detach(), len(y)
    reinforce = [torch.zeros_like(leaves[k]) for k in encoder]
    uses, sigma = family.uses, family.exploration
    explore = x[:, -2 * uses:]
    for i in range(count):
        real, imag = model.link.codewords(leaves, x[i, :family.messages])
        sent_real, sent_imag = (real + explore[i, :uses]).detach(), (imag + explore[i, uses:]).detach()
        log_policy = -((sent_real - real) ** 2 + (sent_imag - imag) ** 2).sum() / sigma ** 2
        baseline = (losses.sum() - losses[i]) / (count - 1)
        for total, g in zip(reinforce, torch.autograd.grad(log_policy, [leaves[k] for k in encoder])):
            total += (losses[i] - baseline) * g / count
    for name, g in zip(encoder, reinforce):
        assert torch.allclose(got[name], g, atol=1e-12), name
    assert any(float(g.abs().max()) > 1e-3 for g in reinforce)


def test_reinforce_and_the_pathwise_gradient_through_the_channel_agree_in_expectation():
    """Both are unbiased for ∇_ϕT E[l] with x̃ = c + p: REINFORCE never touches the channel, the
    pathwise estimate differentiates h ∗ x̃ (what a channel model would allow). Over 40,000 pairs of
    sends of one message over one channel (a pair: the leave-one-out baseline), the two means must
    agree within their Monte-Carlo error."""
    family, model = small_link(exploration=0.4)
    family.snr_db = 10.0
    params = model.init(torch.Generator().manual_seed(2), dtype=torch.float64)
    channel = family.channels(1, torch.Generator().manual_seed(3))
    x, y = family.transmissions(channel, 80_000, torch.Generator().manual_seed(4))
    x, y = x[0].double(), torch.zeros_like(y[0])
    x[:, :family.messages] = torch.nn.functional.one_hot(y, family.messages).double()
    x, y = x.reshape(-1, 2, x.shape[-1]), y.reshape(-1, 2)
    encoder = [k for k in params if k.startswith("encoder.")]
    uses = family.uses

    def pathwise_loss(p, xs, ys):
        real, imag = model.link.codewords(p, xs[:, :family.messages])
        sent_real, sent_imag = real + xs[:, -2 * uses:-uses], imag + xs[:, -uses:]
        logits = model.link.decode(p, model.link.channel(xs, sent_real, sent_imag))
        return torch.nn.functional.cross_entropy(logits, ys)

    def per_pair(loss) -> torch.Tensor:  # [pairs, encoder parameters]
        def flat(xs, ys):
            grads = torch.func.grad(loss)(params, xs, ys)
            return torch.cat([grads[k].reshape(-1) for k in encoder])
        return torch.cat([torch.func.vmap(flat)(xs, ys) for xs, ys in zip(x.split(4000), y.split(4000))])

    score, path = per_pair(model.objective), per_pair(pathwise_loss)
    error = (score.var(0) / len(y) + path.var(0) / len(y)).sqrt()
    assert int((path.mean(0).abs() > 5 * error).sum()) >= 5  # components well above the Monte-Carlo error
    assert float(((score.mean(0) - path.mean(0)).abs() / error.clamp_min(1e-12)).max()) < 4.5


def test_without_exploration_the_encoder_gets_no_gradient():
    for exploration_of_points, exploration_of_model in ((0.0, 0.3), (0.3, 0.0)):
        family, model = small_link(exploration_of_model)
        family.exploration = exploration_of_points
        params = model.init(torch.Generator().manual_seed(5), dtype=torch.float64)
        batch = family.sample(1, torch.Generator().manual_seed(6)).to(torch.float64, "cpu")
        grads = torch.func.grad(model.objective)(params, batch.query_x[0], batch.query_y[0])
        assert all(float(g.abs().max()) == 0 for k, g in grads.items() if k.startswith("encoder."))
        assert any(float(g.abs().max()) > 0 for k, g in grads.items() if k.startswith("decoder."))


def test_the_receiver_context_is_appended_to_the_decoder_input():
    family, model = small_link(context_dim=3)
    params = model.init(torch.Generator().manual_seed(7), dtype=torch.float64)
    assert torch.equal(params["context"], torch.zeros(3, dtype=torch.float64))
    x = family.without_exploration().sample(1, torch.Generator().manual_seed(8)).support_x[0].double()
    context = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    received = model.link.channel(x, *model.link.codewords(params, x[:, :family.messages]))
    decoder = {k[len("decoder."):]: v for k, v in params.items() if k.startswith("decoder.")}
    expected = model.link.decoder.apply(decoder, torch.cat([received, context.expand(len(x), 3)], -1))
    assert torch.allclose(model.apply({**params, "context": context}, x), expected, atol=1e-12)


def test_drifting_channels_keep_the_tap_power_and_have_correlation_rho():
    family = tasks.make("model-free-link")
    h = family.drifting_channels(20_000, 0.8, torch.Generator().manual_seed(9))
    assert h.shape == (20_000, 3)
    power = (h.abs() ** 2).mean(0)
    assert torch.allclose(power, torch.full((3,), 1 / 3, dtype=torch.float64), rtol=0.05)
    correlation = (h[1:] * h[:-1].conj()).mean(0).real / power
    assert torch.allclose(correlation, torch.full((3,), 0.8, dtype=torch.float64), atol=0.03)
    still = family.drifting_channels(5, 1.0, torch.Generator().manual_seed(10))
    assert torch.equal(still, still[:1].expand_as(still))
    with pytest.raises(ConfigError, match="rho"):
        family.drifting_channels(5, 1.5, None)


def test_family_points_carry_the_exploration_and_drop_it_on_request():
    family = tasks.make("model-free-link")
    assert family.input_dim == 256 + 6 + 20 + 16
    batch = family.sample(50, torch.Generator().manual_seed(11))
    explore = batch.query_x[..., -16:].double()
    assert float((explore ** 2).sum(-1).mean()) == pytest.approx(8 * 0.15 ** 2, rel=0.05)  # E‖p‖² = uses·σ²
    quiet = family.without_exploration().sample(2, torch.Generator().manual_seed(11))
    assert torch.equal(quiet.query_x[..., -16:], torch.zeros_like(quiet.query_x[..., -16:]))
    with pytest.raises(ConfigError, match="exploration"):
        tasks.make("model-free-link", exploration=1.5)


def test_maml_adapts_only_the_named_parameters_and_matches_an_autograd_unroll(cpu64):
    family, model = small_link(context_dim=3)
    batch = family.without_exploration().sample(3, torch.Generator().manual_seed(12)).to(torch.float64, "cpu")
    params = model.init(torch.Generator().manual_seed(13), dtype=torch.float64)
    params["context"] = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    algo = MAML(model, cpu64, inner_lr=0.5, inner_steps=2, inner_params=["context"])
    adapted = algo.adapt(params, batch)
    for name, value in adapted.items():
        moved = not torch.equal(value, params[name].expand_as(value))
        assert moved == (name == "context"), name
    # the reference: autograd through two steps on the context alone (points without exploration
    # make the surrogate the plain cross-entropy, which the unroll differentiates)
    theta = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    total = 0.0
    for b in range(3):
        context = theta["context"]
        for _ in range(2):
            support = torch.nn.functional.cross_entropy(model.apply({**theta, "context": context}, batch.support_x[b]),
                                                        batch.support_y[b])
            context = context - 0.5 * torch.autograd.grad(support, context, create_graph=True)[0]
        query = model.apply({**theta, "context": context}, batch.query_x[b])
        total = total + torch.nn.functional.cross_entropy(query, batch.query_y[b]) / 3
    grads = torch.autograd.grad(total, list(theta.values()), allow_unused=True)  # the encoder: no exploration
    reference = {k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(theta.items(), grads)}
    got = algo.meta_gradient(params, batch)
    for name in reference:
        assert torch.allclose(got[name], reference[name], atol=1e-12, rtol=1e-9), name
    assert MAML(model, cpu64, inner_params=["context"]).options()["inner_params"] == ["context"]


def test_maml_on_a_link_with_a_receiver_context_matches_the_full_unroll(cpu64):
    family = tasks.make("channel-coding", shots=4, queries=5, bits=2, uses=2, taps=2, context_dim=2)
    model = family.learner((5,), "tanh")
    batch = family.sample(2, torch.Generator().manual_seed(14)).to(torch.float64, "cpu")
    params = model.init(torch.Generator().manual_seed(15), dtype=torch.float64)
    reference = unrolled_maml_gradient(model, params, batch, 0.1, 1, loss_name="cross_entropy")
    got = MAML(model, cpu64, inner_lr=0.1, inner_steps=1).meta_gradient(params, batch)
    for name in reference:
        assert torch.allclose(got[name], reference[name], atol=1e-12, rtol=1e-9), name


def test_bad_inner_params_are_refused_with_the_names_to_choose_from(cpu64):
    _, model = small_link()
    with pytest.raises(ConfigError, match="names none"):
        MAML(model, cpu64, inner_params=["head."])
    with pytest.raises(ConfigError, match="non-empty list"):
        MAML(model, cpu64, inner_params="decoder.")
    assert math.isfinite(model.exploration)


def test_model_free_link_experiment_end_to_end(tmp_path, monkeypatch, capsys):
    from innerloop.cli import main
    from innerloop.engine import model_free_link_experiment as experiment

    monkeypatch.setattr(experiment, "RHOS", (0.0, 0.99))
    assert main(["experiment", "model-free-link", "--iters", "10", "--tasks", "4", "--out", str(tmp_path)]) == 0
    assert "conventional (BPSK + ML)" in capsys.readouterr().out
    document = json.loads((tmp_path / "model_free_link.json").read_text())
    assert (tmp_path / "model_free_link.png").stat().st_size > 0
    assert set(document["rows"]) == {"meta", "joint"} and set(document["rows"]["meta"]) == {"0.0", "0.99"}
    row = document["rows"]["meta"]["0.99"]
    assert [c["frames"] for c in row["held_out"]] == list(range(11))
    assert len(row["prequential"]) == 10 and row["final"]["n"] == 4 and row["unadapted"]["n"] == 4
    assert 0 <= document["conventional"]["mean"] <= 1
    with pytest.raises(ConfigError, match="iters"):
        experiment.model_free_link(tmp_path, iters=3, tasks=4)


def test_train_meta_learns_the_model_free_link_adapting_its_context(tmp_path):
    from innerloop.cli import main

    out = tmp_path / "run"
    assert main(["train", "--algo", "maml", "--task", "model-free-link", "--task-option", "bits=2",
                 "--task-option", "uses=2", "--task-option", "context_dim=2", "--algo-option",
                 'inner_params=["context"]', "--inner-steps", "1", "--inner-lr", "1.0", "--hidden", "8",
                 "--iters", "3", "--meta-batch", "2", "--out", str(out), "--quiet"]) == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert {k.split(".")[0] for k in state["params"]} == {"encoder", "decoder", "context"}
    assert not torch.equal(state["params"]["context"], torch.zeros(2))  # meta-learned start
    assert main(["eval", str(out), "--tasks", "4", "--joint-iters", "2", "--steps", "0,1"]) == 0
    steps = json.loads((out / "eval.json").read_text())["steps"]
    assert "accuracy" in steps["1"] and "predictive_mse" not in steps["1"]  # messages are classes
