"""ALSET (Chen, Sun & Yin 2021; monograph Algorithm 10, eqs. 3.5–3.14): a generic stochastic
bilevel solver, specialized to meta-learning by the choice of lower-level problem.

Per task, upper level f(θ, φ) = L_Q(φ) and lower level g(θ, φ); the hypergradient (eq. 3.6) is

    ∇_θ f − ∇²_θφ g · [∇²_φφ g]⁻¹ · ∇_φ f,       here ∇_θ f = 0, ∇_φ f = ∇L_Q(φ),

evaluated at φ after T lower-level gradient steps φ ← φ − β∇_φ g(θ, φ) from φ = θ (eqs. 3.8a,
3.9; β = ``inner_lr``, T = ``inner_steps``). The inverse Hessian is the Neumann series of
eq. 3.7 with constant L_g ≥ ‖∇²_φφ g‖: deterministically (1/L_g) Σ_{n<N} (I − ∇²_φφ g/L_g)^n,
or stochastically (N/L_g) Π_{n≤N'} (I − ∇²_φφ g/L_g) with N' uniform in {0, …, N−1} — the
unbiased estimator of that truncated sum (eq. 3.7 writes N' ∈ {1, …, N}, which drops the n = 0
term; we keep it). Every product is a backend hvp.

Lower levels (``lower``):
* ``"maml"`` (eq. 3.11): g = ∇L_S(θ)ᵀ(φ − θ) + ‖φ − θ‖²/(2α); ∇²_φφ g = I/α,
  ∇²_θφ g = ∇²L_S(θ) − I/α (eq. 3.13), L_g = 1/α; with β = α and T = 1 the hypergradient is
  one-step MAML's (I − α∇²L_S(θ))∇L_Q(θ − α∇L_S(θ)) exactly (eq. 3.12–3.13).
* ``"imaml"`` (eq. 3.14): g = L_S(φ) + (λ/2)‖φ − θ‖²; ∇²_φφ g = ∇²L_S(φ) + λI, ∇²_θφ g = −λI,
  so the hypergradient is λ(∇²L_S + λI)⁻¹∇L_Q, iMAML's; L_g by power iteration (×1.2 margin).
"""

from __future__ import annotations

import torch

from innerloop.backends.base import Backend
from innerloop.engine.algorithms.base import MetaAlgorithm, MetaGradient, register
from innerloop.engine.errors import ConfigError, require_positive, unknown_name
from innerloop.engine.learner import Learner
from innerloop.engine.params import Params, add_scaled, mean_over_tasks, norm_per_task, subtract
from innerloop.engine.tasks import TaskBatch

LOWER_LEVELS = ("maml", "imaml")
NEUMANN = ("deterministic", "stochastic")


def _scaled(params: Params, scale: torch.Tensor | float) -> Params:
    if isinstance(scale, torch.Tensor):
        return {k: v * scale.reshape(-1, *([1] * (v.ndim - 1))) for k, v in params.items()}
    return {k: v * scale for k, v in params.items()}


