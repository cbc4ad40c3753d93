"""Sharp-MAML (monograph eqs. 2.13–2.15) against autograd with the SAM perturbations held
constant, and ALSET (Algorithm 10) reproducing MAML's and iMAML's meta-gradients (eqs. 3.11–3.14)."""

from __future__ import annotations

import pytest
import torch

import innerloop as il
from conftest import gen, rel_err, task_loss
from innerloop.engine.algorithms import ALSET, SharpMAML


@pytest.fixture
def setup():
    model = il.models.MLP(1, (8,), 1, activation="tanh")
    batch = il.tasks.Sinusoid(shots=6, queries=5).sample(3, gen(1)).to(torch.float64, "cpu")
    return model, batch, model.init(gen(0), dtype=torch.float64)


def _grad(model, p, x, y, create_graph=False):
    loss = task_loss(model, "mse", p, x, y)
    return dict(zip(p, torch.autograd.grad(loss, list(p.values()), create_graph=create_graph)))


def _sam(grads, radius):
    norm = torch.sqrt(sum((g**2).sum() for g in grads.values()))
    return {k: (radius * g / norm).detach() for k, g in grads.items()}


def test_sharp_maml_meta_gradient_is_eq_2_13_with_constant_perturbations(setup, cpu64):
    model, batch, theta = setup
    lr, a_in, a_out = 0.05, 0.1, 0.2
    leaves = {k: v.clone().requires_grad_() for k, v in theta.items()}
    total = 0.0
    for i in range(3):
        sx, sy, qx, qy = batch.support_x[i], batch.support_y[i], batch.query_x[i], batch.query_y[i]
        eps_k = _sam(_grad(model, leaves, sx, sy), a_in)                                   # eq. 2.14a
        tilde = {k: (leaves[k] - lr * g).detach().requires_grad_() for k, g in
                 _grad(model, {k: leaves[k] + eps_k[k] for k in leaves}, sx, sy).items()}  # eq. 2.14c
        eps = _sam(_grad(model, tilde, qx, qy), a_out)                                     # eq. 2.14b
        point = {k: leaves[k] + eps[k] + eps_k[k] for k in leaves}
        g = _grad(model, point, sx, sy, create_graph=True)
        phi = {k: leaves[k] + eps[k] - lr * g[k] for k in leaves}                          # eq. 2.13b
        total = total + task_loss(model, "mse", phi, qx, qy) / 3
    reference = dict(zip(leaves, torch.autograd.grad(total, list(leaves.values()))))
    algo = SharpMAML(model, cpu64, inner_lr=lr, inner_steps=1, alpha_in=a_in, alpha_out=a_out)
    assert rel_err(algo.meta_gradient(theta, batch), reference) < 1e-10
    plain = SharpMAML(model, cpu64, inner_lr=lr, inner_steps=2, alpha_in=0.0, alpha_out=0.0)
    maml = il.algorithms.MAML(model, cpu64, inner_lr=lr, inner_steps=2)
    assert rel_err(plain.meta_gradient(theta, batch), maml.meta_gradient(theta, batch)) < 1e-12


def test_alset_with_the_maml_lower_level_is_maml(setup, cpu64):
    """eqs. 3.11–3.13: β = α, T = 1 gives one-step MAML's meta-gradient exactly."""
    model, batch, theta = setup
    alset = ALSET(model, cpu64, inner_lr=0.1, inner_steps=1, lower="maml")
    maml = il.algorithms.MAML(model, cpu64, inner_lr=0.1, inner_steps=1)
    assert rel_err(alset.meta_gradient(theta, batch), maml.meta_gradient(theta, batch)) < 1e-12


def test_alset_with_the_imaml_lower_level_is_imaml(setup, cpu64):
    """eq. 3.14: with the lower level solved and enough Neumann terms, iMAML's implicit gradient."""
    model, batch, theta = setup
    imaml = il.algorithms.iMAML(model, cpu64, inner_lr=0.05, inner_steps=2000, lam=5.0, inner_tol=1e-12,
                                cg_steps=200, cg_tol=1e-14)
    alset = ALSET(model, cpu64, inner_lr=0.05, inner_steps=600, lower="imaml", lam=5.0, neumann_steps=150)
    assert rel_err(alset.meta_gradient(theta, batch), imaml.meta_gradient(theta, batch)) < 1e-6
    # the stochastic Neumann estimator (eq. 3.7): its average over N' ∈ {0..N−1} is the truncated series
    from innerloop.engine.learner import Learner

    learner = Learner(model, "mse")
    phi = {k: v.expand(3, *v.shape) for k, v in theta.items()}
    v = {k: torch.randn(x.shape, generator=gen(4), dtype=torch.float64) for k, x in phi.items()}
    exact = ALSET(model, cpu64, lower="imaml", lam=5.0, neumann_steps=6)
    noisy = ALSET(model, cpu64, lower="imaml", lam=5.0, neumann_steps=6, neumann="stochastic")
    lipschitz = exact._lipschitz(learner, phi, batch)
    target = exact.neumann_inverse(learner, phi, batch, v, lipschitz)
    draws = [noisy.neumann_inverse(learner, phi, batch, v, lipschitz, terms=t) for t in range(6)]
    assert rel_err({k: sum(d[k] for d in draws) / 6 for k in target}, target) < 1e-12


@pytest.mark.parametrize("algo", ["sharp-maml", "alset"])
def test_train_from_the_cli(tmp_path, algo):
    from innerloop.cli import main

    out = tmp_path / algo
    assert main(["train", "--algo", algo, "--hidden", "16", "--meta-batch", "4", "--iters", "10", "--eval-every", "5",
                 "--eval-tasks", "6", "--out", str(out), "--quiet"]) == 0
