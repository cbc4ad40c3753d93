"""Online (continual) meta-learning: the test-then-train order, replay, and the online demodulation
experiment."""

import json

import pytest
import torch

from innerloop import backends
from innerloop.engine.algorithms import ALGORITHMS
from innerloop.engine.errors import ConfigError
from innerloop.engine.models import MLP
from innerloop.engine.online import online_meta_learning
from innerloop.engine.tasks import LinearRegression

F64 = torch.float64


def _setup():
    family = LinearRegression(shots=5, queries=5, dim=3)
    model = MLP(3, (), 1, bias=False)
    algorithm = ALGORITHMS["maml"](model, backends.get("cpu", dtype=F64), inner_lr=0.05, inner_steps=2)
    gen = torch.Generator().manual_seed(0)
    arrivals = [family.sample(1, gen).to(F64, "cpu") for _ in range(6)]
    return algorithm, {"layer0.weight": torch.zeros(1, 3, dtype=F64)}, arrivals


def test_each_arrival_is_scored_before_it_is_learned_from():
    algorithm, start, arrivals = _setup()
    run = online_meta_learning(algorithm, start, arrivals, lr=0.1, score=algorithm.evaluate, progress=False)
    params = {k: v.clone() for k, v in start.items()}  # the same protocol by hand
    optimizer = torch.optim.Adam(list(params.values()), lr=0.1)
    for t, arrival in enumerate(arrivals):
        assert run.prequential[t] == pytest.approx(float(algorithm.evaluate(params, arrival)[0]), rel=1e-12)
        result = algorithm.compute(params, arrival)
        for name, p in params.items():
            p.grad = result.grad[name]
        optimizer.step()
    assert torch.allclose(run.params["layer0.weight"], params["layer0.weight"], rtol=1e-12)
    assert not torch.equal(start["layer0.weight"], run.params["layer0.weight"])  # the caller's copy is untouched


def test_replay_mixes_stored_arrivals_into_each_step():
    algorithm, start, arrivals = _setup()
    seen = []

    class Recording:
        def compute(self, params, batch):
            seen.append(batch.num_tasks)
            return algorithm.compute(params, batch)

    online_meta_learning(Recording(), start, arrivals, lr=0.1, score=algorithm.evaluate, replay=3,
                         generator=torch.Generator().manual_seed(1), progress=False)
    assert seen == [1, 4, 4, 4, 4, 4]  # nothing stored before the first arrival
    with pytest.raises(ConfigError, match="generator"):
        online_meta_learning(algorithm, start, arrivals, lr=0.1, score=algorithm.evaluate, replay=2)
    with pytest.raises(ConfigError, match="replay must be"):
        online_meta_learning(algorithm, start, arrivals, lr=0.1, score=algorithm.evaluate, replay=-1)


def test_online_demodulation_experiment_end_to_end(tmp_path, monkeypatch):
    from innerloop.cli import main
    from innerloop.engine import online_demodulation as experiment

    monkeypatch.setattr(experiment, "CHECKS", 2)
    assert main(["experiment", "online-demodulation", "--out", str(tmp_path), "--iters", "6", "--tasks", "4",
                 "--algos", "cavia,cavia-replay"]) == 0
    document = json.loads((tmp_path / "online_demodulation.json").read_text())
    assert (tmp_path / "online_demodulation.png").stat().st_size > 10_000
    assert set(document["rows"]) == {"cavia", "cavia-replay"}
    row = document["rows"]["cavia-replay"]
    assert len(row["prequential"]) == 6 and row["replay"] == experiment.REPLAY
    assert [c["devices"] for c in row["held_out"]] == [0, 3, 6] and row["held_out"][0]["n"] == 4
    assert len(document["mmse_ml"]["prequential"]) == 6
    # the same arrivals for every method: the first device is scored by the same untrained start
    assert document["rows"]["cavia"]["prequential"][0] == row["prequential"][0]


def test_mmse_ml_reference_matches_the_demodulation_experiments():
    from innerloop.engine import build
    from innerloop.engine.demodulation import held_out, method_config, model_based, pilots
    from innerloop.engine.online_demodulation import mmse_ml_ser

    family = build.family(method_config("cavia", 1, 0))
    batch = held_out(family, 6, 0)
    expected = model_based(family, batch)["mmse-ml"]["ser"]["4"]
    assert float(mmse_ml_ser(family, pilots(batch, 4)).mean()) == pytest.approx(expected["mean"], rel=1e-12)
