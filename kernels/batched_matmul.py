"""Batched matrix products [B, m, k] × [B, k, n] that stay fast for the thin shapes of small MLPs.

torch.bmm on the CPU loops over the batch (one small GEMM or a select-heavy naive kernel per
task) when a dimension is 1 — a 1-input or 1-output layer, e.g. the sinusoid learner
1→40→40→1 — or when its output is not contiguous, which costs ~10–100× the arithmetic. Thin
products run here as broadcast multiply-and-reduce over the operand's contiguous axis, and
GEMMs always write a contiguous result (``scratch`` when ``out`` is a strided view).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Temp = Callable[[torch.Size], torch.Tensor]  # a reusable buffer of a given shape


def _vector_product(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, temp: Temp | None) -> None:
    """out = a @ b when n == 1 or m == 1: an elementwise product over the big operand's contiguous
    layout (into ``temp(shape)`` when given: a fresh large tensor costs page faults), then a sum."""
    if b.shape[2] == 1:  # [B, m, k] · [B, k, 1]
        left, right, axis, target = (a, b.transpose(1, 2), 2, out.squeeze(2)) if a.stride(2) == 1 \
            else (a.transpose(1, 2), b, 1, out.squeeze(2))
    else:  # [B, 1, k] · [B, k, n]
        left, right, axis, target = (a.transpose(1, 2), b, 1, out.squeeze(1)) if b.stride(2) == 1 \
            else (a, b.transpose(1, 2), 2, out.squeeze(1))
    shape = torch.Size(max(i, j) for i, j in zip(left.shape, right.shape))  # the broadcast shape
    product = torch.mul(left, right, out=temp(shape)) if temp is not None else left * right
    torch.sum(product, dim=axis, out=target)


_DIRECT = {  # (accumulate in place, bias + product, product) for outer products and GEMMs
    "outer": (torch.Tensor.addcmul_, torch.addcmul, torch.mul),
    "gemm": (torch.Tensor.baddbmm_, torch.baddbmm, torch.bmm),
}


def _direct(kind: str, out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, accumulate: bool,
            bias: torch.Tensor | None) -> None:
    """One torch op writing straight into ``out``."""
    in_place, with_bias, plain = _DIRECT[kind]
    if accumulate:
        in_place(out, a, b)
    elif bias is not None:
        with_bias(bias.unsqueeze(1), a, b, out=out)
    else:
        plain(a, b, out=out)


def _shared_right(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None) -> None:
    """out = a @ b (+ bias) with one ``b`` for every task (e.g. the shared θ_0): a single GEMM over
    all B·m rows, about twice as fast as B small ones."""
    rows, flat = a.reshape(-1, a.shape[2]), out.view(-1, out.shape[2])
    if bias is not None and bias.stride(0) == 0:
        torch.addmm(bias[0], rows, b, out=flat)
    elif bias is not None:
        torch.mm(rows, b, out=flat)
        out.add_(bias.unsqueeze(1))
    else:
        torch.mm(rows, b, out=flat)


def matmul_into(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, accumulate: bool = False,
                scratch: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                temp: Temp | None = None) -> None:
    """out = a @ b, out += a @ b (``accumulate``) or out = bias + a @ b (``bias`` [B, n]),
    batched over the leading axis.

    ``scratch`` (contiguous, shaped like ``out``) is needed when ``out`` is not contiguous and
    the product is a GEMM; ``temp`` supplies buffers for the thin products' elementwise step."""
    m, k, n = a.shape[1], a.shape[2], b.shape[2]
    if k == 1:
        _direct("outer", out, a, b, accumulate, bias)
        return
    if b.stride(0) == 0 and a.is_contiguous() and out.is_contiguous() and not accumulate:
        _shared_right(out, a, b[0], bias)
        return
    if not (n == 1 or m == 1) and out.is_contiguous():
        _direct("gemm", out, a, b, accumulate, bias)
        return
    if not (accumulate or bias is not None):
        if n == 1 or m == 1:
            _vector_product(a, b, out, temp)
        else:
            torch.bmm(a, b, out=scratch)
            out.copy_(scratch)
        return
    if n == 1 or m == 1:
        product = torch.empty_like(out) if scratch is None else scratch
        _vector_product(a, b, product, temp)
    else:
        product = torch.bmm(a, b, out=scratch)
    if accumulate:
        out.add_(product)
    else:
        torch.add(product, bias.unsqueeze(1), out=out)
