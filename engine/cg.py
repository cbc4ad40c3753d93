"""Batched conjugate gradients for per-task linear systems A_b x_b = b_b.

Used by iMAML to solve (∇²L_S(φ*) + λI) x = ∇L_Q(φ*) with Hessian-vector products only
(seed 000 eq. 3.9, monograph eq. 2.8). Every task runs its own CG recursion; the loop stops
when all tasks reach ‖r_b‖ ≤ tol·‖b_b‖. A task whose curvature pᵀAp turns non-positive
(possible for non-convex losses with small λ) is frozen and reported, never divided by zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from innerloop.engine.params import Params, add_scaled, dot_per_task


@dataclass
class CGResult:
    """Solution, relative residual ‖b − Ax‖/‖b‖ per task [B], iterations run, frozen-task mask."""

    solution: Params
    relative_residual: torch.Tensor
    iterations: int
    indefinite: torch.Tensor


def conjugate_gradient(
    matvec: Callable[[Params], Params], rhs: Params, max_iter: int, tol: float
) -> CGResult:
    """Solve A x = rhs per task by CG from x = 0, with ``matvec(v) = A v``."""
    x = {k: torch.zeros_like(v) for k, v in rhs.items()}
    r = dict(rhs)
    p = dict(rhs)
    rs = dot_per_task(r, r)
    rhs_norm = rs.sqrt()
    indefinite = torch.zeros_like(rs, dtype=torch.bool)
    iterations = 0
    for _ in range(max_iter):
        active = (rs.sqrt() > tol * rhs_norm) & ~indefinite
        if not bool(active.any()):
            break
        iterations += 1
        ap = matvec(p)
        curvature = dot_per_task(p, ap)
        indefinite = indefinite | (active & (curvature <= 0))
        step_ok = active & ~indefinite
        alpha = torch.where(step_ok, rs / torch.where(step_ok, curvature, torch.ones_like(curvature)), 0.0)
        x = add_scaled(x, p, alpha)
        r = add_scaled(r, ap, -alpha)
        rs_new = dot_per_task(r, r)
        beta = torch.where(step_ok, rs_new / torch.where(step_ok, rs, torch.ones_like(rs)), 0.0)
        p = add_scaled(r, p, beta)
        rs = torch.where(step_ok, rs_new, rs)
    safe_norm = rhs_norm.clamp_min(torch.finfo(rhs_norm.dtype).tiny)
    return CGResult(x, rs.sqrt() / safe_norm, iterations, indefinite)
