"""Neural Process networks (seed 000 §4): one encoder–decoder covering CNP, latent NP and ANP.

* Deterministic path, mean pooled (CNP, eq. 4.1–4.2): h_i = enc(x_i, y_i), r = (1/N_C)Σ_i h_i.
* Deterministic path, attentive (ANP, §4.4): r(x*) = Σ_i softmax_i(q(x*)ᵀk_i/√d)·v_i with
  q(x*) = W_Q·a(x*), k_i = W_K·a(x_i), v_i = W_V·h_i, where a is a shared MLP of the inputs and
  W_Q, W_K, W_V the in-projections of ``torch.nn.MultiheadAttention``.
* Latent path (latent NP, eq. 4.3): q(z | D) = N(μ(s), diag σ(s)²) with s the mean of
  per-point embeddings of D, so the same encoder gives q(z | D_C) and q(z | D_C ∪ D_T).
* Decoder: (μ(x*), σ(x*)) = dec(x*, r or r(x*), z); σ = σ_min + (1 − σ_min)·softplus(·).

Everything is permutation invariant in the context: the only reductions over context points
are means and attention sums.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from innerloop.engine.errors import ConfigError

MIN_SIGMA = 0.01
MIN_LATENT_SIGMA = 0.1


def mlp(widths: Sequence[int]) -> nn.Sequential:
    """Linear layers of the given widths with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def gaussian_log_prob(y: torch.Tensor, mean: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(y; μ, σ²) = −½log(2π) − log σ − (y − μ)²/(2σ²)."""
    return -0.5 * math.log(2 * math.pi) - torch.log(sigma) - 0.5 * ((y - mean) / sigma) ** 2


def gaussian_kl(mu_q: torch.Tensor, sigma_q: torch.Tensor, mu_p: torch.Tensor, sigma_p: torch.Tensor) -> torch.Tensor:
    """KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²)) per dimension, closed form:
    log(σ_p/σ_q) + (σ_q² + (μ_q − μ_p)²)/(2σ_p²) − ½ (the KL term of seed 000 eq. 4.4)."""
    return torch.log(sigma_p / sigma_q) + (sigma_q**2 + (mu_q - mu_p) ** 2) / (2 * sigma_p**2) - 0.5


@dataclass
class NPOutput:
    """Predictive mean and std [S, B, M, y] (S latent samples; S = 1 without a latent path), and
    the context-only ``prior`` q(z|D_C) and ``posterior`` q(z|D_C ∪ D_T) as (μ, σ) pairs [B, d_z]."""

    mean: torch.Tensor
    sigma: torch.Tensor
    prior: tuple[torch.Tensor, torch.Tensor] | None = None
    posterior: tuple[torch.Tensor, torch.Tensor] | None = None


class NeuralProcessNet(nn.Module):
    """The NP family's encoder–decoder; ``deterministic`` ∈ {"mean", "attention", None}."""

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        hidden: Sequence[int] = (128, 128),
        representation_dim: int = 128,
        latent_dim: int = 64,
        deterministic: str | None = "mean",
        latent: bool = False,
        heads: int = 4,
    ) -> None:
        super().__init__()
        if deterministic not in ("mean", "attention", None) or (deterministic is None and not latent):
            raise ConfigError(
                f"a Neural Process needs a deterministic path ('mean' or 'attention') or a latent path; "
                f"got deterministic={deterministic!r}, latent={latent}",
                "use CNP, LatentNP or AttentiveNP",
            )
        if representation_dim % heads:
            raise ConfigError(
                f"representation_dim={representation_dim} must be divisible by heads={heads}",
                "e.g. representation_dim=128 with heads=4",
            )
        hidden = tuple(int(h) for h in hidden)
        self.deterministic, self.latent = deterministic, bool(latent)
        self.x_dim, self.y_dim, self.latent_dim = int(x_dim), int(y_dim), int(latent_dim)
        decoder_in = x_dim
        if deterministic is not None:
            self.encoder = mlp([x_dim + y_dim, *hidden, representation_dim])
            decoder_in += representation_dim
        if deterministic == "attention":
            self.input_embedding = mlp([x_dim, *hidden, representation_dim])
            self.attention = nn.MultiheadAttention(representation_dim, heads, batch_first=True)
        if latent:
            self.latent_encoder = mlp([x_dim + y_dim, *hidden, representation_dim])
            self.latent_head = nn.Linear(representation_dim, 2 * latent_dim)
            decoder_in += latent_dim
        self.decoder = mlp([decoder_in, *hidden, 2 * y_dim])

    def latent_distribution(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | D) for D = (x, y) of shape [B, N, ·]: (μ, σ) each [B, d_z], σ ∈ (0.1, 1)."""
        s = self.latent_encoder(torch.cat([x, y], dim=-1)).mean(dim=-2)
        mu, raw = self.latent_head(s).chunk(2, dim=-1)
        return mu, MIN_LATENT_SIGMA + (1 - MIN_LATENT_SIGMA) * torch.sigmoid(raw)

    def representation(self, cx: torch.Tensor, cy: torch.Tensor, tx: torch.Tensor) -> torch.Tensor:
        """Deterministic context representation at each target, [B, M, r]."""
        h = self.encoder(torch.cat([cx, cy], dim=-1))
        if self.deterministic == "mean":
            return h.mean(dim=-2, keepdim=True).expand(-1, tx.shape[-2], -1)
        query, key = self.input_embedding(tx), self.input_embedding(cx)
        return self.attention(query, key, h, need_weights=False)[0]

    def forward(
        self,
        cx: torch.Tensor,
        cy: torch.Tensor,
        tx: torch.Tensor,
        ty: torch.Tensor | None = None,
        eps: torch.Tensor | None = None,
    ) -> NPOutput:
        """Predictive at targets ``tx`` given context (cx, cy).

        With a latent path, z = μ + σ·eps for ``eps`` of shape [S, B, d_z], drawn from the
        posterior q(z | D_C ∪ D_T) when target outputs ``ty`` are given (training, eq. 4.4) and
        from the context-only q(z | D_C) otherwise (prediction).
        """
        features = [tx.unsqueeze(0)]
        prior = posterior = None
        if self.deterministic is not None:
            features.append(self.representation(cx, cy, tx).unsqueeze(0))
        if self.latent:
            if eps is None:
                raise ConfigError("a latent Neural Process needs noise eps of shape [S, B, latent_dim]",
                                  "pass eps=torch.randn(S, B, latent_dim)")
            prior = self.latent_distribution(cx, cy)
            if ty is not None:
                posterior = self.latent_distribution(torch.cat([cx, tx], dim=-2), torch.cat([cy, ty], dim=-2))
            mu, sigma = posterior or prior
            z = mu + sigma * eps
            features.append(z.unsqueeze(-2).expand(-1, -1, tx.shape[-2], -1))
        samples = features[-1].shape[0]
        inputs = torch.cat([f.expand(samples, *f.shape[1:]) for f in features], dim=-1)
        mean, raw = self.decoder(inputs).chunk(2, dim=-1)
        return NPOutput(mean, MIN_SIGMA + (1 - MIN_SIGMA) * F.softplus(raw), prior, posterior)
