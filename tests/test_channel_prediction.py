"""Channel prediction (monograph §5.4): the frame family, the complex multi-output closed forms of
iMAML against their optimality conditions, and the experiment end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch

from innerloop.engine import tasks
from innerloop.engine.closed_form import imaml_ridge_meta_solution, ridge_adapted
from innerloop.engine.errors import ConfigError
from innerloop.engine.tasks.channel_prediction import ChannelPrediction, complex_of, real_of


def _complex(shape, seed) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.complex(*torch.randn((2, *shape), generator=g, dtype=torch.float64))


def test_windows_stack_the_latest_channels_newest_first_and_target_the_lag():
    family = ChannelPrediction(receive=1, transmit=1, taps=2, window=3, lag=2)
    slots = torch.arange(10, dtype=torch.float64)
    channels = torch.complex(torch.stack([slots, 100 + slots], dim=-1), torch.zeros(10, 2, dtype=torch.float64))[None]
    x, y = family.windows(channels)
    assert x.shape == (1, 10 - 3 - 2 + 1, 6) and y.shape == (1, 6, 2)
    assert x[0, 0].real.tolist() == [2, 102, 1, 101, 0, 100]  # [h_2; h_1; h_0]
    assert y[0, 0].real.tolist() == [4, 104]  # h_{2+δ}


def test_frames_have_unit_channel_energy_the_stated_noise_and_a_reproducible_draw():
    family = tasks.make("channel-prediction", shots=4, queries=30, snr_db=10.0)
    assert (family.input_dim, family.output_dim) == (2 * 16 * 5, 32)
    batch = family.sample(300, torch.Generator().manual_seed(0))
    assert batch.support_x.shape == (300, 4, 160) and batch.query_y.shape == (300, 30, 32)
    energy = (complex_of(batch.query_y).abs() ** 2).sum(-1).mean()
    assert float(energy) == pytest.approx(1 + 10 ** -1, rel=0.1)  # E‖h‖² = 1 plus the noise N0
    again = family.sample(300, torch.Generator().manual_seed(0))
    assert torch.equal(again.query_y, batch.query_y)
    assert torch.equal(real_of(complex_of(batch.query_x)).float(), batch.query_x)
    for options, match in (({"window": 0}, "window"), ({"doppler_max": 0.7}, "doppler"),
                           ({"snr_db": math.nan}, "snr_db")):
        with pytest.raises(ConfigError, match=match):
            tasks.make("channel-prediction", **options)


def test_a_static_noise_free_frame_is_predicted_exactly_by_the_latest_channel():
    family = ChannelPrediction(shots=2, queries=5, doppler_min=0.0, doppler_max=0.0, snr_db=200.0)
    batch = family.sample(3, torch.Generator().manual_seed(1))
    latest = complex_of(batch.query_x)[..., :family.antennas]
    assert torch.allclose(latest, complex_of(batch.query_y), atol=1e-6)


def test_complex_multi_output_ridge_meets_its_stationarity_condition():
    x, y, theta = _complex((2, 6, 4), 0), _complex((2, 6, 3), 1), _complex((4, 3), 2)
    lam = 0.7
    w = ridge_adapted(x, y, theta, lam)
    # Wirtinger gradient of (1/K)‖XW − Y‖² + (λ/2)‖W − Θ‖² w.r.t. conj(W) vanishes at the solution
    stationarity = x.mH @ (x @ w - y) / 6 + lam / 2 * (w - theta)
    assert stationarity.abs().max() < 1e-12
    per_column = torch.stack([ridge_adapted(x, y[..., s:s + 1], theta[:, s], lam) for s in range(3)], dim=-1)
    assert torch.allclose(per_column, w, atol=1e-12)


def test_complex_imaml_meta_solution_zeroes_the_autograd_meta_gradient():
    sx, sy, qx, qy = _complex((5, 3, 4), 3), _complex((5, 3, 2), 4), _complex((5, 7, 4), 5), _complex((5, 7, 2), 6)
    lam = 1.3

    def meta_loss(theta: torch.Tensor) -> torch.Tensor:  # (1/K)Σ_k ‖X_va ϕ_k(θ) − Y_va‖², by autograd
        return ((qx @ ridge_adapted(sx, sy, theta, lam) - qy).abs() ** 2).sum() / 5

    theta_hat = imaml_ridge_meta_solution(sx, sy, qx, qy, lam).requires_grad_(True)
    (gradient,) = torch.autograd.grad(meta_loss(theta_hat), theta_hat)
    zero = torch.zeros_like(theta_hat, requires_grad=True)
    (at_zero,) = torch.autograd.grad(meta_loss(zero), zero)
    assert gradient.abs().max() < 1e-10 * at_zero.abs().max()
    assert theta_hat.shape == (4, 2)


def test_channel_prediction_experiment_end_to_end(tmp_path, monkeypatch):
    from innerloop.cli import main
    from innerloop.engine import channel_prediction as experiment

    for name, value in (("TRAINING_WINDOWS", (1, 4)), ("META_FRAMES", 8), ("VALIDATION_FRAMES", 4),
                        ("TEST_WINDOWS", 6), ("META_VALIDATION", 6)):
        monkeypatch.setattr(experiment, name, value)
    assert main(["experiment", "channel-prediction", "--out", str(tmp_path), "--tasks", "3"]) == 0
    document = json.loads((tmp_path / "channel_prediction.json").read_text())
    assert (tmp_path / "channel_prediction.png").stat().st_size > 10_000
    assert set(document["rows"]) == set(experiment.METHODS)
    for method, by_n in document["rows"].items():
        assert set(by_n) == {"1", "4"} and all(entry["nmse"]["n"] == 3 for entry in by_n.values())
        if method != "outdated":
            assert by_n["4"]["lambda"] in experiment.LAMBDAS
    assert len(document["example"]["target"]) == 6
    assert set(document["rows"]["meta"]["4"]["minus"]) == set(experiment.METHODS) - {"meta"}
    assert set(document["rows"]["lstd-meta"]["4"]["minus"]) == set(experiment.METHODS) - {"lstd-meta"}
    assert document["rows"]["lstd-joint"]["4"]["rank"] in experiment.RANKS
    with pytest.raises(ConfigError, match="closed form"):
        experiment.channel_prediction(tmp_path, iters=10)


# -- long-short-term decomposition (eq. 5.24) ---------------------------------------------------------------

def _clean_frames(shots, snr_db=80.0):
    from innerloop.engine.channel_prediction import frames

    return frames(ChannelPrediction(snr_db=snr_db), 6, shots, 20, "meta-test", 0)


def test_long_term_basis_spans_the_paths_of_clean_channels():
    from innerloop.engine.lstd import long_term_basis

    sx, sy, qx, qy = _clean_frames(shots=8)
    basis = long_term_basis(sx, sy, 4)  # 4 paths: the channels live in a 4-dimensional subspace
    eye = torch.eye(4, dtype=basis.dtype).expand(6, 4, 4)
    assert torch.allclose(basis.mH @ basis, eye, atol=1e-10)
    def missed(basis):  # energy of the frames' later channels outside the span
        residual = qy - (qy @ basis.conj()) @ basis.mT
        return float((residual.abs() ** 2).sum() / (qy.abs() ** 2).sum())

    assert missed(basis) < 1e-4 < 1e-2 < missed(long_term_basis(sx, sy, 3))
    with pytest.raises(ConfigError, match="long-term features R"):
        long_term_basis(sx, sy, 17)


def test_lstd_with_the_newest_tap_and_a_full_basis_is_the_outdated_channel():
    from innerloop.engine.lstd import long_term_basis, predict_channels

    sx, sy, qx, qy = _clean_frames(shots=3, snr_db=20.0)
    basis = long_term_basis(sx, sy, 16)  # R = S: B̂B̂ᴴ = I
    newest = torch.zeros(5, dtype=qx.dtype)
    newest[0] = 1
    assert torch.allclose(predict_channels(qx, basis, newest), qx[..., :16], atol=1e-10)


def test_lstd_predicts_clean_channels_from_two_windows():
    from innerloop.engine.channel_prediction import bias, nmse, predict

    test = _clean_frames(shots=2)
    lstd = nmse(predict("lstd-conventional", bias("lstd-conventional", test, 1e-9, 16), 1e-9, test, 16), test[3])
    naive = nmse(predict("conventional", bias("conventional", test, 1e-9), 1e-9, test), test[3])
    assert float(lstd.mean()) < 1e-4 < float(naive.mean())  # 5 filter taps vs 80×16 weights from 2 windows
