"""Encoder/decoder meta-learning over a multi-tap channel (monograph §5.3): the link learner's channel
against NumPy's convolution, MAML's meta-gradient through it against an autograd unroll (float64),
the task family, and the experiment end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from innerloop.engine import tasks
from innerloop.engine.algorithms import MAML
from innerloop.engine.errors import ConfigError
from innerloop.engine.link_autoencoder import LinkAutoencoder


def test_link_sends_unit_energy_codewords_through_the_convolution_of_eq_5_11():
    family = tasks.make("channel-coding", shots=5, queries=1, snr_db=5.0)
    model = LinkAutoencoder(family.messages, family.uses, family.taps, (8,))
    params = model.init(torch.Generator().manual_seed(0), dtype=torch.float64)
    batch = family.sample(2, torch.Generator().manual_seed(1))
    x = batch.support_x.double()
    received = model.received_signal(params, x)
    for b in range(2):
        for k in range(5):
            real, imag = model.codewords(params, x[b, k, :16])
            code = real.numpy() + 1j * imag.numpy()
            assert np.sum(np.abs(code) ** 2) == pytest.approx(family.uses)
            taps = x[b, k, 16:19].numpy() + 1j * x[b, k, 19:22].numpy()
            noise = x[b, k, 22:28].numpy() + 1j * x[b, k, 28:34].numpy()
            expected = np.convolve(taps, code) + noise
            got = received[b, k, :6].numpy() + 1j * received[b, k, 6:].numpy()
            assert np.allclose(got, expected, atol=1e-12)


def test_channel_coding_family_draws_fresh_messages_over_one_channel_per_task():
    family = tasks.make("channel-coding")
    assert (family.input_dim, family.output_dim, family.received) == (16 + 6 + 12, 16, 6)
    batch = family.sample(400, torch.Generator().manual_seed(2))
    taps = batch.support_x[..., 16:22]
    assert torch.equal(taps, batch.query_x[:, :16, 16:22])  # the same channel in support and query
    assert torch.equal(taps, taps[:, :1].expand_as(taps))  # and for every message
    assert torch.equal(batch.support_x[:, :, :16].argmax(-1), batch.support_y)
    noise = batch.query_x[..., 22:]
    assert float(noise.double().pow(2).sum(-1).mean()) == pytest.approx(6 * 10 ** -1.5, rel=0.05)  # E‖w‖² = 6·N0
    energy = taps.double().pow(2).sum(-1).mean()
    assert float(energy) == pytest.approx(1.0, rel=0.1)  # Σ_t E|h_t|² = 1
    with pytest.raises(ConfigError, match="bits"):
        tasks.make("channel-coding", bits=12)


def test_rtn_receiver_equalizes_with_the_estimated_filter():
    family = tasks.make("channel-coding", shots=4, queries=1, receiver="rtn", equalizer_taps=2)
    model = family.learner((8,), "tanh")
    assert set(model.shapes()) >= {"estimator.layer0.weight", "decoder.layer0.weight"}
    assert model.shapes()["decoder.layer0.weight"] == (8, 2 * (6 + 2 - 1))
    params = model.init(torch.Generator().manual_seed(5), dtype=torch.float64)
    x = family.sample(1, torch.Generator().manual_seed(6)).support_x.double()[0]
    received = model.received_signal(params, x)
    estimator = {k[len("estimator."):]: v for k, v in params.items() if k.startswith("estimator.")}
    correction = model.parts["estimator"].apply(estimator, received).numpy()
    got = model.equalized(params, received).numpy()
    for k in range(4):
        y = received[k, :6].numpy() + 1j * received[k, 6:].numpy()
        w = np.array([1.0, 0.0]) + correction[k, :2] + 1j * correction[k, 2:]
        assert np.allclose(got[k, :7] + 1j * got[k, 7:], np.convolve(y, w), atol=1e-12)
    last = max(k for k in estimator if k.endswith(".weight")).split(".")[0]  # a zero correction: w = δ
    silent = {**params, f"estimator.{last}.weight": torch.zeros_like(params[f"estimator.{last}.weight"]),
              f"estimator.{last}.bias": torch.zeros_like(params[f"estimator.{last}.bias"])}
    flat = model.equalized(silent, received)
    assert torch.equal(flat[:, :6], received[:, :6]) and torch.equal(flat[:, 7:13], received[:, 6:])
    with pytest.raises(ConfigError, match="unknown receiver"):
        tasks.make("channel-coding", receiver="cnn")


@pytest.mark.parametrize("receiver", ["mlp", "rtn"])
def test_maml_meta_gradient_through_the_channel_matches_an_autograd_unroll(cpu64, receiver):
    family = tasks.make("channel-coding", shots=6, queries=5, receiver=receiver)
    model = family.learner((6,), "tanh")
    batch = family.sample(2, torch.Generator().manual_seed(3)).to(torch.float64, "cpu")
    algo = MAML(model, cpu64, inner_lr=0.1, inner_steps=1)
    theta = model.init(torch.Generator().manual_seed(4), dtype=torch.float64)
    leaves = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
    total = 0.0
    for b in range(2):  # ∇_θ L_Q(θ − α∇L_S(θ)), averaged over the tasks (eq. 5.15–5.16)
        support = torch.nn.functional.cross_entropy(model.apply(leaves, batch.support_x[b]), batch.support_y[b])
        grads = torch.autograd.grad(support, list(leaves.values()), create_graph=True)
        adapted = {k: v - 0.1 * g for (k, v), g in zip(leaves.items(), grads)}
        total = total + torch.nn.functional.cross_entropy(model.apply(adapted, batch.query_x[b]), batch.query_y[b]) / 2
    reference = dict(zip(leaves, torch.autograd.grad(total, list(leaves.values()))))
    got = algo.meta_gradient(theta, batch)
    for name in reference:
        assert torch.allclose(got[name], reference[name], atol=1e-12, rtol=1e-9), name


def test_train_builds_the_link_learner_for_channel_coding(tmp_path):
    from innerloop.cli import main

    out = tmp_path / "run"
    assert main(["train", "--algo", "maml", "--task", "channel-coding", "--inner-steps", "1", "--inner-lr", "0.1",
                 "--hidden", "8", "--iters", "3", "--meta-batch", "2", "--out", str(out), "--quiet"]) == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert {k.split(".")[0] for k in state["params"]} == {"encoder", "decoder"}


def test_train_takes_the_rtn_receiver_as_a_task_option(tmp_path):
    from innerloop.cli import main

    out = tmp_path / "rtn"
    assert main(["train", "--algo", "maml", "--task", "channel-coding", "--task-option", "receiver=rtn",
                 "--inner-steps", "1", "--hidden", "8", "--iters", "2", "--meta-batch", "2", "--out", str(out),
                 "--quiet"]) == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert {k.split(".")[0] for k in state["params"]} == {"encoder", "estimator", "decoder"}


def test_channel_coding_experiment_end_to_end(tmp_path, monkeypatch):
    from innerloop.cli import main
    from innerloop.engine import channel_coding as experiment

    monkeypatch.setattr(experiment, "ITERATIONS", (0, 1, 3))
    monkeypatch.setattr(experiment, "VALIDATION_CHANNELS", 3)
    monkeypatch.setattr(experiment, "EVAL_MESSAGES", 50)
    assert main(["experiment", "channel-coding", "--out", str(tmp_path), "--iters", "3", "--tasks", "4"]) == 0
    document = json.loads((tmp_path / "channel_coding.json").read_text())
    assert (tmp_path / "channel_coding.png").stat().st_size > 10_000
    assert set(document["rows"]) == {"maml", "joint", "random", "maml-rtn", "joint-rtn", "random-rtn"}
    assert document["rows"]["maml-rtn"]["receiver"] == "rtn" and document["rows"]["maml"]["receiver"] == "mlp"
    for row in document["rows"].values():
        assert row["step_size"] in experiment.STEP_SIZES and set(row["bler"]) == {"0", "1", "3"}
        assert all(0 <= s["mean"] <= 1 and s["n"] == 4 for s in row["bler"].values())
    assert (tmp_path / "runs" / "maml" / "checkpoint.pt").is_file()
    assert math.isfinite(document["summary"]["bler_after_one_iteration"]["maml"])
    assert set(document["summary"]["maml_minus"]) == {"joint", "random", "maml-rtn", "joint-rtn", "random-rtn"}
    assert document["summary"]["maml_minus"]["joint"]["1"]["n"] == 4
