"""Compile the Triton MLP kernels for an NVIDIA target without a GPU and read their registers and
spills (issue 6): ``triton.compile`` on an ``ASTSource`` for ``GPUTarget("cuda", 90, 32)``, then
the ``cuobjdump --dump-resource-usage`` shipped in the Triton wheel."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from innerloop.kernels.mlp_layout import MLPSpec
from innerloop.kernels.triton_launch import NUM_WARPS, KernelShape
from innerloop.kernels.triton_mlp import maml_meta_gradient_kernel, mlp_primitives_kernel, padded

POINTERS = {
    "mlp_primitives_kernel": ("params_ptr", "x_ptr", "y_ptr", "vector_ptr", "loss_ptr", "grad_ptr", "hvp_ptr"),
    "maml_meta_gradient_kernel": ("w1_ptr", "b1_ptr", "w2_ptr", "b2_ptr", "w3_ptr", "b3_ptr", "sx_ptr", "sy_ptr",
                                  "qx_ptr", "qy_ptr", "scratch_ptr", "partial_ptr", "loss_ptr"),
}


@dataclass(frozen=True)
class ResourceUsage:
    kernel: str
    registers: int
    stack_bytes: int
    shared_bytes: int

    def __str__(self) -> str:
        return (f"{self.kernel}: {self.registers} registers/thread, {self.stack_bytes} B stack (spills)/thread, "
                f"{self.shared_bytes} B shared")


def _signature(kernel: str, constants: dict) -> dict:
    signature = {name: "*fp32" for name in POINTERS[kernel]}
    signature["tasks"] = "i32"
    if kernel == "maml_meta_gradient_kernel":
        signature["inner_lr"] = "fp32"
    signature.update({name: "constexpr" for name in constants})
    return signature


def resource_usage(spec: MLPSpec, kernel: str, points: int = 10, steps: int = 5, precision: str = "tf32x3",
                   capability: int = 90, num_warps: int = NUM_WARPS) -> ResourceUsage:
    """Registers and spill stack per thread of ``kernel`` compiled for sm_<capability>."""
    constants = {**KernelShape(spec).constants(points), "PRECISION": precision}
    if kernel == "mlp_primitives_kernel":
        fn = mlp_primitives_kernel
        constants.update(WITH_GRAD=True, WITH_HVP=True)
    else:
        fn = maml_meta_gradient_kernel
        constants.update(M=points, MP=padded(points), STEPS=steps, SECOND_ORDER=True)
    compiled = triton.compile(ASTSource(fn=fn, signature=_signature(kernel, constants), constexprs=constants),
                              target=GPUTarget("cuda", capability, 32), options={"num_warps": num_warps})
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{kernel}.cubin")
        with open(path, "wb") as f:
            f.write(compiled.asm["cubin"])
        dump = subprocess.run([tool, "--dump-resource-usage", path], capture_output=True, text=True, check=True)
    report = dump.stdout
    fields = dict(re.findall(r"(REG|STACK|SHARED):(\d+)", report))
    return ResourceUsage(kernel, int(fields["REG"]), int(fields["STACK"]), int(fields["SHARED"]))


def main() -> None:
    """Print the resource report of both kernels for the sinusoid learner and the widest fused one
    (run without TRITON_INTERPRET: the interpreter replaces the compiler)."""
    import json

    reports = []
    for widths, activation in (((1, 40, 40, 1), "relu"), ((64, 64, 64, 64), "tanh")):
        spec = MLPSpec(widths, activation, True, "mse")
        for kernel in POINTERS:
            usage = resource_usage(spec, kernel)
            reports.append({"widths": list(widths), "activation": activation, **usage.__dict__})
    print(json.dumps(reports))


if __name__ == "__main__":
    main()
