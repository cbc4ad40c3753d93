"""Metric-based meta-learning (seed 000 §5, monograph §2.1.1): ProtoNet and MatchingNet.

Only an embedding φ_θ is meta-learned; a task is "learned" by embedding its support set:

* ProtoNet: prototypes c_k = (1/|S_k|) Σ_{x∈S_k} φ(x) (eq. 5.2) and
  p(y = k | x) = softmax_k(−‖φ(x) − c_k‖²) (eq. 5.3), trained on the query cross-entropy (5.4).
* MatchingNet: p(y = k | x) = Σ_i a_i 1[y_i = k], a_i = softmax_i(s·cos(φ(x), φ(x_i))) over
  the support points (§5.4); the seed's form is s = 1. With cosines in [−1, 1] that caps a
  5-way 5-shot class probability near 0.65, so the default sharpens with s = 10.

The per-task objective is the mean query negative log-likelihood; gradients reach the support
embeddings through the prototypes / attention weights. Embedding learners: an MLP for vector
inputs, the 4-block conv net of Snell et al. for image families (``embedding="auto"``).
"""

from __future__ import annotations

import math
from abc import abstractmethod

import torch
import torch.nn.functional as F

from innerloop.engine.algorithms.amortized import AmortizedAlgorithm
from innerloop.engine.algorithms.base import register
from innerloop.engine.conv import Conv4
from innerloop.engine.errors import ConfigError, ShapeError, require_positive, unknown_name
from innerloop.engine.models import MLP
from innerloop.engine.params import Params
from innerloop.engine.tasks import TaskBatch, TaskFamily

EMBEDDINGS = ("auto", "mlp", "conv4")
POOLED_MIN_SIDE = 16  # smallest image side that takes the four 2×2 poolings of Snell et al.'s net


