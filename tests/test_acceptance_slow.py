"""Long acceptance runs (marked slow, ~14 minutes in all on 2 cores): `pytest -m slow`."""

from __future__ import annotations

import json

import pytest

from innerloop.cli import main


@pytest.mark.slow
def test_maml_sinusoid_20k_reaches_low_held_out_mse(tmp_path):
    """Issue 2 acceptance 3: K=10, meta-batch 25, N=5, α=0.01, β=1e-3, 20,000 iterations on `cpu`."""
    out = tmp_path / "maml-20k"
    assert main(["train", "--algo", "maml", "--task", "sinusoid", "--backend", "cpu", "--meta-batch", "25",
                 "--inner-steps", "5", "--inner-lr", "0.01", "--outer-lr", "0.001", "--iters", "20000",
                 "--out", str(out), "--quiet"]) == 0
    assert main(["eval", str(out), "--tasks", "500", "--steps", "0,1,5,10", "--quiet"]) == 0
    result = json.loads((out / "eval.json").read_text())
    meta = result["steps"]["5"]
    assert meta["mean"] <= 0.5
    for baseline in ("random_init", "joint"):
        other = result["baselines"][baseline]["5"]
        assert meta["mean"] + meta["ci95"] < other["mean"] - other["ci95"]


@pytest.mark.slow
def test_neural_process_sample_efficiency_sweep(tmp_path):
    """Issue 3 acceptance (seed 000 §9.2): on 200 held-out GP tasks the NLL of CNP, LatentNP and
    AttentiveNP falls with the context size (within CI), and AttentiveNP is closest to the exact GP.
    About 4 minutes on 2 cores."""
    runs = []
    for algo in ("cnp", "latent-np", "attentive-np"):
        runs.append(str(tmp_path / algo))
        assert main(["train", "--algo", algo, "--task", "gp", "--shots", "20", "--queries", "20", "--iters", "10000",
                     "--meta-batch", "16", "--outer-lr", "5e-4", "--eval-every", "1000", "--out", runs[-1],
                     "--quiet"]) == 0
    assert main(["eval", *runs, "--tasks", "200", "--out", str(tmp_path / "cmp"), "--quiet"]) == 0
    series = json.loads((tmp_path / "cmp" / "comparison.json").read_text())["series"]
    gp = series["exact GP"]
    gaps = {}
    for algo in ("cnp", "latent-np", "attentive-np"):
        curve = series[algo]
        sizes = sorted(curve, key=int)
        for small, large in zip(sizes, sizes[1:]):  # monotone within CI
            assert curve[large]["mean"] <= curve[small]["mean"] + curve[small]["ci95"] + curve[large]["ci95"]
        assert curve[sizes[-1]]["mean"] < curve[sizes[0]]["mean"]
        gaps[algo] = sum(curve[k]["mean"] - gp[k]["mean"] for k in sizes)
    assert min(gaps, key=gaps.get) == "attentive-np"


@pytest.mark.slow
def test_protonet_on_held_out_digits_beats_raw_pixel_nearest_neighbour(tmp_path):
    """Issue 3 acceptance (digits): 5-way 5-shot on the held-out digits 5–9, 600 episodes, ProtoNet
    with the defaults clearly above raw-pixel 1-NN — the lower CI end above the baseline's upper
    end. About 3 minutes on one core."""
    out = tmp_path / "digits"
    assert main(["train", "--algo", "protonet", "--task", "digits", "--iters", "1500", "--meta-batch", "8",
                 "--out", str(out), "--quiet"]) == 0
    assert main(["eval", str(out), "--tasks", "600", "--quiet"]) == 0
    result = json.loads((out / "eval.json").read_text())
    accuracy, nearest = result["accuracy"], result["baselines"]["nearest_neighbour"]
    assert accuracy["n"] == 600
    assert accuracy["mean"] - accuracy["ci95"] > nearest["mean"] + nearest["ci95"] + 0.01


@pytest.mark.slow
def test_spiking_fomaml_on_double_motif(tmp_path):
    """Issue 7 acceptance 2 (one seed; `innerloop experiment neuromorphic` runs three): DoubleMotif
    5-way 1-shot, 5 three-factor inner steps at η = 0.5, meta-batch 8, 400 iterations (~30 s)."""
    out = tmp_path / "snn"
    assert main(["train", "--algo", "fomaml", "--task", "double-motif", "--backend", "snn", "--inner-steps", "5",
                 "--inner-lr", "0.5", "--outer-lr", "0.01", "--meta-batch", "8", "--iters", "400", "--seed", "0",
                 "--out", str(out), "--quiet"]) == 0
    assert main(["eval", str(out), "--tasks", "300", "--steps", "0,5,20", "--quiet"]) == 0
    result = json.loads((out / "eval.json").read_text())
    meta = {n: result["steps"][n]["accuracy"]["mean"] for n in ("0", "5", "20")}
    random_init = {n: result["baselines"]["random_init"][n]["accuracy"]["mean"] for n in ("5", "20")}
    assert meta["5"] >= 0.90 and meta["5"] >= random_init["5"] + 0.30 and meta["5"] > random_init["20"]
    assert abs(meta["0"] - 0.2) < 0.03  # labels are permuted per task: chance without adaptation


@pytest.mark.slow
def test_cavia_demodulates_from_few_pilots_better_than_the_model_based_receiver(tmp_path):
    """Monograph §5.2, Fig. 5.2: a meta-learned demodulator (CAVIA, meta-trained with 4 pilots per device)
    has a lower SER with 4 pilots than MMSE channel estimation + ML detection and than training from
    scratch, paired over the same 300 held-out devices."""
    assert main(["experiment", "demodulation", "--algos", "cavia", "--out", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "demodulation.json").read_text())
    assert document["summary"]["checks"] == {"cavia_beats_mmse_ml_and_scratch_at_4_pilots": True}
