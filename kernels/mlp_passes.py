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
from innerloop.kernels.mlp_layout import MLPSpec
from innerloop.kernels.mlp_losses import CrossEntropyOutput, MSEOutput

Tensors = list[torch.Tensor]
OutputLoss = MSEOutput | CrossEntropyOutput


class Workspace:
    """Buffers of one MLP on one batch shape. The plain passes use contiguous [B, K, width]
    buffers ``z``, ``a``, ``delta``, ``e``; the HVP passes use row-stacked [B, 2K, width] ones:
    ``za`` = [Z; R{Z}], ``acts`` = [A; R{A}], ``deltas`` = [R{Δ}; Δ], ``errors`` = [R{E}; E]
    (``r_z``, ``a_hvp``, ... are their halves). σ′, σ″ and scratch are [B, K, width]."""

    def __init__(self, spec: MLPSpec, tasks: int, points: int, dtype: torch.dtype, device: torch.device) -> None:
        self.spec, self.points = spec, points
        self.activation = ACTIVATIONS[spec.activation]
        widths = spec.widths[1:]
        hidden = widths[:-1]

        def buffers(widths: tuple[int, ...], rows: int = points) -> Tensors:
            return [torch.empty(tasks, rows, w, dtype=dtype, device=device) for w in widths]

        self.z, self.delta, self.scratch = buffers(widths), buffers(widths), buffers(widths)
        self.a, self.e, self.d1, self.tmp = buffers(hidden), buffers(hidden), buffers(hidden), buffers(hidden)
        self.d2 = buffers(hidden) if self.activation.curved else [None] * len(hidden)
        self.aux = torch.empty(tasks, points, widths[-1], dtype=dtype, device=device)
        self.za, self.deltas = buffers(widths, 2 * points), buffers(widths, 2 * points)
        self.acts, self.errors = buffers(hidden, 2 * points), buffers(hidden, 2 * points)
        k = points
        self.z_hvp, self.r_z = [t[:, :k] for t in self.za], [t[:, k:] for t in self.za]
        self.a_hvp, self.r_a = [t[:, :k] for t in self.acts], [t[:, k:] for t in self.acts]
        self.r_delta, self.delta_hvp = [t[:, :k] for t in self.deltas], [t[:, k:] for t in self.deltas]
        self.r_e, self.e_hvp = [t[:, :k] for t in self.errors], [t[:, k:] for t in self.errors]
        self.dtype, self.device = dtype, device
        self._temps: dict[torch.Size, torch.Tensor] = {}

    def temp(self, shape: torch.Size) -> torch.Tensor:
        """A reusable buffer of ``shape`` for the elementwise step of thin products."""
        if shape not in self._temps:
            self._temps[shape] = torch.empty(shape, dtype=self.dtype, device=self.device)
        return self._temps[shape]



def _inputs(ws: Workspace, x: torch.Tensor, layer: int) -> torch.Tensor:
    return x if layer == 0 else ws.a[layer - 1]


def _bias(biases: Tensors | None, layer: int) -> torch.Tensor | None:
    return None if biases is None else biases[layer]


def forward(ws: Workspace, weights: Tensors, biases: Tensors | None, x: torch.Tensor) -> torch.Tensor:
    """Z_l, A_l, σ′(Z_l) (and σ″ when curved) into ``ws``; returns the output Z_L."""
    last = len(weights) - 1
    for layer, w in enumerate(weights):
        matmul_into(ws.z[layer], _inputs(ws, x, layer), w.transpose(1, 2), bias=_bias(biases, layer),
                    temp=ws.temp)
        if layer < last:
            ws.activation.evaluate(ws.z[layer], ws.a[layer], ws.d1[layer], ws.d2[layer], ws.tmp[layer])
    return ws.z[last]


def backward(ws: Workspace, weights: Tensors, x: torch.Tensor, grad_w: Tensors, grad_b: Tensors | None) -> None:
    """∇W_l, ∇b_l into ``grad_w``/``grad_b`` from Δ_L (set by :func:`loss_delta`)."""
    for layer in reversed(range(len(weights))):
        delta = ws.delta[layer]
        matmul_into(grad_w[layer], delta.transpose(1, 2), _inputs(ws, x, layer), temp=ws.temp)
        if grad_b is not None:
            torch.sum(delta, dim=1, out=grad_b[layer])
        if layer > 0:
            matmul_into(ws.e[layer - 1], delta, weights[layer], temp=ws.temp)
            torch.mul(ws.e[layer - 1], ws.d1[layer - 1], out=ws.delta[layer - 1])


