"""Power control (monograph §5.5): the sum-rate, the family, the REGNN, WMMSE and the experiment."""

import json
import math

import pytest
import torch

from innerloop import backends
from innerloop.engine.errors import ConfigError, ShapeError
from innerloop.engine.learner import Learner
from innerloop.engine.regnn import REGNN, sum_rate
from innerloop.engine.tasks import PowerControl, make
from innerloop.engine.wmmse import wmmse_powers

F64 = torch.float64


def _slots(tasks=3, count=4, seed=0, **options):
    family = PowerControl(shots=count, queries=1, **options)
    return family, family.sample(tasks, torch.Generator().manual_seed(seed)).to(F64, "cpu")


def test_sum_rate_matches_a_loop_over_links():
    g = torch.rand(4, 4, generator=torch.Generator().manual_seed(1), dtype=F64)
    p = torch.rand(4, generator=torch.Generator().manual_seed(2), dtype=F64)
    expected = 0.0
    for j in range(4):  # [G]_{i,j}: transmitter i to receiver j
        interference = sum(g[i, j] * p[i] for i in range(4) if i != j)
        expected += math.log2(1 + g[j, j] * p[j] / (0.05 + interference))
    assert float(sum_rate(g, p, 0.05)) == pytest.approx(float(expected), rel=1e-12)


def test_family_draws_padded_topologies():
    family, batch = _slots(tasks=200, count=8, min_links=3, max_links=6)
    assert batch.support_x.shape == (200, 8, 36) and batch.support_y.shape == (200, 8, 6)
    links = batch.task_params["links"]
    assert int(links.min()) == 3 and int(links.max()) == 6
    gains = batch.support_x.reshape(200, 8, 6, 6)
    for b in range(5):
        v = int(links[b])
        assert torch.equal(batch.support_y[b, 0], (torch.arange(6) < v).to(F64))
        assert gains[b, :, v:].abs().sum() == 0 and gains[b, :, :, v:].abs().sum() == 0  # padded: no channel
        assert bool((gains[b, :, :v, :v] > 0).all())
    # Rayleigh fading: |h|² ~ Exp(1) on top of the large-scale gain, so the slot mean over many slots
    # approaches the large-scale gain (d clamped to >= 1, so every gain is <= 1)
    scale, mask = family.topologies(1, torch.Generator().manual_seed(3))
    many = family.slots(scale, 20000, torch.Generator().manual_seed(4)).reshape(20000, 6, 6)
    assert torch.allclose(many.mean(0), scale[0], rtol=0.05, atol=1e-12)
    assert float(scale.max()) <= 1.0


def test_family_rejects_bad_options():
    with pytest.raises(ConfigError, match="min_links <= max_links"):
        make("power-control", min_links=8, max_links=4)
    with pytest.raises(ConfigError, match="near <= far"):
        make("power-control", near=3.0, far=1.0)


def _filter_by_matrix_powers(net, params, x):
    """The REGNN of the module docstring written with explicit matrix powers (one slot)."""
    g = x.reshape(net.links, net.links)
    s = g / g.norm()
    d = torch.diagonal(g)
    z = torch.stack([torch.ones_like(d), torch.log10(1 + d / net.noise_power)], -1)
    for layer in range(net.num_layers):
        w, b = params[f"layer{layer}.weight"], params[f"layer{layer}.bias"]
        z = sum(torch.linalg.matrix_power(s.T, k) @ z @ w[k] for k in range(net.taps)) + b
        z = torch.relu(z) if layer < net.num_layers - 1 else z
    return torch.sigmoid(z[:, 0])


def test_regnn_is_the_graph_filter_and_permutation_equivariant():
    family, batch = _slots(min_links=6, max_links=6)
    net = family.learner((5, 4), "relu")
    params = net.init(torch.Generator().manual_seed(5), dtype=F64)
    x = batch.support_x[0]
    powers = net.apply(params, x)
    assert torch.allclose(powers[1], _filter_by_matrix_powers(net, params, x[1]), rtol=1e-12)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(6))
    permuted = x.reshape(-1, 6, 6)[:, perm][:, :, perm].reshape(-1, 36)
    assert torch.allclose(net.apply(params, permuted), powers[:, perm], rtol=1e-12)


def test_regnn_padding_changes_nothing_on_real_links():
    family, batch = _slots(min_links=4, max_links=4)
    small = family.learner((6,), "tanh")
    big = REGNN(7, (6,), small.taps, small.noise_power, "tanh")
    params = small.init(torch.Generator().manual_seed(7), dtype=F64)
    x4 = batch.support_x[0]
    x7 = torch.nn.functional.pad(x4.reshape(-1, 4, 4), (0, 3, 0, 3)).reshape(-1, 49)
    mask7 = torch.nn.functional.pad(batch.support_y[0], (0, 3))
    assert torch.allclose(big.apply(params, x7)[:, :4], small.apply(params, x4), rtol=1e-12)
    assert float(big.objective(params, x7, mask7)) == pytest.approx(float(small.objective(params, x4,
                                                                                        batch.support_y[0])))
    assert float(small.objective(params, x4, batch.support_y[0])) == pytest.approx(
        -float(sum_rate(x4.reshape(-1, 4, 4), small.apply(params, x4), small.noise_power).mean()))
    with pytest.raises(ShapeError, match="flattened channel matrix"):
        big.apply(params, x4)


