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
