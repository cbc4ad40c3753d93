"""Triton kernels for MLP learners with two hidden layers: batched loss/gradient/HVP and the fused
MAML meta-gradient (issue 6). Their pure-torch twins are :mod:`.mlp_passes` and :mod:`.fused_maml`.

The math is the closed-form passes of issue 5 on one task's tiles (seed 000 eqs. 2.1, 2.5, 2.7):

* forward   Z_l = A_{l−1}W_lᵀ + b_l, A_l = σ(Z_l), output Z_3 linear;
* backward  ∇W_l = Δ_lᵀA_{l−1}, ∇b_l = Σ_k Δ_l, E_{l−1} = Δ_lW_l, Δ_{l−1} = E_{l−1}⊙σ′;
* R-pass    R{Z_l} = R{A_{l−1}}W_lᵀ + A_{l−1}V_lᵀ + c_l, R{A_l} = σ′⊙R{Z_l};
            (Hv)_{W_l} = R{Δ_l}ᵀA_{l−1} + Δ_lᵀR{A_{l−1}}, R{E_{l−1}} = R{Δ_l}W_l + Δ_lV_l,
            R{Δ_{l−1}} = R{E_{l−1}}⊙σ′ + E_{l−1}⊙σ″⊙R{Z_{l−1}};
* MSE loss  L = (1/(K·d)) Σ (ŷ − y)², Δ_3 = (2/(K·d))(ŷ − y), R{Δ_3} = (2/(K·d))R{Z_3}.

The grid is persistent: program p of G runs tasks p, p + G, p + 2G, … one after another (G ≤ B is
the launch's choice, a few programs per SM), keeping one task's weights and activations in registers; every
``tl.dot`` dimension is padded to ≥ 16 with masked loads (padded rows/columns are zero, padded
points are masked out of the loss), except dimensions of 1, whose products run on the CUDA cores
(:func:`_dot`). Parameters are flat per task in the engine's order (layer0.weight, layer0.bias,
layer1.weight, ...); the meta-gradient kernel reads the shared θ from its six tensors.
``PRECISION`` is passed to every ``tl.dot`` as ``input_precision``: "tf32x3" (fp32-accurate, the
default), "tf32" or "ieee".

The meta-gradient kernel runs, per task, N inner SGD steps saving the N parameter snapshots to a
per-program scratch (G·N·P numbers, reused across the program's tasks, so it stays in L2), the query gradient,
and the reverse pass g ← g − α·H(θ_{n−1})·g recomputing the forward/backward pass for each
HVP; it writes per-program partial sums of the meta-gradient that the host reduces (no atomics:
deterministic).
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # keep FMA contraction, and Triton 3.9 quiet about it

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

ACTIVATIONS = {"relu": 0, "tanh": 1}


@triton.jit
def _activation(z, ACT: tl.constexpr):
    """σ(z), σ′(z), σ″(z); tanh through exp (libdevice tanh fails in the interpreter). ReLU keeps a
    NaN (torch.relu's semantics: a NaN input must reach the loss, not be clamped to 0)."""
    if ACT == 0:
        return tl.maximum(z, 0.0, propagate_nan=tl.PropagateNan.ALL), tl.where(z > 0.0, 1.0, 0.0), tl.zeros_like(z)
    else:
        t = 1.0 - 2.0 / (tl.exp(2.0 * z) + 1.0)
        d1 = 1.0 - t * t
        return t, d1, -2.0 * t * d1


@triton.jit
def _dot(a, b, PRECISION: tl.constexpr):
    """a·b for tiles [M, K]·[K, N] whose dimensions are 1 or ≥ 16 (:func:`padded`).

    A dimension of 1 (a one-input or one-output layer, a single point) is not padded to a tensor-core
    tile: K = 1 is an outer product, N = 1 a row sum of a·bᵀ and M = 1 a column sum of aᵀ·b on the CUDA
    cores, which takes the sinusoid learner's first and last layers off the chain of dependent
    ``tl.dot``s. The sums stay two-dimensional, in the layout of the tile they read: a three-dimensional
    broadcast [M, K, N] needs its own layout, converted in and out through shared memory (compiled by
    Triton 3.6 for sm_90 it cost the sinusoid meta-gradient 295 of its 672 barriers per task;
    ``python -m innerloop.kernels.triton_resources``).
    """
    if a.shape[1] == 1:
        return a * b
    elif b.shape[1] == 1:
        return tl.sum(a * tl.trans(b), axis=1)[:, None]
    elif a.shape[0] == 1:
        return tl.sum(tl.trans(a) * b, axis=0)[None, :]
    else:
        return tl.dot(a, b, input_precision=PRECISION, out_dtype=tl.float32)


@triton.jit
def _load_matrix(ptr, ROWS: tl.constexpr, COLS: tl.constexpr, RP: tl.constexpr, CP: tl.constexpr):
    r = tl.arange(0, RP)[:, None]
    c = tl.arange(0, CP)[None, :]
    return tl.load(ptr + r * COLS + c, mask=(r < ROWS) & (c < COLS), other=0.0)


@triton.jit
def _store_matrix(ptr, value, ROWS: tl.constexpr, COLS: tl.constexpr, RP: tl.constexpr, CP: tl.constexpr):
    r = tl.arange(0, RP)[:, None]
    c = tl.arange(0, CP)[None, :]
    tl.store(ptr + r * COLS + c, value, mask=(r < ROWS) & (c < COLS))


@triton.jit
def _load_vector(ptr, N: tl.constexpr, NP: tl.constexpr):
    i = tl.arange(0, NP)
    return tl.load(ptr + i, mask=i < N, other=0.0)


@triton.jit
def _store_vector(ptr, value, N: tl.constexpr, NP: tl.constexpr):
    i = tl.arange(0, NP)
    tl.store(ptr + i, value, mask=i < N)


@triton.jit
def _load_layers(w1_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr, IN: tl.constexpr, H1: tl.constexpr,
                 H2: tl.constexpr, OUT: tl.constexpr, INP: tl.constexpr, H1P: tl.constexpr, H2P: tl.constexpr,
                 OUTP: tl.constexpr):
    """W1 [H1, IN], b1, W2 [H2, H1], b2, W3 [OUT, H2], b3 from six row-major parameter tensors."""
    return (_load_matrix(w1_ptr, H1, IN, H1P, INP), _load_vector(b1_ptr, H1, H1P),
            _load_matrix(w2_ptr, H2, H1, H2P, H1P), _load_vector(b2_ptr, H2, H2P),
            _load_matrix(w3_ptr, OUT, H2, OUTP, H2P), _load_vector(b3_ptr, OUT, OUTP))


@triton.jit
def _load_params(ptr, IN: tl.constexpr, H1: tl.constexpr, H2: tl.constexpr, OUT: tl.constexpr,
                 INP: tl.constexpr, H1P: tl.constexpr, H2P: tl.constexpr, OUTP: tl.constexpr):
    """The six parameter tiles from a flat parameter row (the engine's order)."""
    o2 = H1 * IN + H1
    o3 = o2 + H2 * H1 + H2
    return _load_layers(ptr, ptr + H1 * IN, ptr + o2, ptr + o2 + H2 * H1, ptr + o3, ptr + o3 + OUT * H2,
                        IN, H1, H2, OUT, INP, H1P, H2P, OUTP)


@triton.jit
def _store_params(ptr, w1, b1, w2, b2, w3, b3, IN: tl.constexpr, H1: tl.constexpr, H2: tl.constexpr,
                  OUT: tl.constexpr, INP: tl.constexpr, H1P: tl.constexpr, H2P: tl.constexpr, OUTP: tl.constexpr):
    _store_matrix(ptr, w1, H1, IN, H1P, INP)
    _store_vector(ptr + H1 * IN, b1, H1, H1P)
    o2 = H1 * IN + H1
    _store_matrix(ptr + o2, w2, H2, H1, H2P, H1P)
    _store_vector(ptr + o2 + H2 * H1, b2, H2, H2P)
    o3 = o2 + H2 * H1 + H2
    _store_matrix(ptr + o3, w3, OUT, H2, OUTP, H2P)
    _store_vector(ptr + o3 + OUT * H2, b3, OUT, OUTP)


@triton.jit
def _step(p1, p2, p3, p4, p5, p6, d1, d2, d3, d4, d5, d6, scale):
    """(p − scale·d) for the six parameter tiles: an SGD step or a reverse-pass update."""
    return p1 - scale * d1, p2 - scale * d2, p3 - scale * d3, p4 - scale * d4, p5 - scale * d5, p6 - scale * d6


@triton.jit
def _scale(p1, p2, p3, p4, p5, p6, scale):
    return p1 * scale, p2 * scale, p3 * scale, p4 * scale, p5 * scale, p6 * scale


@triton.jit
def _forward(x, w1, b1, w2, b2, w3, b3, ACT: tl.constexpr, PRECISION: tl.constexpr):
    """A_1, σ′_1, σ″_1, A_2, σ′_2, σ″_2 and the output Z_3 (the pre-activations are not needed again)."""
    a1, s1, c1 = _activation(_dot(x, tl.trans(w1), PRECISION) + b1[None, :], ACT)
    a2, s2, c2 = _activation(_dot(a1, tl.trans(w2), PRECISION) + b2[None, :], ACT)
    out = _dot(a2, tl.trans(w3), PRECISION) + b3[None, :]
    return a1, s1, c1, a2, s2, c2, out


@triton.jit
def _mse(out, y, K: tl.constexpr, OUT: tl.constexpr, KP: tl.constexpr, OUTP: tl.constexpr):
    """Per-task MSE, Δ_3 and the point/output mask scaled by 2/(K·d) (for R{Δ_3})."""
    k = tl.arange(0, KP)[:, None]
    j = tl.arange(0, OUTP)[None, :]
    valid = (k < K) & (j < OUT)
    residual = tl.where(valid, out - y, 0.0)
    scale = 2.0 / (K * OUT)
    loss = tl.sum(tl.sum(residual * residual, axis=1), axis=0) / (K * OUT)
    return loss, residual * scale, tl.where(valid, scale, 0.0)


@triton.jit
def _backward(x, a1, s1, a2, s2, w2, w3, d3, PRECISION: tl.constexpr):
    """Gradients of all six parameters, and the Δs/Es the R-pass reuses."""
    g3 = _dot(tl.trans(d3), a2, PRECISION)
    e2 = _dot(d3, w3, PRECISION)
    d2 = e2 * s2
    g2 = _dot(tl.trans(d2), a1, PRECISION)
    e1 = _dot(d2, w2, PRECISION)
    d1 = e1 * s1
    g1 = _dot(tl.trans(d1), x, PRECISION)
    return g1, tl.sum(d1, axis=0), g2, tl.sum(d2, axis=0), g3, tl.sum(d3, axis=0), d2, e2, d1, e1


@triton.jit
def _hvp(x, w1, w2, w3, v1, c1, v2, c2, v3, c3, a1, s1, k1, a2, s2, k2, d3, d2, e2, e1, curvature,
         ACT: tl.constexpr, PRECISION: tl.constexpr):
    """H·v for direction (V1, c1, V2, c2, V3, c3) from the forward/backward quantities."""
    r_z1 = _dot(x, tl.trans(v1), PRECISION) + c1[None, :]
    r_a1 = s1 * r_z1
    r_z2 = _dot(r_a1, tl.trans(w2), PRECISION) + _dot(a1, tl.trans(v2), PRECISION) + c2[None, :]
    r_a2 = s2 * r_z2
    r_z3 = _dot(r_a2, tl.trans(w3), PRECISION) + _dot(a2, tl.trans(v3), PRECISION) + c3[None, :]
    r_d3 = curvature * r_z3
    h3 = _dot(tl.trans(r_d3), a2, PRECISION) + _dot(tl.trans(d3), r_a2, PRECISION)
    r_e2 = _dot(r_d3, w3, PRECISION) + _dot(d3, v3, PRECISION)
    r_d2 = r_e2 * s2
    if ACT != 0:  # σ″ = 0 for ReLU
        r_d2 += e2 * k2 * r_z2
    h2 = _dot(tl.trans(r_d2), a1, PRECISION) + _dot(tl.trans(d2), r_a1, PRECISION)
    r_e1 = _dot(r_d2, w2, PRECISION) + _dot(d2, v2, PRECISION)
    r_d1 = r_e1 * s1
    if ACT != 0:
        r_d1 += e1 * k1 * r_z1
    h1 = _dot(tl.trans(r_d1), x, PRECISION)
    return h1, tl.sum(r_d1, axis=0), h2, tl.sum(r_d2, axis=0), h3, tl.sum(r_d3, axis=0)


@triton.jit
def mlp_primitives_kernel(
    params_ptr, x_ptr, y_ptr, vector_ptr, loss_ptr, grad_ptr, hvp_ptr, tasks,
    P: tl.constexpr, K: tl.constexpr, IN: tl.constexpr, H1: tl.constexpr, H2: tl.constexpr, OUT: tl.constexpr,
    KP: tl.constexpr, INP: tl.constexpr, H1P: tl.constexpr, H2P: tl.constexpr, OUTP: tl.constexpr,
    ACT: tl.constexpr, WITH_GRAD: tl.constexpr, WITH_HVP: tl.constexpr, PRECISION: tl.constexpr,
):
    """Per task b: loss L_b, and when asked ∇L_b and ∇²L_b·v_b, at per-task parameters θ_b."""
    for task in range(tl.program_id(0), tasks, tl.num_programs(0)):
        w1, b1, w2, b2, w3, b3 = _load_params(params_ptr + task * P, IN, H1, H2, OUT, INP, H1P, H2P, OUTP)
        x = _load_matrix(x_ptr + task * K * IN, K, IN, KP, INP)
        y = _load_matrix(y_ptr + task * K * OUT, K, OUT, KP, OUTP)
        a1, s1, k1, a2, s2, k2, out = _forward(x, w1, b1, w2, b2, w3, b3, ACT, PRECISION)
        loss, d3, curvature = _mse(out, y, K, OUT, KP, OUTP)
        tl.store(loss_ptr + task, loss)
        if WITH_GRAD or WITH_HVP:
            g1, gb1, g2, gb2, g3, gb3, d2, e2, d1, e1 = _backward(x, a1, s1, a2, s2, w2, w3, d3, PRECISION)
            if WITH_GRAD:
                _store_params(grad_ptr + task * P, g1, gb1, g2, gb2, g3, gb3,
                              IN, H1, H2, OUT, INP, H1P, H2P, OUTP)
            if WITH_HVP:
                v1, c1, v2, c2, v3, c3 = _load_params(vector_ptr + task * P, IN, H1, H2, OUT, INP, H1P, H2P, OUTP)
                h1, hb1, h2, hb2, h3, hb3 = _hvp(x, w1, w2, w3, v1, c1, v2, c2, v3, c3, a1, s1, k1, a2,
                                                 s2, k2, d3, d2, e2, e1, curvature, ACT, PRECISION)
                _store_params(hvp_ptr + task * P, h1, hb1, h2, hb2, h3, hb3, IN, H1, H2, OUT, INP, H1P, H2P, OUTP)


@triton.jit
def maml_meta_gradient_kernel(
    w1_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr, sx_ptr, sy_ptr, qx_ptr, qy_ptr, scratch_ptr, partial_ptr,
    loss_ptr, tasks, inner_lr,
    P: tl.constexpr, K: tl.constexpr, M: tl.constexpr, IN: tl.constexpr, H1: tl.constexpr, H2: tl.constexpr,
    OUT: tl.constexpr, KP: tl.constexpr, MP: tl.constexpr, INP: tl.constexpr, H1P: tl.constexpr,
    H2P: tl.constexpr, OUTP: tl.constexpr, STEPS: tl.constexpr, ACT: tl.constexpr, SECOND_ORDER: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Per program: (1/B)·Σ over its tasks of the MAML meta-gradient (seed 000 eq. 2.5) into
    ``partial_ptr[program]`` (the program's first task writes it, the others add in order: no
    zero-fill); per-task query losses into ``loss_ptr``. θ is read from its six parameter tensors."""
    program = tl.program_id(0)
    scratch = scratch_ptr + program * STEPS * P
    partial = partial_ptr + program * P
    weight = 1.0 / tasks
    for task in range(program, tasks, tl.num_programs(0)):
        sx = _load_matrix(sx_ptr + task * K * IN, K, IN, KP, INP)
        sy = _load_matrix(sy_ptr + task * K * OUT, K, OUT, KP, OUTP)
        w1, b1, w2, b2, w3, b3 = _load_layers(w1_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr,
                                              IN, H1, H2, OUT, INP, H1P, H2P, OUTP)
        for n in range(STEPS):  # θ_{n+1} = θ_n − α∇L_S(θ_n), keeping θ_n
            if SECOND_ORDER:
                _store_params(scratch + n * P, w1, b1, w2, b2, w3, b3, IN, H1, H2, OUT, INP, H1P, H2P, OUTP)
            a1, s1, k1, a2, s2, k2, out = _forward(sx, w1, b1, w2, b2, w3, b3, ACT, PRECISION)
            _, d3, _ = _mse(out, sy, K, OUT, KP, OUTP)
            g1, gb1, g2, gb2, g3, gb3, _, _, _, _ = _backward(sx, a1, s1, a2, s2, w2, w3, d3, PRECISION)
            w1, b1, w2, b2, w3, b3 = _step(w1, b1, w2, b2, w3, b3, g1, gb1, g2, gb2, g3, gb3, inner_lr)
        qx = _load_matrix(qx_ptr + task * M * IN, M, IN, MP, INP)
        qy = _load_matrix(qy_ptr + task * M * OUT, M, OUT, MP, OUTP)
        a1, s1, k1, a2, s2, k2, out = _forward(qx, w1, b1, w2, b2, w3, b3, ACT, PRECISION)
        loss, d3, _ = _mse(out, qy, M, OUT, MP, OUTP)
        tl.store(loss_ptr + task, loss)
        g1, gb1, g2, gb2, g3, gb3, _, _, _, _ = _backward(qx, a1, s1, a2, s2, w2, w3, d3, PRECISION)
        if SECOND_ORDER:
            tl.debug_barrier()  # the snapshots written above are read back by other threads
            for i in range(STEPS):  # g ← g − α∇²L_S(θ_n)g, n = N−1 … 0
                w1, b1, w2, b2, w3, b3 = _load_params(scratch + (STEPS - 1 - i) * P, IN, H1, H2, OUT,
                                                      INP, H1P, H2P, OUTP)
                a1, s1, k1, a2, s2, k2, out = _forward(sx, w1, b1, w2, b2, w3, b3, ACT, PRECISION)
                _, d3, curvature = _mse(out, sy, K, OUT, KP, OUTP)
                _, _, _, _, _, _, d2, e2, _, e1 = _backward(sx, a1, s1, a2, s2, w2, w3, d3, PRECISION)
                h1, hb1, h2, hb2, h3, hb3 = _hvp(sx, w1, w2, w3, g1, gb1, g2, gb2, g3, gb3, a1, s1, k1,
                                                 a2, s2, k2, d3, d2, e2, e1, curvature, ACT, PRECISION)
                g1, gb1, g2, gb2, g3, gb3 = _step(g1, gb1, g2, gb2, g3, gb3, h1, hb1, h2, hb2, h3, hb3, inner_lr)
            tl.debug_barrier()  # the next task overwrites the scratch
        if task == program:  # the program's first task writes its partial sum, later tasks add to it
            g1, gb1, g2, gb2, g3, gb3 = _scale(g1, gb1, g2, gb2, g3, gb3, weight)
        else:
            t1, tb1, t2, tb2, t3, tb3 = _load_params(partial, IN, H1, H2, OUT, INP, H1P, H2P, OUTP)
            g1, gb1, g2, gb2, g3, gb3 = _step(t1, tb1, t2, tb2, t3, tb3, g1, gb1, g2, gb2, g3, gb3, -weight)
        _store_params(partial, g1, gb1, g2, gb2, g3, gb3, IN, H1, H2, OUT, INP, H1P, H2P, OUTP)


def padded(n: int) -> int:
    """The tile size of a dimension of n: 1 for 1 (:func:`_dot` multiplies such tiles on the CUDA cores),
    else the next power of two, at least 16 (tl.dot's minimum)."""
    return 1 if n == 1 else max(16, triton.next_power_of_2(n))
