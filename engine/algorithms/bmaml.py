"""Bayesian MAML (Yoon et al. 2018; monograph Algorithm 7, eqs. 2.33–2.37).

The prior is a set of M particles θ = {θ_m} (the meta-parameters); each task's posterior
p(φ | D_S) ∝ exp(−L_S(φ)/τ) is approximated by M particles moved from θ by N steps of Stein
variational gradient descent (eq. 2.37):

    φ_m ← φ_m + α (1/M) Σ_j [ κ(φ_j, φ_m) ∇ log p(φ_j | D_S) + ∇_{φ_j} κ(φ_j, φ_m) ],

with the RBF kernel κ(a, b) = exp(−‖a − b‖²/h) and the median heuristic h = med‖φ_j − φ_m‖²/log(M + 1).
Meta-loss (eq. 2.35), the Monte-Carlo estimate of the posterior-predictive negative log-likelihood,

    ℓ = −τ log (1/M) Σ_m exp(−L_Q(φ_m)/τ),       ∂ℓ/∂φ_m = softmax_m(−L_Q/τ)·∇L_Q(φ_m).

Meta-gradient: backpropagation through the SVGD steps — the score term's Jacobian through the
backend's hvp (−(α/τ)∇²L_S(φ_j)·Σ_m κ_jm a_m / M), the kernel terms by autograd on the kernel
(engine-level tensor algebra, h held constant); ``first_order=True`` drops both. The adapted
particles form an :class:`~innerloop.engine.ensemble.Ensemble`: evaluation scores the
posterior predictive (the particles' mean, or on classification tasks the mixture of their class
probabilities) and ``Ensemble.spread`` gives the predictive uncertainty.
"""

from __future__ import annotations

import math

import torch

from innerloop.backends.base import Backend
from innerloop.engine.algorithms.base import MetaAlgorithm, MetaGradient, register
from innerloop.engine.ensemble import Ensemble
from innerloop.engine.errors import ConfigError, require_positive
from innerloop.engine.learner import Learner
from innerloop.engine.params import Params
from innerloop.engine.tasks import TaskBatch


def svgd_drift(phi: torch.Tensor, score: torch.Tensor, bandwidth: torch.Tensor) -> torch.Tensor:
    """(1/M)Σ_j [κ_jm s_j + ∇_{φ_j}κ_jm] for particles φ [B, M, P], scores s [B, M, P], h [B]."""
    diff = phi.unsqueeze(2) - phi.unsqueeze(1)  # [B, j, m, P]: φ_j − φ_m
    kernel = torch.exp(-(diff**2).sum(-1) / bandwidth[:, None, None])  # κ_jm
    attract = kernel.transpose(1, 2) @ score  # Σ_j κ_jm s_j
    repulse = -(2 / bandwidth[:, None, None]) * (kernel.unsqueeze(-1) * diff).sum(dim=1)  # Σ_j ∇_{φ_j}κ_jm
    return (attract + repulse) / phi.shape[1]


def median_bandwidth(phi: torch.Tensor) -> torch.Tensor:
    """h = median of the pairwise squared distances / log(M + 1), per task [B] (held constant)."""
    squared = ((phi.unsqueeze(2) - phi.unsqueeze(1)) ** 2).sum(-1).flatten(1)
    return (squared.median(dim=1).values / math.log(phi.shape[1] + 1)).clamp_min(1e-12).detach()


