"""Spiking learners and the snn backend (issue 7, acceptance 1 and 4): the three-factor rule
against surrogate BPTT through snnTorch, hidden-error modes, local steps, the second-order
reference and the capability errors."""

from __future__ import annotations

import pytest
import torch

import innerloop as il
from conftest import gen, rel_err, unrolled_maml_gradient
from innerloop.engine.learner import Learner
from innerloop.engine.models import MLP
from innerloop.engine.spiking import SpikingMLP
from innerloop.engine.tasks import TaskBatch


def _spiking_problem(neuron, seed=0, hidden=(24,), tasks=3, points=4, steps=25, channels=12, classes=5):
    g = gen(seed)
    model = SpikingMLP(channels, hidden, classes, neuron=neuron)
    theta = model.init(g, dtype=torch.float64)
    params = {k: v + 0.1 * torch.randn(tasks, *v.shape, generator=g, dtype=torch.float64) for k, v in theta.items()}
    x = (torch.rand(tasks, points, steps, channels, generator=g, dtype=torch.float64) < 0.3).double()
    y = torch.randint(0, classes, (tasks, points), generator=g)
    return Learner(model, "cross_entropy"), theta, params, x, y


def _cosine(a, b):
    return float((a * b).sum() / (a.norm() * b.norm()))


@pytest.mark.parametrize("neuron", ["leaky", "synaptic"])
def test_output_layer_three_factor_gradient_equals_bptt(neuron):
    learner, _, params, x, y = _spiking_problem(neuron)
    rule = il.backends.get("snn", dtype="float64")
    bptt = il.backends.get("snn", dtype="float64", hidden_error="bptt")
    losses, grads = rule.loss_and_grad(learner, params, x, y)
    ref_losses, ref = bptt.loss_and_grad(learner, params, x, y)
    assert torch.allclose(losses, ref_losses, rtol=1e-12, atol=0)
    out = "layer1.weight"
    assert float((grads[out] - ref[out]).norm() / ref[out].norm()) < 1e-5


@pytest.mark.parametrize("neuron", ["leaky", "synaptic"])
def test_single_step_hidden_error_points_along_bptt(neuron):
    cosines = []
    for seed in range(4):
        learner, _, params, x, y = _spiking_problem(neuron, seed=seed)
        _, grads = il.backends.get("snn", dtype="float64").loss_and_grad(learner, params, x, y)
        _, ref = il.backends.get("snn", dtype="float64", hidden_error="bptt").loss_and_grad(learner, params, x, y)
        cosines.append(_cosine(grads["layer0.weight"], ref["layer0.weight"]))
    assert sum(cosines) / len(cosines) > 0.5, cosines


def test_hidden_error_modes():
    learner, _, params, x, y = _spiking_problem("leaky", hidden=(16, 16))
    grads = {mode: il.backends.get("snn", dtype="float64", hidden_error=mode).loss_and_grad(learner, params, x, y)[1]
             for mode in ("single_step", "feedback_alignment", "readout_only")}
    for mode in grads:  # the output synapses see the same error in every mode
        assert torch.allclose(grads[mode]["layer2.weight"], grads["single_step"]["layer2.weight"])
    assert all(float(grads["readout_only"][f"layer{i}.weight"].abs().max()) == 0 for i in (0, 1))
    fa = grads["feedback_alignment"]["layer1.weight"]
    assert float(fa.abs().max()) > 0 and not torch.allclose(fa, grads["single_step"]["layer1.weight"])
    again = il.backends.get("snn", dtype="float64", hidden_error="feedback_alignment").loss_and_grad(
        learner, params, x, y)[1]
    assert torch.equal(again["layer1.weight"], fa)  # fixed, seeded feedback


def test_local_update_is_one_three_factor_step():
    learner, _, params, x, y = _spiking_problem("leaky")
    backend = il.backends.get("snn", dtype="float64")
    _, grads = backend.loss_and_grad(learner, params, x, y)
    losses, updated = backend.local_update(learner, params, x, y, lr=0.5)
    assert rel_err(updated, {k: v - 0.5 * grads[k] for k, v in params.items()}) < 1e-15
    assert losses.shape == (3,)


