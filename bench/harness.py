"""Run benchmark cases against named baselines and write JSON + PNG (issue 5).

A case is (primitive, learner widths, activation, B, K, N, dtype). Implementations:

* ``torch.func`` and ``loop`` — the baselines of :mod:`.baselines`, and ``torch.func+graph``: the
  torch.func idiom captured in a CUDA graph (any implementation ``NAME+graph`` is timed that way);
* every backend asked for (``cpu``: fused MLP passes; ``torch``: torch.func compositions on
  the device; ``torch-fused``: the torch backend with ``fused=True``; ``triton``: the Triton
  kernels, on the GPU or — meaningless for timing — in the interpreter; ``triton-cuda-graphs``:
  the triton backend with ``cuda_graphs=True``, whose eager call replays a graph it captured
  itself), through the same
  primitives the algorithms call (``loss_and_grad``, ``hvp``, and MAML's ``compute``).

Every case runs in a fresh process (``isolate``; ``--shared-process`` turns it off), so its numbers
do not depend on the cases before it; all implementations of a case run in that one process, on
the same inputs. The harness warms each up, times ``repeats`` interleaved rounds (per round and
implementation: one untimed call, then one timed call, so machine drift hits all alike and every
timed call runs with warm caches; median and quartiles), measures peak memory in a separate call
with cold caches, and reports tasks/s and the speed-up over every baseline.
"""

from __future__ import annotations

import multiprocessing
import platform
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import innerloop
from innerloop import backends
from innerloop.backends.cuda_graphs import cuda_graphed
from innerloop.bench.baselines import TorchMLP, per_task_loop, torch_func_idiom
from innerloop.bench.measure import peak_memory, time_calls
from innerloop.engine.algorithms import MAML
from innerloop.engine.errors import ConfigError
from innerloop.engine.learner import Learner
from innerloop.engine.models import MLP
from innerloop.engine.rundir import atomic_write_json
from innerloop.engine.tasks import TaskBatch
from innerloop.kernels import clear_caches

PRIMITIVES = ("grad", "hvp", "meta_gradient")
BASELINES = ("torch.func", "torch.func+graph", "loop")
GRAPHED = "+graph"
BACKEND_IMPLEMENTATIONS = {"cpu": ("cpu", {}), "torch": ("torch", {"fused": False}),
                           "torch-fused": ("torch", {"fused": True}), "triton": ("triton", {}),
                           "triton-cuda-graphs": ("triton", {"cuda_graphs": True})}


@dataclass
class BenchConfig:
    """What ``innerloop bench`` runs; every field is a CLI flag of the same name."""

    primitives: tuple[str, ...] = PRIMITIVES
    widths: tuple[int, ...] = (1, 40, 40, 1)
    activation: str = "relu"
    loss: str = "mse"
    batches: tuple[int, ...] = (1, 8, 32, 128, 256)
    shots: int = 10
    steps: int = 5
    inner_lr: float = 0.01
    first_order: bool = False
    dtype: str = "float32"
    device: str = "cpu"
    implementations: tuple[str, ...] = ("torch.func", "loop", "cpu", "torch")
    loop_max_batch: int = 32
    warmup: int = 3
    repeats: int = 15
    threads: int = 1
    memory_steps: tuple[int, ...] = (1, 2, 4, 8, 16)
    memory_batch: int = 256
    seed: int = 0
    isolate: bool = True
    name: str | None = None
    out: str = "bench/results"
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        unknown = set(self.primitives) - set(PRIMITIVES)
        if unknown:
            raise ConfigError(f"unknown primitives {sorted(unknown)}", f"choose from: {', '.join(PRIMITIVES)}")
        known = {"torch.func", "loop"} | set(BACKEND_IMPLEMENTATIONS)
        bad = {name for name in self.implementations if name.removesuffix(GRAPHED) not in known}
        if bad:
            raise ConfigError(f"unknown implementations {sorted(bad)}",
                              f"choose from: {', '.join(sorted(known))}, each optionally with '{GRAPHED}' "
                              "(captured in a CUDA graph)")
        graphed = [name for name in self.implementations if name.endswith(GRAPHED) or "cuda-graphs" in name]
        if graphed and not self.device.startswith("cuda"):
            raise ConfigError(f"{', '.join(graphed)}: CUDA graphs need --device cuda",
                              "drop the '+graph' and 'cuda-graphs' entries")
        if any(b < 1 for b in self.batches) or self.shots < 1 or self.steps < 0 or self.repeats < 1:
            raise ConfigError("batches, shots and repeats must be >= 1 and steps >= 0",
                              "e.g. --batches 1,32,256 --shots 10 --steps 5")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but torch sees no CUDA GPU", "run with --device cpu")
        if "cpu" in self.implementations and not self.device.startswith("cpu"):
            raise ConfigError("the 'cpu' backend runs on the CPU only",
                              "use 'torch-fused' for the fused passes on a GPU")


@dataclass
class Inputs:
    """One case's data: shared θ, per-task params (θ perturbed), a direction, a task batch."""

    theta: dict
    params: dict
    vector: dict
    batch: TaskBatch


