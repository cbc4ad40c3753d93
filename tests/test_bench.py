"""The benchmarking harness: its baselines compute the same numbers as the engine, and
``innerloop bench`` writes the JSON and PNG it promises."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

import innerloop as il
from conftest import gen, rel_err
from innerloop.bench.baselines import TorchMLP, per_task_loop, torch_func_idiom
from innerloop.bench.harness import BenchConfig
from innerloop.bench.measure import peak_memory
from innerloop.cli import main
from innerloop.engine.learner import Learner
from innerloop.engine.models import MLP
from innerloop.engine.tasks import TaskBatch


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("make", [torch_func_idiom, per_task_loop], ids=["torch.func", "loop"])
def test_baselines_compute_what_the_oracle_computes(make, loss):
    out = 1 if loss == "mse" else 3
    model = MLP(2, (6, 5), out, activation="tanh")
    g = gen(4)
    theta = model.init(g, dtype=torch.float64)
    params = {k: v + 0.1 * torch.randn(3, *v.shape, generator=g, dtype=torch.float64) for k, v in theta.items()}
    vector = {k: torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in params.items()}

    def points():
        x = torch.randn(3, 4, 2, generator=g, dtype=torch.float64)
        if loss == "mse":
            return x, torch.randn(3, 4, 1, generator=g, dtype=torch.float64)
        return x, torch.randint(0, 3, (3, 4), generator=g)

    batch = TaskBatch(*points(), *points())
    fns = make(TorchMLP(model).double(), loss)
    oracle, learner = il.backends.get("cpu", dtype=torch.float64, fused=False), Learner(model, loss)

    def as_dict(result, b):
        return dict(zip(params, result[b])) if isinstance(result, list) else {k: v[b] for k, v in result.items()}

    grads = fns["grad"](params, batch.support_x, batch.support_y)
    hvps = fns["hvp"](params, batch.support_x, batch.support_y, vector)
    _, grads_o = oracle.loss_and_grad(learner, params, batch.support_x, batch.support_y)
    hvps_o = oracle.hvp(learner, params, batch.support_x, batch.support_y, vector)
    for b in range(3):
        assert rel_err(as_dict(grads, b), {k: v[b] for k, v in grads_o.items()}) < 1e-12
        assert rel_err(as_dict(hvps, b), {k: v[b] for k, v in hvps_o.items()}) < 1e-12
    for first_order in (False, True):
        losses, meta = fns["meta_gradient"](theta, batch.support_x, batch.support_y, batch.query_x,
                                            batch.query_y, 0.2, 3, first_order)
        reference = il.algorithms.MAML(model, oracle, inner_lr=0.2, inner_steps=3, first_order=first_order,
                                       loss=loss).compute(theta, batch)
        assert rel_err(meta, reference.grad) < 1e-12
        assert torch.allclose(losses, reference.task_losses, rtol=1e-12, atol=0)


def test_peak_memory_sees_a_temporary_allocation():
    def make_and_drop():
        a = torch.empty(1000, 1000)  # 4 MB
        del a
        return torch.empty(250, 1000)  # 1 MB

    assert peak_memory(make_and_drop, torch.device("cpu")) == 4_000_000


def test_bench_command_writes_json_and_png(tmp_path, capsys):
    code = main(["bench", "--batches", "2,4", "--repeats", "2", "--warmup", "1", "--steps", "2", "--widths", "1,8,1",
                 "--memory-steps", "1,3", "--memory-batch", "4", "--out", str(tmp_path), "--name", "t", "--quiet"])
    assert code == 0
    results = json.loads((tmp_path / "t.json").read_text())
    assert (tmp_path / "t.png").stat().st_size > 10_000
    assert {row["primitive"] for row in results["cases"]} == {"grad", "hvp", "meta_gradient"}
    row = results["cases"][-1]
    assert set(row["results"]) == {"torch.func", "loop", "cpu", "torch"}
    cpu = row["results"]["cpu"]
    assert cpu["speedup"]["torch.func"] == pytest.approx(row["results"]["torch.func"]["median_s"] / cpu["median_s"])
    assert cpu["tasks_per_s"] == pytest.approx(row["batch"] / cpu["median_s"])
    assert results["machine"]["torch"] == torch.__version__ and results["machine"]["device_name"]
    assert results["memory"]["slope_in_snapshots"]["cpu"] == pytest.approx(1.0, abs=0.05)
    assert "vs torch.func" in capsys.readouterr().out


def test_each_case_runs_in_a_fresh_process_unless_shared(tmp_path, monkeypatch):
    """A fresh interpreter imports the harness anew, so timing patched away in this process still
    works there; with --shared-process the case runs here and meets the patch."""
    import innerloop.bench.harness as harness

    def not_here(*args):
        raise RuntimeError("ran in the parent process")

    monkeypatch.setattr(harness, "time_calls", not_here)
    config = dict(primitives=("grad",), batches=(2,), widths=(1, 4, 1), implementations=("torch.func", "cpu"),
                  repeats=1, warmup=1, memory_steps=(), out=str(tmp_path), name="iso")
    results, _ = harness.run_bench(BenchConfig(**config), progress=False)
    assert set(results["cases"][0]["results"]) == {"torch.func", "cpu"}
    with pytest.raises(RuntimeError, match="parent process"):
        harness.run_bench(BenchConfig(**config, isolate=False), progress=False)


def test_bench_rejects_bad_settings(capsys):
    assert main(["bench", "--primitives", "grad,telepathy"]) == 2
    assert "unknown primitives" in capsys.readouterr().err
    assert main(["bench", "--batches", "1,x"]) == 2
    assert "--batches got '1,x'" in capsys.readouterr().err


def test_graphed_implementations_need_a_cuda_device():
    with pytest.raises(il.ConfigError, match=r"torch.func\+graph: CUDA graphs need --device cuda"):
        BenchConfig(implementations=("torch.func+graph",)).validate()
    with pytest.raises(il.ConfigError, match=r"triton-cuda-graphs: CUDA graphs need --device cuda"):
        BenchConfig(implementations=("triton-cuda-graphs",)).validate()
    with pytest.raises(il.ConfigError, match="unknown implementations"):
        BenchConfig(implementations=("jax+graph",)).validate()


def test_latency_bound_arithmetic():
    from innerloop.bench.triton_tuning import add_latency_fractions, latency_estimate

    # 1024 tasks, one per program, one program per SM on 132 SMs: ⌈1024/132⌉ = 8 chains in a row
    assert latency_estimate(1e-4, 1024, 1, 1, 132) == pytest.approx(8e-4)
    # four per program: 256 programs, 2 waves of 4 chains; a lone task is one chain whatever T
    assert latency_estimate(1e-4, 1024, 4, 1, 132) == pytest.approx(8e-4)
    assert latency_estimate(1e-4, 1, 4, 1, 132) == pytest.approx(1e-4)
    rows = [{"precision": p, "batch": b, "tasks_per_program": 1, "resident_programs": 1, "graph_s": s}
            for p, b, s in (("tf32", 1, 5e-5), ("tf32", 1024, 5e-4), ("ieee", 1, 7e-4))]
    assert add_latency_fractions(rows, 132) == {"tf32": 5e-5, "ieee": 7e-4}
    assert rows[1]["fraction_of_latency_bound"] == pytest.approx(8 * 5e-5 / 5e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graphed_call_replays_on_new_values():
    from innerloop.backends.cuda_graphs import cuda_graphed

    x = torch.randn(64, device="cuda")
    replay = cuda_graphed(lambda: (x * 2).sum(), torch.device("cuda"))
    x.copy_(torch.arange(64.0, device="cuda"))
    assert float(replay()) == pytest.approx(2 * sum(range(64)))


def test_training_loop_bench_writes_both_rates(tmp_path, capsys):
    from innerloop.bench import training_loop

    assert training_loop.main(["--batch", "4", "--iterations", "3", "--out", str(tmp_path), "--name", "loop"]) == 0
    result = json.loads((tmp_path / "loop.json").read_text())
    ms = result["median_ms_per_iteration"]
    assert set(ms) == {"torch.func", "cpu"} and min(ms.values()) > 0
    assert result["speedup"] == pytest.approx(ms["torch.func"] / ms["cpu"])
    assert "speed-up" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        training_loop.main(["--batch", "0"])
    assert "--batch and --iterations must be >= 1" in capsys.readouterr().err


def test_gpu_report_reads_the_recorded_h100_run():
    """The summary of bench/results' H100 run states the README's numbers and verdicts."""
    from innerloop.bench.gpu_report import main

    results = Path(__file__).resolve().parents[1] / "bench" / "results"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main([str(results / "h100-sinusoid.json"), str(results / "h100-triton-tuning-launch.json")])
    text = out.getvalue()
    assert "| 1 | 25.094 ms | 0.881 ms | 0.280 ms (90×, 3.1× graphed) | 0.087 ms (290×, 10.2× graphed) |" in text
    assert "`triton` at B = 1024: 2.5× the CUDA-graphed idiom (target ≥ 10×: not met)" in text
    assert "`triton+graph` at B ≤ 64: 290× at B = 1, 257× at B = 64 the eager idiom (target ≥ 100×: **met**)" in text
    assert "`triton` at B = 1024: 34× the eager idiom (target ≥ 30×: **met**), 702 µs (target ≤ 150 µs: not" in text
    assert "B = 1024, tf32x3: fastest 823 µs replayed" in text and "1.06 of the latency bound" in text
    assert "(backend options: `precision=tf32x3, programs=1024, num_warps=8`)" in text  # the winner, selectable
