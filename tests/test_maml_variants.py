"""ANIL, Meta-SGD and CAVIA: meta-gradients against autograd through the unrolled inner loop
(float64), and their training from the command line."""

from __future__ import annotations

import pytest
import torch

import innerloop as il
from conftest import gen, rel_err
from innerloop.engine.algorithms import ANIL, CAVIA, MetaSGD
from innerloop.engine.algorithms.anil import head_names
from innerloop.engine.context_model import ContextModel


def unrolled(apply, theta: dict, batch, steps: int, lr, adapted, context_dim: int = 0) -> dict:
    """Mean over tasks of ∇ L_Q(after ``steps`` inner steps) by create_graph autograd, one task at a time.
    ``lr``: a float or a dict of step-size tensors (also differentiated); ``adapted``: names updated."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in theta.items()}
    rates = {k: v.detach().clone().requires_grad_() for k, v in lr.items()} if isinstance(lr, dict) else None
    b = batch.to(torch.float64, "cpu")
    total = 0.0
    for i in range(b.num_tasks):
        q = dict(leaves)
        if context_dim:
            q["context"] = torch.zeros(context_dim, dtype=torch.float64, requires_grad=True)
        for _ in range(steps):
            loss = ((apply(q, b.support_x[i]) - b.support_y[i]) ** 2).mean()
            names = [k for k in q if k in adapted]
            grads = torch.autograd.grad(loss, [q[k] for k in names], create_graph=True)
            for k, g in zip(names, grads):
                q[k] = q[k] - (rates[k] if rates else lr) * g
        total = total + ((apply(q, b.query_x[i]) - b.query_y[i]) ** 2).mean() / b.num_tasks
    wrt = list(leaves.values()) + (list(rates.values()) if rates else [])
    grads = torch.autograd.grad(total, wrt)
    names = list(leaves) + ([f"inner_lr.{k}" for k in rates] if rates else [])
    return dict(zip(names, grads))


@pytest.fixture
def setup():
    model = il.models.MLP(1, (8, 8), 1, activation="tanh")
    batch = il.tasks.Sinusoid(shots=6, queries=5).sample(3, gen(1))
    return model, batch


@pytest.mark.parametrize("steps", [1, 3])
def test_anil_meta_gradient_matches_unrolled_autograd(setup, cpu64, steps):
    model, batch = setup
    params = model.init(gen(0), dtype=torch.float64)
    algo = ANIL(model, cpu64, inner_lr=0.3, inner_steps=steps)
    assert head_names(params) == {"layer2.weight", "layer2.bias"}
    reference = unrolled(model.apply, params, batch, steps, 0.3, head_names(params))
    assert rel_err(algo.meta_gradient(params, batch), reference) < 1e-10
    adapted = algo.adapt(params, batch)
    assert torch.equal(adapted["layer0.weight"][0], params["layer0.weight"])  # the body never moves
    assert not torch.equal(adapted["layer2.weight"][0], params["layer2.weight"])


@pytest.mark.parametrize("first_order", [False, True])
def test_metasgd_meta_gradient_includes_step_sizes(setup, cpu64, first_order):
    model, batch = setup
    algo = MetaSGD(model, cpu64, inner_lr=0.05, inner_steps=2, first_order=first_order)
    params = algo.init_params(gen(0), dtype=torch.float64)
    assert set(params) == set(model.shapes()) | {f"log_inner_lr.{k}" for k in model.shapes()}
    params = {k: v + 0.3 * torch.rand(v.shape, generator=gen(5), dtype=torch.float64) if k.startswith("log_inner")
              else v for k, v in params.items()}  # distinct step sizes per entry
    grad = algo.meta_gradient(params, batch)
    weights = {k: v for k, v in params.items() if not k.startswith("log_inner")}
    rates = {k: params[f"log_inner_lr.{k}"].exp() for k in weights}
    assert all(torch.allclose(algo.step_sizes(params)[k], rates[k]) for k in weights)
    if first_order:
        # first order: Jacobians taken as I, so ∂L/∂θ = ∇L_Q(θ^(N)), ∂L/∂α = −Σ_n ∇L_S(θ^(n−1))⊙∇L_Q(θ^(N))
        b = batch.to(torch.float64, "cpu")
        expected = {k: torch.zeros_like(v) for k, v in params.items()}

        def mse_grad(p, x, y):
            return torch.func.grad(lambda w: ((model.apply(w, x) - y) ** 2).mean())(p)

        for i in range(b.num_tasks):
            q, support_grads = dict(weights), []
            for _ in range(2):
                g = mse_grad(q, b.support_x[i], b.support_y[i])
                support_grads.append(g)
                q = {k: q[k] - rates[k] * g[k] for k in q}
            gq = mse_grad(q, b.query_x[i], b.query_y[i])
            for k in weights:
                expected[k] += gq[k] / b.num_tasks
                expected[f"log_inner_lr.{k}"] -= rates[k] * sum(s[k] for s in support_grads) * gq[k] / b.num_tasks
        assert rel_err(grad, expected) < 1e-12
        return
    reference = unrolled(model.apply, weights, batch, 2, rates, set(weights))
    reference.update({f"log_inner_lr.{k}": rates[k] * reference.pop(f"inner_lr.{k}") for k in weights})  # ρ = log α
    assert rel_err(grad, reference) < 1e-10
    with pytest.raises(il.ShapeError, match="missing"):
        algo.meta_gradient(weights, batch)


@pytest.mark.parametrize("steps", [1, 2])
def test_cavia_meta_gradient_is_eq_2_40(setup, cpu64, steps):
    model, batch = setup
    algo = CAVIA(model, cpu64, inner_lr=0.5, inner_steps=steps, context_dim=3)
    assert isinstance(algo.model, ContextModel) and algo.model.network.in_dim == 4
    params = algo.init_params(gen(0), dtype=torch.float64)
    assert "context" not in params  # the context is per task, not a meta-parameter
    reference = unrolled(algo.model.apply, params, batch, steps, 0.5, {"context"}, context_dim=3)
    assert rel_err(algo.meta_gradient(params, batch), reference) < 1e-10
    adapted = algo.adapt(params, batch)
    assert adapted["context"].shape == (3, 3) and torch.equal(adapted["layer0.weight"][1], params["layer0.weight"])
    first = CAVIA(model, cpu64, inner_lr=0.5, inner_steps=steps, context_dim=3, first_order=True)
    assert rel_err(first.meta_gradient(params, batch), reference) > 1e-6  # the mixed term matters


@pytest.mark.parametrize("algo", ["anil", "metasgd", "cavia"])
def test_variants_train_and_evaluate_from_the_cli(tmp_path, capsys, algo):
    from innerloop.cli import main

    out = tmp_path / algo
    assert main(["train", "--algo", algo, "--hidden", "16", "--meta-batch", "4", "--iters", "20", "--eval-every", "10",
                 "--eval-tasks", "8", "--out", str(out), "--quiet"]) == 0
    assert main(["eval", str(out), "--tasks", "10", "--steps", "0,2", "--joint-iters", "5", "--baseline-lr", "0.01",
                 "--quiet"]) == 0
    assert "meta-learned" in capsys.readouterr().out


@pytest.mark.parametrize("algo", ["maml", "fomaml", "anil", "cavia"])
def test_per_task_initializations_give_each_tasks_own_meta_gradient(setup, cpu64, algo):
    """One initialization per task: task b's meta-gradient must be what ``compute`` gives for θ_b on task b
    alone (MAML's fused pass there, the primitives here), and, second order, the create_graph unroll."""
    model, batch = setup
    algorithm = il.algorithms.ALGORITHMS[algo](model, cpu64, inner_lr=0.3, inner_steps=2)
    inits = [algorithm.init_params(gen(10 + b), torch.float64) for b in range(batch.num_tasks)]
    stacked = {k: torch.stack([p[k] for p in inits]) for k in inits[0]}
    result = algorithm.per_task_meta_gradients(stacked, batch)
    adapted = algorithm.per_task_adapt(stacked, batch)
    for b, theta in enumerate(inits):
        one = batch.select(slice(b, b + 1))
        alone = algorithm.compute(theta, one)
        assert rel_err({k: v[b] for k, v in result.grad.items()}, alone.grad) < 1e-10
        assert torch.allclose(result.task_losses[b], alone.task_losses[0], rtol=1e-12)
        assert rel_err({k: v[b] for k, v in adapted.items()},
                       {k: v[0] for k, v in algorithm.adapt(theta, one).items()}) < 1e-12
        if algo in ("maml", "cavia"):
            apply = algorithm.model.apply
            names = {"context"} if algo == "cavia" else set(theta)
            reference = unrolled(apply, theta, one, 2, 0.3, names, 4 if algo == "cavia" else 0)
            assert rel_err({k: v[b] for k, v in result.grad.items()}, reference) < 1e-9


def test_per_task_initializations_are_checked(setup, cpu64):
    model, batch = setup
    maml = il.algorithms.ALGORITHMS["maml"](model, cpu64)
    theta = maml.init_params(gen(0), torch.float64)
    with pytest.raises(il.engine.errors.ShapeError, match="leading axis of the batch's 3 tasks"):
        maml.per_task_meta_gradients({k: torch.stack([v, v]) for k, v in theta.items()}, batch)
    with pytest.raises(il.engine.errors.ShapeError):
        maml.per_task_adapt(theta, batch)  # shared parameters where per-task ones are expected
    metasgd = MetaSGD(model, cpu64)
    with pytest.raises(il.engine.errors.ConfigError, match="step sizes"):
        metasgd.per_task_meta_gradients({k: torch.stack([v] * 3) for k, v in theta.items()}, batch)
