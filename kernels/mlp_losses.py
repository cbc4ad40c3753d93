"""Output losses of the fused MLP passes: value, Δ_L = ∂L/∂Z_L and R{Δ_L} = ∇²_Z L·R{Z_L}.

Per task b with point mask m_k ∈ {0, 1} (padded points carry m_k = 0) and n_b = Σ_k m_k:

* MSE over d outputs: L_b = (1/(n_b d)) Σ_k m_k ‖ŷ_k − y_k‖²;  Δ = (2/(n_b d)) m (ŷ − y);
  R{Δ} = (2/(n_b d)) m R{Z}.
* cross-entropy over C classes: L_b = (1/n_b) Σ_k m_k (logsumexp z_k − z_{k,y_k});
  Δ = (m/n_b)(p − e_y) with p = softmax z;  R{Δ} = (m/n_b)(p⊙R{Z} − p (pᵀR{Z})).

These are the loss-layer pieces of the backward pass and of Pearlmutter's R-pass (issue 5;
seed 000 eq. 2.7); the engine's own losses (engine/losses.py) are the unmasked case.
"""

from __future__ import annotations

import torch


def _point_weights(y: torch.Tensor, mask: torch.Tensor | None, per_point: int,
                   dtype: torch.dtype) -> torch.Tensor | float:
    """w_k = m_k / (n_b · per_point), shaped [B, K, 1] (a float when there is no mask)."""
    if mask is None:
        return 1.0 / (y.shape[1] * per_point)
    m = mask.to(dtype)
    counts = m.sum(dim=1, keepdim=True)
    if bool((counts == 0).any()):
        raise ValueError("a task has no unmasked points; every task needs at least one point")
    return (m / (counts * per_point)).unsqueeze(-1)


class MSEOutput:
    """Mean squared error of predictions Z_L [B, K, d] against targets ``y`` [B, K, d]."""

    def __init__(self, y: torch.Tensor, mask: torch.Tensor | None, dtype: torch.dtype) -> None:
        self.y = y
        self.weight = _point_weights(y, mask, y.shape[-1], dtype)
        self.curvature = 2 * self.weight  # ∂²L/∂ŷ² per point
        self.mask = None if mask is None else mask.to(dtype).unsqueeze(-1)

    def delta(self, out: torch.Tensor, delta: torch.Tensor, aux: torch.Tensor) -> None:
        """Δ_L into ``delta``; leaves the masked residual m(ŷ − y) in ``aux`` for :meth:`value`."""
        torch.sub(out, self.y, out=aux)
        if self.mask is not None:
            aux.mul_(self.mask)
        torch.mul(aux, self.curvature, out=delta)

    def value(self, out: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        """Per-task loss [B] from the residual :meth:`delta` left in ``aux``."""
        return (aux * aux * self.weight).sum(dim=(1, 2))

    def r_delta(self, r_out: torch.Tensor, r_delta: torch.Tensor, aux: torch.Tensor) -> None:
        torch.mul(r_out, self.curvature, out=r_delta)


class CrossEntropyOutput:
    """Softmax cross-entropy of logits Z_L [B, K, C] against integer labels ``y`` [B, K]."""

    def __init__(self, y: torch.Tensor, mask: torch.Tensor | None, classes: int, dtype: torch.dtype) -> None:
        self.onehot = torch.nn.functional.one_hot(y.long(), classes).to(dtype)
        self.weight = _point_weights(y, mask, 1, dtype)

    def delta(self, out: torch.Tensor, delta: torch.Tensor, aux: torch.Tensor) -> None:
        """Δ_L into ``delta``; leaves p = softmax(Z_L) in ``aux`` for the R-pass."""
        torch.softmax(out, dim=-1, out=aux)
        torch.sub(aux, self.onehot, out=delta)
        delta.mul_(self.weight)

    def value(self, out: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        picked = (out * self.onehot).sum(dim=-1, keepdim=True)
        per_point = torch.logsumexp(out, dim=-1, keepdim=True) - picked
        return (per_point * self.weight).sum(dim=(1, 2))

    def r_delta(self, r_out: torch.Tensor, r_delta: torch.Tensor, aux: torch.Tensor) -> None:
        torch.mul(aux, r_out, out=r_delta)
        r_delta.addcmul_(aux, r_delta.sum(dim=-1, keepdim=True), value=-1.0)
        r_delta.mul_(self.weight)


def output_loss(loss: str, y: torch.Tensor, mask: torch.Tensor | None, classes: int,
                dtype: torch.dtype) -> MSEOutput | CrossEntropyOutput:
    """The output-loss object of ``loss`` for one batch of targets."""
    if loss == "mse":
        return MSEOutput(y, mask, dtype)
    return CrossEntropyOutput(y, mask, classes, dtype)
