"""Bayesian learning of binary network weights: the likelihood, the variational free energy and a
mean-field variational family (monograph §2.4, eqs. 2.30–2.32; §6.2.2; issue 8).

The network is f_φ(x) = n^{−1/2}·Σ_k (2φ_k − 1)·cos(ω_k x + b_k) with fixed random features
(ω_k, b_k) and binary weights φ ∈ {0, 1}ⁿ; the likelihood is Gaussian,
p(D|φ) = Π_i N(y_i; f_φ(x_i), σ²). For a variational distribution q over bit-strings and the
uniform prior p(φ) = 2⁻ⁿ the per-task free energy (monograph eq. 2.32, temperature α) is

    F(q | D) = E_q[−log p(D|φ)] + α·KL(q ‖ p),   KL(q ‖ p) = Σ_φ q(φ)·(log q(φ) − log p(φ)).

Bit-strings are indexed as in :class:`BinaryPrototypeRegression`: bit k of index i is (i >> k) & 1.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from innerloop.engine.errors import ConfigError, ShapeError
from innerloop.engine.params import Params, check_shapes, count

OBJECTIVE = "free_energy"
PREDICTIVE = "predictive_log_loss"


def all_strings(bits: int) -> torch.Tensor:
    """Every bit-string of length ``bits`` [2ⁿ, n] (int64; bit k of index i is (i >> k) & 1)."""
    index = torch.arange(2 ** bits)
    return (index.unsqueeze(-1) >> torch.arange(bits)) & 1


def string_index(strings: torch.Tensor) -> torch.Tensor:
    """The index Σ_k φ_k·2^k of bit-strings [..., n] (inverse of :func:`all_strings`)."""
    return (strings.long() << torch.arange(strings.shape[-1], device=strings.device)).sum(-1)


class BinaryRegressionLikelihood:
    """p(D|φ) for the binary-weight network of the module docstring."""

    def __init__(self, omega: torch.Tensor, phase: torch.Tensor, noise: float) -> None:
        if omega.shape != phase.shape or omega.ndim != 1:
            raise ShapeError(f"omega and phase must be vectors of one length, got {tuple(omega.shape)} and "
                             f"{tuple(phase.shape)}", "pass one frequency and one phase per weight")
        if noise <= 0:
            raise ConfigError(f"noise must be > 0, got {noise}", "e.g. noise=0.1")
        self.omega, self.phase, self.noise = omega.double(), phase.double(), float(noise)

    @property
    def bits(self) -> int:
        return self.omega.numel()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """n^{−1/2}·cos(ω_k x + b_k) for x [..., 1] → [..., n] (in x's dtype)."""
        omega, phase = self.omega.to(x), self.phase.to(x)
        return torch.cos(x * omega + phase) / math.sqrt(self.bits)

    def outputs(self, strings: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """f_φ(x_i) [..., S, K] for bit-strings [..., S, n] and inputs [..., K, 1]."""
        signs = (2 * strings - 1).to(x.dtype)
        return signs @ self.features(x).transpose(-1, -2)

    def negative_log_likelihood(self, strings: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """−log p(D|φ) = Σ_i (y_i − f_φ(x_i))²/(2σ²) + K·log(σ√(2π)), shape [..., S]."""
        residual = y.squeeze(-1).unsqueeze(-2) - self.outputs(strings, x)
        points = x.shape[-2]
        return (residual ** 2).sum(-1) / (2 * self.noise ** 2) + points * math.log(self.noise * math.sqrt(2 * math.pi))

    def predictive_mean(self, probabilities: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Σ_φ q(φ)·f_φ(x) [..., K, 1] for q over all strings [..., 2ⁿ] and inputs [..., K, 1]."""
        f = self.outputs(all_strings(self.bits).to(x.device), x)  # [..., 2ⁿ, K]
        return (probabilities.to(x.dtype).unsqueeze(-1) * f).sum(-2).unsqueeze(-1)

    def predictive_std(self, probabilities: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Standard deviation of y under Σ_φ q(φ)·N(f_φ(x), σ²), shape [..., K, 1]."""
        f = self.outputs(all_strings(self.bits).to(x.device), x)
        q = probabilities.to(x.dtype).unsqueeze(-1)
        mean = (q * f).sum(-2)
        variance = (q * (f - mean.unsqueeze(-2)) ** 2).sum(-2) + self.noise ** 2
        return variance.sqrt().unsqueeze(-1)

    def config(self) -> dict:
        return {"bits": self.bits, "noise": self.noise}


def uniform_log_prior(bits: int) -> float:
    """log p(φ) = −n·log 2 of the uniform prior over bit-strings."""
    return -bits * math.log(2)


def log_ratio_to_uniform(probabilities: torch.Tensor) -> torch.Tensor:
    """log q(φ) − log p(φ) for q over all strings [..., 2ⁿ] and the uniform p; finite where q = 0
    (q is clamped inside the log, so 0·log 0 = 0 with a finite derivative)."""
    bits = int(round(math.log2(probabilities.shape[-1])))
    return torch.log(probabilities.clamp_min(1e-300)) - uniform_log_prior(bits)


def exact_kl_to_uniform(probabilities: torch.Tensor) -> torch.Tensor:
    """KL(q ‖ uniform) = Σ_φ q·(log q − log p) over the last axis [..., 2ⁿ]."""
    return (probabilities * log_ratio_to_uniform(probabilities)).sum(-1)


def free_energy(probabilities: torch.Tensor, nll: torch.Tensor, temperature: float) -> torch.Tensor:
    """Monograph eq. 2.32 with q given by its probabilities over all strings [..., 2ⁿ] and
    −log p(D|φ) over the same strings [..., 2ⁿ]: Σ q·nll + α·KL(q ‖ uniform), shape [...]."""
    return (probabilities * nll).sum(-1) + temperature * exact_kl_to_uniform(probabilities)


def predictive_log_loss(probabilities: torch.Tensor, nll: torch.Tensor) -> torch.Tensor:
    """−log Σ_φ q(φ)·p(D|φ) (monograph eq. 2.35: Bayesian meta-learning's validation loss) for q
    over all strings [..., 2ⁿ] and −log p(D|φ) [..., 2ⁿ], as a log-sum-exp (stable for the
    likelihoods of many points), shape [...]."""
    return -torch.logsumexp(torch.log(probabilities.clamp_min(1e-300)) - nll, dim=-1)


class BinaryPosteriorModel(ABC):
    """What every variational family over binary weights shares: the likelihood it is the posterior
    of, the temperature α, ``objective(params, x, y)`` = F(q_params | D) of one task (what the inner
    loop minimizes, eq. 2.34), ``validation_objective(params, x, y)`` = −log E_q[p(D|φ)] (what the
    meta-learner minimizes on query data, eqs. 2.33 and 2.35), and the posterior-predictive mean
    Σ_φ q(φ)·f_φ(x) as its prediction (``apply``). Subclasses give ``probabilities(params)`` over
    all 2ⁿ strings."""

    objective_name = OBJECTIVE
    validation_objective_name = PREDICTIVE
    in_dim = 1
    out_dim = 1

    def __init__(self, likelihood: BinaryRegressionLikelihood, temperature: float = 1.0) -> None:
        if temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {temperature}", "e.g. temperature=1.0")
        self.likelihood, self.temperature = likelihood, float(temperature)

    @property
    def bits(self) -> int:
        return self.likelihood.bits

    @abstractmethod
    def probabilities(self, params: Params) -> torch.Tensor:
        """q over all 2ⁿ strings [..., 2ⁿ] for parameters with any leading axes."""

    def objective(self, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """F(q | D) of one task (no task axis), exact: monograph eq. 2.32."""
        return free_energy(*self._exact(params, x, y), self.temperature)

    def validation_objective(self, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """−log E_q[p(D|φ)] of one task (no task axis), exact: monograph eq. 2.35."""
        return predictive_log_loss(*self._exact(params, x, y))

    def _exact(self, params: Params, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q and −log p(D|φ) over all 2ⁿ strings."""
        nll = self.likelihood.negative_log_likelihood(all_strings(self.bits).to(x.device), x, y)
        return self.probabilities(params).to(nll.dtype), nll

    def apply(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Posterior-predictive mean [K, 1] for one task's params and inputs [K, 1]."""
        return self.likelihood.predictive_mean(self.probabilities(params), x)

    def apply_batched(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Posterior-predictive means [B, K, 1] for per-task params [B, ...] and inputs [B, K, 1]."""
        return self.likelihood.predictive_mean(self.probabilities(params), x)

    def check_params(self, params: Params, task_axis: bool = False) -> None:
        check_shapes(self.shapes(), params, repr(self), task_axis)

    def num_params(self) -> int:
        return count(self.shapes())

    @abstractmethod
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter names and shapes (no task axis)."""


class MeanFieldBernoulli(BinaryPosteriorModel):
    """The product family q_λ(φ) = Π_k σ(λ_k)^{φ_k}·(1 − σ(λ_k))^{1−φ_k}: the classical baseline that
    cannot express correlations between bits (a mixture of prototypes). λ = 0 is uniform."""

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"logits": (self.bits,)}

    def init(self, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
             device: torch.device | str = "cpu") -> Params:
        """λ = 0: the uniform distribution (the prior)."""
        return {"logits": torch.zeros(self.bits, dtype=dtype or torch.get_default_dtype(), device=device)}

    def probabilities(self, params: Params) -> torch.Tensor:
        """q_λ over all strings [..., 2ⁿ] for logits [..., n]."""
        logits = params["logits"]
        strings = all_strings(self.bits).to(device=logits.device, dtype=logits.dtype)  # [2ⁿ, n]
        on, off = torch.nn.functional.logsigmoid(logits), torch.nn.functional.logsigmoid(-logits)
        return torch.exp(strings @ on.unsqueeze(-1) + (1 - strings) @ off.unsqueeze(-1)).squeeze(-1)

    def config(self) -> dict:
        return {"kind": "mean-field", "temperature": self.temperature, **self.likelihood.config()}

    def __repr__(self) -> str:
        return f"MeanFieldBernoulli(bits={self.bits}, temperature={self.temperature})"
