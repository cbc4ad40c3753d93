"""Few-pilot demodulation (monograph §5.2): the physical layer against closed forms, the task family,
calibration, and the experiment end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch

from innerloop.engine import tasks
from innerloop.engine.calibration import class_probabilities, reliability
from innerloop.engine.comms import iq_imbalance, ml_detect, mmse_channel_estimate, qam_awgn_ser, qam_constellation
from innerloop.engine.ensemble import Ensemble
from innerloop.engine.errors import ConfigError
from innerloop.engine.models import MLP


def _complex_normal(shape, generator) -> torch.Tensor:
    return torch.complex(*torch.randn((2, *shape), generator=generator, dtype=torch.float64)) / math.sqrt(2)


@pytest.mark.parametrize("order", [4, 16, 64])
def test_qam_constellation_is_a_unit_energy_square_grid(order):
    points = qam_constellation(order)
    side = math.isqrt(order)
    assert points.shape == (order,)
    assert torch.isclose((points.abs() ** 2).mean(), torch.tensor(1.0, dtype=torch.float64))
    distances = (points[:, None] - points[None, :]).abs() + torch.eye(order) * 10
    d_min = 2 / math.sqrt(2 * (order - 1) / 3)  # adjacent levels ±1, ±3, … scaled to unit energy
    assert torch.isclose(distances.min(), torch.tensor(d_min, dtype=torch.float64))
    assert len({round(float(p.real), 9) for p in points}) == side == len({round(float(p.imag), 9) for p in points})


@pytest.mark.parametrize("order", [8, 15, 2, 16.0])
def test_qam_rejects_non_square_orders(order):
    with pytest.raises(ConfigError, match="even power of 2"):
        qam_constellation(order)


def test_iq_imbalance_matches_the_branch_equations():
    s = torch.tensor([[complex(0.3, -0.7), complex(-1.0, 0.5)]], dtype=torch.complex128)
    eps, delta = torch.tensor([0.1], dtype=torch.float64), torch.tensor([0.2], dtype=torch.float64)
    x = iq_imbalance(s, eps, delta)
    for k in range(2):
        si, sq = s[0, k].real.item(), s[0, k].imag.item()
        assert x[0, k].real.item() == pytest.approx(1.1 * (math.cos(0.2) * si - math.sin(0.2) * sq))
        assert x[0, k].imag.item() == pytest.approx(0.9 * (math.cos(0.2) * sq - math.sin(0.2) * si))
    zero = torch.zeros(1, dtype=torch.float64)
    assert torch.equal(iq_imbalance(s, zero, zero), s)


def test_mmse_estimate_is_the_gaussian_posterior_mean_and_has_its_error_variance():
    generator = torch.Generator().manual_seed(0)
    pilots = qam_constellation(16)[torch.randint(16, (3, 5), generator=generator)]
    h = _complex_normal((3,), generator)
    noise_var = 0.2
    y = h[:, None] * pilots + math.sqrt(noise_var) * _complex_normal((3, 5), generator)
    estimate = mmse_channel_estimate(pilots, y, noise_var)
    for b in range(3):  # E[h|y] = Σ_hy Σ_yy⁻¹ y with Σ_yy = s sᴴ + N0 I, Σ_hy = sᴴ (σ_h² = 1), by a linear solve
        s = pilots[b]
        cov_yy = torch.outer(s, s.conj()) + noise_var * torch.eye(5, dtype=torch.complex128)
        assert torch.isclose(s.conj() @ torch.linalg.solve(cov_yy, y[b]), estimate[b])
    # the posterior error variance σ_h²N0/(σ_h²‖s‖² + N0), by Monte Carlo over channels and noise
    n = 200_000
    fixed = pilots[:1].expand(n, -1)
    h = _complex_normal((n,), generator)
    y = h[:, None] * fixed + math.sqrt(noise_var) * _complex_normal((n, 5), generator)
    mse = ((mmse_channel_estimate(fixed, y, noise_var) - h).abs() ** 2).mean()
    expected = noise_var / ((fixed[0].abs() ** 2).sum() + noise_var)
    assert float(mse) == pytest.approx(float(expected), rel=0.02)


@pytest.mark.parametrize(("order", "snr_db"), [(4, 6.0), (16, 12.0), (64, 18.0)])
def test_ml_detection_with_the_true_channel_meets_the_awgn_ser_closed_form(order, snr_db):
    generator = torch.Generator().manual_seed(order)
    constellation, n = qam_constellation(order), 100_000
    labels = torch.randint(order, (1, n), generator=generator)
    snr = 10 ** (snr_db / 10)
    h = torch.tensor([complex(0.6, -0.8)], dtype=torch.complex128)  # |h| = 1: Es/N0 = snr
    y = h[:, None] * constellation[labels] + math.sqrt(1 / snr) * _complex_normal((1, n), generator)
    ser = float((ml_detect(y, h, constellation) != labels).double().mean())
    expected = qam_awgn_ser(order, snr)
    assert 0.01 < expected < 0.3
    assert abs(ser - expected) < 4 * math.sqrt(expected * (1 - expected) / n)


def test_demodulation_family_draws_devices_by_eq_5_2():
    family = tasks.make("demodulation", shots=6, queries=40, amplitude_imbalance=0.0, phase_imbalance=0.0,
                        snr_db=10.0)
    batch = family.sample(400, torch.Generator().manual_seed(1))
    assert batch.support_x.shape == (400, 6, 2) and batch.query_y.shape == (400, 40)
    assert batch.is_classification and int(batch.query_y.max()) < 16 and family.output_dim == 16
    # without imbalance, y − h·s is the noise: CN(0, N0) with N0 = 10^(−SNR/10)
    h = torch.complex(batch.task_params["channel_real"].double(), batch.task_params["channel_imag"].double())
    y = torch.complex(batch.query_x[..., 0].double(), batch.query_x[..., 1].double())
    residual = y - h[:, None] * family.constellation[batch.query_y]
    assert float((residual.abs() ** 2).mean()) == pytest.approx(0.1, rel=0.03)
    assert float((h.abs() ** 2).mean()) == pytest.approx(1.0, rel=0.15)  # Rayleigh: E|h|² = 1
    again = family.sample(400, torch.Generator().manual_seed(1))
    assert torch.equal(again.query_x, batch.query_x)


def test_demodulation_family_draws_imbalances_in_range_and_rejects_bad_options():
    batch = tasks.make("demodulation").sample(200, torch.Generator().manual_seed(2))
    assert 0 <= float(batch.task_params["epsilon"].min()) and float(batch.task_params["epsilon"].max()) <= 0.15
    assert float(batch.task_params["delta"].max()) <= math.radians(15) + 1e-7
    for options, match in (({"order": 12}, "even power of 2"), ({"amplitude_imbalance": 1.5}, "amplitude_imbalance"),
                           ({"phase_imbalance": -1}, "phase_imbalance"), ({"snr_db": math.inf}, "snr_db")):
        with pytest.raises(ConfigError, match=match):
            tasks.make("demodulation", **options)


def test_reliability_bins_and_ece_by_hand():
    probabilities = torch.tensor([[0.95, 0.05], [0.9, 0.1], [0.35, 0.65], [0.4, 0.6]])
    labels = torch.tensor([0, 1, 1, 1])
    diagram = reliability(probabilities, labels, bins=2)
    assert diagram["count"] == [0, 4]
    assert diagram["confidence"][1] == pytest.approx(0.775) and diagram["accuracy"][1] == pytest.approx(0.75)
    assert diagram["ece"] == pytest.approx(0.025)
    diagram = reliability(probabilities, labels, bins=4)  # bins [0.5, 0.75): conf .65, .6, both right; [0.75, 1]
    assert diagram["count"] == [0, 0, 2, 2]
    assert diagram["ece"] == pytest.approx(0.5 * abs(1 - 0.625) + 0.5 * abs(0.5 - 0.925))
    with pytest.raises(ConfigError, match="bins"):
        reliability(probabilities, labels, bins=0)


def test_labels_drawn_from_the_predictions_are_calibrated():
    generator = torch.Generator().manual_seed(3)
    probabilities = torch.softmax(3 * torch.randn((50_000, 5), generator=generator), dim=-1)
    labels = torch.multinomial(probabilities, 1, generator=generator).squeeze(1)
    assert reliability(probabilities, labels)["ece"] < 0.01
    overconfident = torch.softmax(3 * torch.log(probabilities), dim=-1)  # sharpened: confidence above accuracy
    assert reliability(overconfident, labels)["ece"] > 0.05


def test_ensemble_probabilities_average_the_particles_softmax():
    model = Ensemble(MLP(2, (8,), 4), particles=3)
    params = {k: torch.stack([v, v + 0.3]) for k, v in model.init(torch.Generator().manual_seed(0)).items()}
    x = torch.randn(2, 5, 2, generator=torch.Generator().manual_seed(1))
    expected = torch.stack([torch.stack([torch.softmax(model.inner.apply({k: v[b, m] for k, v in params.items()}, x[b]),
                                                       -1) for m in range(3)]).mean(0) for b in range(2)])
    assert torch.allclose(class_probabilities(model, params, x), expected, atol=1e-6)


def test_demodulation_experiment_end_to_end(tmp_path, capsys):
    from innerloop.cli import main
    from innerloop.engine.demodulation import PILOTS

    assert main(["experiment", "demodulation", "--out", str(tmp_path), "--iters", "2", "--tasks", "3",
                 "--algos", "cavia,bmaml,joint"]) == 0
    printed = capsys.readouterr().out
    assert "| mmse-ml |" in printed and "| bmaml |" in printed and "ECE at 8" in printed
    document = json.loads((tmp_path / "demodulation.json").read_text())  # strict JSON
    assert (tmp_path / "demodulation.png").stat().st_size > 10_000
    assert "| cavia |" in (tmp_path / "demodulation.md").read_text()
    assert set(document["rows"]) == {"cavia", "bmaml", "joint"}
    assert set(document["baselines"]) == {"scratch", "mmse-ml", "genie-ml"}
    for entry in [*document["rows"].values(), *document["baselines"].values()]:
        assert [int(n) for n in entry["ser"]] == list(PILOTS)
        assert all(0 <= s["mean"] <= 1 and s["n"] == 3 for s in entry["ser"].values())
    genie = {s["mean"] for s in document["baselines"]["genie-ml"]["ser"].values()}
    assert len(genie) == 1  # the true channel needs no pilots
    assert sum(document["rows"]["bmaml"]["calibration"]["count"]) == 3 * document["eval_symbols"]
    assert "ECE at 4" in printed and set(document["rows"]["cavia"]["ece_by_pilots"]) == {str(n) for n in PILOTS}
    particles = document["rows"]["bmaml"]["particles"]  # each particle alone, at the calibration pilot count
    assert len(particles) == 5 and all(0 <= p["ece"] <= 1 and 0 < p["confidence"] <= 1 for p in particles)
    assert "particles" not in document["rows"]["cavia"]
    assert (tmp_path / "runs" / "cavia" / "checkpoint.pt").is_file()
    from innerloop.engine.demodulation import region_map

    regions = document["rows"]["cavia"]["regions"]
    for which in ("start", "adapted"):
        decisions = region_map(regions, which)
        assert decisions.shape == (regions["size"], regions["size"]) and decisions.max() < 16


def test_demodulation_experiment_rejects_unknown_methods(tmp_path):
    from innerloop.engine.demodulation import demodulation

    with pytest.raises(ConfigError, match="unknown demodulation method 'maml2'"):
        demodulation(tmp_path, iters=1, tasks=3, algorithms=["maml2"])
    with pytest.raises(ConfigError, match="--tasks"):
        demodulation(tmp_path, iters=1, tasks=1, algorithms=["maml"])


def test_demodulation_summary_pairs_devices_and_checks_the_claims():
    from innerloop.engine.demodulation import summary

    def entry(errors_at_4, ece=None, ece_at_4=None):
        ser = {n: {"mean": sum(e) / len(e) / 100, "ci95": 0.0, "errors": e} for n, e in (("4", errors_at_4),)}
        if ece is None:
            return {"ser": ser}
        return {"ser": ser, "calibration": {"ece": ece}, "ece_by_pilots": {"4": ece_at_4}}

    document = {"pilots": [4], "eval_symbols": 100, "meta_train_pilots": 4,
                "rows": {"maml": entry([10, 20, 30], 0.08, 0.01), "bmaml": entry([31, 41, 51], 0.02, 0.05)},
                "baselines": {"mmse-ml": entry([30, 40, 50]), "scratch": entry([60, 60, 60]),
                              "genie-ml": entry([0, 0, 0])}}
    result = summary(document)
    assert result["paired_differences"]["maml - mmse-ml"]["4"]["mean"] == pytest.approx(-0.2)
    assert result["paired_differences"]["bmaml - mmse-ml"]["4"]["mean"] == pytest.approx(0.01)
    assert result["paired_differences"]["bmaml - mmse-ml"]["4"]["ci95"] == 0  # the same +1 on every device
    assert result["checks"] == {"maml_beats_mmse_ml_and_scratch_at_4_pilots": True,
                                "bmaml_beats_mmse_ml_and_scratch_at_4_pilots": False, "bmaml_ece_below_maml": True,
                                "bmaml_ece_below_maml_at_4_pilots": False}
    assert result["lowest_ser_without_genie"] == {"4": "maml"}


def test_demodulation_devices_sweep_end_to_end(tmp_path, capsys, monkeypatch):
    from innerloop.cli import main
    from innerloop.engine import demodulation_devices
    from innerloop.engine.demodulation import EVAL_SYMBOLS

    monkeypatch.setattr(demodulation_devices, "DEVICE_COUNTS", (3, 5))
    assert main(["experiment", "demodulation-devices", "--out", str(tmp_path), "--iters", "2", "--tasks", "3",
                 "--algos", "cavia,joint"]) == 0
    assert "K=3" in capsys.readouterr().out
    document = json.loads((tmp_path / "demodulation_devices.json").read_text())
    assert (tmp_path / "demodulation_devices.png").stat().st_size > 10_000
    assert set(document["rows"]) == {"cavia", "joint"} and set(document["rows"]["cavia"]) == {"3", "5"}
    assert set(document["model_based"]) == {"mmse-ml", "genie-ml"}
    paired = document["summary"]["minus_mmse_ml"]["cavia"]["5"]
    by_hand = [(a - b) / EVAL_SYMBOLS for a, b in
               zip(document["rows"]["cavia"]["5"]["ser"]["errors"], document["model_based"]["mmse-ml"]["errors"])]
    assert paired["mean"] == pytest.approx(sum(by_hand) / 3) and paired["n"] == 3
    config = json.loads((tmp_path / "runs" / "cavia-5-devices" / "config.json").read_text())
    assert config["train_tasks"] == 5 and config["shots"] == 4
