"""Neural Processes as meta-learners (seed 000 §4): CNP, latent NP, attentive NP.

Training episodes. Each meta-iteration draws one context size K_C uniformly from
[context_min, K] (K = the batch's support size), shared by all tasks of the batch (so context
sizes vary between batches); the context is the first K_C support points and the targets are
the context plus the query points (Garnelo et al.), or the query points alone.

Objectives, per task and per target point (dividing by |T| rescales without moving optima):

* CNP (eq. 4.2): −(1/|T|) Σ_{t∈T} log N(y_t; μ(x_t; C), σ(x_t; C)²).
* Latent NP / ANP, the negative ELBO of eq. 4.4 with the context-only posterior in the KL:
  −(1/|T|) E_{z~q(z|C∪T)} Σ_t log p(y_t | x_t, z) + (1/|T|) KL(q(z|C∪T) ‖ q(z|C)),
  with one reparametrized sample z = μ + σ·ε.

Held-out loss (``evaluate``): the per-target predictive NLL −(1/M) Σ_t log p(y_t | x_t, C) on
the query set, the support set as context. Latent models marginalize z with ``samples`` draws
from q(z | C): log p(y_t | x_t, C) ≈ log (1/S) Σ_s N(y_t; μ_s, σ_s²).
"""

from __future__ import annotations

import math

import torch

from innerloop.engine.algorithms.amortized import AmortizedAlgorithm
from innerloop.engine.algorithms.base import register
from innerloop.engine.errors import ConfigError, ShapeError
from innerloop.engine.module_model import ModuleModel
from innerloop.engine.neural_processes import NeuralProcessNet, NPOutput, gaussian_kl, gaussian_log_prob
from innerloop.engine.params import Params
from innerloop.engine.tasks import TaskBatch, TaskFamily, generator_for


