"""Modular meta-learning (monograph Algorithm 8, eq. 2.38): module assembly, simulated annealing
against exhaustive search, and the module-set gradient against autograd."""

from __future__ import annotations

import itertools

import torch

import innerloop as il
from conftest import gen, rel_err, task_loss
from innerloop.engine.algorithms import ModularMetaLearning
from innerloop.engine.learner import Learner


def _setup(cpu64, modules=3):
    model = il.models.MLP(1, (6,), 1, activation="tanh")
    algo = ModularMetaLearning(model, cpu64, modules=modules, inner_steps=60, temperature=0.3, cooling=0.9)
    pool = algo.init_params(gen(0), dtype=torch.float64)
    batch = il.tasks.Sinusoid(shots=8, queries=6).sample(5, gen(1)).to(torch.float64, "cpu")
    return model, algo, pool, batch


def test_assembly_and_module_gradient_match_autograd(cpu64):
    model, algo, pool, batch = _setup(cpu64)
    assert pool["layer0.weight"].shape == (3, 6, 1) and algo.layers == ["layer0", "layer1"]
    assignment = torch.tensor([[0, 2], [1, 1], [2, 0], [0, 0], [2, 2]])
    params = algo.assemble(pool, assignment)
    assert torch.equal(params["layer0.weight"][2], pool["layer0.weight"][2])
    assert torch.equal(params["layer1.bias"][0], pool["layer1.bias"][2])
    leaves = {k: v.clone().requires_grad_() for k, v in pool.items()}
    total = sum(task_loss(model, "mse", {k: v[i] for k, v in algo.assemble(leaves, assignment).items()},
                          batch.query_x[i], batch.query_y[i]) for i in range(5)) / 5
    reference = dict(zip(leaves, torch.autograd.grad(total, list(leaves.values()))))
    algo.anneal = lambda *args: assignment  # fix the inner solution to compare the outer gradient
    assert rel_err(algo.meta_gradient(pool, batch), reference) < 1e-12


def test_simulated_annealing_finds_the_best_assignment(cpu64):
    model, algo, pool, batch = _setup(cpu64, modules=2)
    learner = Learner(model, "mse")
    found = algo.anneal(learner, pool, batch, 80)
    best = []
    for i in range(5):
        losses = {a: float(task_loss(model, "mse", {k: v[a[j]] for j, layer in enumerate(algo.layers)
                                                     for k, v in pool.items() if k.startswith(layer)},
                                     batch.support_x[i], batch.support_y[i]))
                  for a in itertools.product(range(2), repeat=2)}
        best.append(min(losses, key=losses.get))
    assert [tuple(a) for a in found.tolist()] == best


def test_modular_trains_from_the_cli(tmp_path):
    from innerloop.cli import main

    out = tmp_path / "modular"
    assert main(["train", "--algo", "modular", "--hidden", "8", "--meta-batch", "4", "--iters", "6",
                 "--eval-every", "3", "--eval-tasks", "4", "--algo-option", "modules=3", "--out", str(out),
                 "--quiet"]) == 0
    assert main(["eval", str(out), "--tasks", "6", "--steps", "0,5", "--joint-iters", "3", "--quiet"]) == 0