def forward_with_r(ws: Workspace, weights: Tensors, biases: Tensors | None, v_w: Tensors,
                   v_b: Tensors | None, x: torch.Tensor) -> None:
    """The forward pass and its R-twin for direction (V, c): Z_l, A_l, σ′, σ″, R{Z_l}, R{A_l}."""
    last = len(weights) - 1
    for layer, (w, v) in enumerate(zip(weights, v_w)):
        if layer == 0:
            scratch = ws.scratch[0]
            matmul_into(ws.z_hvp[0], x, w.transpose(1, 2), scratch=scratch, bias=_bias(biases, 0), temp=ws.temp)
            matmul_into(ws.r_z[0], x, v.transpose(1, 2), scratch=scratch, bias=_bias(v_b, 0), temp=ws.temp)
        else:  # [Z; R{Z}] = [A; R{A}]Wᵀ, then R{Z} += AVᵀ + c, Z += b
            matmul_into(ws.za[layer], ws.acts[layer - 1], w.transpose(1, 2), temp=ws.temp)
            if v_b is not None:
                ws.r_z[layer].add_(v_b[layer].unsqueeze(1))
            matmul_into(ws.r_z[layer], ws.a_hvp[layer - 1], v.transpose(1, 2), True, ws.scratch[layer],
                        temp=ws.temp)
            if biases is not None:
                ws.z_hvp[layer].add_(biases[layer].unsqueeze(1))
        if layer < last:
            ws.activation.evaluate(ws.z_hvp[layer], ws.a_hvp[layer], ws.d1[layer], ws.d2[layer], ws.tmp[layer])
            torch.mul(ws.d1[layer], ws.r_z[layer], out=ws.r_a[layer])


def backward_with_r(ws: Workspace, weights: Tensors, v_w: Tensors, x: torch.Tensor,
                    hv_w: Tensors, hv_b: Tensors | None) -> None:
    """The backward pass and its R-twin from Δ_L and R{Δ_L}: (Hv)_{W_l}, (Hv)_{b_l} into
    ``hv_w``/``hv_b``."""
    curved = ws.activation.curved
    for layer in reversed(range(len(weights))):
        if layer == 0:
            matmul_into(hv_w[0], ws.r_delta[0].transpose(1, 2), x, temp=ws.temp)
        else:  # R{Δ}ᵀA + ΔᵀR{A} in one product over the stacked rows
            matmul_into(hv_w[layer], ws.deltas[layer].transpose(1, 2), ws.acts[layer - 1], temp=ws.temp)
        if hv_b is not None:
            torch.sum(ws.r_delta[layer], dim=1, out=hv_b[layer])
        if layer == 0:
            break
        if layer == 1 and not curved:
            # below the first hidden layer only R{Δ_0} matters ((Hv)_{W_0} = R{Δ_0}ᵀX, R{X} = 0), and
            # without σ″ it needs no E_0: R{E_0} = R{Δ_1}W_1 + Δ_1V_1 alone
            r_e = ws.tmp[0]
            matmul_into(r_e, ws.r_delta[1], weights[1], temp=ws.temp)
            matmul_into(r_e, ws.delta_hvp[1], v_w[1], accumulate=True, temp=ws.temp)
            torch.mul(r_e, ws.d1[0], out=ws.r_delta[0])
            continue
        # [R{E}; E] = [R{Δ}W; ΔW], then R{E} += ΔV
        matmul_into(ws.errors[layer - 1], ws.deltas[layer], weights[layer], temp=ws.temp)
        matmul_into(ws.r_e[layer - 1], ws.delta_hvp[layer], v_w[layer], True, ws.tmp[layer - 1], temp=ws.temp)
        stacked = ws.errors[layer - 1].view(ws.errors[layer - 1].shape[0], 2, ws.points, -1)
        torch.mul(stacked, ws.d1[layer - 1].unsqueeze(1), out=ws.deltas[layer - 1].view_as(stacked))
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