def test_wmmse_is_a_stationary_point_of_the_sum_rate():
    _, batch = _slots(tasks=2, count=3, min_links=5, max_links=5)
    gains = batch.support_x.reshape(-1, 5, 5)
    powers = wmmse_powers(gains, 0.01, iterations=2000).requires_grad_()
    (grad,) = torch.autograd.grad(sum_rate(gains, powers, 0.01).sum(), powers)
    interior = (powers > 1e-3) & (powers < 1 - 1e-3)
    assert interior.any()
    assert float(grad[interior].abs().max()) < 1e-3 * float(grad.abs().max())  # KKT: ∂c/∂p = 0 inside
    assert bool((grad[powers >= 1 - 1e-3] > -1e-6).all())  # at full power the rate still wants more
    assert bool((grad[powers <= 1e-3] < 1e-6).all())  # silent links would lower it
    full = sum_rate(gains, torch.ones(5, dtype=F64), 0.01)
    assert bool((sum_rate(gains, powers.detach(), 0.01) >= full - 1e-9).all())
    lone = torch.zeros(1, 3, 3, dtype=F64)
    lone[0, 0, 0] = 0.5  # one active link, two padded: full power, padding silent
    assert torch.equal(wmmse_powers(lone, 0.01), torch.tensor([[1.0, 0.0, 0.0]], dtype=F64))


def test_maml_meta_gradient_through_the_sum_rate_matches_autograd():
    from innerloop.engine.theory.gradient_variance import per_task_meta_gradients

    family, batch = _slots(tasks=2, count=4, min_links=3, max_links=4)
    batch = family.sample(2, torch.Generator().manual_seed(8)).to(F64, "cpu")
    net = family.learner((4,), "tanh")
    learner, theta = Learner(net, net.objective_name), net.init(torch.Generator().manual_seed(9), dtype=F64)
    got = per_task_meta_gradients(backends.get("cpu", dtype=F64), learner, theta, batch, 0.05, 2)
    for b in range(2):
        leaves = {k: v.clone().requires_grad_() for k, v in theta.items()}
        params = leaves
        for _ in range(2):
            grads = torch.autograd.grad(net.objective(params, batch.support_x[b], batch.support_y[b]),
                                        list(params.values()), create_graph=True)
            params = {k: v - 0.05 * g for (k, v), g in zip(params.items(), grads)}
        full = torch.autograd.grad(net.objective(params, batch.query_x[b], batch.query_y[b]),
                                   [leaves[k] for k in sorted(leaves)])
        assert torch.allclose(got[b], torch.cat([t.flatten() for t in full]), rtol=1e-9, atol=1e-12)


def test_train_modular_and_fomaml_on_power_control(tmp_path):
    from innerloop.cli import main

    for algo in ("modular", "fomaml"):
        assert main(["train", "--algo", algo, "--task", "power-control", "--hidden", "4", "--iters", "3",
                     "--eval-every", "3", "--eval-tasks", "4", "--out", str(tmp_path / algo), "--quiet"]) == 0
        assert main(["eval", str(tmp_path / algo), "--tasks", "4", "--steps", "0,1", "--joint-iters", "2"]) == 0
        result = json.loads((tmp_path / algo / "eval.json").read_text())
        assert result["steps"]["1"]["mean"] < 0 and "predictive_mse" not in result["steps"]["1"]


def test_power_control_experiment_end_to_end(tmp_path, monkeypatch):
    from innerloop.cli import main
    from innerloop.engine import power_control as experiment

    for name, value in (("PERIODS", (2, 4)), ("CONVENTIONAL_STEPS", 3), ("WMMSE_ITERATIONS", 5),
                        ("HIDDEN", (4,))):
        monkeypatch.setattr(experiment, name, value)
    assert main(["experiment", "power-control", "--out", str(tmp_path), "--iters", "2", "--tasks", "5"]) == 0
    document = json.loads((tmp_path / "power_control.json").read_text())
    assert (tmp_path / "power_control.png").stat().st_size > 10_000
    assert set(document["rows"]) == set(experiment.METHODS)
    assert all(set(by_k) == {"2", "4"} and by_k["2"]["n"] == 5 for by_k in document["rows"].values())
    assert set(document["references"]) == {"full-power", "wmmse", "conventional"}
    assert set(document["minus_joint"]) == {"fomaml", "reptile", "modular"}
    with pytest.raises(ConfigError, match="unknown power-control method"):
        experiment.power_control(tmp_path, algorithms=["maml2"])


def test_algorithms_that_cannot_run_a_family_learner_say_so():
    from innerloop.engine.algorithms import ALGORITHMS
    from innerloop.engine.link_autoencoder import LinkAutoencoder

    backend, regnn = backends.get("cpu"), REGNN(4, (3,))
    with pytest.raises(ConfigError, match="own objective 'negative_sum_rate'"):
        ALGORITHMS["bmaml"](regnn, backend)  # its particles would be scored by MSE against the link mask
    with pytest.raises(ConfigError, match="context to the input of an MLP"):
        ALGORITHMS["cavia"](regnn, backend)
    with pytest.raises(ConfigError, match="one module per layer"):
        ALGORITHMS["modular"](LinkAutoencoder(16, 4, 3, (4,)), backend)
    ALGORITHMS["modular"](regnn, backend)  # layer-named filters: one module per REGNN layer
