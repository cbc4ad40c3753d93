"""Compile the Triton MLP kernels for an NVIDIA target without a GPU and read what the compiled code
costs (issue 6): ``triton.compile`` on an ``ASTSource`` for ``GPUTarget("cuda", 90, 32)``, then the
``cuobjdump`` shipped in the Triton wheel for registers, spills and the SASS.

Besides registers and spill stack, the report gives how many programs an SM holds at once (the
register file, shared memory and warp limits of sm_90) and static per-task instruction counts —
CTA barriers, tensor-core instructions, shared-memory and spill traffic — which is what a
latency-bound kernel pays per task. They let a kernel change be judged on a machine without a GPU;
they are counts, not timings.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from innerloop.kernels.mlp_layout import MLPSpec
from innerloop.kernels.triton_launch import NUM_WARPS, kernel_constants, launch_options
from innerloop.kernels.triton_mlp import maml_meta_gradient_kernel, mlp_primitives_kernel, padded

POINTERS = {
    "mlp_primitives_kernel": ("params_ptr", "x_ptr", "y_ptr", "vector_ptr", "loss_ptr", "grad_ptr", "hvp_ptr"),
    "maml_meta_gradient_kernel": ("w1_ptr", "b1_ptr", "w2_ptr", "b2_ptr", "w3_ptr", "b3_ptr", "sx_ptr", "sy_ptr",
                                  "qx_ptr", "qy_ptr", "scratch_ptr", "partial_ptr", "loss_ptr"),
}


# Per-SM limits of compute capability 9.0 (CUDA C++ Programming Guide, "Compute Capabilities"):
# 64 K registers allocated per warp in units of 256, 228 KB of shared memory of which 1 KB is
# reserved per program, 64 resident warps, 32 resident programs.
SM90_REGISTERS, SM90_SHARED, SM90_RESERVED_SHARED, SM90_WARPS, SM90_PROGRAMS = 65536, 233472, 1024, 64, 32
# Opcode classes of the per-task counts (SASS mnemonics before the first dot).
OPCODE_CLASSES = {
    "barriers": ("BAR",),  # CTA-wide barriers: every warp of the program waits for the slowest
    "tensor_core": ("HMMA", "HGMMA"),
    "shared_memory": ("LDS", "STS", "LDSM"),  # layout conversions, reductions, dot operands
    "spill_traffic": ("LDL", "STL"),
    "shuffles": ("SHFL",),
}


@dataclass(frozen=True)
class ResourceUsage:
    """One compiled kernel: registers and spill stack per thread, shared memory per program (static and
    dynamic), its warps, and :func:`per_task_counts`."""

    kernel: str
    registers: int
    stack_bytes: int
    shared_bytes: int
    num_warps: int
    per_task: dict[str, int] = field(default_factory=dict)

    @property
    def programs_per_sm(self) -> int:
        """Programs an sm_90 SM holds at once, by registers, shared memory and warps."""
        registers_per_warp = -(-max(self.registers, 1) * 32 // 256) * 256
        by_registers = SM90_REGISTERS // (registers_per_warp * self.num_warps)
        by_shared = SM90_SHARED // (self.shared_bytes + SM90_RESERVED_SHARED)
        return min(by_registers, by_shared, SM90_WARPS // self.num_warps, SM90_PROGRAMS)

    def as_dict(self) -> dict:
        return {**self.__dict__, "programs_per_sm": self.programs_per_sm}

    def __str__(self) -> str:
        counts = ", ".join(f"{name} {count}" for name, count in self.per_task.items())
        return (f"{self.kernel}: {self.registers} registers/thread, {self.stack_bytes} B stack (spills)/thread, "
                f"{self.shared_bytes} B shared, {self.programs_per_sm} program(s)/SM at {self.num_warps} warps; "
                f"per task: {counts}")


_INSTRUCTION = re.compile(r"\s+/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)[^;]*?(?:0x([0-9a-f]+))?\s*;")


def per_task_counts(sass: str, steps: int) -> dict[str, int]:
    """Instructions one task executes, by :data:`OPCODE_CLASSES` (and in all), read from ``cuobjdump
    -sass`` text: loops are the backward branches; the widest is the persistent task loop, and every
    loop inside it runs ``steps`` times (the meta-gradient's N inner and N reverse steps), so an
    instruction counts ``steps`` to the power of the loops around it. Predicated-off instructions
    count as executed."""
    instructions = []
    for line in sass.splitlines():
        match = _INSTRUCTION.match(line)
        if match:
            address, opcode, target = match.groups()
            instructions.append((int(address, 16), opcode, int(target, 16) if opcode == "BRA" and target else None))
    loops = sorted(((target, address) for address, opcode, target in instructions
                    if target is not None and target < address), key=lambda loop: loop[0] - loop[1])
    if not loops:
        raise ValueError("no loop in the SASS: the kernels' persistent task loop was not found")
    (first, last), inner = loops[0], loops[1:]
    counts: Counter[str] = Counter()
    for address, opcode, _ in instructions:
        if first <= address <= last:
            counts[opcode] += steps ** sum(1 for start, end in inner if start <= address <= end)
    report = {name: sum(counts[op] for op in ops) for name, ops in OPCODE_CLASSES.items()}
    report["instructions"] = sum(counts.values())
    return report


def _signature(kernel: str, constants: dict) -> dict:
    signature = {name: "*fp32" for name in POINTERS[kernel]}
    signature["tasks"] = "i32"
    if kernel == "maml_meta_gradient_kernel":
        signature["inner_lr"] = "fp32"
    signature.update({name: "constexpr" for name in constants})
    return signature


def resource_usage(spec: MLPSpec, kernel: str, points: int = 10, steps: int = 5, precision: str = "tf32x3",
                   capability: int = 90, num_warps: int = NUM_WARPS, max_registers: int | None = None) -> ResourceUsage:
    """Registers, spill stack, shared memory and per-task instruction counts of ``kernel`` compiled for
    sm_<capability> (``steps``: the meta-gradient's N; ``max_registers``: ptxas's cap per thread)."""
    constants = {**kernel_constants(spec, points), "PRECISION": precision}
    if kernel == "mlp_primitives_kernel":
        fn = mlp_primitives_kernel
        constants.update(WITH_GRAD=True, WITH_HVP=True)
    else:
        fn = maml_meta_gradient_kernel
        constants.update(M=points, MP=padded(points), STEPS=steps, SECOND_ORDER=True)
    compiled = triton.compile(ASTSource(fn=fn, signature=_signature(kernel, constants), constexprs=constants),
                              target=GPUTarget("cuda", capability, 32),
                              options=launch_options(num_warps, max_registers))
    report, sass = _cuobjdump(kernel, compiled.asm["cubin"])
    fields = dict(re.findall(r"(REG|STACK|SHARED):(\d+)", report))
    shared = int(fields["SHARED"]) + compiled.metadata.shared  # static + the dynamic shared memory Triton asks for
    return ResourceUsage(kernel, int(fields["REG"]), int(fields["STACK"]), shared, num_warps,
                         per_task_counts(sass, steps if kernel == "maml_meta_gradient_kernel" else 1))


def _cuobjdump(kernel: str, cubin: bytes) -> tuple[str, str]:
    """The resource usage and the SASS of a cubin, by the cuobjdump shipped in the Triton wheel."""
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{kernel}.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        return tuple(subprocess.run([tool, flag, path], capture_output=True, text=True, check=True).stdout
                     for flag in ("--dump-resource-usage", "--dump-sass"))


def main(argv: list[str] | None = None) -> None:
    """Print the resource report of both kernels for the sinusoid learner and the widest fused one as
    one JSON line; ``--out PATH`` also writes it with the Triton version and target (run without
    TRITON_INTERPRET: the interpreter replaces the compiler)."""
    import argparse
    import json
    from pathlib import Path

    from innerloop.engine.rundir import atomic_write_json

    parser = argparse.ArgumentParser(prog="python -m innerloop.kernels.triton_resources")
    parser.add_argument("--out", type=Path, help="also write the report to this JSON file")
    parser.add_argument("--points", type=int, default=10, help="points per task (support and query)")
    parser.add_argument("--warps", type=int, default=NUM_WARPS, help="warps per program")
    parser.add_argument("--max-registers", type=int, default=None,
                        help="ptxas's register cap per thread (default: none, up to 255)")
    args = parser.parse_args(argv)
    reports = []
    for widths, activation in (((1, 40, 40, 1), "relu"), ((64, 64, 64, 64), "tanh")):
        spec = MLPSpec(widths, activation, True, "mse")
        for kernel in POINTERS:
            usage = resource_usage(spec, kernel, points=args.points, num_warps=args.warps,
                                   max_registers=args.max_registers)
            reports.append({"widths": list(widths), "activation": activation, **usage.as_dict()})
    if args.out:
        document = {"target": "sm_90", "triton": triton.__version__, "points": args.points, "steps": 5,
                    "precision": "tf32x3", "max_registers": args.max_registers, "reports": reports}
        atomic_write_json(args.out, document)
    print(json.dumps(reports))


if __name__ == "__main__":
    main()
