"""Recurrent spiking networks (lateral synapses in the hidden layers, monograph eq. 6.2 with
recurrent presynaptic neurons): the simulation and the three-factor rule against a feed-forward
network fed the recorded spikes, against surrogate BPTT, and through the CLI."""

from __future__ import annotations

import pytest
import torch

import innerloop as il
from conftest import gen, rel_err, unrolled_maml_gradient
from innerloop.engine.learner import Learner
from innerloop.engine.spiking import SpikingMLP
from innerloop.engine.tasks import TaskBatch
from innerloop.engine.three_factor import feedback_matrices, online_update, three_factor_gradient

MODES = ("single_step", "feedback_alignment", "readout_only")


def _recurrent_problem(neuron="leaky", seed=0, hidden=(16,), tasks=3, points=4, steps=25, channels=12, classes=5):
    g = gen(seed)
    model = SpikingMLP(channels, hidden, classes, neuron=neuron, recurrent=True)
    theta = model.init(g, dtype=torch.float64)
    params = {k: v + 0.1 * torch.randn(tasks, *v.shape, generator=g, dtype=torch.float64) for k, v in theta.items()}
    x = (torch.rand(tasks, points, steps, channels, generator=g, dtype=torch.float64) < 0.3).double()
    y = torch.randint(0, classes, (tasks, points), generator=g)
    return model, theta, params, x, y


def test_lateral_synapses_exist_only_in_hidden_layers():
    model = SpikingMLP(6, (8, 7), 3, recurrent=True)
    assert model.shapes() == {"layer0.weight": (8, 6), "layer0.recurrent": (8, 8), "layer1.weight": (7, 8),
                              "layer1.recurrent": (7, 7), "layer2.weight": (3, 7)}
    assert model.config()["recurrent"] and "recurrent" in repr(model)
    assert set(SpikingMLP(6, (8,), 3).shapes()) == {"layer0.weight", "layer1.weight"}


@pytest.mark.parametrize("neuron", ["leaky", "synaptic"])
def test_recurrent_network_is_a_feed_forward_one_fed_its_own_previous_spikes(neuron):
    """I_t = s_t^{in} Wᵀ + s_{t−1} Rᵀ = [s_t^{in}, s_{t−1}] [W | R]ᵀ: with the recorded hidden spikes of
    step t − 1 appended to the input, a feed-forward network with weights [W | R] spikes identically,
    and its three-factor gradient of [W | R] is the recurrent network's (W and R) in every mode."""
    model, _, params, x, y = _recurrent_problem(neuron)
    records = model.simulate(params, x)
    hidden = records[0].spikes
    previous = torch.cat([torch.zeros_like(hidden[:, :, :1]), hidden[:, :, :-1]], dim=2)
    twin = SpikingMLP(12 + 16, (16,), 5, neuron=neuron)
    twin_params = {"layer0.weight": torch.cat([params["layer0.weight"], params["layer0.recurrent"]], dim=-1),
                   "layer1.weight": params["layer1.weight"]}
    twin_records = twin.simulate(twin_params, torch.cat([x, previous], dim=-1))
    for mine, theirs in zip(records, twin_records):
        assert torch.equal(mine.spikes, theirs.spikes) and torch.allclose(mine.membranes, theirs.membranes)
    assert float(hidden.mean()) > 0.02  # the comparison is not between silent networks
    feedback = feedback_matrices(model, gen(3), torch.float64, "cpu")
    assert feedback_matrices(twin, gen(3), torch.float64, "cpu")[0].shape == feedback[0].shape
    for mode in MODES:
        grads = three_factor_gradient(model, params, records, y, "cross_entropy", mode, feedback)
        reference = three_factor_gradient(twin, twin_params, twin_records, y, "cross_entropy", mode, feedback)
        assert torch.allclose(torch.cat([grads["layer0.weight"], grads["layer0.recurrent"]], dim=-1),
                              reference["layer0.weight"], rtol=1e-12, atol=1e-12)
        assert torch.allclose(grads["layer1.weight"], reference["layer1.weight"], rtol=1e-12, atol=1e-12)
        if mode == "readout_only":
            assert float(grads["layer0.recurrent"].abs().max()) == 0


