"""BinaryPrototypeRegression: realizable Bayesian regression over binary weights (issue 8, monograph §2.4).

A task's function is f_φ(x) = n^{−1/2}·Σ_k (2φ_k − 1)·cos(ω_k x + b_k) with fixed random features
(ω_k, b_k) and binary weights φ ∈ {0, 1}ⁿ. The task prior is a mixture: draw one of C prototype
bit-strings, then flip each bit with probability p — a correlated distribution over bits that no
product (mean-field) distribution expresses. Data: x ~ U[−π, π], y = f_φ(x) + N(0, σ²).

Because the model is realizable and n is small, the exact Bayes posterior over all 2ⁿ strings
and its posterior-predictive mean are computable by enumeration (:meth:`posterior`,
:meth:`predictive_mean`) — the floor every Bayesian meta-learner is measured against.
"""

from __future__ import annotations

import math

import torch

from innerloop.engine.binary_bayes import BinaryRegressionLikelihood, all_strings
from innerloop.engine.errors import ConfigError
from innerloop.engine.tasks.base import TaskBatch, TaskFamily


class BinaryPrototypeRegression(TaskFamily):
    """Regression tasks with binary weights drawn around C prototypes (see the module docstring)."""

    name = "binary-prototype-regression"
    loss = "mse"
    input_dim = 1
    output_dim = 1

    def __init__(self, shots: int = 3, queries: int = 20, bits: int = 8, prototypes: int = 3, flip: float = 0.05,
                 noise: float = 0.1, seed: int = 11) -> None:
        super().__init__(shots, queries)
        if not (1 <= bits <= 16 and prototypes >= 1 and 0 <= flip < 0.5 and noise > 0):
            raise ConfigError(f"need 1 <= bits <= 16, prototypes >= 1, 0 <= flip < 0.5, noise > 0; got bits={bits}, "
                              f"prototypes={prototypes}, flip={flip}, noise={noise}", "e.g. bits=8 prototypes=3")
        self.bits, self.prototypes_count, self.flip, self.noise, self.seed = bits, prototypes, flip, noise, seed
        g = torch.Generator().manual_seed(seed)
        omega = 0.5 + 2.5 * torch.rand(bits, generator=g, dtype=torch.float64)
        phase = 2 * math.pi * torch.rand(bits, generator=g, dtype=torch.float64)
        self.prototypes = (torch.rand(prototypes, bits, generator=g) < 0.5).long()
        self.likelihood = BinaryRegressionLikelihood(omega, phase, noise)

    def function(self, bits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """f_φ(x) [..., K, 1] for bit-strings φ [..., n] and inputs x [..., K, 1] (float64)."""
        return self.likelihood.outputs(bits.unsqueeze(-2), x.double()).squeeze(-2).unsqueeze(-1)

    def all_strings(self) -> torch.Tensor:
        """Every bit-string [2ⁿ, n] (bit k of index i is (i >> k) & 1)."""
        return all_strings(self.bits)

    def log_prior(self) -> torch.Tensor:
        """log p(φ) [2ⁿ] of the task prior: a uniform mixture of bit-flip channels around the prototypes."""
        strings = self.all_strings()
        disagreements = (strings.unsqueeze(1) != self.prototypes.unsqueeze(0)).sum(-1).double()  # [2ⁿ, C]
        per_prototype = disagreements * math.log(self.flip or 1e-300) \
            + (self.bits - disagreements) * math.log(1 - self.flip)
        return torch.logsumexp(per_prototype, dim=1) - math.log(self.prototypes_count)

    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log p(D_b | φ) [B, 2ⁿ] of data x, y [B, K, 1] under every bit-string."""
        return -self.likelihood.negative_log_likelihood(self.all_strings(), x.double(), y.double())

    def posterior(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Exact Bayes posterior p(φ | D_b) [B, 2ⁿ] under the true task prior."""
        return torch.softmax(self.log_prior() + self.log_likelihood(x, y), dim=-1)

    def predictive_mean(self, posterior: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Σ_φ p(φ)·f_φ(x) [B, K, 1] for a distribution over strings [B, 2ⁿ] and inputs [B, K, 1]."""
        return self.likelihood.predictive_mean(posterior.double(), x.double())

    def _sample(self, num_tasks: int, generator: torch.Generator | None, shots: int, queries: int) -> TaskBatch:
        choice = torch.randint(0, self.prototypes_count, (num_tasks,), generator=generator)
        flips = (torch.rand(num_tasks, self.bits, generator=generator) < self.flip).long()
        bits = self.prototypes[choice] ^ flips

        def points(count: int) -> tuple[torch.Tensor, torch.Tensor]:
            x = (2 * torch.rand(num_tasks, count, 1, generator=generator, dtype=torch.float64) - 1) * math.pi
            y = self.function(bits, x) + self.noise * torch.randn(num_tasks, count, 1, generator=generator,
                                                                  dtype=torch.float64)
            return x.float(), y.float()

        return TaskBatch(*points(shots), *points(queries), {"bits": bits, "prototype": choice})

    def config(self) -> dict:
        return {**super().config(), "bits": self.bits, "prototypes": self.prototypes_count, "flip": self.flip,
                "noise": self.noise, "seed": self.seed}
