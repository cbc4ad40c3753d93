"""Reptile's meta-gradient θ0 − mean θ^(N) (seed 000 eq. 3.3) against an independent loop."""

from __future__ import annotations

import torch

import innerloop as il
from conftest import gen, rel_err


def test_reptile_meta_gradient_matches_independent_sgd_over_support_and_query(cpu64):
    fam = il.tasks.Sinusoid(shots=4, queries=6)
    batch = fam.sample(3, generator=gen(0))
    model = il.models.MLP(1, (16,), 1, activation="tanh")
    params = model.init(gen(1), dtype=torch.float64)
    lr, steps, size = 0.02, 4, 3
    algo = il.algorithms.Reptile(model, backend=cpu64, inner_lr=lr, inner_steps=steps, inner_batch_size=size)
    ours = algo.meta_gradient(params, batch)
    b = batch.to(torch.float64, "cpu")
    finals = []
    for i in range(3):
        x = torch.cat([b.support_x[i], b.query_x[i]])
        y = torch.cat([b.support_y[i], b.query_y[i]])
        p = {k: v.clone() for k, v in params.items()}
        for n in range(steps):
            idx = [(n * size + j) % len(x) for j in range(size)]  # cycles through the union
            q = {k: v.requires_grad_() for k, v in p.items()}
            loss = ((model.apply(q, x[idx]) - y[idx]) ** 2).mean()
            grads = torch.autograd.grad(loss, list(q.values()))
            p = {k: (v - lr * g).detach() for (k, v), g in zip(q.items(), grads)}
        finals.append(p)
    expected = {k: params[k] - torch.stack([f[k] for f in finals]).mean(0) for k in params}
    assert rel_err(ours, expected) < 1e-12


def test_reptile_one_full_batch_step_is_scaled_gradient(cpu64):
    """N = 1 on the whole union: g = α·∇L_{S∪Q}(θ0) — plain SGD on the pooled loss (seed 000 §3.2)."""
    fam = il.tasks.Sinusoid(shots=5, queries=5)
    batch = fam.sample(4, generator=gen(2))
    model = il.models.MLP(1, (8,), 1)
    params = model.init(gen(3), dtype=torch.float64)
    algo = il.algorithms.Reptile(model, backend=cpu64, inner_lr=0.1, inner_steps=1, inner_batch_size=10)
    b = batch.to(torch.float64, "cpu")
    theta = {k: v.clone().requires_grad_() for k, v in params.items()}
    x, y = torch.cat([b.support_x, b.query_x], 1), torch.cat([b.support_y, b.query_y], 1)
    pooled = sum(((model.apply(theta, x[i]) - y[i]) ** 2).mean() for i in range(4)) / 4
    expected = {k: 0.1 * g for k, g in zip(theta, torch.autograd.grad(pooled, list(theta.values())))}
    assert rel_err(algo.meta_gradient(params, batch), expected) < 1e-12


def test_reptile_adapts_on_support_only(cpu64):
    fam = il.tasks.Sinusoid(shots=5, queries=5)
    batch = fam.sample(2, generator=gen(4))
    model = il.models.MLP(1, (8,), 1)
    params = model.init(gen(5), dtype=torch.float64)
    reptile = il.algorithms.Reptile(model, backend=cpu64, inner_steps=3)
    maml = il.algorithms.MAML(model, backend=cpu64, inner_steps=3)
    assert rel_err(reptile.adapt(params, batch), maml.adapt(params, batch)) == 0
