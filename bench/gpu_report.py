"""Markdown summary of a GPU run of ``bench/run_on_gpu.sh`` against issue 6's targets.

    python -m innerloop.bench.gpu_report BENCH_JSON [TUNING_JSON]

``BENCH_JSON`` is an ``innerloop bench`` result with meta-gradient cases; ``TUNING_JSON`` the
output of ``python -m innerloop.bench.triton_tuning``. The report gives the speed table (medians,
and every Triton implementation's speed-up over the eager and the CUDA-graphed torch.func idiom),
each target of the issue as met or not with the number that decides it, and from the tuning run
the fastest launch configuration per B with its fraction of the latency bound, so that the
README's tables can be refreshed from one command's output.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

EAGER, GRAPHED = "torch.func", "torch.func+graph"
TRITON = ("triton", "triton-cuda-graphs", "triton+graph")
LARGE_BATCH, SMALL_BATCH_MAX = 1024, 64
# issue 6: ≥ 30× the eager idiom and ≤ 150 µs at B = 1024, ≥ 10× the CUDA-graphed idiom, ≥ 100× at B ≤ 64
TARGET_EAGER_LARGE, TARGET_SECONDS_LARGE, TARGET_GRAPHED, TARGET_EAGER_SMALL = 30.0, 150e-6, 10.0, 100.0


def _medians(bench: dict) -> dict[int, dict[str, float]]:
    """{B: {implementation: median seconds}} of the meta-gradient cases."""
    return {case["batch"]: {name: result["median_s"] for name, result in case["results"].items()}
            for case in bench["cases"] if case["primitive"] == "meta_gradient"}


def speed_table(bench: dict) -> str:
    """B, every implementation's median, and each Triton implementation's ratios to the baselines."""
    medians = _medians(bench)
    if not medians:
        raise ValueError("the bench result has no meta_gradient cases (run innerloop bench --primitives meta_gradient)")
    names = [name for name in bench["config"]["implementations"] if any(name in row for row in medians.values())]
    lines = ["| B | " + " | ".join(names) + " |", "| --- " * (len(names) + 1) + "|"]
    for batch, row in sorted(medians.items()):
        cells = []
        for name in names:
            seconds = row.get(name)
            if seconds is None:
                cells.append("—")
                continue
            cell = f"{seconds * 1e3:.3f} ms"
            if name in TRITON and EAGER in row and GRAPHED in row:
                cell += f" ({row[EAGER] / seconds:.0f}×, {row[GRAPHED] / seconds:.1f}× graphed)"
            cells.append(cell)
        lines.append(f"| {batch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(bench: dict) -> list[str]:
    """One line per target of issue 6 and Triton implementation: met or not, and by what number."""
    medians, lines = _medians(bench), []
    large = medians.get(LARGE_BATCH, {})
    small = {batch: row for batch, row in medians.items() if batch <= SMALL_BATCH_MAX}
    for name in TRITON:
        if name in large and EAGER in large:
            seconds = large[name]
            ratio = large[EAGER] / seconds
            lines.append(f"- `{name}` at B = {LARGE_BATCH}: {ratio:.0f}× the eager idiom (target ≥ "
                         f"{TARGET_EAGER_LARGE:.0f}×: {_verdict(ratio >= TARGET_EAGER_LARGE)}), {seconds * 1e6:.0f} µs "
                         f"(target ≤ {TARGET_SECONDS_LARGE * 1e6:.0f} µs: {_verdict(seconds <= TARGET_SECONDS_LARGE)})")
        if name in large and GRAPHED in large:
            ratio = large[GRAPHED] / large[name]
            lines.append(f"- `{name}` at B = {LARGE_BATCH}: {ratio:.1f}× the CUDA-graphed idiom "
                         f"(target ≥ {TARGET_GRAPHED:.0f}×: {_verdict(ratio >= TARGET_GRAPHED)})")
        ratios = {batch: row[EAGER] / row[name] for batch, row in small.items() if name in row and EAGER in row}
        if ratios:
            worst = min(ratios.values())
            shown = ", ".join(f"{ratios[b]:.0f}× at B = {b}" for b in sorted(ratios))
            lines.append(f"- `{name}` at B ≤ {SMALL_BATCH_MAX}: {shown} the eager idiom (target ≥ "
                         f"{TARGET_EAGER_SMALL:.0f}×: {_verdict(worst >= TARGET_EAGER_SMALL)})")
    return lines


def _verdict(met: bool) -> str:
    return "**met**" if met else "not met"


def tuning_summary(tuning: dict) -> list[str]:
    """t₁ and precision errors, then per B the fastest graph replay's launch and its latency fraction."""
    singles = ", ".join(f"{p} {t * 1e6:.1f} µs" for p, t in tuning["single_task_s"].items())
    lines = [f"- one task alone (graph replay): {singles}"]
    for activation, errors in tuning["precision_errors"].items():
        shown = ", ".join(f"{p} {e:.1e}" for p, e in errors.items())
        lines.append(f"- {activation} meta-gradient vs float64: {shown}")
    for batch in sorted({row["batch"] for row in tuning["rows"]}):
        for precision in sorted({row["precision"] for row in tuning["rows"]}):
            rows = [r for r in tuning["rows"] if r["batch"] == batch and r["precision"] == precision]
            if not rows:
                continue
            best = min(rows, key=lambda r: r["graph_s"])
            cap = best.get("max_registers") or "none"
            programs = best.get("programs", math.ceil(batch / best["tasks_per_program"]))  # older runs: T only
            options = f"precision={precision}, programs={programs}, num_warps={best['num_warps']}"
            options += f", max_registers={best['max_registers']}" if best.get("max_registers") else ""
            lines.append(f"- B = {batch}, {precision}: fastest {best['graph_s'] * 1e6:.0f} µs replayed "
                         f"({best['eager_s'] * 1e6:.0f} µs eager) with {programs} programs, "
                         f"{best['num_warps']} warps, register cap {cap}, {best['resident_programs']} resident/SM; "
                         f"{best['fraction_of_latency_bound']:.2f} of the latency bound "
                         f"(backend options: `{options}`)")
    return lines


def report(bench: dict, tuning: dict | None = None) -> str:
    machine = bench["machine"]
    head = (f"Measured on {machine.get('device_name', machine.get('device'))} (torch {machine['torch']}, "
            f"Triton {machine.get('triton', '?')}), {bench.get('created', '')}")
    parts = [head, "", speed_table(bench), "", "Targets (issue 6):", *targets(bench)]
    if tuning is not None:
        parts += ["", "Launch tuning:", *tuning_summary(tuning)]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m innerloop.bench.gpu_report", description=__doc__.split("\n\n")[0])
    parser.add_argument("bench", type=Path, help="innerloop bench JSON with meta_gradient cases")
    parser.add_argument("tuning", type=Path, nargs="?", help="triton_tuning JSON (optional)")
    args = parser.parse_args(argv)
    for path in (args.bench, args.tuning):
        if path is not None and not path.is_file():
            parser.error(f"no such file: {path}")
    tuning = json.loads(args.tuning.read_text()) if args.tuning else None
    print(report(json.loads(args.bench.read_text()), tuning))


if __name__ == "__main__":
    main()
