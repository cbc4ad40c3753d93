"""ES-MAML (Song et al. 2020; monograph Algorithm 4, eqs. 2.18–2.21): zeroth-order MAML.

Everything is estimated from loss values only, so it runs on a backend that offers nothing but
``loss`` (a chip that reports losses). With n Gaussian directions u_i ~ N(0, I):

* gradient (eq. 2.20):  ∇̂L(φ) = (1/n) Σ_i u_i L(φ + δu_i)/δ
* Hessian (eq. 2.21):   Ĥ = (1/δ²)[(1/n) Σ_i L(φ + δu_i) u_i u_iᵀ − (1/n) Σ_i L(φ + δu_i) I]

Both are unbiased for the Gaussian-smoothed loss (exactly the loss's own gradient and Hessian
when it is quadratic). ``antithetic=True`` (default) evaluates ±u pairs —
(1/n)Σ u_i [L(φ+δu_i) − L(φ−δu_i)]/(2δ) and (1/n)Σ (u_iu_iᵀ − I)[L(φ+δu_i) + L(φ−δu_i) − 2L(φ)]/(2δ²)
— with the same expectations and far lower variance; ``antithetic=False`` uses 2.20–2.21 as written.

``orthogonal=True`` (default) draws the directions of each task as orthogonal ES (Choromanski et al. 2018,
the sampler of Song et al.'s ES-MAML): blocks of up to d mutually orthogonal directions,
uniformly rotated, each rescaled to the length of an independent N(0, I_d) draw. Every direction
is still marginally N(0, I), so both estimators keep their expectations. For a quadratic loss
and antithetic pairs the squared error of the gradient estimate is (d + 1)/n·‖∇L‖² with i.i.d.
directions and (2/n)·‖∇L‖² with n = d orthogonal ones (only the random lengths remain).

Inner loop: N steps φ ← φ − α∇̂L_S(φ) (Algorithm 4, line 6). Meta-gradient: eq. 2.19,
∇̂L_Q(φ_N) (``hessian=False``), or eq. 2.18, Π_n (I − αĤ_n)·∇̂L_Q(φ_N) with Ĥ_n estimated from
the same directions as step n's gradient (``hessian=True``). Directions come from the
algorithm's generator (checkpointed with the run).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from innerloop.backends.base import Backend
from innerloop.engine.algorithms.base import MetaAlgorithm, MetaGradient, register
from innerloop.engine.errors import ConfigError, require_positive
from innerloop.engine.learner import Learner
from innerloop.engine.params import Params, add_scaled, mean_over_tasks
from innerloop.engine.tasks import TaskBatch


@dataclass
class ESProbe:
    """Loss values around φ along directions u [n, B, ...]: L(φ) [B], L(φ ± δu_i) [n, B]."""

    directions: Params
    center: torch.Tensor
    plus: torch.Tensor
    minus: torch.Tensor | None


def orthogonal_gaussian(num_tasks: int, n: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """[n, num_tasks, dim] float64 directions, in blocks of ≤ dim mutually orthogonal rows per task,
    each row marginally N(0, I_dim) (Choromanski et al. 2018, orthogonal ES).

    A block is the Q factor of a Gaussian matrix G = QR (signs fixed by R's diagonal: Haar
    uniform), each row rescaled by a chi_dim length independent of Q. A partial block (< dim rows)
    is drawn per task and its lengths are G's column norms (independent of Q by the Bartlett
    decomposition). A complete block is an orthonormal basis of the whole space: one basis serves
    every task (one QR instead of B) and each task draws its own lengths, so the tasks' estimation
    errors — which with a complete basis come from the lengths alone — stay independent."""
    blocks = []
    for start in range(0, n, dim):
        rows = min(dim, n - start)
        if rows == dim:
            q, r = torch.linalg.qr(torch.randn((dim, dim), generator=generator, dtype=torch.float64))
            basis = (q * torch.sign(torch.diagonal(r))).T.expand(num_tasks, dim, dim)
            lengths = torch.randn((num_tasks, dim, dim), generator=generator).norm(dim=-1).double()
        else:
            gaussian = torch.randn((num_tasks, dim, rows), generator=generator, dtype=torch.float64)
            q, r = torch.linalg.qr(gaussian)
            basis = (q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]).transpose(1, 2)
            lengths = gaussian.norm(dim=1)
        blocks.append(basis * lengths[..., None])
    return torch.cat(blocks, dim=1).transpose(0, 1)


def _broadcast(coef: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return coef.reshape(*coef.shape, *([1] * (like.ndim - coef.ndim)))


@register
class ESMAML(MetaAlgorithm):
    """Zeroth-order MAML: ES estimates of gradients (and Hessians) from loss values only."""

    name = "es-maml"
    requires = frozenset({"loss"})
    summary = "ES-MAML: zeroth-order MAML from loss values only (monograph Alg. 4, eqs. 2.18–2.21)"

    def __init__(self, model, backend: Backend, inner_lr: float = 0.01, inner_steps: int = 1, directions: int = 32,
                 delta: float = 0.02, hessian: bool = False, antithetic: bool = True, orthogonal: bool = True,
                 loss: str | None = None) -> None:
        if int(directions) != directions or directions < 1:
            raise ConfigError(f"directions must be a positive integer, got {directions}", "e.g. directions=32")
        require_positive("delta", delta)
        self.directions, self.delta = int(directions), float(delta)
        self.hessian, self.antithetic, self.orthogonal = bool(hessian), bool(antithetic), bool(orthogonal)
        super().__init__(model, backend, inner_lr, inner_steps, loss)

    # -- estimators -------------------------------------------------------------------------
    def sample_directions(self, params: Params, generator: torch.Generator) -> Params:
        """n directions u_i per task, [n, B, ...] per parameter: i.i.d. N(0, I), or orthogonal ES."""
        n = self.directions
        if not self.orthogonal:
            return {k: torch.randn((n, *v.shape), generator=generator).to(v.device, v.dtype) for k, v in params.items()}
        num_tasks = next(iter(params.values())).shape[0]
        sizes = [v[0].numel() for v in params.values()]
        flat = orthogonal_gaussian(num_tasks, n, sum(sizes), generator)  # [n, B, d]
        pieces = flat.split(sizes, dim=-1)
        return {k: piece.reshape(n, *v.shape).to(v.device, v.dtype) for (k, v), piece in zip(params.items(), pieces)}

    def probe(self, learner: Learner, params: Params, x: torch.Tensor, y: torch.Tensor,
              generator: torch.Generator | None = None) -> ESProbe:
        """Evaluate the per-task losses at φ and at φ ± δu_i for n fresh directions (batched: one call)."""
        n, num_tasks = self.directions, x.shape[0]
        generator = generator or self.generator
        u = self.sample_directions(params, generator)
        signs = (1.0, -1.0) if self.antithetic else (1.0,)
        points = {k: torch.cat([params[k][None] + s * self.delta * u[k] for s in signs]).flatten(0, 1)
                  for k in params}
        copies = n * len(signs)
        xs = x[None].expand(copies, *x.shape).flatten(0, 1)
        ys = y[None].expand(copies, *y.shape).flatten(0, 1)
        losses = self.backend.loss(learner, points, xs, ys).reshape(len(signs), n, num_tasks)
        center = self.backend.loss(learner, params, x, y)
        return ESProbe(u, center, losses[0], losses[1] if self.antithetic else None)

    def gradient(self, probe: ESProbe) -> Params:
        """∇̂L(φ) per task: eq. 2.20 (antithetic: the central-difference form)."""
        if probe.minus is None:
            coef = probe.plus / self.delta
        else:
            coef = (probe.plus - probe.minus) / (2 * self.delta)
        return {k: (_broadcast(coef, u) * u).mean(dim=0) for k, u in probe.directions.items()}

    def hessian_vector(self, probe: ESProbe, vector: Params) -> Params:
        """Ĥ·v per task: eq. 2.21 (antithetic: second central differences), without forming Ĥ."""
        if probe.minus is None:
            weight = probe.plus / self.delta**2
        else:
            weight = (probe.plus + probe.minus - 2 * probe.center) / (2 * self.delta**2)
        u_dot_v = sum((u * vector[k][None]).flatten(2).sum(dim=2) for k, u in probe.directions.items())  # [n, B]
        return {k: (_broadcast(weight * u_dot_v, u) * u).mean(dim=0) - _broadcast(weight.mean(dim=0), vector[k])
                * vector[k] for k, u in probe.directions.items()}

    # -- the algorithm ----------------------------------------------------------------------
    def _es_steps(self, learner: Learner, phi: Params, batch: TaskBatch, steps: int) -> tuple[Params, list[ESProbe]]:
        probes = []
        for _ in range(steps):
            probe = self.probe(learner, phi, batch.support_x, batch.support_y)
            phi = add_scaled(phi, self.gradient(probe), -self.inner_lr)
            probes.append(probe)
        return phi, probes

    def _compute(self, learner: Learner, theta: Params, batch: TaskBatch) -> MetaGradient:
        phi, probes = self._es_steps(learner, self._expand(theta, batch), batch, self.inner_steps)
        query = self.probe(learner.validation, phi, batch.query_x, batch.query_y)
        g = self.gradient(query)
        if self.hessian:  # eq. 2.18: (I − αĤ_n) applied from the last step to the first
            for probe in reversed(probes):
                g = add_scaled(g, self.hessian_vector(probe, g), -self.inner_lr)
        return MetaGradient(mean_over_tasks(g), query.center)

    def _adapt(self, learner: Learner, theta: Params, batch: TaskBatch, steps: int) -> Params:
        return self._es_steps(learner, self._expand(theta, batch), batch, steps)[0]

    def options(self) -> dict:
        return {**super().options(), "directions": self.directions, "delta": self.delta, "hessian": self.hessian,
                "antithetic": self.antithetic, "orthogonal": self.orthogonal}
