"""The triton backend (issue 6): kernels against the float64 oracle in Triton's CPU interpreter
(conftest sets TRITON_INTERPRET=1 when there is no GPU), autograd through the primitives, logged
delegation, clear errors, training through the CLI, and the sm_90 compile/spill check."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings

import pytest
import torch

import innerloop as il
from conftest import gen, rel_err, replay_by_rerunning
from innerloop.backends.cuda_graphs import GraphCache
from innerloop.cli import main
from innerloop.engine.learner import Learner
from innerloop.engine.models import MLP

TOL = 1e-5  # fp32 kernels (tf32x3/ieee semantics) against the float64 oracle
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # where the triton backend runs
GROUPS = {1: 4, 7: 3, 64: 5}  # grid cap for B tasks: programs run 3 and 2 (B=7), 13 and 12 (B=64) tasks


@pytest.fixture(scope="module")
def oracle():
    return il.backends.get("cpu", dtype=torch.float64, fused=False)


def _problem(width, activation, tasks, points=10, seed=0, dims=(3, 2)):
    """An MLP dims[0]→width→width→dims[1] near its init, per-task parameters, directions and data."""
    g = gen(seed)
    model = MLP(dims[0], (width, width), dims[1], activation=activation)
    theta = model.init(g, dtype=torch.float64)
    params = {k: v + 0.2 * torch.randn(tasks, *v.shape, generator=g, dtype=torch.float64) for k, v in theta.items()}
    vector = {k: torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in params.items()}
    data = [torch.randn(tasks, points, d, generator=g, dtype=torch.float64) for d in (*dims, *dims)]
    return Learner(model, "mse"), theta, params, vector, data


def _f32(tensors):
    """float32 on the backend's device."""
    if isinstance(tensors, dict):
        return {k: v.float().to(DEVICE) for k, v in tensors.items()}
    return tensors.float().to(DEVICE)


def _rel(a, b):
    return rel_err({k: v.double().cpu() for k, v in a.items()}, b)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("width,tasks", [(16, 1), (40, 7), (64, 64)])
def test_hvp_kernel_equals_the_oracle(oracle, activation, width, tasks):
    learner, _, params, vector, (x, y, _, _) = _problem(width, activation, tasks)
    backend = il.backends.get("triton", precision="ieee", programs=GROUPS[tasks])
    losses, grads = backend.loss_and_grad(learner, _f32(params), _f32(x), _f32(y))
    ref_losses, ref_grads = oracle.loss_and_grad(learner, params, x, y)
    assert float((losses.double().cpu() - ref_losses).abs().max() / ref_losses.abs().max()) < TOL
    assert _rel(grads, ref_grads) < TOL
    hvp = backend.hvp(learner, _f32(params), _f32(x), _f32(y), _f32(vector))
    assert _rel(hvp, oracle.hvp(learner, params, x, y, vector)) < TOL


@pytest.mark.parametrize("activation,width,steps,tasks", [
    ("relu", 16, 1, 1), ("relu", 40, 3, 7), ("relu", 64, 5, 64),
    ("tanh", 64, 1, 7), ("tanh", 16, 3, 64), ("tanh", 40, 5, 1),
])
def test_fused_meta_gradient_kernel_equals_the_oracle(oracle, activation, width, steps, tasks):
    learner, theta, _, _, (sx, sy, qx, qy) = _problem(width, activation, tasks)
    backend = il.backends.get("triton", programs=GROUPS[tasks])
    for first_order in (False, True):
        losses, grad = backend.meta_gradient(learner, _f32(theta), *map(_f32, (sx, sy, qx, qy)), 0.1, steps,
                                             first_order)
        algorithm = il.algorithms.MAML(learner.model, oracle, inner_lr=0.1, inner_steps=steps, first_order=first_order)
        reference = algorithm.compute(theta, il.tasks.TaskBatch(sx, sy, qx, qy))
        assert _rel(grad, reference.grad) < TOL
        assert torch.allclose(losses.double().cpu(), reference.task_losses, rtol=TOL, atol=0)


@pytest.mark.parametrize("dims,points,activation", [((1, 1), 10, "relu"), ((1, 1), 1, "tanh"), ((1, 3), 10, "tanh"),
                                                    ((2, 1), 1, "relu")])
