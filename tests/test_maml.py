"""MAML/FOMAML meta-gradients against independent float64 computations (seed 000 eqs. 2.5, 3.1, 3.2)."""

from __future__ import annotations

import pytest
import torch

import innerloop as il
from conftest import flat_hessian, flatten, gen, rel_err, unflatten, unrolled_maml_gradient


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("steps", [1, 3, 5])
def test_reverse_pass_equals_autograd_unroll(cpu64, activation, steps):
    """Acceptance 1: explicit reverse pass g ← g − α·H·g equals create_graph autograd to 1e-10."""
    fam = il.tasks.Sinusoid(shots=10, queries=10)
    batch = fam.sample(6, generator=gen(0))
    model = il.models.MLP(1, (40, 40), 1, activation=activation)
    params = model.init(gen(1), dtype=torch.float64)
    algo = il.algorithms.MAML(model, backend=cpu64, inner_lr=0.01, inner_steps=steps)
    ours = algo.meta_gradient(params, batch)
    reference = unrolled_maml_gradient(model, params, batch, 0.01, steps)
    assert rel_err(ours, reference) < 1e-10


def test_reverse_pass_cross_entropy_classification(cpu64):
    fam = il.tasks.Clusters2D(shots=2, queries=3, ways=4)
    batch = fam.sample(3, generator=gen(2))
    model = il.models.MLP(2, (16,), 4, activation="tanh")
    params = model.init(gen(3), dtype=torch.float64)
    algo = il.algorithms.MAML(model, backend=cpu64, inner_lr=0.5, inner_steps=3)
    reference = unrolled_maml_gradient(model, params, batch, 0.5, 3, loss_name="cross_entropy")
    assert rel_err(algo.meta_gradient(params, batch), reference) < 1e-10


def test_fomaml_bias_is_hessian_term_at_one_step(cpu64):
    """Acceptance 4: MAML − FOMAML = −α·∇²L_S(θ0)·∇L_Q(θ1) at N = 1 (seed 000 eq. 3.2), dense Hessian."""
    fam = il.tasks.Sinusoid()
    batch = fam.sample(4, generator=gen(4)).to(torch.float64, "cpu")
    model = il.models.MLP(1, (12, 12), 1, activation="tanh")
    params = model.init(gen(5), dtype=torch.float64)
    lr = 0.05
    maml = il.algorithms.MAML(model, backend=cpu64, inner_lr=lr, inner_steps=1).meta_gradient(params, batch)
    fomaml = il.algorithms.FOMAML(model, backend=cpu64, inner_lr=lr, inner_steps=1).meta_gradient(params, batch)
    expected = torch.zeros(model.num_params(), dtype=torch.float64)
    for i in range(batch.num_tasks):
        theta = {k: v.clone().requires_grad_() for k, v in params.items()}
        support = ((model.apply(theta, batch.support_x[i]) - batch.support_y[i]) ** 2).mean()
        g_s = torch.autograd.grad(support, list(theta.values()))
        theta1 = {k: (v - lr * g).detach().requires_grad_() for (k, v), g in zip(theta.items(), g_s)}
        query = ((model.apply(theta1, batch.query_x[i]) - batch.query_y[i]) ** 2).mean()
        g_q = flatten(dict(zip(theta1, torch.autograd.grad(query, list(theta1.values())))))
        hessian = flat_hessian(model, "mse", params, batch.support_x[i], batch.support_y[i])
        expected += -lr * hessian @ g_q / batch.num_tasks
    difference = flatten(maml) - flatten(fomaml)
    assert rel_err(unflatten(difference, params), unflatten(expected, params)) < 1e-10
    assert difference.norm() > 1e-6  # the term is not trivially zero here


def test_first_order_flag_and_fomaml_agree_with_detached_unroll(cpu64):
    fam = il.tasks.Sinusoid()
    batch = fam.sample(5, generator=gen(6))
    model = il.models.MLP(1, (20,), 1)
    params = model.init(gen(7), dtype=torch.float64)
    a = il.algorithms.MAML(model, backend=cpu64, first_order=True, inner_steps=4).meta_gradient(params, batch)
    b = il.algorithms.FOMAML(model, backend=cpu64, inner_steps=4).meta_gradient(params, batch)
    ref = unrolled_maml_gradient(model, params, batch, 0.01, 4, first_order=True)
    assert rel_err(a, ref) < 1e-12 and rel_err(b, ref) < 1e-12


def test_zero_steps_is_plain_query_gradient(cpu64):
    fam = il.tasks.Sinusoid()
    batch = fam.sample(3, generator=gen(8))
    model = il.models.MLP(1, (10,), 1)
    params = model.init(gen(9), dtype=torch.float64)
    ours = il.algorithms.MAML(model, backend=cpu64, inner_steps=0).meta_gradient(params, batch)
    assert rel_err(ours, unrolled_maml_gradient(model, params, batch, 0.01, 0)) < 1e-12


def test_adapt_and_evaluate(cpu64):
    """adapt returns per-task params; evaluate is the query loss at those params."""
    fam = il.tasks.Sinusoid(shots=5, queries=7)
    batch = fam.sample(4, generator=gen(10))
    model = il.models.MLP(1, (16,), 1)
    params = model.init(gen(11))
    algo = il.algorithms.MAML(model, backend=cpu64, inner_lr=0.005, inner_steps=3)
    adapted = algo.adapt(params, batch)
    assert adapted["layer0.weight"].shape == (4, 16, 1)
    losses = algo.evaluate(params, batch)
    assert losses.shape == (4,)
    b = batch.to(torch.float64, "cpu")
    for i in range(4):
        task = {k: v[i] for k, v in adapted.items()}
        expected = ((model.apply(task, b.query_x[i]) - b.query_y[i]) ** 2).mean()
        assert torch.allclose(losses[i], expected, rtol=1e-12)
    # adaptation reduces the support loss on average
    support_before = il.algorithms.MAML(model, backend=cpu64, inner_steps=0).adapt(params, batch)
    lb = cpu64.loss(il.engine.learner.Learner(model, "mse"), support_before, b.support_x, b.support_y)
    la = cpu64.loss(il.engine.learner.Learner(model, "mse"), adapted, b.support_x, b.support_y)
    assert la.mean() < lb.mean()


def test_meta_gradient_descends_the_meta_objective(cpu64):
    """A small step along −g lowers the batch meta-loss (first-order check of the direction)."""
    fam = il.tasks.Sinusoid()
    batch = fam.sample(8, generator=gen(12))
    model = il.models.MLP(1, (20, 20), 1, activation="tanh")
    params = model.init(gen(13), dtype=torch.float64)
    algo = il.algorithms.MAML(model, backend=cpu64, inner_steps=2)
    g = algo.meta_gradient(params, batch)
    eps = 1e-6
    plus = {k: v + eps * g[k] for k, v in params.items()}
    minus = {k: v - eps * g[k] for k, v in params.items()}
    directional = (algo.evaluate(plus, batch).mean() - algo.evaluate(minus, batch).mean()) / (2 * eps)
    assert torch.isclose(directional, sum((v**2).sum() for v in g.values()), rtol=1e-6)
