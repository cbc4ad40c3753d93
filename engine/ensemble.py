"""An ensemble of M parameter particles of one model (BMAML's particle posterior).

Parameters carry a particle axis after any task axis: ``[M, *shape]`` for meta-parameters,
``[B, M, *shape]`` per task. ``apply`` is the posterior predictive, so an ensemble is evaluated
like any single model: for regression the predictive mean (1/M)Σ_m f(x; φ_m); for a classifier
(``classifier=True``, the particles' outputs are logits) the log of the mixture of the particles'
class probabilities, log (1/M)Σ_m softmax(f(x; φ_m)) — its softmax is that mixture, so the
cross-entropy of it is the posterior-predictive log-loss and its argmax the Bayesian decision
(averaging logits instead would be neither). ``spread`` gives the predictive spread across
particles (epistemic uncertainty).
"""

from __future__ import annotations

import math

import torch
from torch.func import vmap

from innerloop.engine.params import Params, check_shapes


class Ensemble:
    """M particles of ``model``."""

    def __init__(self, model, particles: int, classifier: bool = False) -> None:
        self.inner, self.particles, self.classifier = model, int(particles), bool(classifier)
        self.in_dim, self.out_dim = model.in_dim, model.out_dim

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: (self.particles, *s) for k, s in self.inner.shapes().items()}

    def num_params(self) -> int:
        return self.particles * self.inner.num_params()

    def init(self, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
             device: torch.device | str = "cpu") -> Params:
        """M independent initializations of the model, stacked on the particle axis."""
        draws = [self.inner.init(generator, dtype=dtype, device=device) for _ in range(self.particles)]
        return {k: torch.stack([d[k] for d in draws]) for k in draws[0]}

    def predictions(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Per-particle predictions [M, ..., out] for one task's particles [M, ...]."""
        return vmap(self.inner.apply, in_dims=(0, None))(params, x)

    def apply(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Posterior predictive: (1/M)Σ_m f(x; φ_m), or for a classifier log (1/M)Σ_m softmax(f(x; φ_m))."""
        predictions = self.predictions(params, x)
        if self.classifier:
            return torch.logsumexp(torch.log_softmax(predictions, dim=-1), dim=0) - math.log(self.particles)
        return predictions.mean(dim=0)

    def spread(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Standard deviation of the predictions across particles."""
        return self.predictions(params, x).std(dim=0, unbiased=False)

    def check_params(self, params: Params, task_axis: bool = False) -> None:
        check_shapes(self.shapes(), params, repr(self), task_axis)

    def config(self) -> dict:
        return {**self.inner.config(), "particles": self.particles}

    def __repr__(self) -> str:
        return f"Ensemble({self.inner!r}, particles={self.particles})"