def test_second_order_reference_maml_equals_autograd_through_the_unrolled_surrogate_loop():
    """MAML's explicit reverse pass on the snn hvp (second_order=True, BPTT inner gradients) equals
    autograd through the unrolled inner loop — both differentiate the surrogate twice."""
    learner, theta, _, x, y = _spiking_problem("leaky", tasks=2)
    backend = il.backends.get("snn", dtype="float64", hidden_error="bptt", second_order=True)
    batch = TaskBatch(x, y, x.flip(2), y)
    maml = il.algorithms.MAML(learner.model, backend, inner_lr=0.3, inner_steps=2).compute(theta, batch)
    unrolled = unrolled_maml_gradient(learner.model, theta, batch, 0.3, 2, loss_name="cross_entropy")
    assert rel_err(maml.grad, unrolled) < 1e-9


def test_fomaml_and_reptile_run_and_maml_needs_second_order():
    learner, theta, _, x, y = _spiking_problem("leaky", tasks=2)
    model, snn = learner.model, il.backends.get("snn", dtype="float64")
    batch = TaskBatch(x, y, x, y)
    result = il.algorithms.FOMAML(model, snn, inner_lr=0.5, inner_steps=2).compute(theta, batch)
    assert set(result.grad) == set(theta) and torch.isfinite(result.task_losses).all()
    il.algorithms.ALGORITHMS["reptile"](model, snn).compute(theta, batch)
    with pytest.raises(il.CapabilityError, match="(?s)needs hvp.*fomaml.*reptile.*second_order=true"):
        il.algorithms.MAML(model, snn)
    second = il.backends.get("snn", dtype="float64", second_order=True)
    assert torch.isfinite(il.algorithms.MAML(model, second, inner_lr=0.5, inner_steps=1).compute(theta, batch)
                          .task_losses).all()


def test_snn_errors_are_clear():
    with pytest.raises(il.ConfigError, match="only with second_order=True"):
        il.backends.get("snn", capabilities="loss,hvp")
    with pytest.raises(il.ConfigError, match="hidden_error"):
        il.backends.get("snn", hidden_error="telepathy")
    with pytest.raises(il.ConfigError, match="runs spiking learners"):
        il.backends.get("snn").loss(Learner(MLP(2, (4,), 1), "mse"), {}, torch.zeros(1, 2, 2), torch.zeros(1, 2, 1))
    with pytest.raises(il.ShapeError, match="expected spikes"):
        SpikingMLP(4, (8,), 2).simulate(SpikingMLP(4, (8,), 2).init(), torch.zeros(2, 3, 4))
    with pytest.raises(il.ShapeError, match="per-point shape"):
        TaskBatch(torch.zeros(1, 2, 5, 3), torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, 6, 3),
                  torch.zeros(1, 2, dtype=torch.long))


def test_double_motif_episodes():
    family = il.tasks.make("double-motif", shots=2, queries=3, ways=5)
    batch = family.sample(4, gen(0))
    assert batch.support_x.shape == (4, 10, 30, 32) and batch.query_x.shape == (4, 15, 30, 32)
    assert set(batch.support_x.unique().tolist()) <= {0.0, 1.0}
    assert sorted(batch.support_y[0].tolist()) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    train = {tuple(p) for p in family.pairs["meta-train"].tolist()}
    test = {tuple(p) for p in family.pairs["meta-test"].tolist()}
    assert len(train) == 64 and len(test) == 36 and not train & test
    held_out = family.split_view("meta-test").sample(3, gen(1)).task_params["pairs"]
    assert all(tuple(p) in test for p in held_out.reshape(-1, 2).tolist())
    assert family.sample(1, gen(0)).task_params["pairs"].shape == (1, 5, 2)
    # labels are permuted per task: the same pair gets different labels across tasks
    pairs = family.sample(200, gen(2)).task_params["pairs"]
    first = {tuple(p) for p in pairs[:, 0].tolist()}
    assert len(first) > 20
    # samples are Bernoulli draws of their classes' (jittered) rates
    draws = family.sample(300, gen(3))
    rates = family.class_rates(draws.task_params["pairs"])
    assert abs(float(draws.query_x.mean()) - float(rates.mean())) < 0.005
    with pytest.raises(il.ConfigError, match="ways"):
        il.tasks.make("double-motif", ways=40)