class NeuralProcess(AmortizedAlgorithm):
    """Shared training and prediction of the NP family; subclasses choose the paths."""

    lens = "bayesian"
    deterministic: str | None = "mean"
    latent: bool = False

    def __init__(self, model, backend, context_min: int = 3, targets_include_context: bool = True,
                 samples: int = 32) -> None:
        for label, value, low in (("context_min", context_min, 1), ("samples", samples, 1)):
            if int(value) != value or value < low:
                raise ConfigError(f"{label} must be an integer >= {low}, got {value}", f"e.g. {label}={max(low, 3)}")
        if not isinstance(model, ModuleModel) or not isinstance(model.module, NeuralProcessNet):
            raise ConfigError(f"{type(self).__name__} needs its own network, got {model!r}",
                              f"build it with {type(self).__name__}.network(family)")
        self.context_min = int(context_min)
        self.targets_include_context = bool(targets_include_context)
        self.samples = int(samples)
        super().__init__(model, backend)

    @classmethod
    def network(cls, family: TaskFamily, hidden: tuple[int, ...] | None = None, representation_dim: int = 128,
                latent_dim: int = 64, heads: int = 4) -> ModuleModel:
        if family.loss != "mse":
            raise ConfigError(f"Neural Processes model real-valued outputs; task '{family.name}' is classification",
                              "use --task gp or --task sinusoid, or protonet/matchingnet for classification")
        net = NeuralProcessNet(
            family.input_dim, family.output_dim, cls.default_hidden if hidden is None else hidden,
            representation_dim, latent_dim, cls.deterministic, cls.latent, heads,
        )
        return ModuleModel(net)

    # -- training -------------------------------------------------------------------------
    def _objective(self, params: Params, batch: TaskBatch) -> tuple[torch.Tensor, dict[str, float]]:
        size = batch.support_x.shape[1]
        if size < self.context_min:
            raise ShapeError(f"tasks have {size} support points, fewer than context_min={self.context_min}",
                             f"sample more support points (--shots >= {self.context_min}) or lower context_min")
        k_c = int(torch.randint(self.context_min, size + 1, (), generator=self.generator))
        cx, cy = batch.support_x[:, :k_c], batch.support_y[:, :k_c]
        tx, ty = batch.query_x, batch.query_y
        if self.targets_include_context:
            tx, ty = torch.cat([cx, tx], dim=1), torch.cat([cy, ty], dim=1)
        eps = self._noise(1, batch.num_tasks, self.generator)
        out = self.model.apply(params, cx, cy, tx, ty, eps)
        terms = self.elbo_terms(out, ty)
        diagnostics = {"context_size": float(k_c), "nll": float(terms["nll"].detach().mean())}
        if "kl" in terms:
            diagnostics["kl"] = float(terms["kl"].detach().mean())
        return terms["loss"], diagnostics

    @staticmethod
    def elbo_terms(out: NPOutput, ty: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-task terms of the training objective, each [B] and per target point:
        ``nll`` = −(1/|T|)Σ_t log p(y_t|x_t, z) (averaged over the S samples), ``kl`` =
        KL(q(z|C∪T) ‖ q(z|C))/|T| (latent models), and ``loss`` = nll + kl (eq. 4.2 / 4.4)."""
        log_p = gaussian_log_prob(ty, out.mean, out.sigma).sum(dim=-1)  # [S, B, M]
        nll = -log_p.mean(dim=(0, 2))
        terms = {"nll": nll, "loss": nll}
        if out.posterior is not None:
            kl = gaussian_kl(*out.posterior, *out.prior).sum(dim=-1) / ty.shape[1]
            terms.update(kl=kl, loss=nll + kl)
        return terms

    # -- prediction -----------------------------------------------------------------------
    def predict(self, params: Params, cx: torch.Tensor, cy: torch.Tensor, tx: torch.Tensor,
                samples: int | None = None, generator: torch.Generator | None = None) -> NPOutput:
        """Predictive (μ, σ) at ``tx`` given the context, [S, B, M, y]; S latent samples from q(z|C)."""
        theta = {k: v.to(self.backend.device, self.backend.dtype) for k, v in params.items()}
        move = [t.to(self.backend.device, self.backend.dtype) for t in (cx, cy, tx)]
        generator = generator or generator_for(0, "np/predict")
        eps = self._noise(samples or self.samples, cx.shape[0], generator)
        with torch.no_grad():
            return self.model.apply(theta, *move, None, eps)

    def evaluate(self, params: Params, batch: TaskBatch, context: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-task predictive NLL per query point [B], with the first ``context`` support points
        (default: all) as the context."""
        theta, batch = self._prepare(params, batch)
        k_c = batch.support_x.shape[1] if context is None else int(context)
        if not 1 <= k_c <= batch.support_x.shape[1]:
            raise ShapeError(f"context size {k_c} is outside 1..{batch.support_x.shape[1]} (the support size)",
                             "sample tasks with more support points")
        out = self.predict(theta, batch.support_x[:, :k_c], batch.support_y[:, :k_c], batch.query_x,
                           generator=generator)
        return predictive_nll(out, batch.query_y)

    def _noise(self, samples: int, num_tasks: int, generator: torch.Generator) -> torch.Tensor | None:
        if not self.latent:
            return None
        eps = torch.randn((samples, num_tasks, self.model.module.latent_dim), generator=generator)
        return eps.to(self.backend.device, self.backend.dtype)

    def options(self) -> dict:
        return {"context_min": self.context_min, "targets_include_context": self.targets_include_context,
                "samples": self.samples}


def predictive_nll(out: NPOutput, y: torch.Tensor) -> torch.Tensor:
    """−(1/M) Σ_t log (1/S) Σ_s N(y_t; μ_{s,t}, σ_{s,t}²), per task [B] (S = 1: the plain Gaussian NLL)."""
    log_p = gaussian_log_prob(y, out.mean, out.sigma).sum(dim=-1)  # [S, B, M]
    marginal = torch.logsumexp(log_p, dim=0) - math.log(log_p.shape[0])
    return -marginal.mean(dim=-1)


@register
class CNP(NeuralProcess):
    """Conditional NP: mean-pooled deterministic encoder, Gaussian decoder (seed 000 eq. 4.2)."""

    name = "cnp"
    summary = "conditional Neural Process: mean-pooled context encoder, Gaussian decoder (seed 000 §4.2)"


@register
class LatentNP(NeuralProcess):
    """Latent NP: global latent z, trained on the ELBO of seed 000 eq. 4.4."""

    name = "latent-np"
    summary = "latent Neural Process: global latent z, ELBO with context-only posterior in the KL (§4.3)"
    deterministic = None
    latent = True


@register
class AttentiveNP(NeuralProcess):
    """Attentive NP: cross-attention from targets to context plus the latent path (§4.4)."""

    name = "attentive-np"
    summary = "attentive Neural Process: multi-head cross-attention to the context plus latent z (§4.4)"
    deterministic = "attention"
    latent = True
