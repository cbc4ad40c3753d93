"""Modular meta-learning (Alet et al. 2018; monograph Algorithm 8, eq. 2.38).

A module set M holds, for every layer l of an MLP, ``modules`` candidate layers θ_l^(1..J)
(the meta-parameters, stored as ``layer{l}.weight`` of shape [J, out, in]). A task's model
φ(S_k(M)) picks one candidate per layer, S_k ∈ {1..J}^L. Inner problem (2.38b): the
assignment minimizing the support loss, a discrete search done by simulated annealing — a
chain per task proposes re-drawing one layer's module and accepts with probability
min(1, exp(−ΔL_S/T)), T decaying geometrically from ``temperature`` over ``inner_steps``
proposals; only ``loss`` evaluations. Outer problem (2.38a): the gradient of the query loss of
the assembled models, scattered back to the chosen modules (``loss_and_grad``).

The monograph writes the selection criterion on D^va in (2.38b); selecting on the support set
and updating modules on the query set keeps the query loss an honest held-out signal, as in
Alet et al.'s BounceGrad.
"""

from __future__ import annotations

import re

import torch

from innerloop.backends.base import Backend
from innerloop.engine.algorithms.base import MetaAlgorithm, MetaGradient, register
from innerloop.engine.errors import ConfigError, require_positive
from innerloop.engine.learner import Learner
from innerloop.engine.params import Params, check_shapes
from innerloop.engine.tasks import TaskBatch


@register
class ModularMetaLearning(MetaAlgorithm):
    """Module set per layer; per-task module assignment by simulated annealing on the support loss."""

    name = "modular"
    requires = frozenset({"loss", "loss_and_grad"})
    summary = "modular meta-learning: per-task module choice by simulated annealing (monograph Alg. 8)"

    def __init__(self, model, backend: Backend, inner_lr: float = 0.01, inner_steps: int = 40, modules: int = 4,
                 temperature: float = 0.5, cooling: float = 0.9, loss: str | None = None) -> None:
        if int(modules) != modules or modules < 1:
            raise ConfigError(f"modules must be a positive integer, got {modules}", "e.g. modules=4")
        require_positive("temperature", temperature)
        if not 0 < cooling <= 1:
            raise ConfigError(f"cooling must be in (0, 1], got {cooling}", "e.g. cooling=0.9")
        self.modules, self.temperature, self.cooling = int(modules), float(temperature), float(cooling)
        names = list(model.shapes())
        if not all(re.fullmatch(r"layer\d+\.\w+", name) for name in names):
            raise ConfigError(f"modular meta-learning picks one module per layer 'layer<l>.*', but {model!r} has "
                              f"parameters {', '.join(names[:3])}{', …' if len(names) > 3 else ''}",
                              "use maml, fomaml or reptile on this task")
        super().__init__(model, backend, inner_lr, inner_steps, loss)
        self.layers = sorted({k.partition(".")[0] for k in names}, key=lambda n: int(n[5:]))

    # -- meta-parameters: a pool of candidates per parameter -------------------------------
    def init_params(self, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
                    device: torch.device | str = "cpu") -> Params:
        draws = [self.model.init(generator, dtype=dtype, device=device) for _ in range(self.modules)]
        return {k: torch.stack([d[k] for d in draws]) for k in draws[0]}

    def check_params(self, params: Params) -> None:
        check_shapes({k: (self.modules, *s) for k, s in self.model.shapes().items()}, params,
                     f"module set of {self.modules} × {self.model!r}")

    def assemble(self, pool: Params, assignment: torch.Tensor) -> Params:
        """Per-task model parameters from the pool and an assignment [B, L] of module indices."""
        index = {layer: assignment[:, i] for i, layer in enumerate(self.layers)}
        return {k: v[index[k.partition(".")[0]]] for k, v in pool.items()}

    # -- inner problem: simulated annealing over assignments --------------------------------
    def anneal(self, learner: Learner, pool: Params, batch: TaskBatch, steps: int) -> torch.Tensor:
        """Assignments [B, L] found by ``steps`` Metropolis proposals per task on the support loss."""
        num_tasks, layers, gen = batch.num_tasks, len(self.layers), self.generator
        current = torch.randint(0, self.modules, (num_tasks, layers), generator=gen)
        energy = self._support_loss(learner, pool, current, batch)
        temperature = self.temperature
        for _ in range(steps):
            proposal = current.clone()
            layer = torch.randint(0, layers, (num_tasks,), generator=gen)
            proposal[torch.arange(num_tasks), layer] = torch.randint(0, self.modules, (num_tasks,), generator=gen)
            candidate = self._support_loss(learner, pool, proposal, batch)
            accept = torch.rand(num_tasks, generator=gen) < torch.exp(-(candidate - energy).cpu() / temperature)
            current = torch.where(accept[:, None], proposal, current)
            energy = torch.where(accept.to(energy.device), candidate, energy)
            temperature *= self.cooling
        return current

    def _support_loss(self, learner: Learner, pool: Params, assignment: torch.Tensor, batch: TaskBatch):
        params = self.assemble(pool, assignment.to(next(iter(pool.values())).device))
        return self.backend.loss(learner, params, batch.support_x, batch.support_y)

    # -- outer problem ----------------------------------------------------------------------
    def _compute(self, learner: Learner, theta: Params, batch: TaskBatch) -> MetaGradient:
        assignment = self.anneal(learner, theta, batch, self.inner_steps).to(next(iter(theta.values())).device)
        query_loss, grads = self.backend.loss_and_grad(learner, self.assemble(theta, assignment), batch.query_x,
                                                       batch.query_y)
        pool_grad = {}
        for k, g in grads.items():  # scatter each task's gradient to the module it used, mean over tasks
            index = assignment[:, self.layers.index(k.partition(".")[0])]
            pool_grad[k] = torch.zeros_like(theta[k]).index_add_(0, index, g) / batch.num_tasks
        usage = torch.stack([torch.bincount(assignment[:, i], minlength=self.modules) for i in range(len(self.layers))])
        return MetaGradient(pool_grad, query_loss, {"modules_used": float((usage > 0).sum())})

    def _adapt(self, learner: Learner, theta: Params, batch: TaskBatch, steps: int) -> Params:
        assignment = self.anneal(learner, theta, batch, steps).to(next(iter(theta.values())).device)
        return self.assemble(theta, assignment)

    def options(self) -> dict:
        return {**super().options(), "modules": self.modules, "temperature": self.temperature,
                "cooling": self.cooling}
