"""BMAML (monograph Algorithm 7): SVGD (eq. 2.37) and the Monte-Carlo meta-loss (eq. 2.35), its
meta-gradient through the SVGD steps against autograd (float64), and predictive uncertainty."""

from __future__ import annotations

import math

import torch

import innerloop as il
from conftest import gen, rel_err, task_loss
from innerloop.engine.algorithms import BMAML
from innerloop.engine.algorithms.bmaml import median_bandwidth, svgd_drift


def test_svgd_drift_matches_the_kernel_sum_of_eq_2_37():
    g = gen(0)
    phi, score = torch.randn(2, 4, 3, generator=g, dtype=torch.float64), torch.randn(2, 4, 3, generator=g,
                                                                                    dtype=torch.float64)
    h = median_bandwidth(phi)
    drift = svgd_drift(phi, score, h)
    for b in range(2):
        for m in range(4):
            total = torch.zeros(3, dtype=torch.float64)
            for j in range(4):
                k = torch.exp(-((phi[b, j] - phi[b, m]) ** 2).sum() / h[b])
                total += k * score[b, j] - 2 / h[b] * (phi[b, j] - phi[b, m]) * k  # κ s_j + ∇_{φ_j} κ
            assert torch.allclose(drift[b, m], total / 4, atol=1e-14)


def _unrolled_bmaml(model, theta, batch, steps, lr, tau):
    """Autograd through N SVGD steps (bandwidth held constant) and the MC meta-loss, task by task."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in theta.items()}
    names, m = list(leaves), next(iter(theta.values())).shape[0]
    total = 0.0
    for i in range(batch.num_tasks):
        phi = dict(leaves)
        for _ in range(steps):
            grads = [torch.autograd.grad(task_loss(model, "mse", {k: phi[k][j] for k in names}, batch.support_x[i],
                                                   batch.support_y[i]), [phi[k] for k in names], create_graph=True)
                     for j in range(m)]
            vec = torch.stack([torch.cat([phi[k][j].reshape(-1) for k in names]) for j in range(m)])
            score = -torch.stack([torch.cat([g[n][j].reshape(-1) for n in range(len(names))])
                                  for j, g in enumerate(grads)]) / tau
            new = vec + lr * svgd_drift(vec[None], score[None], median_bandwidth(vec[None]))[0]
            start, phi = 0, {}
            for k in names:
                size = leaves[k][0].numel()
                phi[k] = new[:, start:start + size].reshape(leaves[k].shape)
                start += size
        losses = torch.stack([task_loss(model, "mse", {k: phi[k][j] for k in names}, batch.query_x[i],
                                        batch.query_y[i]) for j in range(m)])
        total = total - tau * (torch.logsumexp(-losses / tau, 0) - math.log(m)) / batch.num_tasks
    return dict(zip(names, torch.autograd.grad(total, list(leaves.values()))))


def test_bmaml_meta_gradient_matches_autograd_through_svgd(cpu64):
    model = il.models.MLP(1, (5,), 1, activation="tanh")
    batch = il.tasks.Sinusoid(shots=5, queries=4).sample(2, gen(1)).to(torch.float64, "cpu")
    algo = BMAML(model, cpu64, inner_lr=0.05, inner_steps=2, particles=3, temperature=0.5)
    theta = algo.init_params(gen(0), dtype=torch.float64)
    assert theta["layer0.weight"].shape == (3, 5, 1)
    reference = _unrolled_bmaml(model, theta, batch, 2, 0.05, 0.5)
    assert rel_err(algo.meta_gradient(theta, batch), reference) < 1e-10
    first = BMAML(model, cpu64, inner_lr=0.05, inner_steps=2, particles=3, temperature=0.5, first_order=True)
    assert rel_err(first.meta_gradient(theta, batch), reference) > 1e-6


def test_bmaml_evaluates_the_posterior_predictive_mean_and_exposes_spread(cpu64, tmp_path):
    model = il.models.MLP(1, (8,), 1)
    algo = BMAML(model, cpu64, particles=4)
    theta = algo.init_params(gen(0), dtype=torch.float64)
    batch = il.tasks.Sinusoid().sample(3, gen(2))
    adapted = algo.adapt(theta, batch)
    assert adapted["layer0.weight"].shape == (3, 4, 8, 1)
    single = {k: v[0] for k, v in adapted.items()}
    x = batch.query_x[0].double()
    mean = algo.model.apply(single, x)
    assert torch.allclose(mean, torch.stack([model.apply({k: v[j] for k, v in single.items()}, x)
                                             for j in range(4)]).mean(0), atol=1e-12)
    assert (algo.model.spread(single, x) > 0).all()
    losses = algo.evaluate(theta, batch)
    assert losses.shape == (3,) and torch.allclose(losses[0], ((mean - batch.query_y[0].double()) ** 2).mean())
    from innerloop.cli import main

    out = tmp_path / "bmaml"
    assert main(["train", "--algo", "bmaml", "--hidden", "8", "--meta-batch", "4", "--iters", "6", "--eval-every", "3",
                 "--eval-tasks", "4", "--out", str(out), "--quiet"]) == 0
    assert main(["eval", str(out), "--tasks", "6", "--steps", "0,2", "--joint-iters", "3", "--quiet"]) == 0


def test_bmaml_classifier_scores_the_mixture_of_particle_probabilities(cpu64):
    """On classification the posterior predictive is (1/M)Σ_m softmax(f(x; φ_m)), not the softmax of
    averaged logits: the query loss is −mean log of that mixture at the label, the decision its argmax."""
    model = il.models.MLP(2, (8,), 5)
    algo = BMAML(model, cpu64, particles=3, inner_lr=0.1, inner_steps=2)
    theta = algo.init_params(gen(0), dtype=torch.float64)
    batch = il.tasks.Clusters2D(shots=2, queries=6).sample(2, gen(3)).to(torch.float64, "cpu")
    adapted = algo.adapt(theta, batch)
    losses = algo.evaluate(theta, batch)
    for b in range(2):
        logits = torch.stack([model.apply({k: v[b, m] for k, v in adapted.items()}, batch.query_x[b])
                              for m in range(3)])
        mixture = torch.softmax(logits, dim=-1).mean(0)
        expected = -torch.log(mixture.gather(1, batch.query_y[b, :, None])).mean()
        assert torch.allclose(losses[b], expected, atol=1e-12)
        averaged_logits = torch.nn.functional.cross_entropy(logits.mean(0), batch.query_y[b])
        assert not torch.allclose(losses[b], averaged_logits, atol=1e-6)
        assert torch.equal(algo.model.apply({k: v[b] for k, v in adapted.items()}, batch.query_x[b]).argmax(-1),
                           mixture.argmax(-1))