@register
class ALSET(MetaAlgorithm):
    """Alternating stochastic gradient descent for bilevel problems, with a Neumann-series inverse."""

    name = "alset"
    requires = frozenset({"loss", "loss_and_grad", "hvp"})
    summary = "ALSET: generic stochastic bilevel solver with Neumann-series inverse Hessian (monograph Alg. 10)"

    def __init__(self, model, backend: Backend, inner_lr: float = 0.01, inner_steps: int = 1, lower: str = "maml",
                 lam: float = 10.0, neumann_steps: int = 20, neumann: str = "deterministic",
                 loss: str | None = None) -> None:
        if lower not in LOWER_LEVELS:
            raise unknown_name("lower-level problem", lower, LOWER_LEVELS)
        if neumann not in NEUMANN:
            raise unknown_name("Neumann estimator", neumann, NEUMANN)
        if int(neumann_steps) != neumann_steps or neumann_steps < 1:
            raise ConfigError(f"neumann_steps must be a positive integer, got {neumann_steps}", "e.g. neumann_steps=20")
        require_positive("lam", lam)
        self.lower, self.lam = lower, float(lam)
        self.neumann_steps, self.neumann = int(neumann_steps), neumann
        super().__init__(model, backend, inner_lr, inner_steps, loss)

    # -- the lower-level problem g(θ, φ) -----------------------------------------------------
    def _lower_grad(self, learner: Learner, theta: Params, phi: Params, batch: TaskBatch,
                    support_grad_at_theta: Params) -> Params:
        """∇_φ g(θ, φ) (eq. 3.9)."""
        if self.lower == "maml":
            return add_scaled(support_grad_at_theta, subtract(phi, theta), 1 / self.inner_lr)
        _, grad = self.backend.loss_and_grad(learner, phi, batch.support_x, batch.support_y)
        return add_scaled(grad, subtract(phi, theta), self.lam)

    def _hess_phiphi(self, learner: Learner, phi: Params, batch: TaskBatch, v: Params) -> Params:
        """∇²_φφ g · v."""
        if self.lower == "maml":
            return _scaled(v, 1 / self.inner_lr)
        return add_scaled(self.backend.hvp(learner, phi, batch.support_x, batch.support_y, v), v, self.lam)

    def _cross(self, learner: Learner, theta: Params, batch: TaskBatch, v: Params) -> Params:
        """∇²_θφ g · v (eq. 3.13 for MAML, −λv for iMAML)."""
        if self.lower == "maml":
            hv = self.backend.hvp(learner, theta, batch.support_x, batch.support_y, v)
            return add_scaled(hv, v, -1 / self.inner_lr)
        return _scaled(v, -self.lam)

    def _lipschitz(self, learner: Learner, phi: Params, batch: TaskBatch) -> torch.Tensor | float:
        """L_g ≥ ‖∇²_φφ g‖ per task: exact for the MAML lower level, power iteration otherwise."""
        if self.lower == "maml":
            return 1 / self.inner_lr
        v = {k: torch.randn(x.shape, generator=self.generator).to(x.device, x.dtype) for k, x in phi.items()}
        for _ in range(20):
            v = _scaled(v, 1 / norm_per_task(v).clamp_min(1e-30))
            v = self._hess_phiphi(learner, phi, batch, v)
        return 1.2 * norm_per_task(v)

    # -- ALSET ------------------------------------------------------------------------------
    def _lower_solve(self, learner: Learner, theta: Params, batch: TaskBatch, steps: int) -> Params:
        phi, support_grad = theta, None
        if self.lower == "maml":
            _, support_grad = self.backend.loss_and_grad(learner, theta, batch.support_x, batch.support_y)
        for _ in range(steps):  # eq. 3.8a
            phi = add_scaled(phi, self._lower_grad(learner, theta, phi, batch, support_grad), -self.inner_lr)
        return phi

    def neumann_inverse(self, learner: Learner, phi: Params, batch: TaskBatch, v: Params,
                        lipschitz: torch.Tensor | float | None = None, terms: int | None = None) -> Params:
        """[∇²_φφ g]⁻¹·v by the Neumann series of eq. 3.7 (deterministic or stochastic); ``terms``
        fixes the stochastic estimator's N' (default: drawn uniformly from {0, …, N−1})."""
        if lipschitz is None:
            lipschitz = self._lipschitz(learner, phi, batch)

        def contract(u: Params) -> Params:  # (I − ∇²_φφ g/L_g)·u
            return subtract(u, _scaled(self._hess_phiphi(learner, phi, batch, u), 1 / lipschitz))

        if self.neumann == "stochastic":
            if terms is None:
                terms = int(torch.randint(0, self.neumann_steps, (), generator=self.generator))
            u = v
            for _ in range(terms):
                u = contract(u)
            return _scaled(u, self.neumann_steps / lipschitz)
        total, u = v, v
        for _ in range(self.neumann_steps - 1):
            u = contract(u)
            total = add_scaled(total, u, 1.0)
        return _scaled(total, 1 / lipschitz)

    def _compute(self, learner: Learner, theta: Params, batch: TaskBatch) -> MetaGradient:
        start = self._expand(theta, batch)
        phi = self._lower_solve(learner, start, batch, self.inner_steps)
        query_loss, upper = self.backend.loss_and_grad(learner.validation, phi, batch.query_x, batch.query_y)
        inverse = self.neumann_inverse(learner, phi, batch, upper)
        hypergrad = _scaled(self._cross(learner, start, batch, inverse), -1.0)  # eq. 3.10 with ∇_θ f = 0
        return MetaGradient(mean_over_tasks(hypergrad), query_loss)

    def _adapt(self, learner: Learner, theta: Params, batch: TaskBatch, steps: int) -> Params:
        return self._lower_solve(learner, self._expand(theta, batch), batch, steps)

    def options(self) -> dict:
        return {**super().options(), "lower": self.lower, "lam": self.lam, "neumann_steps": self.neumann_steps,
                "neumann": self.neumann}
