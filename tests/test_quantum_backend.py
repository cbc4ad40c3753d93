"""The quantum backend, part 1 of issue 8: PQC learners on PennyLane with backprop, adjoint and
parameter-shift (+ shots) gradients, and MAML on the exact simulator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import innerloop as il
from conftest import gen, rel_err, unrolled_maml_gradient
from innerloop.cli import main
from innerloop.engine.learner import Learner
from innerloop.engine.quantum import ReuploadingPQC
from innerloop.engine.tasks import TaskBatch


def _problem(out=1, loss="mse", tasks=3, points=4, seed=0):
    g = gen(seed)
    model = ReuploadingPQC(2, 3, 2, out)
    theta = model.init(g, dtype=torch.float64)
    params = {k: v + 0.2 * torch.randn(tasks, *v.shape, generator=g, dtype=torch.float64) for k, v in theta.items()}
    x = torch.randn(tasks, points, 2, generator=g, dtype=torch.float64)
    y = (torch.randn(tasks, points, out, generator=g, dtype=torch.float64) if loss == "mse"
         else torch.randint(0, out, (tasks, points), generator=g))
    return Learner(model, loss), theta, params, x, y


@pytest.mark.parametrize("out,loss", [(1, "mse"), (3, "cross_entropy")])
def test_shift_rule_in_one_broadcast_call_equals_backprop(out, loss):
    learner, _, params, x, y = _problem(out, loss)
    exact = il.backends.get("quantum").loss_and_grad(learner, params, x, y)
    shifted = il.backends.get("quantum", diff_method="parameter-shift").loss_and_grad(learner, params, x, y)
    assert torch.allclose(shifted[0], exact[0], atol=1e-12)
    for k in exact[1]:
        assert torch.allclose(shifted[1][k], exact[1][k], atol=1e-6), k


def test_adjoint_on_lightning_and_shots_against_the_exact_gradient():
    learner, _, params, x, y = _problem()
    exact = il.backends.get("quantum").loss_and_grad(learner, params, x, y)[1]
    adjoint = il.backends.get("quantum", device="lightning.qubit", diff_method="adjoint").loss_and_grad(
        learner, params, x, y)[1]
    assert rel_err(adjoint, exact) < 1e-6
    noisy = il.backends.get("quantum", diff_method="parameter-shift", shots=2000).loss_and_grad(
        learner, params, x, y)[1]
    flat = [torch.cat([g[k].flatten() for k in exact]) for g in (noisy, exact)]
    cosine = float(torch.dot(*flat) / (flat[0].norm() * flat[1].norm()))
    assert cosine > 0.9


def test_maml_on_the_exact_simulator_equals_the_unrolled_autograd_gradient():
    learner, theta, _, x, y = _problem(tasks=2)
    batch = TaskBatch(x, y, x.flip(1), y)
    maml = il.algorithms.MAML(learner.model, il.backends.get("quantum"), inner_lr=0.2, inner_steps=2).compute(
        theta, batch)
    assert rel_err(maml.grad, unrolled_maml_gradient(learner.model, theta, batch, 0.2, 2)) < 1e-9


def test_modes_offer_what_they_can_and_errors_are_clear():
    model = ReuploadingPQC(1, 2, 1, 1)
    shots = il.backends.get("quantum", diff_method="parameter-shift", shots=100)
    assert not shots.supports("hvp")
    with pytest.raises(il.CapabilityError, match="(?s)needs hvp.*fomaml.*reptile.*diff_method=backprop"):
        il.algorithms.MAML(model, shots)
    il.algorithms.ALGORITHMS["es-maml"](model, il.backends.get("quantum", capabilities="loss"))
    with pytest.raises(il.ConfigError, match="shots need diff_method='parameter-shift'"):
        il.backends.get("quantum", shots=100)
    with pytest.raises(il.ConfigError, match="unknown diff_method"):
        il.backends.get("quantum", diff_method="finite-diff")
    with pytest.raises(il.ConfigError, match="hvp needs diff_method='backprop'"):
        il.backends.get("quantum", diff_method="adjoint", capabilities="loss,hvp")
    with pytest.raises(il.ConfigError, match="runs PQC learners"):
        il.backends.get("quantum").loss(Learner(il.models.MLP(1, (2,), 1), "mse"), {}, torch.zeros(1, 2, 1),
                                        torch.zeros(1, 2, 1))


def test_train_and_eval_on_the_quantum_backend(tmp_path, capsys):
    run = tmp_path / "q"
    assert main(["train", "--algo", "fomaml", "--task", "sinusoid", "--backend", "quantum", "--backend-option",
                 "diff_method=parameter-shift", "--backend-option", "shots=200", "--iters", "2", "--meta-batch", "2",
                 "--inner-steps", "1", "--inner-lr", "0.1", "--eval-every", "2", "--eval-tasks", "2",
                 "--out", str(run), "--quiet"]) == 0
    assert main(["eval", str(run), "--tasks", "4", "--steps", "0,1", "--quiet"]) == 0
    assert "meta-learned" in capsys.readouterr().out


@pytest.mark.parametrize("task", ["sinusoid", "binary-prototype-regression"])
def test_shot_based_runs_repeat_and_resume_exactly(tmp_path, task):
    """Shot noise is seeded (a re-run draws the same shots) and checkpointed (a resumed run draws
    what the uninterrupted one drew), for re-uploading circuits and Born machines alike; the
    validation that ends the shorter run draws from its own seed and shifts nothing."""
    from innerloop.engine.config import TrainConfig
    from innerloop.engine.trainer import Trainer, train

    base = dict(algo="fomaml", task=task, backend="quantum", dtype="float64", meta_batch=2, inner_steps=1,
                iters=4, checkpoint_every=2, eval_every=100, eval_tasks=2, seed=1,
                backend_options={"diff_method": "parameter-shift", "shots": 50},
                task_options={"bits": 3, "queries": 5} if task != "sinusoid" else {})
    full = train(TrainConfig(**base), tmp_path / "full", progress=False)
    again = train(TrainConfig(**base), tmp_path / "again", progress=False)
    train(TrainConfig(**{**base, "iters": 2}), tmp_path / "part", progress=False)
    resumed = Trainer.resume(tmp_path / "part", iters=4, progress=False).run()
    for k in full.params:
        assert torch.equal(full.params[k], again.params[k]), k
        assert torch.equal(full.params[k], resumed.params[k]), k
    backend = il.backends.get("quantum", diff_method="parameter-shift", shots=50, seed=3)
    state = backend.random_state()
    first = backend.shot_rng.random(3), torch.rand(3, generator=backend.generator)
    backend.set_random_state(state)
    assert np.array_equal(backend.shot_rng.random(3), first[0])
    assert torch.equal(torch.rand(3, generator=backend.generator), first[1])
