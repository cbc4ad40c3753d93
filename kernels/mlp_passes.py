"""Closed-form batched MLP passes over a task axis B: forward, backward and Pearlmutter's R-pass.

For layer l = 1..L (issue 5; seed 000 eq. 2.7 for the Hessian-vector product):

* forward   Z_l = A_{layer−1}W_lᵀ + b_l,  A_l = σ(Z_l)  (A_0 = X, the output layer is linear);
* backward  Δ_L = ∂L/∂Z_L;  ∇W_l = Δ_lᵀA_{layer−1},  ∇b_l = Σ_k Δ_l;
            E_{layer−1} = Δ_lW_l,  Δ_{layer−1} = E_{layer−1}⊙σ′(Z_{layer−1});
* R-forward with direction (V_l, c_l):
            R{Z_l} = R{A_{layer−1}}W_lᵀ + A_{layer−1}V_lᵀ + c_l,  R{A_l} = σ′⊙R{Z_l}  (R{A_0} = 0);
* R-backward  R{Δ_L} = ∇²_Z L·R{Z_L};
            (Hv)_{W_l} = R{Δ_l}ᵀA_{layer−1} + Δ_lᵀR{A_{layer−1}},  (Hv)_{b_l} = Σ_k R{Δ_l};
            R{E_{layer−1}} = R{Δ_l}W_l + Δ_lV_l,
            R{Δ_{layer−1}} = R{E_{layer−1}}⊙σ′ + E_{layer−1}⊙σ″⊙R{Z_{layer−1}}.

The HVP runs each pass together with its R-twin on row-stacked buffers, so products that share
a matrix are one GEMM with twice the rows: [Z_l; ·] = [A_{layer−1}; R{A_{layer−1}}]W_lᵀ,
[R{E}; E] = [R{Δ_l}; Δ_l]W_l and (Hv)_{W_l} = [R{Δ_l}; Δ_l]ᵀ[A_{layer−1}; R{A_{layer−1}}].
Every intermediate lives in a :class:`Workspace` allocated once per (spec, B, K) and written
with ``out=``/in-place ops (seed 000 §10.3), so repeated passes allocate nothing of size
B·K·width. A workspace is not re-entrant: one pass sequence at a time.
"""

from __future__ import annotations

import torch

from innerloop.kernels.activations import ACTIVATIONS
from innerloop.kernels.batched_matmul import matmul_into
from innerloop.kernels.mlp_layout import LayerViews, MLPSpec
from innerloop.kernels.mlp_losses import CrossEntropyOutput, MSEOutput

Tensors = list[torch.Tensor]
OutputLoss = MSEOutput | CrossEntropyOutput