def embed_support_query(model, params: Params, support_x: torch.Tensor, query_x: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """φ(support) [B, K, d] and φ(query) [B, M, d]; a model may normalize with support statistics."""
    joint = getattr(model, "embed_support_query", None)
    if joint is not None:
        return joint(params, support_x, query_x)
    return model.apply(params, support_x), model.apply(params, query_x)


def one_hot_labels(labels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """One-hot [B, K, N] of support labels 0..N−1; every class must have a support point."""
    ways = int(labels.max()) + 1
    onehot = F.one_hot(labels, ways).to(dtype)
    empty = (onehot.sum(dim=1) == 0).nonzero()
    if len(empty):
        task, cls = (int(v) for v in empty[0])
        raise ShapeError(f"task {task} has no support example of class {cls} (labels must cover 0..{ways - 1})",
                         "sample every class in the support set (shots >= 1 per class)")
    return onehot


def prototypes(support_embeddings: torch.Tensor, support_labels: torch.Tensor) -> torch.Tensor:
    """Class prototypes c_k = mean of the support embeddings of class k (seed 000 eq. 5.2), [B, N, d]."""
    onehot = one_hot_labels(support_labels, support_embeddings.dtype)
    return onehot.transpose(1, 2) @ support_embeddings / onehot.sum(dim=1)[..., None]


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖a_i − b_j‖² for a [B, M, d], b [B, N, d] → [B, M, N] (exact differences, not the
    ‖a‖² − 2a·b + ‖b‖² expansion, which cancels catastrophically for nearby points)."""
    return ((a.unsqueeze(2) - b.unsqueeze(1)) ** 2).sum(dim=-1)


def nearest_neighbour_predictions(support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor
                                  ) -> torch.Tensor:
    """1-nearest-neighbour labels [B, M] in input space (the raw-pixel baseline)."""
    nearest = squared_distances(query_x, support_x).argmin(dim=-1)
    return torch.gather(support_y, 1, nearest)


class MetricAlgorithm(AmortizedAlgorithm):
    """Shared embedding, objective and accuracy of the metric lens."""

    lens = "metric"
    default_hidden = (64, 64)

    @classmethod
    def network(cls, family: TaskFamily, hidden: tuple[int, ...] | None = None, embedding: str = "auto",
                embedding_dim: int = 32, channels: int | None = None, blocks: int | None = None,
                pooling: bool | None = None):
        """MLP(hidden, embedding_dim) for vectors; Conv4(channels) for images.

        ``pooling`` (default: only for images at least 16 pixels on a side, where all four 2×2
        poolings fit) selects Snell et al.'s pooled net, ``blocks`` deep (default 4) with
        ``channels`` filters (default 64); without pooling the net keeps the whole feature map,
        ``blocks`` deep (default 2) with 32 filters by default (each block costs H·W times a
        pooled one's first block). On 8×8 digits the pooled net's 64-number bottleneck
        specializes to the meta-training classes (held-out accuracy 0.77, below raw pixels); the
        full map transfers (README, *Digits*)."""
        if family.loss != "cross_entropy":
            raise ConfigError(f"{cls.name} classifies; task '{family.name}' is regression",
                              "use a classification task (clusters, digits, omniglot, mini-imagenet)")
        if embedding not in EMBEDDINGS:
            raise unknown_name("embedding", embedding, EMBEDDINGS)
        image_shape = getattr(family, "image_shape", None)
        if embedding == "conv4" or (embedding == "auto" and image_shape is not None):
            if image_shape is None:
                raise ConfigError(f"the conv4 embedding needs image tasks; '{family.name}' has vector inputs",
                                  "use embedding=mlp")
            if pooling is None:
                pooling = min(image_shape[1:]) >= POOLED_MIN_SIDE
            if blocks is None:
                blocks = min(4, int(math.log2(min(image_shape[1:])))) if pooling else 2
            if channels is None:
                channels = 64 if pooling else 32
            return Conv4(image_shape, channels, blocks, pooling)
        return MLP(family.input_dim, cls.default_hidden if hidden is None else hidden, embedding_dim)

    def class_log_probs(self, params: Params, batch: TaskBatch) -> torch.Tensor:
        """log p(y = k | x, S) for every query point, [B, M, N]."""
        support, query = embed_support_query(self.model, params, batch.support_x, batch.query_x)
        return self._log_probs(support, batch.support_y, query)

    @abstractmethod
    def _log_probs(self, support: torch.Tensor, support_y: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Class log-probabilities [B, M, N] from support and query embeddings."""

    def _objective(self, params: Params, batch: TaskBatch) -> tuple[torch.Tensor, dict[str, float]]:
        log_p = self.class_log_probs(params, batch)
        nll = -torch.gather(log_p, 2, batch.query_y[..., None]).squeeze(-1).mean(dim=1)
        accuracy = (log_p.detach().argmax(dim=-1) == batch.query_y).double().mean()
        return nll, {"accuracy": float(accuracy)}

    def evaluate(self, params: Params, batch: TaskBatch) -> torch.Tensor:
        """Per-task query cross-entropy [B] (eq. 5.4, averaged over query points)."""
        return self.loss_and_accuracy(params, batch)[0]

    def loss_and_accuracy(self, params: Params, batch: TaskBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-task query cross-entropy and accuracy [B], from one embedding pass."""
        theta, batch = self._prepare(params, batch)
        with torch.no_grad():
            log_p = self.class_log_probs(theta, batch)
        nll = -torch.gather(log_p, 2, batch.query_y[..., None]).squeeze(-1).mean(dim=1)
        return nll, (log_p.argmax(dim=-1) == batch.query_y).double().mean(dim=1)

    def predict(self, params: Params, batch: TaskBatch) -> torch.Tensor:
        """Predicted query labels [B, M]."""
        theta, batch = self._prepare(params, batch)
        with torch.no_grad():
            return self.class_log_probs(theta, batch).argmax(dim=-1)

    def accuracy(self, params: Params, batch: TaskBatch) -> torch.Tensor:
        """Per-task query accuracy [B]."""
        return (self.predict(params, batch) == batch.query_y.to(self.backend.device)).double().mean(dim=1)


@register
class ProtoNet(MetricAlgorithm):
    """Prototypical network: nearest class mean in squared Euclidean distance (seed 000 eq. 5.2–5.4)."""

    name = "protonet"
    summary = "prototypical network: softmax over −‖φ(x) − c_k‖², c_k = class-mean embedding (seed 000 §5)"

    def _log_probs(self, support, support_y, query):
        return torch.log_softmax(-squared_distances(query, prototypes(support, support_y)), dim=-1)


@register
class MatchingNet(MetricAlgorithm):
    """Matching network: cosine attention over the support points (seed 000 §5.4)."""

    name = "matchingnet"
    summary = "matching network: p(y=k|x) = Σ_i softmax_i(s·cos(φ(x), φ(x_i)))·1[y_i=k] (seed 000 §5.4)"

    def __init__(self, model, backend, scale: float = 10.0) -> None:
        require_positive("scale", scale)
        self.scale = float(scale)
        super().__init__(model, backend)

    def attention(self, support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Attention weights a_i over support points for each query point, [B, M, K]; rows sum to 1."""
        cosine = F.normalize(query, dim=-1) @ F.normalize(support, dim=-1).transpose(1, 2)
        return torch.softmax(self.scale * cosine, dim=-1)

    def _log_probs(self, support, support_y, query):
        probs = self.attention(support, query) @ one_hot_labels(support_y, support.dtype)
        return torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny))

    def options(self) -> dict:
        return {"scale": self.scale}