def _inputs(model: MLP, config: BenchConfig, tasks: int, dtype: torch.dtype, device: torch.device) -> Inputs:
    g = torch.Generator().manual_seed(config.seed)
    theta = {k: v.to(device) for k, v in model.init(g, dtype=dtype).items()}

    def noise(shape):
        return (0.1 * torch.randn(shape, generator=g, dtype=torch.float64)).to(device=device, dtype=dtype)

    params = {k: v + noise((tasks, *v.shape)) for k, v in theta.items()}
    vector = {k: noise(v.shape) for k, v in params.items()}
    k, d_in, d_out = config.shots, model.in_dim, model.out_dim

    def points():
        x = torch.randn(tasks, k, d_in, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
        if config.loss == "mse":
            return x, torch.randn(tasks, k, d_out, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
        return x, torch.randint(0, d_out, (tasks, k), generator=g).to(device)

    return Inputs(theta, params, vector, TaskBatch(*points(), *points()))


def _callables(name: str, primitive: str, model: MLP, config: BenchConfig, inputs: Inputs,
               dtype: torch.dtype, device: torch.device) -> Callable[[], object]:
    if name.endswith(GRAPHED):
        return cuda_graphed(_callables(name.removesuffix(GRAPHED), primitive, model, config, inputs, dtype, device),
                            device)
    b, lr, n = inputs.batch, config.inner_lr, config.steps
    if name in BASELINES:
        module = TorchMLP(model).to(device=device, dtype=dtype)
        fns = (torch_func_idiom if name == "torch.func" else per_task_loop)(module, config.loss)
        if primitive == "grad":
            return lambda: fns["grad"](inputs.params, b.support_x, b.support_y)
        if primitive == "hvp":
            return lambda: fns["hvp"](inputs.params, b.support_x, b.support_y, inputs.vector)
        return lambda: fns["meta_gradient"](inputs.theta, b.support_x, b.support_y, b.query_x, b.query_y,
                                            lr, n, config.first_order)
    backend_name, options = BACKEND_IMPLEMENTATIONS[name]
    device_option = {"device": device} if backend_name == "torch" else {}
    backend = backends.get(backend_name, dtype=dtype, **device_option, **options)
    learner = Learner(model, config.loss)
    if primitive == "grad":
        return lambda: backend.loss_and_grad(learner, inputs.params, b.support_x, b.support_y)
    if primitive == "hvp":
        return lambda: backend.hvp(learner, inputs.params, b.support_x, b.support_y, inputs.vector)
    algorithm = MAML(model, backend, inner_lr=lr, inner_steps=n, first_order=config.first_order, loss=config.loss)
    return lambda: algorithm.compute(inputs.theta, b)


def machine_info(device: torch.device) -> dict:
    """The machine, device and library versions a result was measured with."""
    info = {
        "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "innerloop": innerloop.__version__, "threads": torch.get_num_threads(),
        "cpu": _cpu_model(), "device": device.type,
    }
    try:
        import triton
        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    info["device_name"] = torch.cuda.get_device_name(device) if device.type == "cuda" else info["cpu"]
    return info


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.is_file() else ""
    names = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")]
    return names[0] if names else platform.processor() or "unknown CPU"


def _memory_sweep(model: MLP, config: BenchConfig, dtype: torch.dtype, device: torch.device) -> dict:
    """Peak memory of the second-order meta-gradient vs N, per implementation, with the fitted
    slope per inner step against one parameter snapshot of every task (B·P numbers)."""
    tasks = config.memory_batch
    inputs = _inputs(model, config, tasks, dtype, device)
    snapshot = tasks * model.num_params() * inputs.batch.support_x.element_size()
    sweep = {"batch": tasks, "steps": list(config.memory_steps), "snapshot_bytes": snapshot, "peak_bytes": {},
             "slope_bytes_per_step": {}, "slope_in_snapshots": {}}
    names = [n for n in config.implementations if n != "loop" and not n.endswith(GRAPHED)]
    for name in names:
        peaks = []
        for steps in config.memory_steps:
            step_config = BenchConfig(**{**asdict(config), "steps": steps, "first_order": False})
            fn = _callables(name, "meta_gradient", model, step_config, inputs, dtype, device)
            clear_caches()
            peaks.append(peak_memory(fn, device))
        slope = float(np.polyfit(config.memory_steps, peaks, 1)[0]) if len(peaks) > 1 else float("nan")
        sweep["peak_bytes"][name] = peaks
        sweep["slope_bytes_per_step"][name] = slope
        sweep["slope_in_snapshots"][name] = slope / snapshot
    return sweep


def _run_case(config: BenchConfig, primitive: str, tasks: int) -> dict:
    """Time every implementation of one (primitive, B) case and measure its peak memory."""
    from innerloop.backends.torch_func import parse_dtype

    torch.set_num_threads(config.threads)
    dtype, device = parse_dtype(config.dtype), torch.device(config.device)
    model = _model(config)
    inputs = _inputs(model, config, tasks, dtype, device)
    row = {"primitive": primitive, "batch": tasks, "results": {}, "skipped": {}}
    fns = {}
    for name in config.implementations:
        if name == "loop" and tasks > config.loop_max_batch:
            row["skipped"][name] = f"B > loop_max_batch={config.loop_max_batch}"
        elif name.endswith(GRAPHED):
            try:
                fns[name] = _callables(name, primitive, model, config, inputs, dtype, device)
            except RuntimeError as error:  # the call synchronizes with the host somewhere: not capturable
                row["skipped"][name] = f"CUDA graph capture failed: {str(error).splitlines()[0]}"
        else:
            fns[name] = _callables(name, primitive, model, config, inputs, dtype, device)
    timings = time_calls(fns, device, config.warmup, config.repeats)
    for name, fn in fns.items():
        clear_caches()
        # a graph's buffers live in its private pool, allocated at capture: a replay allocates nothing
        peak = None if name.endswith(GRAPHED) else peak_memory(fn, device)
        row["results"][name] = {**timings[name].as_dict(), "tasks_per_s": tasks / timings[name].median,
                                "peak_memory_bytes": peak}
    for result in row["results"].values():
        result["speedup"] = {base: row["results"][base]["median_s"] / result["median_s"]
                             for base in BASELINES if base in row["results"]}
    return row


def _in_fresh_process(config: BenchConfig, primitive: str, tasks: int) -> dict:
    """:func:`_run_case` in a new interpreter, so a case's timings do not depend on the cases run
    before it. They did in one process: after the smaller batches had run, glibc's heap served the
    torch.func idiom's per-call temporaries without the page faults a fixed-B training loop pays
    (measured on the CPU: its B = 256 meta-gradient took 33–37 ms after B = 1..128, 39–41 ms
    alone); a fresh process per case is what asv does for the same reason."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_run_case, config, primitive, tasks).result()


def _model(config: BenchConfig) -> MLP:
    return MLP(config.widths[0], config.widths[1:-1], config.widths[-1], activation=config.activation)


def run_bench(config: BenchConfig, progress: bool = True) -> tuple[dict, Path]:
    """Run every case (each in a fresh process unless ``config.isolate`` is False), write
    ``<out>/<name>.json`` and ``.png``; returns (results, json path)."""
    from innerloop.backends.torch_func import parse_dtype
    from innerloop.bench.plot import plot_results

    config.validate()
    torch.set_num_threads(config.threads)
    dtype, device = parse_dtype(config.dtype), torch.device(config.device)
    model = _model(config)
    cases = [(p, b) for p in config.primitives for b in config.batches]
    run_case = _in_fresh_process if config.isolate else _run_case
    rows = []
    bar = tqdm(total=len(cases), disable=not progress, desc="bench", unit="case")
    for primitive, tasks in cases:
        bar.set_postfix_str(f"{primitive} B={tasks}")
        rows.append(run_case(config, primitive, tasks))
        bar.update()
    bar.close()
    results = {
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
        "machine": machine_info(device),
        "learner_params": model.num_params(),
        "cases": rows,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if "meta_gradient" in config.primitives and config.memory_steps:
        results["memory"] = _memory_sweep(model, config, dtype, device)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    name = config.name or f"{device.type}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = out / f"{name}.json"
    atomic_write_json(path, results)
    plot_results(results, out / f"{name}.png")
    return results, path


def summary_table(results: dict) -> str:
    """A plain-text table: median time, tasks/s, peak memory and speed-ups per case (peak memory
    '-' for CUDA graphs, whose buffers are allocated at capture)."""
    columns = (("torch.func", 12), ("torch.func+graph", 18), ("loop", 9))
    lines = [f"{'primitive':<14}{'B':>5}  {'implementation':<18}{'median ms':>11}{'tasks/s':>10}{'peak MiB':>10}"
             + "".join(f"{'vs ' + base:>{width}}" for base, width in columns)]
    for row in results["cases"]:
        for name, r in row["results"].items():
            s = r["speedup"]
            versus = "".join(f"{f'{s[base]:.2f}x' if base in s else '-':>{width}}" for base, width in columns)
            peak = "-" if r["peak_memory_bytes"] is None else f"{r['peak_memory_bytes'] / 2**20:.2f}"
            lines.append(
                f"{row['primitive']:<14}{row['batch']:>5}  {name:<18}{r['median_s'] * 1e3:>11.3f}"
                f"{r['tasks_per_s']:>10.0f}{peak:>10}{versus}"
            )
    memory = results.get("memory")
    if memory:
        lines.append(f"peak memory of the second-order meta-gradient vs N (B={memory['batch']}, one snapshot = "
                     f"{memory['snapshot_bytes'] / 2**20:.3f} MiB):")
        for name, peaks in memory["peak_bytes"].items():
            mib = ", ".join(f"N={n}: {p / 2**20:.2f}" for n, p in zip(memory["steps"], peaks))
            lines.append(f"  {name:<13} {mib} MiB; slope {memory['slope_in_snapshots'][name]:.2f} snapshots/step")
    return "\n".join(lines)
