"""Inner loops shared by the gradient-based algorithms, written against backend primitives.

* :func:`sgd_trajectory` — N steps of θ^(n) = θ^(n−1) − α∇L_S(θ^(n−1)) (seed 000 eq. 2.1),
  optionally keeping every iterate for MAML's reverse pass (eq. 2.5).
* :func:`prox_solve` — accelerated gradient descent on L_S(φ) + (λ/2)‖φ − θ‖² (seed 000
  eq. 3.6, monograph eq. 2.4b) until the gradient norm has shrunk by ``tol`` or ``max_steps`` ran out.
* :func:`cyclic_minibatch` — Reptile's inner batches over support ∪ query.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from innerloop.backends.base import Backend, LearnerLike
from innerloop.engine.params import Params, add_scaled, norm_per_task, subtract


@dataclass
class Trajectory:
    """The final iterate, every iterate when kept (θ^(0), ..., θ^(N)), and per-step losses [N, B]."""

    final: Params
    states: list[Params] | None
    losses: torch.Tensor | None


def sgd_trajectory(
    backend: Backend,
    learner: LearnerLike,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    steps: int,
    keep_states: bool = False,
) -> Trajectory:
    """``steps`` plain gradient steps on each task's loss (per-task params, leading axis B)."""
    states = [params] if keep_states else None
    losses = []
    for _ in range(steps):
        loss, grads = backend.loss_and_grad(learner, params, x, y)
        params = add_scaled(params, grads, -lr)
        losses.append(loss)
        if keep_states:
            states.append(params)
    return Trajectory(params, states, torch.stack(losses) if losses else None)


@dataclass
class ProxSolution:
    """φ* per task, the relative gradient norm ‖∇F(φ)‖/‖∇F(θ)‖ per task [B], steps taken."""

    params: Params
    relative_residual: torch.Tensor
    steps: int


def prox_solve(
    backend: Backend,
    learner: LearnerLike,
    anchor: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    lam: float,
    lr: float,
    max_steps: int,
    tol: float,
) -> ProxSolution:
    """argmin_φ F(φ) = L_S(φ) + (λ/2)‖φ − θ‖² by Nesterov-accelerated gradient descent from φ = θ.

    F is λ-strongly convex wherever L_S is convex, so the momentum (1 − √(αλ))/(1 + √(αλ))
    needs about √(1/(αλ)) times fewer steps than plain descent with the same step α.
    Stops once every task satisfies ‖∇F(φ)‖ ≤ tol·‖∇F(θ)‖ (the iterate returned is the point
    where that gradient was measured).
    """
    root = (lr * lam) ** 0.5
    momentum = (1 - root) / (1 + root) if root < 1 else 0.0
    phi, previous = anchor, anchor
    initial_norm = None
    for step in range(max_steps + 1):
        point = add_scaled(phi, subtract(phi, previous), momentum) if step else phi
        _, grads = backend.loss_and_grad(learner, point, x, y)
        full = add_scaled(grads, subtract(point, anchor), lam)
        norm = norm_per_task(full)
        if initial_norm is None:
            initial_norm = norm.clamp_min(torch.finfo(norm.dtype).tiny)
        residual = norm / initial_norm
        if step == max_steps or bool((residual <= tol).all()):
            return ProxSolution(point, residual, step)
        previous, phi = phi, add_scaled(point, full, -lr)
    raise AssertionError("unreachable")  # the loop always returns at step == max_steps


def cyclic_minibatch(
    x: torch.Tensor, y: torch.Tensor, step: int, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``step``-th minibatch of ``batch_size`` points, cycling through the point axis.

    Points within a task are i.i.d., so consecutive windows are random minibatches drawn
    without replacement within each pass; no extra random state is needed.
    """
    n = x.shape[1]
    index = (step * batch_size + torch.arange(batch_size, device=x.device)) % n
    return x[:, index], y[:, index]
