"""Timing and peak-memory measurement of one callable on the CPU or a CUDA device."""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch.profiler import ProfilerActivity, profile


@dataclass(frozen=True)
class Timing:
    """Seconds per call over ``repeats`` timed calls after the warm-up."""

    median: float
    p25: float
    p75: float
    minimum: float
    repeats: int

    def as_dict(self) -> dict:
        return {"median_s": self.median, "p25_s": self.p25, "p75_s": self.p75, "min_s": self.minimum,
                "repeats": self.repeats}


def time_calls(fns: dict[str, Callable[[], object]], device: torch.device, warmup: int,
               repeats: int) -> dict[str, Timing]:
    """Wall time per call of each callable, interleaved so that drift in the machine's speed hits
    every implementation alike: each round runs every callable twice back to back and times the
    second call, which finds the caches as a training loop's next call would (not as the other
    implementation left them). perf_counter on the CPU; CUDA events (after a synchronize) on a GPU."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    for _ in range(repeats):
        for name, fn in fns.items():
            fn()
            samples[name].append(_one_call(fn, device))
    return {name: _summary(s) for name, s in samples.items()}


def _one_call(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


def _summary(samples: list[float]) -> Timing:
    quartiles = statistics.quantiles(samples, n=4) if len(samples) > 1 else [samples[0]] * 3
    return Timing(statistics.median(samples), quartiles[0], quartiles[2], min(samples), len(samples))


def peak_memory(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes allocated during one call, above what was allocated before it.

    CUDA: the caching allocator's peak statistics. CPU: the torch profiler's allocation
    events, replayed in time order (allocations count from the start of the op making them).
    Cached buffers must be cleared beforehand for them to count (see ``clear_caches``)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    with _quiet_native_output(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    running = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        running += event.self_cpu_memory_usage
        peak = max(peak, running)
    return int(peak)


@contextlib.contextmanager
def _quiet_native_output() -> Iterator[None]:
    """Silence what the profiler's native code prints on stdout/stderr (start/stop trace lines)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)
