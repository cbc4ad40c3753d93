"""Task families: shapes, distributions, reproducibility, disjoint splits, validation."""

from __future__ import annotations

import math

import pytest
import torch

import innerloop as il
from conftest import gen


def test_sinusoid_shapes_ranges_and_function():
    fam = il.tasks.Sinusoid(shots=10, queries=7)
    batch = fam.sample(500, generator=gen(0))
    assert batch.support_x.shape == (500, 10, 1) and batch.query_y.shape == (500, 7, 1)
    amp, phase = batch.task_params["amplitude"], batch.task_params["phase"]
    assert 0.1 <= amp.min() and amp.max() <= 5.0 and 0 <= phase.min() and phase.max() <= 2 * math.pi
    assert phase.max() > math.pi  # the default covers [0, 2π]
    assert -5 <= batch.support_x.min() and batch.support_x.max() <= 5
    expected = amp[:, None, None] * torch.sin(batch.query_x + phase[:, None, None])
    assert torch.allclose(batch.query_y, expected)
    finn = il.tasks.Sinusoid(phase_max=math.pi).sample(500, generator=gen(0))
    assert finn.task_params["phase"].max() <= math.pi


def test_sampling_is_reproducible_and_streams_are_disjoint():
    fam = il.tasks.Sinusoid()
    a, b = fam.sample(8, generator=gen(3)), fam.sample(8, generator=gen(3))
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_y, b.query_y)
    train = fam.stream("meta-train", seed=0).next(2000).task_params["amplitude"]
    test = fam.stream("meta-test", seed=0).next(2000).task_params["amplitude"]
    assert not set(train.tolist()) & set(test.tolist())
    again = fam.stream("meta-test", seed=0).next(2000).task_params["amplitude"]
    assert torch.equal(test, again)
    assert not torch.equal(test, fam.stream("meta-test", seed=1).next(2000).task_params["amplitude"])


def test_stream_state_round_trip():
    stream = il.tasks.Sinusoid().stream("meta-train", seed=5)
    stream.next(3)
    state = stream.state()
    first = stream.next(4)
    stream.load_state(state)
    assert torch.equal(stream.next(4).support_y, first.support_y)


def test_gp_tasks_have_the_kernel_covariance():
    fam = il.tasks.GaussianProcess1D(shots=2, queries=1, ell_min=1.0, ell_max=1.0 + 1e-9, noise=0.1)
    batch = fam.sample(20000, generator=gen(4))
    y = torch.cat([batch.support_y, batch.query_y], 1)[..., 0].double()
    x = torch.cat([batch.support_x, batch.query_x], 1)[..., 0].double()
    assert abs(float(y.var()) - (1 + 0.01)) < 0.05  # prior variance + noise
    # covariance of two points at distance d is exp(−d²/2) for ℓ = 1
    d = (x[:, 0] - x[:, 1]).abs()
    near = d < 0.3
    far = d > 2.5
    assert float((y[near, 0] * y[near, 1]).mean()) > 0.9
    assert abs(float((y[far, 0] * y[far, 1]).mean())) < 0.1


def test_clusters_are_balanced_and_inside_the_disk():
    fam = il.tasks.Clusters2D(shots=5, queries=15, ways=5)
    batch = fam.sample(50, generator=gen(5))
    assert batch.support_x.shape == (50, 25, 2) and batch.query_y.shape == (50, 75)
    assert batch.is_classification
    counts = torch.stack([(batch.support_y == c).sum(1) for c in range(5)], 1)
    assert (counts == 5).all()
    assert batch.task_params["means"].norm(dim=-1).max() <= 2.5
    means = batch.task_params["means"]
    own = means.gather(1, batch.query_y[..., None].expand(-1, -1, 2))
    assert abs(float((batch.query_x - own).std()) - 0.35) < 0.02
    assert not torch.equal(batch.support_y[0], torch.arange(5).repeat_interleave(5))  # shuffled


def test_linear_regression_is_realizable():
    fam = il.tasks.LinearRegression(dim=4, noise=0.1)
    batch = fam.sample(200, generator=gen(6))
    w = batch.task_params["weights"]
    residual = batch.support_y[..., 0] - (batch.support_x @ w[..., None])[..., 0]
    assert abs(float(residual.std()) - 0.1) < 0.01


def test_bad_input_is_named():
    with pytest.raises(il.ConfigError, match="shots must be > 0"):
        il.tasks.Sinusoid(shots=0)
    with pytest.raises(il.ConfigError, match="amp_min < amp_max"):
        il.tasks.Sinusoid(amp_min=3, amp_max=1)
    with pytest.raises(il.ConfigError, match="ways >= 2"):
        il.tasks.Clusters2D(ways=1)
    with pytest.raises(il.ConfigError, match="(?s)unknown task 'sinusiod'.*did you mean 'sinusoid'"):
        il.tasks.make("sinusiod")
    with pytest.raises(il.ConfigError, match="does not take option"):
        il.tasks.make("sinusoid", amplitude=3)
    x = torch.zeros(2, 5, 1)
    with pytest.raises(il.ShapeError, match="first two axes"):
        il.tasks.TaskBatch(x, torch.zeros(2, 4, 1), x, torch.zeros(2, 5, 1))
    with pytest.raises(il.ShapeError, match=r"\[tasks, points, \(time,\) features\]"):
        il.tasks.TaskBatch(torch.zeros(5, 1), torch.zeros(5, 1), x, x)
    with pytest.raises(il.ShapeError, match="2 tasks but query has 3"):
        il.tasks.TaskBatch(x, x, torch.zeros(3, 5, 1), torch.zeros(3, 5, 1))


def test_model_batch_mismatches_are_shape_errors(cpu64):
    batch = il.tasks.Sinusoid().sample(2, generator=gen(7))
    wrong_in = il.models.MLP(2, (8,), 1)
    with pytest.raises(il.ShapeError, match="inputs with 2 features but the tasks have 1"):
        il.algorithms.MAML(wrong_in, backend=cpu64).meta_gradient(wrong_in.init(gen(0)), batch)
    model = il.models.MLP(1, (8,), 1)
    with pytest.raises(il.ShapeError, match=r"'layer0.weight' has shape \(9, 1\), the model expects \(8, 1\)"):
        il.algorithms.MAML(model, backend=cpu64).meta_gradient(il.models.MLP(1, (9,), 1).init(), batch)
    clusters = il.tasks.Clusters2D(ways=5).sample(2, generator=gen(8))
    too_few = il.models.MLP(2, (8,), 3)
    with pytest.raises(il.ShapeError, match="labels go up to 4 but the model has only 3 outputs"):
        il.algorithms.FOMAML(too_few, backend=cpu64).meta_gradient(too_few.init(), clusters)
    with pytest.raises(il.ConfigError, match="inner_lr must be > 0"):
        il.algorithms.MAML(model, backend=cpu64, inner_lr=0.0)
    with pytest.raises(il.ConfigError, match="inner_lr must be > 0"):
        il.algorithms.MAML(model, backend=cpu64, inner_lr=float("nan"))
