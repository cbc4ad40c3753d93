"""The fused CPU meta-gradient against the torch.func idiom inside a meta-training loop (issue 5).

    python -m innerloop.bench.training_loop --name cpu-sinusoid-training-loop   # bench/results/NAME.json

``innerloop bench`` times one primitive on fixed inputs. This times what a user runs: second-order
MAML on sinusoid tasks (1→40→40→1, K = 10 support + 10 query, N = 5, α = 0.01, float32, one
thread), a fresh task batch and an Adam step every iteration, the two implementations alternating
iteration by iteration in one process (so machine drift and the heap's state hit both alike).
Data sampling is outside the timed span; median ms per iteration after a warm-up.

The torch.func idiom allocates its temporaries anew every call (17 MiB at B = 256), and its time
depends on how the C library's heap serves them; the fused path reuses its buffers. This loop
is the setting the speed-up is meant for.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from innerloop import backends
from innerloop.bench.baselines import TorchMLP, torch_func_idiom
from innerloop.bench.harness import machine_info
from innerloop.engine.algorithms import MAML
from innerloop.engine.models import MLP
from innerloop.engine.rundir import atomic_write_json
from innerloop.engine.tasks import Sinusoid


def run(tasks: int = 256, iterations: int = 80, warmup: int = 10, seed: int = 0) -> dict:
    """Median ms per meta-training iteration of each implementation and their ratio."""
    torch.set_num_threads(1)
    model = MLP(1, (40, 40), 1)
    lr, steps = 0.01, 5
    theta = model.init(torch.Generator().manual_seed(seed))
    idiom = torch_func_idiom(TorchMLP(model), "mse")["meta_gradient"]
    fused = MAML(model, backends.get("cpu"), inner_lr=lr, inner_steps=steps, loss="mse")
    meta_gradients = {
        "torch.func": lambda p, b: idiom(p, b.support_x, b.support_y, b.query_x, b.query_y, lr, steps, False)[1],
        "cpu": lambda p, b: fused.compute(p, b).grad,
    }
    params = {name: {k: v.clone() for k, v in theta.items()} for name in meta_gradients}
    optimizers = {name: torch.optim.Adam(list(p.values()), lr=1e-3) for name, p in params.items()}
    family, g = Sinusoid(shots=10, queries=10), torch.Generator().manual_seed(seed + 1)
    times: dict[str, list[float]] = {name: [] for name in meta_gradients}
    for _ in range(warmup + iterations):
        for name, meta_gradient in meta_gradients.items():
            batch = family.sample(tasks, g)
            begin = time.perf_counter()
            grads = meta_gradient(params[name], batch)
            for key, value in params[name].items():
                value.grad = grads[key].detach()
            optimizers[name].step()
            times[name].append(time.perf_counter() - begin)
    medians = {name: statistics.median(t[warmup:]) * 1e3 for name, t in times.items()}
    return {"tasks": tasks, "iterations": iterations, "median_ms_per_iteration": medians,
            "speedup": medians["torch.func"] / medians["cpu"], "machine": machine_info(torch.device("cpu"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256, help="tasks per meta-batch B (default 256)")
    parser.add_argument("--iterations", type=int, default=80, help="timed iterations per implementation")
    parser.add_argument("--name", default="cpu-sinusoid-training-loop", help="results file name")
    parser.add_argument("--out", default="bench/results", help="output directory")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.iterations < 1:
        parser.error("--batch and --iterations must be >= 1 (e.g. --batch 256 --iterations 80)")
    result = run(args.batch, args.iterations)
    path = Path(args.out) / f"{args.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, result)
    ms = result["median_ms_per_iteration"]
    print(f"B={result['tasks']}: torch.func {ms['torch.func']:.2f} ms/iter, cpu {ms['cpu']:.2f} ms/iter, "
          f"speed-up {result['speedup']:.2f}x; wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
