"""Activations with their first and second derivatives, for the closed-form MLP passes.

The backward pass needs σ′(Z) and Pearlmutter's R-pass also σ″(Z) (the term
E_{l−1}⊙σ″⊙R{Z_{l−1}} of R{Δ_{l−1}}, issue 5). Each activation writes σ, σ′ and σ″ of the
pre-activations Z into caller-owned buffers, so the hot loop allocates nothing:

* ReLU:  σ′ = 1[z > 0] = 1[σ(z) > 0], σ″ = 0 (almost everywhere)
* tanh:  σ′ = 1 − t²,                  σ″ = −2t(1 − t²),           t = tanh z
* GELU:  σ′ = Φ(z) + zφ(z),            σ″ = φ(z)(2 − z²)           (exact, erf form: F.gelu)
* SiLU:  σ′ = s(1 + z(1 − s)),         σ″ = s(1 − s)(2 + z(1 − 2s)), s = sigmoid z
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

Evaluate = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor], None]
Chain = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor], None]


def _relu(z: torch.Tensor, a: torch.Tensor, d1: torch.Tensor | None, d2: torch.Tensor | None,
          tmp: torch.Tensor) -> None:
    torch.clamp_min(z, 0.0, out=a)  # σ′ = 1[a > 0] is read off a by _relu_chain: no σ′ buffer


def _relu_chain(x: torch.Tensor, a: torch.Tensor, d1: torch.Tensor | None, out: torch.Tensor) -> None:
    torch.ops.aten.threshold_backward.grad_input(x, a, 0.0, grad_input=out)  # x where a > 0, else 0


def _times_derivative(x: torch.Tensor, a: torch.Tensor, d1: torch.Tensor | None, out: torch.Tensor) -> None:
    torch.mul(x, d1, out=out)


def _tanh(z: torch.Tensor, a: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor | None, tmp: torch.Tensor) -> None:
    torch.tanh(z, out=a)
    torch.mul(a, a, out=d1)
    d1.neg_().add_(1.0)  # 1 − t²
    if d2 is not None:
        torch.mul(a, d1, out=d2)
        d2.mul_(-2.0)


_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _gelu(z: torch.Tensor, a: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor | None, tmp: torch.Tensor) -> None:
    torch.mul(z, z, out=tmp)
    tmp.mul_(-0.5).exp_().mul_(_INV_SQRT_2PI)  # φ(z)
    torch.mul(z, _INV_SQRT_2, out=d1)
    d1.erf_().add_(1.0).mul_(0.5)  # Φ(z)
    torch.mul(z, d1, out=a)  # zΦ(z)
    if d2 is not None:
        torch.mul(z, z, out=d2)
        d2.neg_().add_(2.0).mul_(tmp)  # φ(2 − z²)
    d1.addcmul_(z, tmp)  # Φ + zφ


def _silu(z: torch.Tensor, a: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor | None, tmp: torch.Tensor) -> None:
    torch.sigmoid(z, out=tmp)  # s
    torch.mul(z, tmp, out=a)  # zs
    if d2 is not None:  # s(1 − s)(2 + z − 2zs)
        torch.mul(a, -2.0, out=d2)
        d2.add_(z).add_(2.0).mul_(tmp)
        d2.addcmul_(d2, tmp, value=-1.0)  # q·s − q·s² with q = 2 + z − 2zs
    torch.sub(z, a, out=d1)  # z − zs = z(1 − s)
    d1.add_(1.0).mul_(tmp)  # s(1 + z(1 − s))


@dataclass(frozen=True)
class Activation:
    """σ with σ′ and σ″ written into buffers by ``evaluate(z, a, d1, d2, tmp)``, and the chain
    rule ``chain(x, a, d1, out)``: out = x⊙σ′ (broadcasting a, d1 over x). ``curved`` is False when
    σ″ = 0; ``keeps_derivative`` is False when σ′ is read off σ itself (ReLU) and needs no buffer."""

    name: str
    evaluate: Evaluate
    curved: bool
    keeps_derivative: bool = True
    chain: Chain = _times_derivative


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation("relu", _relu, curved=False, keeps_derivative=False, chain=_relu_chain),
    "tanh": Activation("tanh", _tanh, curved=True),
    "gelu": Activation("gelu", _gelu, curved=True),
    "silu": Activation("silu", _silu, curved=True),
}