def test_spiking_task_needs_the_snn_backend_and_trains_through_the_cli(tmp_path, capsys):
    from innerloop.cli import main

    assert main(["train", "--algo", "fomaml", "--task", "double-motif", "--backend", "cpu", "--iters", "1",
                 "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "only the snn backend runs" in capsys.readouterr().err
    run = tmp_path / "snn"
    assert main(["train", "--algo", "fomaml", "--task", "double-motif", "--backend", "snn", "--iters", "3",
                 "--meta-batch", "2", "--inner-lr", "0.5", "--eval-every", "3", "--eval-tasks", "2",
                 "--out", str(run), "--quiet"]) == 0
    assert (run / "adaptation.png").stat().st_size > 10_000
    assert main(["eval", str(run), "--tasks", "4", "--steps", "0,1", "--quiet"]) == 0
    assert "acc" in capsys.readouterr().out


def test_neuromorphic_experiment_writes_json_png_and_raster(tmp_path):
    from innerloop.engine.neuromorphic import EVAL_STEPS, neuromorphic, synaptic_operations

    document = neuromorphic(tmp_path, iters=2, tasks=4, algorithms=["fomaml"], seeds=1)
    for name in ("neuromorphic.json", "neuromorphic.png", "spike_raster.png"):
        assert (tmp_path / name).stat().st_size > 1000, name
    row = document["rows"][0]
    assert set(row["meta_init"]["accuracy"]) == {str(n) for n in EVAL_STEPS}
    assert row["meta_init"]["synaptic_operations"]["mean"] > 0
    # the energy proxy counts presynaptic spikes times fan-out
    model = SpikingMLP(3, (4,), 2)
    params = {k: v.unsqueeze(0) for k, v in model.init(gen(0)).items()}
    x = torch.zeros(1, 1, 5, 3)
    x[0, 0, 2, 1] = 1.0
    records = model.simulate(params, x)
    expected = 1 * 4 + float(records[0].spikes.sum()) * 2
    assert float(synaptic_operations(model, params, x)[0]) == expected


def test_inner_loops_run_the_local_rule_with_their_own_error_mode():
    learner, theta, _, x, y = _spiking_problem("leaky", tasks=2)
    backend = il.backends.get("snn", dtype="float64", hidden_error="single_step", inner_error="readout_only")
    batch = TaskBatch(x, y, x, y)
    fomaml = il.algorithms.FOMAML(learner.model, backend, inner_lr=0.5, inner_steps=3)
    adapted = fomaml.adapt(theta, batch)
    assert torch.equal(adapted["layer0.weight"], theta["layer0.weight"].expand_as(adapted["layer0.weight"]))
    assert not torch.equal(adapted["layer1.weight"], theta["layer1.weight"].expand_as(adapted["layer1.weight"]))
    meta = fomaml.compute(theta, batch).grad  # the outer loop still trains the hidden layer
    assert float(meta["layer0.weight"].abs().max()) > 0
    reptile = il.algorithms.ALGORITHMS["reptile"](learner.model, backend, inner_lr=0.5, inner_steps=2)
    assert float(reptile.compute(theta, batch).grad["layer0.weight"].abs().max()) == 0


@pytest.mark.parametrize("mode", ["single_step", "feedback_alignment", "readout_only"])
def test_online_and_eligibility_forms_give_the_same_total_update(mode):
    from innerloop.engine.three_factor import feedback_matrices, online_update, three_factor_gradient

    learner, _, params, x, y = _spiking_problem("synaptic", hidden=(16, 8))
    model = learner.model
    records = model.simulate(params, x)
    feedback = feedback_matrices(model, gen(5), torch.float64, "cpu")
    grads = three_factor_gradient(model, params, records, y, "cross_entropy", mode, feedback)
    online = online_update(model, params, records, y, "cross_entropy", 0.3, mode, feedback)
    assert rel_err({k: online[k] - params[k] for k in params}, {k: -0.3 * g for k, g in grads.items()}) < 1e-12


def test_online_local_updates_through_the_backend():
    learner, _, params, x, y = _spiking_problem("leaky")
    eligibility = il.backends.get("snn", dtype="float64").local_update(learner, params, x, y, lr=0.4)[1]
    online = il.backends.get("snn", dtype="float64", online=True).local_update(learner, params, x, y, lr=0.4)[1]
    assert rel_err(online, eligibility) < 1e-12
    with pytest.raises(il.ConfigError, match="no BPTT form"):
        il.backends.get("snn", online=True, inner_error="bptt")


def test_membrane_readout_three_factor_gradient_equals_bptt_for_regression():
    g = gen(4)
    model = SpikingMLP(12, (20,), 2, readout="membrane")
    theta = model.init(g, dtype=torch.float64)
    params = {k: v + 0.1 * torch.randn(3, *v.shape, generator=g, dtype=torch.float64) for k, v in theta.items()}
    x = (torch.rand(3, 4, 20, 12, generator=g, dtype=torch.float64) < 0.3).double()
    y = torch.randn(3, 4, 2, generator=g, dtype=torch.float64)
    learner = Learner(model, "mse")
    _, rule = il.backends.get("snn", dtype="float64").loss_and_grad(learner, params, x, y)
    _, ref = il.backends.get("snn", dtype="float64", hidden_error="bptt").loss_and_grad(learner, params, x, y)
    assert float((rule["layer1.weight"] - ref["layer1.weight"]).norm() / ref["layer1.weight"].norm()) < 1e-10
    assert _cosine(rule["layer0.weight"], ref["layer0.weight"]) > 0.5


@pytest.mark.parametrize("name", ["spiking-sinusoid", "spiking-clusters"])
@pytest.mark.parametrize("coding", ["rate", "latency"])
def test_spike_encoded_families(name, coding):
    family = il.tasks.make(name, coding=coding, steps=12, channels=8)
    batch = family.sample(3, gen(0))
    assert batch.support_x.shape[2:] == (12, family.input_dim) and set(batch.support_x.unique().tolist()) <= {0, 1}
    if coding == "latency":  # at most one spike per channel
        assert float(batch.support_x.sum(dim=2).max()) <= 1
    again = family.sample(3, gen(0))
    assert torch.equal(again.support_x, batch.support_x)  # reproducible from the stream's generator
    d = family.base.input_dim
    intensity = family.intensities(torch.stack([torch.full((d,), family.low), torch.full((d,), family.high)]))
    assert intensity.shape == (2, 8 * family.base.input_dim) and int(intensity[0].argmax()) == 0
    with pytest.raises(il.ConfigError, match="unknown coding"):
        il.tasks.make(name, coding="phase")


def test_spiking_runs_default_to_the_three_factor_step_size():
    from innerloop.engine import build
    from innerloop.engine.config import TrainConfig

    config = TrainConfig(algo="fomaml", task="double-motif", backend="snn")
    family = build.family(config)
    algorithm = build.algorithm(config, build.model(config, family), build.backend(config))
    assert algorithm.inner_lr == build.SPIKING_INNER_LR == 0.5
    explicit = TrainConfig(algo="fomaml", task="double-motif", backend="snn", inner_lr=0.1)
    assert build.algorithm(explicit, build.model(explicit, family), build.backend(explicit)).inner_lr == 0.1