class Workspace:
    """Buffers of one MLP on one batch shape. The plain passes use contiguous [B, K, width]
    buffers ``z``, ``a``, ``delta``, ``e``; the HVP passes use row-stacked [B, 2K, width] ones:
    ``za`` = [Z; R{Z}], ``acts`` = [A; R{A}], ``deltas`` = [R{Δ}; Δ], ``errors`` = [R{E}; E]
    (``r_z``, ``a_hvp``, ... are their halves). σ′ (unless read off σ), σ″ and scratch are
    [B, K, width]. Buffers whose contents are never live at the same time share storage: the
    plain passes' over the stacked ones', and for ReLU [A; R{A}] over [Z; R{Z}]."""

    def __init__(self, spec: MLPSpec, tasks: int, points: int, dtype: torch.dtype, device: torch.device) -> None:
        self.spec, self.points = spec, points
        self.activation = ACTIVATIONS[spec.activation]
        widths = spec.widths[1:]
        hidden = widths[:-1]

        def buffers(widths: tuple[int, ...], rows: int = points) -> Tensors:
            return [torch.empty(tasks, rows, w, dtype=dtype, device=device) for w in widths]

        def first_half(stacked: Tensors) -> Tensors:
            """[B, K, width] contiguous views over the first half of each stacked buffer's storage."""
            return [t.view(-1)[: t.numel() // 2].view(tasks, points, -1) for t in stacked]

        self.scratch, self.tmp = buffers(widths), buffers(hidden)
        self.d1 = buffers(hidden) if self.activation.keeps_derivative else [None] * len(hidden)
        self.d2 = buffers(hidden) if self.activation.curved else [None] * len(hidden)
        self.aux = torch.empty(tasks, points, widths[-1], dtype=dtype, device=device)
        self.za, self.deltas = buffers(widths, 2 * points), buffers(widths, 2 * points)
        self.errors = buffers(hidden, 2 * points)
        # with σ′ read off σ and σ″ = 0 (ReLU) nothing reads Z or R{Z} once σ and R{A} = σ′R{Z} are
        # written, so these overwrite them: a smaller working set (measured: 0.8 ms less of ~13 per
        # sinusoid meta-gradient at B = 256 on one CPU thread)
        overwrite = not (self.activation.keeps_derivative or self.activation.curved)
        self.acts = self.za[:-1] if overwrite else buffers(hidden, 2 * points)
        # the plain passes never run interleaved with the HVP passes: their buffers share storage
        self.z, self.delta, self.a, self.e = (first_half(t) for t in (self.za, self.deltas, self.acts, self.errors))
        k = points
        self.z_hvp, self.r_z = [t[:, :k] for t in self.za], [t[:, k:] for t in self.za]
        self.a_hvp, self.r_a = [t[:, :k] for t in self.acts], [t[:, k:] for t in self.acts]
        self.r_delta, self.delta_hvp = [t[:, :k] for t in self.deltas], [t[:, k:] for t in self.deltas]
        self.r_e, self.e_hvp = [t[:, :k] for t in self.errors], [t[:, k:] for t in self.errors]


def _inputs(ws: Workspace, x: torch.Tensor, layer: int) -> torch.Tensor:
    return x if layer == 0 else ws.a[layer - 1]


def _bias(biases: Tensors | None, layer: int) -> torch.Tensor | None:
    """b_l as an addend [B, 1, out] of the layer's product (None without biases)."""
    return None if biases is None else biases[layer].unsqueeze(1)


def forward(ws: Workspace, weights: Tensors, biases: Tensors | None, x: torch.Tensor) -> torch.Tensor:
    """Z_l, A_l, σ′(Z_l) (and σ″ when curved) into ``ws``; returns the output Z_L."""
    last = len(weights) - 1
    for layer, w in enumerate(weights):
        matmul_into(ws.z[layer], _inputs(ws, x, layer), w.transpose(1, 2), _bias(biases, layer))
        if layer < last:
            ws.activation.evaluate(ws.z[layer], ws.a[layer], ws.d1[layer], ws.d2[layer], ws.tmp[layer])
    return ws.z[last]


def _sum_points(delta: torch.Tensor, out: torch.Tensor, base: torch.Tensor | None, scale: float) -> None:
    """out = Σ_k delta, or base + scale·Σ_k delta."""
    if base is None:
        torch.sum(delta, dim=1, out=out)
    else:
        torch.add(base, delta.sum(dim=1), alpha=scale, out=out)


def _layer(views: LayerViews | None, layer: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(W_l, b_l) of a layer's views; (None, None) when there are none."""
    if views is None:
        return None, None
    weights, biases = views
    return weights[layer], None if biases is None else biases[layer]


def backward(ws: Workspace, weights: Tensors, x: torch.Tensor, grad_w: Tensors, grad_b: Tensors | None,
             base: LayerViews | None = None, scale: float = 1.0) -> None:
    """∇W_l, ∇b_l from Δ_L (set by :func:`loss_delta`) into ``grad_w``/``grad_b``; with ``base``
    (weights, biases) they get base + scale·∇ instead — an SGD step θ − α∇ with base θ and
    scale −α writes the next parameters without a gradient buffer (base must not alias them)."""
    for layer in reversed(range(len(weights))):
        delta = ws.delta[layer]
        base_w, base_b = _layer(base, layer)
        matmul_into(grad_w[layer], delta.transpose(1, 2), _inputs(ws, x, layer), base_w,
                    1.0 if base is None else scale)
        if grad_b is not None:
            _sum_points(delta, grad_b[layer], base_b, scale)
        if layer > 0:
            matmul_into(ws.e[layer - 1], delta, weights[layer])
            ws.activation.chain(ws.e[layer - 1], ws.a[layer - 1], ws.d1[layer - 1], ws.delta[layer - 1])


def forward_with_r(ws: Workspace, weights: Tensors, biases: Tensors | None, v_w: Tensors,
                   v_b: Tensors | None, x: torch.Tensor) -> None:
    """The forward pass and its R-twin for direction (V, c): Z_l, A_l, σ′, σ″, R{Z_l}, R{A_l}."""
    last = len(weights) - 1
    for layer, (w, v) in enumerate(zip(weights, v_w)):
        if layer == 0:
            scratch = ws.scratch[0]
            matmul_into(ws.z_hvp[0], x, w.transpose(1, 2), _bias(biases, 0), scratch=scratch)
            matmul_into(ws.r_z[0], x, v.transpose(1, 2), _bias(v_b, 0), scratch=scratch)
        else:  # [Z; R{Z}] = [b; AVᵀ + c] + [A; R{A}]Wᵀ: one accumulating product over the stacked rows
            matmul_into(ws.scratch[layer], ws.a_hvp[layer - 1], v.transpose(1, 2), _bias(v_b, layer))
            ws.r_z[layer].copy_(ws.scratch[layer])
            if biases is None:
                ws.z_hvp[layer].zero_()
            else:
                ws.z_hvp[layer].copy_(biases[layer].unsqueeze(1).expand_as(ws.z_hvp[layer]))
            matmul_into(ws.za[layer], ws.acts[layer - 1], w.transpose(1, 2), ws.za[layer])
        if layer < last:
            ws.activation.evaluate(ws.z_hvp[layer], ws.a_hvp[layer], ws.d1[layer], ws.d2[layer], ws.tmp[layer])
            ws.activation.chain(ws.r_z[layer], ws.a_hvp[layer], ws.d1[layer], ws.r_a[layer])


def backward_with_r(ws: Workspace, weights: Tensors, v_w: Tensors, x: torch.Tensor,
                    hv_w: Tensors, hv_b: Tensors | None, base: LayerViews | None = None,
                    scale: float = 1.0) -> None:
    """The backward pass and its R-twin from Δ_L and R{Δ_L}: (Hv)_{W_l}, (Hv)_{b_l} into
    ``hv_w``/``hv_b``, or base + scale·Hv with ``base``. The outputs may be the direction itself
    (base = outputs = v: the MAML reverse step v ← v − αHv): each layer's V_l is read before its
    (Hv)_l is written."""
    for layer in reversed(range(len(weights))):
        if layer > 0:
            _propagate_with_r(ws, weights, v_w, layer)
        base_w, base_b = _layer(base, layer)
        step = 1.0 if base is None else scale
        if layer == 0:
            matmul_into(hv_w[0], ws.r_delta[0].transpose(1, 2), x, base_w, step)
        else:  # R{Δ}ᵀA + ΔᵀR{A} in one product over the stacked rows
            matmul_into(hv_w[layer], ws.deltas[layer].transpose(1, 2), ws.acts[layer - 1], base_w, step)
        if hv_b is not None:
            _sum_points(ws.r_delta[layer], hv_b[layer], base_b, scale)


def _propagate_with_r(ws: Workspace, weights: Tensors, v_w: Tensors, layer: int) -> None:
    """R{Δ_{layer−1}} (and Δ_{layer−1}, unless only R{Δ_0} is needed) from layer ``layer``."""
    curved = ws.activation.curved
    if layer == 1 and not curved:
        # below the first hidden layer only R{Δ_0} matters ((Hv)_{W_0} = R{Δ_0}ᵀX, R{X} = 0), and
        # without σ″ it needs no E_0: R{E_0} = R{Δ_1}W_1 + Δ_1V_1 alone
        r_e = ws.tmp[0]
        matmul_into(r_e, ws.r_delta[1], weights[1])
        matmul_into(r_e, ws.delta_hvp[1], v_w[1], r_e)
        ws.activation.chain(r_e, ws.a_hvp[0], ws.d1[0], ws.r_delta[0])
        return
    # [R{E}; E] = [R{Δ}W; ΔW], then R{E} += ΔV
    matmul_into(ws.errors[layer - 1], ws.deltas[layer], weights[layer])
    matmul_into(ws.r_e[layer - 1], ws.delta_hvp[layer], v_w[layer], ws.r_e[layer - 1], scratch=ws.tmp[layer - 1])
    stacked = ws.errors[layer - 1].view(ws.errors[layer - 1].shape[0], 2, ws.points, -1)
    d1 = ws.d1[layer - 1]
    ws.activation.chain(stacked, ws.a_hvp[layer - 1].unsqueeze(1), None if d1 is None else d1.unsqueeze(1),
                        ws.deltas[layer - 1].view_as(stacked))
    if curved:
        tmp = ws.tmp[layer - 1]
        torch.mul(ws.e_hvp[layer - 1], ws.d2[layer - 1], out=tmp)
        ws.r_delta[layer - 1].addcmul_(tmp, ws.r_z[layer - 1])


def loss_delta(ws: Workspace, output_loss: OutputLoss) -> None:
    """Δ_L from the output Z_L (after :func:`forward`)."""
    output_loss.delta(ws.z[-1], ws.delta[-1], ws.aux)


def loss_value(ws: Workspace, output_loss: OutputLoss) -> torch.Tensor:
    """Per-task loss [B] (after :func:`loss_delta`)."""
    return output_loss.value(ws.z[-1], ws.aux)


def loss_deltas_with_r(ws: Workspace, output_loss: OutputLoss) -> None:
    """Δ_L and R{Δ_L} from Z_L and R{Z_L} (after :func:`forward_with_r`)."""
    output_loss.delta(ws.z_hvp[-1], ws.delta_hvp[-1], ws.aux)
    output_loss.r_delta(ws.r_z[-1], ws.r_delta[-1], ws.aux)
