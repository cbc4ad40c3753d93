"""Online (continual) meta-learning: the test-then-train order, replay, and the online demodulation
experiment."""

import json

import pytest
import torch

from innerloop import backends
from innerloop.engine.algorithms import ALGORITHMS
from innerloop.engine.errors import ConfigError
from innerloop.engine.models import MLP
from innerloop.engine.online import FIELDS, online_meta_learning
from innerloop.engine.tasks import LinearRegression, TaskBatch

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


def test_active_selection_learns_only_the_chosen_candidates():
    algorithm, start, arrivals = _setup()
    offers = [TaskBatch(*(torch.cat([getattr(a, f), getattr(b, f)]) for f in FIELDS))
              for a, b in zip(arrivals[::2], arrivals[1::2])]  # two candidates per step
    chosen = []

    def select(params, candidates):
        chosen.append(len(chosen) % 2)
        return chosen[-1]

    run = online_meta_learning(algorithm, start, offers, lr=0.1, score=algorithm.evaluate, progress=False,
                               select=select)
    picked = [arrivals[2 * t + i] for t, i in enumerate(chosen)]
    plain = online_meta_learning(algorithm, start, picked, lr=0.1, score=algorithm.evaluate, progress=False)
    assert run.prequential == plain.prequential and len(run.prequential) == 3
    assert torch.equal(run.params["layer0.weight"], plain.params["layer0.weight"])
    with pytest.raises(ConfigError, match="chose candidate 2 of 2"):
        online_meta_learning(algorithm, start, offers, lr=0.1, score=algorithm.evaluate, progress=False,
                             select=lambda params, candidates: 2)


def test_most_uncertain_picks_the_largest_predictive_entropy():
    from innerloop.engine import build
    from innerloop.engine.calibration import class_probabilities
    from innerloop.engine.demodulation import method_config
    from innerloop.engine.online_demodulation import arrivals, most_uncertain

    config = method_config("cavia", 1, 0)
    family = build.family(config)
    model, backend = build.model(config, family), build.backend(config)
    algorithm = build.algorithm(config, model, backend)
    params = algorithm.init_params(torch.Generator().manual_seed(0), backend.dtype, backend.device)
    candidates = next(arrivals(family, 0, candidates=6))
    probs = class_probabilities(algorithm.model, algorithm.adapt(params, candidates), candidates.query_x).detach()
    entropy = torch.distributions.Categorical(probs=probs).entropy().mean(-1)
    assert most_uncertain(algorithm)(params, candidates) == int(entropy.argmax())
    config = method_config("bmaml", 1, 0)  # BALD on BMAML's particles, by torch.distributions
    model, backend = build.model(config, family), build.backend(config)
    algorithm = build.algorithm(config, model, backend)
    params = algorithm.init_params(torch.Generator().manual_seed(1), backend.dtype, backend.device)
    adapted = algorithm.adapt(params, candidates)
    logits = torch.stack([algorithm.model.predictions({k: v[b] for k, v in adapted.items()}, candidates.query_x[b])
                          for b in range(6)]).detach()  # [B, M, K, classes]
    per_particle = torch.distributions.Categorical(logits=logits)
    mixture = torch.distributions.Categorical(probs=per_particle.probs.mean(1))
    bald = (mixture.entropy() - per_particle.entropy().mean(1)).mean(-1)
    assert most_uncertain(algorithm, "bald")(params, candidates) == int(bald.argmax())
    with pytest.raises(ConfigError, match="unknown uncertainty measure"):
        most_uncertain(algorithm, "variance")


def test_online_demodulation_experiment_end_to_end(tmp_path, monkeypatch):
    from innerloop.cli import main
    from innerloop.engine import online_demodulation as experiment

    monkeypatch.setattr(experiment, "CHECKS", 2)
    assert main(["experiment", "online-demodulation", "--out", str(tmp_path), "--iters", "6", "--tasks", "4",
                 "--algos", "cavia,cavia-replay,cavia-active"]) == 0
    document = json.loads((tmp_path / "online_demodulation.json").read_text())
    assert (tmp_path / "online_demodulation.png").stat().st_size > 10_000
    assert set(document["rows"]) == {"cavia", "cavia-replay", "cavia-active"}
    active = document["rows"]["cavia-active"]
    assert active["candidates"] == experiment.CANDIDATES and active["minus_mmse_ml_last_quarter"] is None
    assert len(active["prequential"]) == 6 and [c["devices"] for c in active["held_out"]] == [0, 3, 6]
    row = document["rows"]["cavia-replay"]
    assert len(row["prequential"]) == 6 and row["replay"] == experiment.REPLAY
    assert [c["devices"] for c in row["held_out"]] == [0, 3, 6] and row["held_out"][0]["n"] == 4
    assert len(document["mmse_ml"]["prequential"]) == 6
    # the same arrivals for every method: the first device is scored by the same untrained start
    assert document["rows"]["cavia"]["prequential"][0] == row["prequential"][0]


def test_mmse_ml_reference_matches_the_demodulation_experiments():
    from innerloop.engine import build
    from innerloop.engine.demodulation import held_out, method_config, model_based
    from innerloop.engine.online_demodulation import mmse_ml_ser

    family = build.family(method_config("cavia", 1, 0))
    batch = held_out(family, 6, 0)
    expected = model_based(family, batch)["mmse-ml"]["ser"]["4"]
    assert float(mmse_ml_ser(family, batch.first_support(4)).mean()) == pytest.approx(expected["mean"], rel=1e-12)
