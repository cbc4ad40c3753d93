"""Inner loops shared by the gradient-based algorithms, written against backend primitives.

* :func:`sgd_trajectory` — N steps of θ^(n) = θ^(n−1) − α⊙∇L_S(θ^(n−1)) (seed 000 eq. 2.1) on
  all parameters or a subset (ANIL's head, CAVIA's context), α a scalar or per-parameter
  (Meta-SGD), optionally keeping every iterate and gradient for the reverse pass;
* :func:`sgd_reverse` — that reverse pass (seed 000 eq. 2.5) on Hessian-vector products only.
* :func:`prox_solve` — accelerated gradient descent on L_S(φ) + (λ/2)‖φ − θ‖² (seed 000
  eq. 3.6, monograph eq. 2.4b) until the gradient norm has shrunk by ``tol`` or ``max_steps`` ran out.
* :func:`cyclic_minibatch` — Reptile's inner batches over support ∪ query.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from innerloop.backends.base import Backend, LearnerLike
from innerloop.engine.params import Params, add_scaled, norm_per_task, subtract

StepSize = float | Params  # one α, or one α tensor per adapted parameter (Meta-SGD)


@dataclass
class Trajectory:
    """The final iterate; when kept, every iterate θ^(0..N) and the gradient ∇L_S(θ^(n−1)) of each
    step; per-step losses [N, B]."""

    final: Params
    states: list[Params] | None
    losses: torch.Tensor | None
    grads: list[Params] | None = None


def sgd_step(params: Params, grads: Params, lr: StepSize, adapt: frozenset[str] | None = None) -> Params:
    """θ − α⊙∇ on the names in ``adapt`` (all when None); the other parameters are unchanged."""
    return {k: p - _step(lr, k) * grads[k] if adapt is None or k in adapt else p for k, p in params.items()}


def _step(lr: StepSize, name: str) -> float | torch.Tensor:
    return lr[name] if isinstance(lr, dict) else lr


def inner_step(backend: Backend, learner: LearnerLike, params: Params, x: torch.Tensor, y: torch.Tensor,
               lr: float) -> tuple[torch.Tensor, Params]:
    """One inner step on every task: the backend's local learning rule when it has one
    (``local_update``, e.g. the spiking backend's three-factor step, monograph eq. 6.5), otherwise
    θ − α∇L (seed 000 eq. 2.1) from ``loss_and_grad``. Returns (per-task losses, new params)."""
    if backend.supports("local_update"):
        return backend.local_update(learner, params, x, y, lr)
    loss, grads = backend.loss_and_grad(learner, params, x, y)
    return loss, sgd_step(params, grads, lr)


def sgd_trajectory(
    backend: Backend,
    learner: LearnerLike,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: StepSize,
    steps: int,
    keep_states: bool = False,
    adapt: frozenset[str] | None = None,
) -> Trajectory:
    """``steps`` gradient steps on each task's loss (per-task params, leading axis B). Plain steps
    (all parameters, one step size, no kept states) are :func:`inner_step`s, so backends with a
    local learning rule run their own."""
    states = [params] if keep_states else None
    grads_kept = [] if keep_states else None
    losses = []
    local = not keep_states and adapt is None and not isinstance(lr, dict)
    for _ in range(steps):
        if local:
            loss, params = inner_step(backend, learner, params, x, y, lr)
            losses.append(loss)
            continue
        loss, grads = backend.loss_and_grad(learner, params, x, y)
        params = sgd_step(params, grads, lr, adapt)
        losses.append(loss)
        if keep_states:
            states.append(params)
            grads_kept.append(grads)
    return Trajectory(params, states, torch.stack(losses) if losses else None, grads_kept)


def sgd_reverse(
    backend: Backend,
    learner: LearnerLike,
    points: list[Params],
    x: torch.Tensor,
    y: torch.Tensor,
    g: Params,
    lr: StepSize,
    adapt: frozenset[str] | None = None,
    grads: list[Params] | None = None,
    hessian: bool = True,
) -> tuple[Params, Params | None]:
    """Backpropagate g = ∂L/∂θ^(N) through θ^(n) = θ^(n−1) − α⊙∇L_S(p_n), n = N … 1.

    ``points`` are the p_n where the step's gradient was taken (the iterates θ^(n−1) for plain
    SGD, perturbed points for Sharp-MAML). The vector-Jacobian product of one step is
    g ← g − ∇²L_S(p_n)·(α⊙g_A), g_A = g on the adapted names and 0 elsewhere (seed 000 eq. 2.5
    when everything adapts). With per-parameter α (a dict) and the step ``grads`` ∇L_S(p_n),
    also returns ∂L/∂α = −Σ_n ∇L_S(p_n)⊙g^(n) per task (Meta-SGD); otherwise None.
    ``hessian=False`` is the first-order approximation (each step's Jacobian taken as I).
    """
    lr_grad = {k: torch.zeros_like(g[k]) for k in lr} if isinstance(lr, dict) else None
    for n in reversed(range(len(points))):
        vector = {k: _step(lr, k) * v if adapt is None or k in adapt else torch.zeros_like(v) for k, v in g.items()}
        if lr_grad is not None:
            lr_grad = {k: lr_grad[k] - grads[n][k] * g[k] for k in lr_grad}
        if hessian:
            hv = backend.hvp(learner, points[n], x, y, vector)
            g = {k: g[k] - hv[k] for k in g}
    return g, lr_grad


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