def test_lateral_three_factor_gradient_points_along_bptt():
    """The rule gives no credit through the recurrent path over time, so it is not BPTT; it agrees
    with BPTT exactly at the output layer and in direction at the lateral synapses."""
    cosines = []
    for seed in range(4):
        model, _, params, x, y = _recurrent_problem(seed=seed)
        learner = Learner(model, "cross_entropy")
        _, rule = il.backends.get("snn", dtype="float64").loss_and_grad(learner, params, x, y)
        _, bptt = il.backends.get("snn", dtype="float64", hidden_error="bptt").loss_and_grad(learner, params, x, y)
        assert float((rule["layer1.weight"] - bptt["layer1.weight"]).norm() / bptt["layer1.weight"].norm()) < 1e-5
        a, b = rule["layer0.recurrent"], bptt["layer0.recurrent"]
        cosines.append(float((a * b).sum() / (a.norm() * b.norm())))
    assert sum(cosines) / len(cosines) > 0.5, cosines


@pytest.mark.parametrize("mode", MODES)
def test_online_and_eligibility_forms_agree_with_lateral_synapses(mode):
    model, _, params, x, y = _recurrent_problem("synaptic", hidden=(16, 8))
    records = model.simulate(params, x)
    feedback = feedback_matrices(model, gen(5), torch.float64, "cpu")
    grads = three_factor_gradient(model, params, records, y, "cross_entropy", mode, feedback)
    online = online_update(model, params, records, y, "cross_entropy", 0.3, mode, feedback)
    assert set(grads) == set(model.shapes())
    assert rel_err({k: online[k] - params[k] for k in params}, {k: -0.3 * g for k, g in grads.items()}) < 1e-12


def test_second_order_reference_maml_differentiates_through_the_lateral_synapses():
    model, theta, _, x, y = _recurrent_problem(tasks=2)
    backend = il.backends.get("snn", dtype="float64", hidden_error="bptt", second_order=True)
    batch = TaskBatch(x, y, x.flip(2), y)
    maml = il.algorithms.MAML(model, backend, inner_lr=0.3, inner_steps=2).compute(theta, batch)
    assert float(maml.grad["layer0.recurrent"].abs().max()) > 0
    assert rel_err(maml.grad, unrolled_maml_gradient(model, theta, batch, 0.3, 2, loss_name="cross_entropy")) < 1e-9


def test_synaptic_operations_count_the_lateral_events():
    from innerloop.engine.neuromorphic import synaptic_operations

    model, _, params, x, _ = _recurrent_problem()
    records = model.simulate(params, x)
    expected = x.sum(dim=(1, 2, 3)) * 16 + records[0].spikes.sum(dim=(1, 2, 3)) * 5 \
        + records[0].spikes[:, :, :-1].sum(dim=(1, 2, 3)) * 16
    assert torch.equal(synaptic_operations(model, params, x), expected)


def test_recurrent_learners_from_the_command_line(tmp_path, capsys):
    from innerloop.cli import main

    out = tmp_path / "run"
    assert main(["train", "--algo", "fomaml", "--task", "double-motif", "--backend", "snn", "--iters", "3",
                 "--eval-every", "3", "--eval-tasks", "4", "--model-option", "recurrent=true", "--out", str(out),
                 "--quiet"]) == 0
    assert "layer0.recurrent" in torch.load(out / "checkpoint.pt", weights_only=False)["params"]
    for argv, message in (
            (["--task", "double-motif", "--backend", "snn", "--algo", "fomaml", "--model-option", "recurent=true"],
             "does not take option(s) recurent"),
            (["--task", "sinusoid", "--model-option", "recurrent=true"], "configure the spiking learner"),
            (["--task", "double-motif", "--backend", "snn", "--algo", "fomaml", "--hidden", "",
              "--model-option", "recurrent=true"], "needs a hidden layer"),
            (["--task", "double-motif", "--backend", "snn", "--algo", "fomaml", "--model-option", "recurrent=3"],
             "true or false")):
        capsys.readouterr()
        assert main(["train", *argv, "--iters", "1", "--out", str(tmp_path / "bad")]) == 2
        assert message in capsys.readouterr().err
