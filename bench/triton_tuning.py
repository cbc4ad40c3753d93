"""The Triton MAML meta-gradient kernel on a GPU (issue 6): precision against float64, launch
tuning, and the achieved fraction of the latency-bound estimate.

    python -m innerloop.bench.triton_tuning --name h100-triton-tuning   # writes bench/results/NAME.json

* **Precision.** The second-order meta-gradient (seed 000 eq. 2.5) of the sinusoid learner
  1→40→40→1 at N = 5 for each ``precision`` ("tf32x3", "tf32", "ieee"), ReLU and tanh, against
  MAML on the float64 ``cpu`` backend: ‖g − g₆₄‖ / ‖g₆₄‖ on fresh random inputs.
* **Launch tuning.** Grid size (persistent programs per SM) × warps per program × register cap
  per thread (ptxas's ``maxnreg``: 128 at 8 warps lets an SM hold two programs, at the price of
  spills), timed at several B as eager calls (what a training loop pays: the kernel plus the
  host's allocations, the partial-sum reduction and their launches) and as CUDA-graph replays
  (the device's work alone), with the registers, spill stack, programs per SM and spill traffic
  per task of each build read back from the compiled cubin.
* **Latency-bound estimate.** A task's meta-gradient is a chain of dependent small matmuls, so
  the floor at batch B is the time of one task alone (B = 1, one task per program, graph replay:
  t₁, per precision) times the number of tasks each SM must run one after another:
  t_est(B) = t₁ · min(T, B) · ⌈⌈B/T⌉ / (SMs · resident programs per SM)⌉, for T tasks per program
  and residency bounded by registers, shared memory and warps (``ResourceUsage.programs_per_sm``).
  The report gives t_est / t_measured per configuration: 1.0 means the kernel runs as fast as the
  chain allows (t₁ is the fastest one-task replay of the precision, whatever its build).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from innerloop import backends
from innerloop.backends.cuda_graphs import cuda_graphed
from innerloop.bench.harness import machine_info
from innerloop.bench.measure import time_calls
from innerloop.engine.algorithms import MAML
from innerloop.engine.learner import Learner
from innerloop.engine.models import MLP
from innerloop.engine.params import cast
from innerloop.engine.rundir import atomic_write_json
from innerloop.engine.tasks import TaskBatch
from innerloop.kernels.mlp_layout import MLPSpec

WIDTHS, SHOTS, STEPS, INNER_LR = (1, 40, 40, 1), 10, 5, 0.01


def _batch(tasks: int, seed: int) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    return TaskBatch(*(torch.randn(tasks, SHOTS, 1, generator=g, dtype=torch.float64) for _ in range(4)))


def _float32(batch: TaskBatch, device: torch.device) -> list[torch.Tensor]:
    """support_x, support_y, query_x, query_y as float32 on ``device``."""
    moved = batch.to(torch.float32, device)
    return [moved.support_x, moved.support_y, moved.query_x, moved.query_y]


def _model(activation: str) -> MLP:
    return MLP(WIDTHS[0], WIDTHS[1:-1], WIDTHS[-1], activation=activation)


def precision_errors(device: torch.device, tasks: int = 64, seed: int = 0) -> dict:
    """{activation: {precision: relative error of the N=5 second-order meta-gradient vs float64}}."""
    from innerloop.kernels import triton_launch

    oracle = backends.get("cpu", dtype=torch.float64, fused=False)
    errors = {}
    for activation in ("relu", "tanh"):
        model, batch = _model(activation), _batch(tasks, seed)
        theta = model.init(torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
        reference = MAML(model, oracle, inner_lr=INNER_LR, inner_steps=STEPS).compute(theta, batch).grad
        spec = MLPSpec.of(Learner(model, "mse"))
        theta32 = cast(theta, torch.float32, device)
        data = _float32(batch, device)
        errors[activation] = {}
        for precision in triton_launch.PRECISIONS:
            _, grad = triton_launch.meta_gradient(spec, theta32, *data, INNER_LR, STEPS, False, precision)
            got = {k: v.double().cpu() for k, v in triton_launch.unpack(spec, grad).items()}
            num = sum(float(((got[k] - reference[k]) ** 2).sum()) for k in reference)
            den = sum(float((reference[k] ** 2).sum()) for k in reference)
            errors[activation][precision] = math.sqrt(num / den)
    return errors


def latency_estimate(single_task_s: float, tasks: int, tasks_per_program: int, resident: int, sms: int) -> float:
    """t₁ · min(T, B) · ⌈⌈B/T⌉ / (SMs · resident)⌉: the dependent-chain floor at batch B (module
    docstring); a program runs its tasks one after another, and never more than B of them."""
    programs = math.ceil(tasks / tasks_per_program)
    return single_task_s * min(tasks_per_program, tasks) * math.ceil(programs / (sms * max(resident, 1)))


def _median_seconds(fn: Callable[[], object], device: torch.device, repeats: int = 50) -> float:
    """Median of ``repeats`` CUDA-event-timed calls after a warm-up (the harness's timer)."""
    return time_calls({"fn": fn}, device, warmup=5, repeats=repeats)["fn"].median


def sweep(device: torch.device, batches: tuple[int, ...], programs_per_sm: tuple[int, ...],
          warps: tuple[int, ...], precisions: tuple[str, ...], max_registers: tuple[int, ...] = (0,),
          seed: int = 0) -> list[dict]:
    """Eager and graph-replay medians of the meta-gradient launch for every configuration and B; the
    grid is min(B, programs_per_sm · SMs) persistent programs (0: one program per task), each
    compiled with a register cap per thread from ``max_registers`` (0: none)."""
    from innerloop.kernels import triton_launch
    from innerloop.kernels.triton_resources import resource_usage

    model = _model("relu")
    spec = MLPSpec.of(Learner(model, "mse"))
    theta = cast(model.init(torch.Generator().manual_seed(seed)), torch.float32, device)
    data = {b: _float32(_batch(b, seed), device) for b in batches}
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    rows = []
    for precision, num_warps, cap in itertools.product(precisions, warps, max_registers):
        print(f"  {precision}, {num_warps} warps, register cap {cap or 'none'} ...", flush=True)
        usage = resource_usage(spec, "maml_meta_gradient_kernel", SHOTS, STEPS, precision,
                               capability=_capability(device), num_warps=num_warps, max_registers=cap or None)
        for per_sm, tasks in itertools.product(programs_per_sm, batches):
            programs = min(tasks, per_sm * sms) if per_sm else tasks

            def launch(tasks=tasks, programs=programs, num_warps=num_warps, precision=precision, cap=cap):
                return triton_launch.meta_gradient(spec, theta, *data[tasks], INNER_LR, STEPS, False, precision,
                                                   programs=programs, num_warps=num_warps, max_registers=cap or None)
            rows.append({"precision": precision, "programs_per_sm": per_sm, "programs": programs,
                         "tasks_per_program": math.ceil(tasks / programs), "num_warps": num_warps,
                         "max_registers": cap or None, "batch": tasks, "eager_s": _median_seconds(launch, device),
                         "graph_s": _median_seconds(cuda_graphed(launch, device), device), "registers": usage.registers,
                         "stack_bytes": usage.stack_bytes, "resident_programs": usage.programs_per_sm,
                         "spill_traffic_per_task": usage.per_task["spill_traffic"]})
    return rows


def _capability(device: torch.device) -> int:
    major, minor = torch.cuda.get_device_capability(device)
    return 10 * major + minor


def add_latency_fractions(rows: list[dict], sms: int) -> dict[str, float]:
    """Adds ``latency_estimate_s`` and ``fraction_of_latency_bound`` to each row, against t₁ of the
    row's precision (its fastest B=1 graph replay); returns t₁ per precision."""
    singles: dict[str, float] = {}
    for row in rows:
        if row["batch"] == 1:
            singles[row["precision"]] = min(row["graph_s"], singles.get(row["precision"], float("inf")))
    missing = {row["precision"] for row in rows} - set(singles)
    if missing:
        raise ValueError(f"the latency estimate needs B=1 for {sorted(missing)}")
    for row in rows:
        estimate = latency_estimate(singles[row["precision"]], row["batch"], row["tasks_per_program"],
                                    row["resident_programs"], sms)
        row["latency_estimate_s"] = estimate
        row["fraction_of_latency_bound"] = estimate / row["graph_s"]
    return singles


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=_ints, default=(1, 64, 1024))
    parser.add_argument("--programs-per-sm", type=_ints, default=(1, 4, 0),
                        help="grid caps to sweep, in programs per SM (0: one program per task)")
    parser.add_argument("--warps", type=_ints, default=(4, 8))
    parser.add_argument("--max-registers", type=_ints, default=(0, 128),
                        help="register caps per thread to sweep (0: none; 128 at 8 warps: two programs per SM)")
    parser.add_argument("--precisions", default="tf32x3,tf32,ieee")
    parser.add_argument("--name", default=None)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("this benchmark needs a CUDA GPU (the interpreter's timings mean nothing)")
    device = torch.device("cuda")
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    print("precision against float64 ...", flush=True)
    errors = precision_errors(device)
    rows = sweep(device, args.batches, args.programs_per_sm, args.warps, tuple(args.precisions.split(",")),
                 args.max_registers)
    singles = add_latency_fractions(rows, sms)
    results = {"machine": {**machine_info(device), "multiprocessors": sms},
               "learner": {"widths": list(WIDTHS), "shots": SHOTS, "queries": SHOTS, "steps": STEPS,
                           "second_order": True},
               "precision_errors": errors, "single_task_s": singles, "rows": rows,
               "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.name or 'cuda-triton-tuning-' + time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write_json(path, results)
    print(f"precision (relative error of the N={STEPS} meta-gradient vs float64): {json.dumps(errors)}")
    t1 = ", ".join(f"{p} {t * 1e6:.1f} us" for p, t in singles.items())
    print(f"t1 (one task, one program, graph replay): {t1} on {results['machine']['device_name']}")
    print(f"{'precision':<8}{'grid':>6}{'T':>4}{'warps':>6}{'B':>6}{'eager us':>10}{'graph us':>10}{'regs':>6}"
          f"{'stack':>7}{'resident':>9}{'of bound':>10}")
    for r in rows:
        print(f"{r['precision']:<8}{r['programs']:>6}{r['tasks_per_program']:>4}{r['num_warps']:>6}{r['batch']:>6}"
              f"{r['eager_s'] * 1e6:>10.1f}{r['graph_s'] * 1e6:>10.1f}{r['registers']:>6}{r['stack_bytes']:>7}"
              f"{r['resident_programs']:>9}{r['fraction_of_latency_bound']:>10.2f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
