"""Minimum excess meta-risk of Bayesian meta-learning in closed form (monograph §4.5).

The hierarchical model of eq. 4.36 is taken linear-Gaussian, the one well-specified case where the
meta-posterior is exact: hyperparameter θ ∼ N(0, s_θ²·I_d); per-task weights ϕ | θ ∼ N(θ, s_ϕ²·I_d);
inputs x ∼ N(0, I_d); targets y = ϕᵀx + ε, ε ∼ N(0, σ²).

Given K meta-training tasks and the meta-test task's N points, D = (D_{1:K}, D_T):

* θ | D_{1:K} ∼ N(m, P⁻¹) with P = I/s_θ² + Σ_k X_kᵀC_k⁻¹X_k, C_k = s_ϕ²X_kX_kᵀ + σ²I, where
  X_kᵀC_k⁻¹ = (σ²I + s_ϕ²X_kᵀX_k)⁻¹X_kᵀ (push-through identity);
* ϕ_T | D ∼ N(μ_T, Σ_T), Σ_T = ((P⁻¹ + s_ϕ²I)⁻¹ + X_TᵀX_T/σ²)⁻¹ — D_T enters through ϕ_T only;
* the Bayesian predictive p(y|x, D) = N(xᵀμ_T, σ² + xᵀΣ_Tx) (eq. 4.37).

With the log-loss, the predictive meta-risk is H(Y|X, D) (eq. 4.38), the genie-aided one
H(Y|X, ϕ) = ½·log(2πeσ²) (eq. 4.41), and the MEMR (eqs. 4.42–4.43) is
I(Y; ϕ | X, D) = E[½·log(1 + xᵀΣ_Tx/σ²)] — epistemic uncertainty, which depends on the designs
only. The mutual informations of the bound eq. 4.45 are I(θ; D_{1:K}) = E[½·log det(s_θ²·P)] and
I(ϕ; D_T | θ) = E[½·log det(I + s_ϕ²X_TᵀX_T/σ²)]. Expectations over designs and test inputs are
Monte Carlo averages (with standard errors); everything given the designs is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from innerloop.engine.errors import ConfigError, ShapeError
from innerloop.engine.stats import summarize
from innerloop.engine.theory.information_bounds import excess_meta_risk_bound


@dataclass(frozen=True)
class HierarchicalLinearModel:
    """The linear-Gaussian instance of eq. 4.36 (see the module docstring); float64 throughout."""

    dim: int = 4
    hyper_var: float = 1.0
    task_var: float = 0.1
    noise_var: float = 0.25

    def __post_init__(self) -> None:
        if int(self.dim) != self.dim or self.dim < 1:
            raise ConfigError(f"dim must be an integer >= 1, got {self.dim}", "the input dimension d")
        for name in ("hyper_var", "task_var", "noise_var"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}",
                                  "s_θ², s_ϕ² and σ² are variances")

    def _eye(self) -> torch.Tensor:
        return torch.eye(self.dim, dtype=torch.float64)

    def _check_design(self, design: torch.Tensor, name: str) -> None:
        if design.ndim < 2 or design.shape[-1] != self.dim:
            raise ShapeError(f"{name} has shape {tuple(design.shape)}", f"expected [..., points, {self.dim}]")

    def sample(self, draws: int, tasks: int, points: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``draws`` independent meta-datasets: θ, ϕ_{1:K}, ϕ_T, designs and targets of K meta-training
        tasks [draws, K, N, ·] and of the meta-test task [draws, N, ·], per eq. 4.36."""
        def normal(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=generator, dtype=torch.float64)

        theta = math.sqrt(self.hyper_var) * normal(draws, self.dim)
        phis = theta[:, None] + math.sqrt(self.task_var) * normal(draws, tasks + 1, self.dim)
        designs = normal(draws, tasks + 1, points, self.dim)
        targets = (designs @ phis[..., None])[..., 0] + math.sqrt(self.noise_var) * normal(draws, tasks + 1, points)
        return {"theta": theta, "phi": phis[:, -1], "meta_designs": designs[:, :-1], "meta_targets": targets[:, :-1],
                "test_design": designs[:, -1], "test_targets": targets[:, -1]}

    def _whitened(self, design: torch.Tensor) -> torch.Tensor:
        """σ²I + s_ϕ²XᵀX [..., d, d] for designs X [..., N, d]: X_kᵀC_k⁻¹ = (σ²I + s_ϕ²XᵀX)⁻¹X_kᵀ is a solve with it."""
        return self.noise_var * self._eye() + self.task_var * design.transpose(-1, -2) @ design

    def hyper_posterior(self, meta_designs: torch.Tensor,
                        meta_targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """θ | D_{1:K}: precision P [..., d, d] and, with targets, mean m [..., d]."""
        self._check_design(meta_designs, "meta_designs")
        gram = meta_designs.transpose(-1, -2) @ meta_designs
        precision = self._eye() / self.hyper_var + torch.linalg.solve(self._whitened(meta_designs), gram).sum(-3)
        if meta_targets is None:
            return precision, None
        moment = meta_designs.transpose(-1, -2) @ meta_targets[..., None]
        info = torch.linalg.solve(self._whitened(meta_designs), moment).sum(-3)[..., 0]
        return precision, torch.linalg.solve(precision, info[..., None])[..., 0]

    def test_task_posterior(self, meta_designs: torch.Tensor, test_design: torch.Tensor,
                            meta_targets: torch.Tensor | None = None,
                            test_targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """ϕ_T | D: covariance Σ_T [..., d, d] and, with targets, mean μ_T [..., d]."""
        self._check_design(test_design, "test_design")
        precision, hyper_mean = self.hyper_posterior(meta_designs, meta_targets)
        prior_cov = torch.linalg.inv(precision) + self.task_var * self._eye()
        prior_precision = torch.linalg.inv(prior_cov)
        covariance = torch.linalg.inv(prior_precision + test_design.transpose(-1, -2) @ test_design / self.noise_var)
        if hyper_mean is None or test_targets is None:
            return covariance, None
        info = (prior_precision @ hyper_mean[..., None])[..., 0] + \
            (test_design.transpose(-1, -2) @ test_targets[..., None])[..., 0] / self.noise_var
        return covariance, (covariance @ info[..., None])[..., 0]

    def predictive(self, meta_designs: torch.Tensor, meta_targets: torch.Tensor, test_design: torch.Tensor,
                   test_targets: torch.Tensor, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The Bayesian meta-predictive p(y | x, D) of eq. 4.37 at ``inputs`` [..., M, d]: (mean, variance) [..., M]."""
        covariance, mean = self.test_task_posterior(meta_designs, test_design, meta_targets, test_targets)
        variance = self.noise_var + ((inputs @ covariance) * inputs).sum(-1)
        return (inputs @ mean[..., None])[..., 0], variance

    def environment_information(self, meta_designs: torch.Tensor) -> torch.Tensor:
        """I(θ; D_{1:K} | designs) = ½·log det(s_θ²·P), per draw."""
        precision, _ = self.hyper_posterior(meta_designs)
        return 0.5 * torch.logdet(self.hyper_var * precision)

    def task_information(self, test_design: torch.Tensor) -> torch.Tensor:
        """I(ϕ; D_T | θ, design) = ½·log det(I + s_ϕ²X_TᵀX_T/σ²), per draw."""
        self._check_design(test_design, "test_design")
        gram = test_design.transpose(-1, -2) @ test_design
        return 0.5 * torch.logdet(self._eye() + self.task_var * gram / self.noise_var)

    def excess_meta_risk(self, tasks: int, points: int, draws: int = 2000, inputs: int = 16,
                         generator: torch.Generator | None = None) -> dict[str, Any]:
        """MEMR (eq. 4.43) for K tasks of N points, the entropies it links (eq. 4.44) and the bound
        eq. 4.45, over ``draws`` design draws with ``inputs`` test inputs each."""
        for name, value in (("tasks", tasks), ("points", points), ("draws", draws), ("inputs", inputs)):
            if int(value) != value or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value}", f"pass a positive {name}")
        generator = generator or torch.Generator().manual_seed(0)
        designs = torch.randn(draws, tasks + 1, points, self.dim, generator=generator, dtype=torch.float64)
        x = torch.randn(draws, inputs, self.dim, generator=generator, dtype=torch.float64)
        covariance, _ = self.test_task_posterior(designs[:, :-1], designs[:, -1])
        memr = (0.5 * torch.log1p(((x @ covariance) * x).sum(-1) / self.noise_var)).mean(-1)
        env_information = self.environment_information(designs[:, :-1])
        task_information = self.task_information(designs[:, -1])
        bound = excess_meta_risk_bound(float(env_information.mean()), tasks, float(task_information.mean()), points)
        aleatoric = 0.5 * math.log(2 * math.pi * math.e * self.noise_var)
        memr_summary = summarize(memr)
        return {"tasks": tasks, "points": points, "memr": memr_summary,
                "environment_information": summarize(env_information),
                "task_information": summarize(task_information), **bound.as_dict(),
                "aleatoric_entropy": aleatoric, "predictive_entropy": aleatoric + memr_summary["mean"]}
