"""Viterbi detection with model-based and learned branch metrics (monograph §7.3): the trellis
against brute-force enumeration, the detector against the closed-form BPSK error rate, the
receivers' metrics against exact constructions, the ``isi-channel`` family, and the experiment."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from innerloop.engine import tasks
from innerloop.engine.errors import ConfigError, NonFiniteError, ShapeError
from innerloop.engine.isi_detection import (
    bit_errors,
    bpsk_awgn_ber,
    channel_model_metrics,
    genie_metrics,
    learned_metrics,
    linear_metrics,
    mmse_taps,
    true_taps,
)
from innerloop.engine.models import MLP
from innerloop.engine.viterbi import state_symbols, states_of, viterbi


def _brute_force(metrics: torch.Tensor) -> torch.Tensor:
    """The bits maximizing Σ_t c_t(state_t) over all 2^(T+L−1) sequences (unknown bits before the block)."""
    blocks, steps, states = metrics.shape
    memory = states.bit_length() - 1
    sequences = torch.tensor(list(itertools.product([0, 1], repeat=steps + memory - 1)))
    path_states = states_of(sequences, memory)  # [N, T]
    decisions = []
    for b in range(blocks):
        scores = metrics[b].gather(1, path_states.T).sum(0)
        decisions.append(sequences[scores.argmax(), memory - 1:])
    return torch.stack(decisions)


@pytest.mark.parametrize("memory", [1, 2, 3])
def test_viterbi_finds_the_maximum_likelihood_sequence_of_brute_force_enumeration(memory):
    metrics = torch.randn(6, 7, 2 ** memory, dtype=torch.float64, generator=torch.Generator().manual_seed(memory))
    assert torch.equal(viterbi(metrics), _brute_force(metrics))


def test_viterbi_ignores_a_per_time_constant_so_log_p_of_y_can_be_dropped():
    generator = torch.Generator().manual_seed(3)
    metrics = torch.randn(4, 30, 8, dtype=torch.float64, generator=generator)
    shift = 50 * torch.randn(4, 30, 1, dtype=torch.float64, generator=generator)
    assert torch.equal(viterbi(metrics + shift), viterbi(metrics))


def test_states_follow_the_trellis_and_carry_their_symbols():
    bits = torch.randint(2, (3, 20), generator=torch.Generator().manual_seed(0))
    states = states_of(bits, 3)
    assert states.shape == (3, 18)
    assert torch.equal(states[:, 1:] >> 1, states[:, :-1] & 3)  # state_t = (2 state_{t−1} + b_t) mod 2^L
    symbols = state_symbols(3)[states]  # [B, T, L]: (s_t, s_{t−1}, s_{t−2})
    for lag in range(3):
        assert torch.equal(symbols[..., lag], (2 * bits[:, 2 - lag:20 - lag] - 1).double())


def test_viterbi_rejects_bad_metrics_with_clear_errors():
    with pytest.raises(ShapeError, match="2\\^L entries"):
        viterbi(torch.zeros(1, 5, 6))
    with pytest.raises(ShapeError, match="blocks, time, states"):
        viterbi(torch.zeros(5, 4))
    metrics = torch.zeros(1, 5, 4)
    metrics[0, 2, 1] = float("nan")
    with pytest.raises(NonFiniteError, match="NaN"):
        viterbi(metrics)
    with pytest.raises(ShapeError, match="positive integer"):
        states_of(torch.zeros(1, 5, dtype=torch.long), 0)


def test_genie_viterbi_on_a_memoryless_channel_meets_the_bpsk_closed_form():
    """L = 1, no saturation: y = ±s + w, whose ML detector errs with probability Q(1/σ)."""
    family = tasks.make("isi-channel", memory=1, saturation=math.inf, snr_db=6.0, shots=1, queries=2000)
    batch = family.sample(100, torch.Generator().manual_seed(0))
    taps = true_taps(batch.task_params, 1)
    assert torch.allclose(taps.abs(), torch.ones_like(taps))
    errors = bit_errors(viterbi(genie_metrics(family, taps, batch.query_x)), batch.query_y).sum()
    rate, expected = float(errors) / (100 * 2000), bpsk_awgn_ber(1 / family.noise_var)
    assert abs(rate - expected) < 4 * math.sqrt(expected * (1 - expected) / (100 * 2000))


def test_isi_channel_draws_unit_energy_taps_and_the_saturated_outputs_of_the_states():
    family = tasks.make("isi-channel", snr_db=80.0, saturation=0.7, shots=5, queries=30)
    batch = family.sample(8, torch.Generator().manual_seed(1))
    taps = true_taps(batch.task_params, family.memory)
    assert torch.allclose(taps.norm(dim=1), torch.ones(8, dtype=torch.float64), atol=1e-6)
    expected = 0.7 * torch.tanh((state_symbols(4)[batch.query_y] @ taps[:, :, None])[..., 0] / 0.7)
    assert torch.allclose(batch.query_x[..., 0].double(), expected, atol=1e-3)  # σ = 1e-4
    labels = torch.cat([batch.support_y, batch.query_y], dim=1)
    assert torch.equal(labels[:, 1:] >> 1, labels[:, :-1] & 7)  # pilots then data, one contiguous block
    assert (family.loss, family.input_dim, family.output_dim) == ("cross_entropy", 1, 16)


def test_the_two_views_hold_the_same_draws():
    classifier = tasks.make("isi-channel", shots=6, queries=9)
    channel = tasks.make("isi-channel", shots=6, queries=9, view="channel")
    a = classifier.sample(3, torch.Generator().manual_seed(2))
    b = channel.sample(3, torch.Generator().manual_seed(2))
    assert torch.equal(a.query_x, b.query_y) and torch.equal(a.support_x, b.support_y)
    assert torch.equal(state_symbols(4, b.query_x.dtype)[a.query_y], b.query_x)
    assert (channel.loss, channel.input_dim, channel.output_dim) == ("mse", 4, 1)


@pytest.mark.parametrize("options, match", [
    ({"memory": 0}, "memory"), ({"memory": 2.5}, "memory"), ({"memory": True}, "memory"),
    ({"saturation": 0.0}, "saturation"), ({"snr_db": math.nan}, "snr_db"), ({"decay": "steep"}, "numbers"),
    ({"view": "image"}, "view")])
def test_isi_channel_rejects_bad_options(options, match):
    with pytest.raises(ConfigError, match=match):
        tasks.make("isi-channel", **options)


def test_mmse_taps_are_the_ridge_solution_of_the_augmented_least_squares_problem():
    family = tasks.make("isi-channel", snr_db=8.0, saturation=math.inf, shots=12)
    batch = family.sample(5, torch.Generator().manual_seed(4))
    estimate = mmse_taps(family, batch.support_x, batch.support_y)
    sigma = math.sqrt(family.noise_var)
    for b in range(5):
        design = torch.cat([state_symbols(4)[batch.support_y[b]] / sigma, torch.diag(family.profile().rsqrt())])
        target = torch.cat([batch.support_x[b, :, 0].double() / sigma, torch.zeros(4, dtype=torch.float64)])
        expected = torch.linalg.lstsq(design, target[:, None]).solution[:, 0]
        assert torch.allclose(estimate[b], expected, atol=1e-10)
    many = family.sample(5, torch.Generator().manual_seed(5), shots=4000)  # the estimate is consistent
    assert torch.allclose(mmse_taps(family, many.support_x, many.support_y), true_taps(many.task_params, 4), atol=0.02)


def test_a_classifier_with_the_genie_logits_decides_like_the_genie():
    """log p(y|s) = −y²/2σ² + yμ_s/σ² − μ_s²/2σ²: the first term is the same for every state, so a
    linear classifier with weights μ_s/σ² and biases −μ_s²/2σ² is an exact ViterbiNet."""
    family = tasks.make("isi-channel", shots=2, queries=200)
    batch = family.sample(4, torch.Generator().manual_seed(6))
    taps = true_taps(batch.task_params, 4)
    means = family.noiseless(taps)  # [B, 16]
    params = {"layer0.weight": (means / family.noise_var)[..., None].float(),
              "layer0.bias": (-means ** 2 / (2 * family.noise_var)).float()}
    metrics = learned_metrics(MLP(1, (), 16), params, batch.query_x)
    genie = genie_metrics(family, taps, batch.query_x)
    centred = metrics - genie
    assert torch.allclose(centred, centred[..., :1].expand_as(centred), atol=1e-3 * genie.abs().max())
    assert torch.equal(viterbi(metrics), viterbi(genie))


def test_a_channel_model_equal_to_the_linear_channel_gives_the_linear_metrics():
    family = tasks.make("isi-channel", shots=2, queries=50, saturation=math.inf, view="channel")
    batch = family.sample(3, torch.Generator().manual_seed(7))
    taps = true_taps(batch.task_params, 4)
    received = batch.query_y
    metrics = channel_model_metrics(MLP(4, (), 1, bias=False), {"layer0.weight": taps[:, None, :].float()},
                                    received, 4, family.noise_var)
    assert torch.allclose(metrics, linear_metrics(family, taps, received), rtol=1e-5, atol=1e-3)
    assert torch.allclose(metrics, genie_metrics(family, taps, received), rtol=1e-5, atol=1e-3)


def test_viterbi_equalization_experiment_end_to_end(tmp_path, capsys, monkeypatch):
    from innerloop.cli import main
    from innerloop.engine import viterbi_tracking
    from innerloop.engine.viterbi_equalization import PILOTS, SNRS

    monkeypatch.setattr(viterbi_tracking, "BLOCKS", 3)  # short drifting trajectories (forked workers inherit it)
    monkeypatch.setattr(viterbi_tracking, "ROTATION_BLOCKS", 3)

    assert main(["experiment", "viterbi-equalization", "--out", str(tmp_path), "--iters", "2", "--tasks", "3",
                 "--algos", "maml,viterbinet"]) == 0
    printed = capsys.readouterr().out
    assert "| mmse-viterbi |" in printed and "| viterbinet |" in printed
    document = json.loads((tmp_path / "viterbi_equalization.json").read_text())  # strict JSON
    assert (tmp_path / "viterbi_equalization.png").stat().st_size > 10_000
    assert set(document["rows"]) == {"maml", "viterbinet"}
    assert set(document["baselines"]) == {"scratch", "mmse-viterbi", "genie-viterbi"}
    for entry in [*document["rows"].values(), *document["baselines"].values()]:
        assert [int(n) for n in entry["ber"]] == list(PILOTS)
        assert [float(s) for s in entry["ber_vs_snr"]] == list(SNRS)
        assert all(0 <= s["mean"] <= 1 and s["n"] == 3 for s in entry["ber"].values())
    genie = document["baselines"]["genie-viterbi"]
    assert len({s["mean"] for s in genie["ber"].values()}) == 1  # the true channel needs no pilots
    assert genie["ber_vs_snr"]["18.0"]["mean"] <= genie["ber_vs_snr"]["6.0"]["mean"]
    assert len(document["rows"]["maml"]["channel_fit"]) == 16 and "channel_fit" not in document["rows"]["viterbinet"]
    from innerloop.engine.viterbi_tracking import CORRELATIONS, MODES

    for entry in (document["rows"]["maml"], document["baselines"]["mmse-viterbi"]):
        assert [float(r) for r in entry["tracking"]] == list(CORRELATIONS)
        assert all(set(by_mode) == set(MODES) for by_mode in entry["tracking"].values())
    assert "tracking" not in document["rows"]["viterbinet"] and "decision-directed" in printed
    online = document["rows"]["maml"]["online"]  # the initialization learned online, on the same channels
    assert [float(r) for r in online] == list(CORRELATIONS) and document["online"]["updates"] >= 1
    assert all(set(by_update) == {"fixed", "online-tuning", "online-meta"} and by_update["fixed"]["n"] == 3
               for by_support in online.values() for by_update in by_support.values())
    assert "online" not in document["rows"]["viterbinet"] and "maml, decision-directed" in printed
    assert set(document["summary"]["online_paired_differences"]) == {"maml"}
    rotating = document["rows"]["maml"]["rotating"]
    assert set(rotating) == set(MODES) and rotating["pilots"]["online-meta"]["n"] == 3
    assert "Rotating channels" in printed
    assert set(document["summary"]["online_paired_differences"]["maml"]) == {*map(str, CORRELATIONS), "rotating"}
    assert document["summary"]["lowest_ber_without_genie"].keys() == {str(n) for n in PILOTS}


def test_viterbi_equalization_rejects_unknown_methods(tmp_path):
    from innerloop.engine.viterbi_equalization import viterbi_equalization

    with pytest.raises(ConfigError, match="unknown viterbi-equalization method 'vnet'"):
        viterbi_equalization(tmp_path, iters=1, tasks=3, algorithms=["vnet"])
    with pytest.raises(ConfigError, match="--tasks"):
        viterbi_equalization(tmp_path, iters=1, tasks=1, algorithms=["maml"])


def test_drift_keeps_unit_energy_and_interpolates_between_frozen_and_fresh_channels():
    family = tasks.make("isi-channel")
    generator = torch.Generator().manual_seed(12)
    taps = family.draw_taps(50, generator)
    assert torch.allclose(family.drift(taps, 1.0, generator), taps, atol=1e-15)
    slow, fast = family.drift(taps, 0.99, generator), family.drift(taps, 0.0, generator)
    for moved in (slow, fast):
        assert torch.allclose(moved.norm(dim=1), torch.ones(50, dtype=torch.float64))
    assert float((slow - taps).norm(dim=1).mean()) < 0.25 < float((fast - taps).norm(dim=1).mean())
    with pytest.raises(ConfigError, match="correlation"):
        family.drift(taps, 1.5, generator)
    first = family.sample(3, torch.Generator().manual_seed(4), shots=5, queries=7)
    generator = torch.Generator().manual_seed(4)
    second = family.transmit(family.draw_taps(3, generator), generator, 5, 7)  # _sample is exactly these two
    assert torch.equal(first.query_x, second.query_x) and torch.equal(first.query_y, second.query_y)


def test_rotating_channels_have_unit_energy_move_fast_and_come_back_after_a_period(monkeypatch):
    from innerloop.engine import viterbi_tracking as tracking

    monkeypatch.setattr(tracking, "ROTATION_BLOCKS", 12)
    family = tasks.make("isi-channel", view="channel")
    blocks = tracking.rotating_blocks(family, 5, seed=0)
    taps = torch.stack([torch.stack([b.task_params[f"tap{lag}"] for lag in range(4)], 1) for b in blocks]).double()
    assert len(blocks) == 12 and torch.allclose(taps.norm(dim=2), torch.ones(12, 5, dtype=torch.float64), atol=1e-6)
    period = tracking.ROTATION_PERIOD
    assert torch.allclose(taps[period], taps[0], atol=1e-6) and torch.allclose(taps[period + 1], taps[1], atol=1e-6)
    assert float((taps[1] - taps[0]).norm(dim=1).min()) > 0.05  # it moves between blocks
    assert not torch.equal(blocks[period].query_y, blocks[0].query_y)  # same channel, fresh symbols and noise


def test_decided_points_with_the_true_bits_are_the_blocks_own_labels():
    from innerloop.engine.viterbi_tracking import block_states, decided_points

    family = tasks.make("isi-channel", view="channel")
    block = family.sample(4, torch.Generator().manual_seed(5), shots=3, queries=30)
    states = block_states(family, block.query_x)
    bits = torch.cat([torch.zeros(4, 3, dtype=torch.long), states & 1], dim=1)[:, 3:]  # b_t = newest bit of s_t
    symbols, received = decided_points(family, block, bits)
    assert torch.equal(symbols, block.query_x[:, 3:]) and torch.equal(received, block.query_y[:, 3:])


def test_decision_directed_tracking_helps_on_a_static_channel_and_is_void_for_the_genie():
    from innerloop.engine import viterbi_tracking as tracking

    family = tasks.make("isi-channel", view="channel")
    blocks = tracking.drifting_blocks(family, 30, seed=0, correlation=1.0)
    assert torch.allclose(blocks[0].task_params["tap0"], blocks[-1].task_params["tap0"], atol=1e-6)
    genie = tracking.track(family, blocks, tracking.genie_receiver(family))
    assert genie["pilots"]["mean"] == genie["decision-directed"]["mean"]
    mmse = tracking.track(family, blocks, tracking.mmse_receiver(family))
    assert mmse["decision-directed"]["mean"] < mmse["pilots"]["mean"]