@register
class BMAML(MetaAlgorithm):
    """Bayesian MAML: M particles, SVGD inner loop, Monte-Carlo predictive meta-loss."""

    name = "bmaml"
    requires = frozenset({"loss", "loss_and_grad", "hvp"})
    summary = "Bayesian MAML: M particles, SVGD inner loop, predictive meta-loss (monograph Alg. 7)"

    def __init__(self, model, backend: Backend, inner_lr: float = 0.01, inner_steps: int = 5, particles: int = 5,
                 temperature: float = 1.0, first_order: bool = False, loss: str | None = None) -> None:
        if int(particles) != particles or particles < 2:
            raise ConfigError(f"particles must be an integer >= 2, got {particles}", "e.g. particles=5")
        require_positive("temperature", temperature)
        self.temperature, self.first_order = float(temperature), bool(first_order)
        if self.first_order:
            self.requires = frozenset({"loss", "loss_and_grad"})
        inner = model.inner if isinstance(model, Ensemble) else model
        if hasattr(inner, "objective_name"):  # e.g. the REGNN's minus sum-rate: no likelihood of targets to mix
            raise ConfigError(
                f"BMAML's particles need a likelihood of the task's targets (eqs. 2.33–2.35), but {inner!r} is "
                f"trained on its own objective '{inner.objective_name}'",
                "use maml, fomaml, reptile, imaml or modular on this task")
        if not isinstance(model, Ensemble):
            model = Ensemble(model, particles)
        super().__init__(model, backend, inner_lr, inner_steps, loss)

    # -- flattening between [B, M, ...] particles and the backend's task axis ---------------
    def _flat(self, params: Params) -> Params:
        return {k: v.flatten(0, 1) for k, v in params.items()}

    def _vector(self, params: Params) -> torch.Tensor:
        return torch.cat([v.flatten(2) for v in params.values()], dim=-1)

    def _unvector(self, vector: torch.Tensor, like: Params) -> Params:
        out, start = {}, 0
        for k, v in like.items():
            size = v[0, 0].numel()
            out[k] = vector[..., start:start + size].reshape(v.shape)
            start += size
        return out

    def _repeat(self, t: torch.Tensor) -> torch.Tensor:
        return t.repeat_interleave(self.model.particles, dim=0)

    def _loss_and_grad(self, learner: Learner, phi: Params, x, y) -> tuple[torch.Tensor, Params]:
        num_tasks, m = next(iter(phi.values())).shape[:2]
        loss, grad = self.backend.loss_and_grad(learner, self._flat(phi), self._repeat(x), self._repeat(y))
        return loss.reshape(num_tasks, m), {k: v.reshape(phi[k].shape) for k, v in grad.items()}

    # -- SVGD -------------------------------------------------------------------------------
    def _svgd(self, learner: Learner, phi: Params, batch: TaskBatch, steps: int,
              keep: bool = False) -> tuple[Params, list]:
        tape = []
        for _ in range(steps):
            _, grad = self._loss_and_grad(learner, phi, batch.support_x, batch.support_y)
            vec, score = self._vector(phi), -self._vector(grad) / self.temperature
            bandwidth = median_bandwidth(vec)
            if keep:
                tape.append((phi, vec, score, bandwidth))
            phi = self._unvector(vec + self.inner_lr * svgd_drift(vec, score, bandwidth), phi)
        return phi, tape

    def _reverse(self, learner: Learner, tape: list, batch: TaskBatch, adjoint: torch.Tensor) -> torch.Tensor:
        """Backpropagate ∂ℓ/∂φ^(N) [B, M, P] through the recorded SVGD steps."""
        x, y = self._repeat(batch.support_x), self._repeat(batch.support_y)
        for phi, vec, score, bandwidth in reversed(tape):
            # kernel terms: autograd through the drift with the scores held constant
            with torch.enable_grad():
                leaf = vec.detach().requires_grad_(True)
                drift = svgd_drift(leaf, score.detach(), bandwidth)
                (kernel_part,) = torch.autograd.grad(drift, leaf, grad_outputs=adjoint)
            # score term: s_j = −∇L_S(φ_j)/τ, so ∂/∂φ_j of Σ_m a_m·κ_jm s_j/M = −∇²L_S(φ_j)·c_j/τ
            kernel = torch.exp(-((vec.unsqueeze(2) - vec.unsqueeze(1)) ** 2).sum(-1) / bandwidth[:, None, None])
            c = kernel @ adjoint / vec.shape[1]  # c_j = (1/M)Σ_m κ_jm a_m
            hv = self.backend.hvp(learner, self._flat(phi), x, y, self._flat(self._unvector(c, phi)))
            score_part = -self._vector({k: v.reshape(phi[k].shape) for k, v in hv.items()}) / self.temperature
            adjoint = adjoint + self.inner_lr * (kernel_part + score_part)
        return adjoint

    # -- the algorithm ----------------------------------------------------------------------
    def _compute(self, learner: Learner, theta: Params, batch: TaskBatch) -> MetaGradient:
        particle_learner = Learner(self.model.inner, learner.loss_name)
        start = self._expand(theta, batch)
        phi, tape = self._svgd(particle_learner, start, batch, self.inner_steps, keep=not self.first_order)
        losses, grad = self._loss_and_grad(particle_learner, phi, batch.query_x, batch.query_y)
        weights = torch.softmax(-losses / self.temperature, dim=1)  # ∂ℓ/∂L_Q(φ_m), eq. 2.35
        meta_loss = -self.temperature * (torch.logsumexp(-losses / self.temperature, dim=1)
                                         - math.log(losses.shape[1]))
        adjoint = weights.unsqueeze(-1) * self._vector(grad)
        if not self.first_order:
            adjoint = self._reverse(particle_learner, tape, batch, adjoint)
        per_task = self._unvector(adjoint, phi)
        return MetaGradient({k: v.mean(dim=0) for k, v in per_task.items()}, meta_loss)

    def _prepare(self, params: Params, batch: TaskBatch) -> tuple[Learner, Params, TaskBatch]:
        learner, theta, batch = super()._prepare(params, batch)
        # the ensemble's predictive is a mixture of class probabilities on classification tasks (ensemble.py)
        self.model.classifier = learner.loss_name == "cross_entropy"
        return learner, theta, batch

    def _adapt(self, learner: Learner, theta: Params, batch: TaskBatch, steps: int) -> Params:
        particle_learner = Learner(self.model.inner, learner.loss_name)
        return self._svgd(particle_learner, self._expand(theta, batch), batch, steps)[0]

    def options(self) -> dict:
        return {**super().options(), "particles": self.model.particles, "temperature": self.temperature,
                "first_order": self.first_order}
