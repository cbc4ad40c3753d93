"""The kernel benchmarking harness behind ``innerloop bench`` (issue 5).

Every performance claim of the project goes through it: named cases (primitive, learner,
B, K, N, dtype) run against named baselines in the same process, with warm-up, median and
spread over repeats, peak memory, tasks/s and ratios, written as JSON (with the machine and
library versions) and a PNG to ``bench/results/``.
"""

from innerloop.bench.harness import BenchConfig, run_bench

__all__ = ["BenchConfig", "run_bench"]
