"""Long acceptance run (marked slow, ~8 minutes on 2 cores): `pytest -m slow`."""

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