def test_kernels_equal_the_oracle_on_one_wide_layers_and_single_points(oracle, dims, points, activation):
    """Dimensions of 1 (the sinusoid's 1→40→40→1, one-shot tasks) take _dot's CUDA-core products."""
    learner, theta, params, vector, (sx, sy, qx, qy) = _problem(40, activation, 7, points, dims=dims)
    backend = il.backends.get("triton", programs=3)
    hvp = backend.hvp(learner, _f32(params), _f32(sx), _f32(sy), _f32(vector))
    assert _rel(hvp, oracle.hvp(learner, params, sx, sy, vector)) < TOL
    _, grad = backend.meta_gradient(learner, _f32(theta), *map(_f32, (sx, sy, qx, qy)), 0.1, 3)
    reference = il.algorithms.MAML(learner.model, oracle, inner_lr=0.1, inner_steps=3).compute(
        theta, il.tasks.TaskBatch(sx, sy, qx, qy))
    assert _rel(grad, reference.grad) < TOL


@pytest.mark.parametrize("precision", ["tf32x3", "tf32", "ieee"])
def test_every_precision_is_accepted_and_checked_against_float64(oracle, precision):
    learner, _, params, vector, (x, y, _, _) = _problem(40, "relu", 3)
    hvp = il.backends.get("triton", precision=precision).hvp(learner, _f32(params), _f32(x), _f32(y), _f32(vector))
    error = _rel(hvp, oracle.hvp(learner, params, x, y, vector))
    # the interpreter computes every tl.dot in IEEE fp32; on a GPU tf32 is ~1e-3 (see test_gpu_precision)
    assert error < (TOL if precision != "tf32" or not torch.cuda.is_available() else 1e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_precision_tf32x3_is_fp32_accurate_and_tf32_is_not(oracle):
    learner, theta, _, _, data = _problem(40, "relu", 64)
    errors = {}
    reference = il.algorithms.MAML(learner.model, oracle, inner_lr=0.1, inner_steps=5).compute(
        theta, il.tasks.TaskBatch(*data))
    for precision in ("tf32x3", "tf32", "ieee"):
        backend = il.backends.get("triton", precision=precision)
        _, grad = backend.meta_gradient(learner, _f32(theta), *map(_f32, data), 0.1, 5)
        errors[precision] = _rel(grad, reference.grad)
    assert errors["tf32x3"] < TOL and errors["ieee"] < TOL and errors["tf32"] > 10 * errors["tf32x3"]


def test_primitives_are_ordinary_autograd_ops(oracle):
    """loss backpropagates the kernel's gradient; loss_and_grad's gradient backpropagates its HVP."""
    learner, _, params, vector, (x, y, _, _) = _problem(16, "tanh", 4)
    backend = il.backends.get("triton")
    leaves = {k: v.requires_grad_(True) for k, v in _f32(params).items()}
    grads = torch.autograd.grad(backend.loss(learner, leaves, _f32(x), _f32(y)).sum(), list(leaves.values()))
    assert _rel(dict(zip(leaves, grads)), oracle.loss_and_grad(learner, params, x, y)[1]) < TOL
    _, g = backend.loss_and_grad(learner, leaves, _f32(x), _f32(y))
    dot = sum((g[k] * _f32(vector[k])).sum() for k in g)
    hv = torch.autograd.grad(dot, list(leaves.values()))
    assert _rel(dict(zip(leaves, hv)), oracle.hvp(learner, params, x, y, vector)) < TOL


def test_unfusable_learners_are_delegated_with_a_log_line(caplog):
    backend = il.backends.get("triton")
    learner = Learner(MLP(1, (8,), 1), "mse")  # one hidden layer: not fused
    assert not backend.fuses(learner) and backend.fuses(Learner(MLP(1, (8, 8), 1), "mse"))
    params = learner.model.init(gen(0))
    per_task = _f32({k: v.expand(3, *v.shape) for k, v in params.items()})
    x, y = _f32(torch.randn(3, 5, 1)), _f32(torch.randn(3, 5, 1))
    with caplog.at_level(logging.WARNING, logger="innerloop.backends.triton"):
        losses, _ = backend.loss_and_grad(learner, per_task, x, y)
    assert "delegating MLP(1, (8,), 1" in caplog.text and "exactly two hidden layers" in caplog.text
    expected = il.backends.get("torch", device=DEVICE).loss(learner, per_task, x, y)
    assert torch.allclose(losses, expected)
    with pytest.raises(il.ConfigError, match="cannot fuse"):
        backend.meta_gradient(learner, params, x, y, x, y, 0.1, 1)


def test_amortized_networks_on_triton_are_logged_as_plain_autograd(caplog):
    backend = il.backends.get("triton")
    family = il.tasks.GaussianProcess1D()
    with caplog.at_level(logging.WARNING, logger="innerloop.backends.triton"):
        for _ in range(2):
            il.algorithms.CNP(il.algorithms.CNP.network(family), backend)
    assert caplog.text.count("cnp trains its NeuralProcessNet with plain torch autograd on") == 1


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_a_nan_input_gives_a_nan_loss_as_in_the_oracle(oracle, activation):
    """A NaN in one task's data makes that task's loss NaN and no other's, as in the float64
    oracle: the kernels' ReLU propagates NaN (a plain max would turn it into 0 and hide it)."""
    learner, theta, params, _, (x, y, qx, qy) = _problem(16, activation, 3)
    x[1, 4, 0] = float("nan")
    backend = il.backends.get("triton", programs=2)
    expected = oracle.loss(learner, params, x, y).isnan()
    assert expected.tolist() == [False, True, False]
    assert backend.loss(learner, _f32(params), _f32(x), _f32(y)).isnan().cpu().equal(expected)
    losses, grad = backend.meta_gradient(learner, _f32(theta), *map(_f32, (qx, qy, x, y)), 0.1, 2)
    assert losses.isnan().cpu().equal(expected)
    assert all(bool(g.isnan().any()) for g in grad.values())


def test_tasks_too_large_for_the_gpu_are_a_capability_error(monkeypatch):
    """A task's points live on chip; past the GPU's shared memory Triton refuses the launch, and
    the backend says which task size and learner and what to do instead (simulated: the
    interpreter has no shared-memory limit)."""
    from triton.runtime.errors import OutOfResources

    from innerloop.kernels import triton_launch

    class TooLarge:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                raise OutOfResources(233480, 232448, "shared memory")
            return launch

    monkeypatch.setattr(triton_launch, "mlp_primitives_kernel", TooLarge())
    monkeypatch.setattr(triton_launch, "maml_meta_gradient_kernel", TooLarge())
    learner, theta, params, vector, (x, y, qx, qy) = _problem(40, "relu", 2, points=128, dims=(1, 1))
    backend = il.backends.get("triton")
    message = r"a task of 128 points for the learner 1→40→40→1 needs 233480 of shared memory .* has 232448"
    for call in (lambda: backend.loss(learner, _f32(params), _f32(x), _f32(y)),
                 lambda: backend.hvp(learner, _f32(params), _f32(x), _f32(y), _f32(vector))):
        with pytest.raises(il.CapabilityError, match=message):
            call()
    with pytest.raises(il.CapabilityError, match=r"128 support and 128 query points .*\n.*fewer points per task"):
        backend.meta_gradient(learner, _f32(theta), *map(_f32, (x, y, qx, qy)), 0.1, 2)


def _graphed_and_plain(graphed, plain, width, activation, tasks, steps):
    """(graphed call, plain call) of the meta-gradient on three batches of one shape, the graphed
    ones all made before any is compared (a later replay must not overwrite an earlier result)."""
    results = []
    for seed in (0, 1, 2):
        learner, theta, _, _, data = _problem(width, activation, tasks, seed=seed, dims=(1, 1))
        theta, data = _f32(theta), [_f32(t) for t in data]
        results.append((graphed.meta_gradient(learner, theta, *data, 0.1, steps),
                        plain.meta_gradient(learner, theta, *data, 0.1, steps)))
    assert graphed._graphs.captures == 1
    return results, (learner, theta, data)


def test_graphed_meta_gradient_replays_one_capture_on_each_calls_values():
    """cuda_graphs=True: one capture per call signature, each call's θ and data copied in. Here
    with the CPU stand-in for a graph (its replay re-runs the launch on the static buffers)."""
    backend = il.backends.get("triton", programs=3)
    backend._graphs = GraphCache(backend.device, capture=replay_by_rerunning)
    results, (learner, theta, data) = _graphed_and_plain(backend, il.backends.get("triton", programs=3),
                                                         16, "tanh", 5, 2)
    for (losses, grad), (plain_losses, plain_grad) in results:
        assert torch.equal(losses, plain_losses) and all(torch.equal(grad[k], plain_grad[k]) for k in grad)
    backend.meta_gradient(learner, theta, *data, 0.1, 3)  # another N: another graph
    backend.meta_gradient(learner, theta, *(t[:4] for t in data), 0.1, 2)  # another B: another graph
    assert backend._graphs.captures == 3


def test_graphed_primitives_replay_one_capture_per_signature(oracle):
    """cuda_graphs=True also replays loss/loss_and_grad (one graph: the same launch) and hvp; the
    backward of loss_and_grad's gradient launches its HVP directly. CPU stand-in for the graphs."""
    backend = il.backends.get("triton", programs=2)
    backend._graphs = GraphCache(backend.device, capture=replay_by_rerunning)
    plain = il.backends.get("triton", programs=2)
    outputs = []
    for seed in (0, 1, 2):
        learner, _, params, vector, (x, y, _, _) = _problem(16, "relu", 3, seed=seed)
        params, vector, x, y = _f32(params), _f32(vector), _f32(x), _f32(y)
        outputs.append([(b.loss(learner, params, x, y), b.loss_and_grad(learner, params, x, y)[1],
                         b.hvp(learner, params, x, y, vector)) for b in (backend, plain)])
    assert backend._graphs.captures == 2
    for (losses, grads, hvp), (plain_losses, plain_grads, plain_hvp) in outputs:
        assert torch.equal(losses, plain_losses)
        assert all(torch.equal(grads[k], plain_grads[k]) and torch.equal(hvp[k], plain_hvp[k]) for k in grads)
    learner, _, params, vector, (x, y, _, _) = _problem(16, "relu", 3, seed=2)  # float64, for the oracle
    leaves = {k: v.requires_grad_(True) for k, v in _f32(params).items()}
    _, g = backend.loss_and_grad(learner, leaves, _f32(x), _f32(y))
    hv = torch.autograd.grad(sum((g[k] * _f32(vector[k])).sum() for k in g), list(leaves.values()))
    assert _rel(dict(zip(leaves, hv)), oracle.hvp(learner, params, x, y, vector)) < TOL
    assert backend._graphs.captures == 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_cuda_graphed_calls_equal_the_eager_launches():
    results, _ = _graphed_and_plain(il.backends.get("triton", cuda_graphs=True), il.backends.get("triton"),
                                    40, "relu", 64, 5)
    for (losses, grad), (plain_losses, plain_grad) in results:
        assert torch.allclose(losses, plain_losses, rtol=1e-6)
        assert _rel(grad, {k: v.double().cpu() for k, v in plain_grad.items()}) < 1e-6
    graphed, plain = il.backends.get("triton", cuda_graphs=True), il.backends.get("triton")
    products = []
    for seed in (0, 1):
        learner, _, params, vector, (x, y, _, _) = _problem(40, "tanh", 64, seed=seed)
        products.append([b.hvp(learner, _f32(params), _f32(x), _f32(y), _f32(vector)) for b in (graphed, plain)])
    for hvp, plain_hvp in products:
        assert _rel(hvp, {k: v.double().cpu() for k, v in plain_hvp.items()}) < 1e-6


def test_bad_options_and_missing_hardware_are_clear_errors(monkeypatch):
    with pytest.raises(il.ConfigError, match="float32"):
        il.backends.get("triton", dtype="float64")
    with pytest.raises(il.ConfigError, match="unknown precision"):
        il.backends.get("triton", precision="fp8")
    with pytest.raises(il.ConfigError, match="programs must be a whole number"):
        il.backends.get("triton", programs=0)
    if torch.cuda.is_available():
        return
    with pytest.raises(il.ConfigError, match="cuda_graphs=True needs a CUDA GPU"):
        il.backends.get("triton", cuda_graphs=True)
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(il.BackendUnavailableError, match="NVIDIA GPU, or start Python with TRITON_INTERPRET=1"):
        il.backends.get("triton")
    assert not il.backends.describe("triton").available


@pytest.mark.parametrize("options,message", [
    (dict(num_warps=3), "num_warps must be one of 1, 2, 4, 8, 16, 32"),
    (dict(max_registers=0), "max_registers must be a whole number from 1 to 255"),
    (dict(max_registers=256), "255 is the hardware's limit"),
    (dict(max_registers=12.5), "max_registers must be a whole number"),
])
def test_bad_launch_options_are_clear_errors(options, message):
    with pytest.raises(il.ConfigError, match=message):
        il.backends.get("triton", **options)


def test_warps_and_register_cap_reach_every_launch(oracle, monkeypatch):
    """num_warps and max_registers go to the meta-gradient, the primitives and the HVP inside
    autograd's backward (the interpreter ignores them: the numbers equal the default launch's)."""
    from innerloop.kernels import triton_launch

    seen = []
    options = triton_launch.launch_options
    monkeypatch.setattr(triton_launch, "launch_options", lambda *args: seen.append(args) or options(*args))
    tuned = il.backends.get("triton", programs=2, num_warps=4, max_registers=128)
    plain = il.backends.get("triton", programs=2)
    assert "num_warps=4 max_registers=128" in repr(tuned)
    learner, theta, params64, vector64, data64 = _problem(16, "tanh", 3)
    theta, params, vector, data = _f32(theta), _f32(params64), _f32(vector64), [_f32(t) for t in data64]
    results, launches = [], []
    for backend in (tuned, plain):
        seen.clear()
        leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        _, grads = backend.loss_and_grad(learner, leaves, *data[:2])
        hv = torch.autograd.grad(sum((grads[k] * vector[k]).sum() for k in grads), list(leaves.values()))
        results.append((backend.meta_gradient(learner, theta, *data, 0.1, 2)[1], dict(zip(leaves, hv))))
        launches.append(list(seen))
    assert launches == [[(4, 128)] * 3, [(None, None)] * 3]
    for tuned_result, plain_result in zip(*results):
        assert all(torch.equal(tuned_result[k], plain_result[k]) for k in tuned_result)
    assert _rel(results[0][1], oracle.hvp(learner, params64, *data64[:2], vector64)) < TOL


@pytest.mark.parametrize("algo", ["maml", "fomaml", "reptile", "imaml"])
def test_train_runs_on_the_triton_backend(tmp_path, algo):
    code = main(["train", "--algo", algo, "--task", "sinusoid", "--backend", "triton", "--iters", "2",
                 "--meta-batch", "3", "--eval-every", "2", "--eval-tasks", "2", "--out", str(tmp_path / algo),
                 "--quiet"])
    assert code == 0
    assert (tmp_path / algo / "checkpoint.pt").is_file()


def test_maml_training_on_triton_follows_the_cpu_backend(tmp_path):
    from innerloop.engine.config import TrainConfig
    from innerloop.engine.trainer import train

    base = dict(algo="maml", task="sinusoid", meta_batch=4, iters=3, eval_every=100, eval_tasks=2, seed=2)
    fused = train(TrainConfig(**base, backend="triton"), tmp_path / "triton", progress=False)
    reference = train(TrainConfig(**base, backend="cpu"), tmp_path / "cpu", progress=False)
    assert rel_err({k: v.cpu() for k, v in fused.params.items()}, reference.params) < 1e-5


# Spill budgets of the sm_90 build (bytes of stack per thread at the launch's 8 warps); today's
# tf32x3 builds spill ~1–2.4 KB. Tighten these when GPU timings show what the spills cost.
STACK_BUDGET = {"mlp_primitives_kernel": 2560, "maml_meta_gradient_kernel": 2560}


def _without_interpreter(code: str) -> str:
    """stdout of ``python -c code`` in a process without TRITON_INTERPRET (the interpreter replaces the compiler)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


def test_kernels_compile_for_sm90_within_the_spill_budget():
    """Compiled by ptxas for sm_90 on this CPU (no GPU); the report goes to the CI log."""
    reports = json.loads(_without_interpreter("from innerloop.kernels.triton_resources import main; main()"))
    lines = [f"{r['kernel']} {r['widths']} {r['activation']}: {r['registers']} registers, {r['stack_bytes']} B "
             f"stack/thread (budget {STACK_BUDGET[r['kernel']]}), {r['shared_bytes']} B shared, "
             f"{r['programs_per_sm']} program(s)/SM; per task: {r['per_task']}" for r in reports]
    warnings.warn("sm_90 resource report (shown in the CI log's warnings summary):\n" + "\n".join(lines), stacklevel=1)
    for report in reports:
        assert report["stack_bytes"] <= STACK_BUDGET[report["kernel"]], report
        assert report["per_task"]["tensor_core"] > 0 and report["programs_per_sm"] >= 1, report
    assert {r["kernel"] for r in reports} == set(STACK_BUDGET)


def test_a_register_cap_reaches_ptxas_and_the_launch():
    """max_registers is ptxas's maxnreg: the sm_90 build uses at most that many registers per thread
    (two 8-warp programs per SM at 128), and the launch accepts it (the interpreter ignores it)."""
    code = ("from innerloop.kernels.triton_resources import resource_usage; from innerloop.kernels.mlp_layout "
            "import MLPSpec; u = resource_usage(MLPSpec((1, 40, 40, 1), 'relu', True, 'mse'), "
            "'maml_meta_gradient_kernel', max_registers=128); print(u.registers, u.programs_per_sm)")
    registers, held = map(int, _without_interpreter(code).split())
    assert registers <= 128 and held == 2
    from innerloop.kernels import MLPSpec, triton_launch

    learner, theta, _, _, data = _problem(16, "relu", 3, dims=(1, 1))
    spec = MLPSpec.of(learner)
    theta, data = _f32(theta), [_f32(t) for t in data]
    capped = triton_launch.meta_gradient(spec, theta, *data, 0.1, 2, False, "ieee", max_registers=128)
    plain = triton_launch.meta_gradient(spec, theta, *data, 0.1, 2, False, "ieee")
    assert all(torch.allclose(a, b) for a, b in zip(capped, plain))


SASS = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
        /*0020*/                   LDS R2, [R3] ;
        /*0030*/                   HMMA.1688.F32.TF32 R4, R8, R12, R4 ;
        /*0040*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
        /*0050*/              @!P0 BRA 0x30 ;
        /*0060*/                   STL [R1], R2 ;
        /*0070*/                   SHFL.BFLY PT, R5, R4, 0x1, 0x1f ;
        /*0080*/               @P1 BRA 0x20 ;
        /*0090*/                   EXIT ;
        /*00a0*/                   BRA 0xa0 ;
"""


def test_programs_per_sm_is_the_tightest_of_registers_shared_memory_and_warps():
    from innerloop.kernels.triton_resources import ResourceUsage

    def held(registers, warps, shared):
        return ResourceUsage("k", registers, 0, shared, warps).programs_per_sm

    # sm_90: 65 536 registers per SM in 256-register warp allocations, 228 KB shared (1 KB reserved
    # per program), 64 warps, 32 programs
    assert held(255, 8, 50176) == 1  # 8 warps x 8192 registers fill the register file
    assert held(128, 8, 50176) == 2  # the cap 128 halves it: two programs
    assert held(128, 4, 50176) == 4  # 4 warps: four by registers, four by shared memory (4 x 49 KB)
    assert held(64, 4, 135168) == 1  # shared memory first
    assert held(16, 1, 0) == 32 and held(16, 16, 0) == 4  # the program and the warp limits


def test_per_task_counts_weight_each_inner_loop_by_the_steps():
    """Hand count: task loop 0x20–0x80 (LDS, STL, SHFL, BRA once), inner loop 0x30–0x50 (HMMA, BAR, BRA)
    three times; the barrier before the task loop and the exit's self-loop are outside."""
    from innerloop.kernels.triton_resources import per_task_counts

    counts = per_task_counts(SASS, steps=3)
    assert counts == {"barriers": 3, "tensor_core": 3, "shared_memory": 1, "spill_traffic": 1, "shuffles": 1,
                      "instructions": 4 + 3 * 3}


def test_per_task_counts_of_the_compiled_meta_gradient_are_affine_in_the_steps():
    """Every loop inside the task loop must run exactly N times for the counts to hold; a loop the
    compiler unrolled in part would break c(N) = c₀ + N·c₁ across N = 2, 3, 4. Checked on the classes
    the kernel's structure fixes (barriers, tensor-core instructions, shuffles); shared-memory and
    spill traffic also move with register allocation, which differs between builds."""
    code = ("import json; from innerloop.kernels.triton_resources import resource_usage; "
            "from innerloop.kernels.mlp_layout import MLPSpec; spec = MLPSpec((1, 40, 40, 1), 'tanh', True, 'mse'); "
            "kernel = 'maml_meta_gradient_kernel'; "
            "print(json.dumps([resource_usage(spec, kernel, steps=n).per_task for n in (2, 3, 4)]))")
    two, three, four = json.loads(_without_interpreter(code))
    for name in ("barriers", "tensor_core", "shuffles"):
        assert four[name] - three[name] == three[name] - two[name] > 0, name
