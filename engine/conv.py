"""The 4-block convolutional embedding of Snell et al. / Vinyals et al. as a pure function.

Each block is conv 3×3 (``channels`` filters, padding 1) → normalization → ReLU → 2×2 max-pool;
the output is flattened. ``pooling=False`` drops the max-pools: the embedding keeps the full
H×W map of every channel, for images too small to pool (8×8 digits), where the poolings squeeze
the image into a 64-number bottleneck that meta-training on few classes specializes to them.
Inputs arrive flattened, [..., C·H·W] (how image task families store them), and are reshaped
with ``image_shape``.

Normalization uses per-task statistics of the *support* set for support and query alike
(MetaBN, Bronskill et al. 2020): batch norm without running statistics, which keeps the
parameters a plain dict and never lets one query point influence another's embedding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from innerloop.engine.errors import ConfigError, ShapeError
from innerloop.engine.params import Params, check_shapes, count

EPS = 1e-5


class Conv4:
    """Embedding φ(x) of images of shape ``image_shape`` = (C, H, W) by ``blocks`` conv blocks."""

    def __init__(self, image_shape: tuple[int, int, int], channels: int = 64, blocks: int = 4,
                 pooling: bool = True) -> None:
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ConfigError(f"image_shape must be (channels, height, width), got {image_shape}", "e.g. (1, 28, 28)")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.channels, self.blocks, self.pooling = int(channels), int(blocks), bool(pooling)
        if self.channels < 1 or self.blocks < 1:
            raise ConfigError(f"channels and blocks must be positive, got channels={channels}, blocks={blocks}",
                              "e.g. channels=64, blocks=4")
        self.in_dim = math.prod(self.image_shape)
        side = min(self.image_shape[1:])
        if self.pooling and side < 2**self.blocks:
            raise ConfigError(
                f"images of {self.image_shape[1]}×{self.image_shape[2]} pixels are too small for {self.blocks} "
                f"2×2 poolings", f"use blocks <= {max(1, int(math.log2(side)))}, pooling=false or larger images",
            )

    def shapes(self) -> dict[str, tuple[int, ...]]:
        shapes, fan_in = {}, self.image_shape[0]
        for b in range(self.blocks):
            shapes[f"block{b}.conv.weight"] = (self.channels, fan_in, 3, 3)
            shapes[f"block{b}.conv.bias"] = (self.channels,)
            shapes[f"block{b}.norm.weight"] = (self.channels,)
            shapes[f"block{b}.norm.bias"] = (self.channels,)
            fan_in = self.channels
        return shapes

    def num_params(self) -> int:
        return count(self.shapes())

    def init(self, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
             device: torch.device | str = "cpu") -> Params:
        """Conv weights and biases U(±1/√fan_in) (torch.nn.Conv2d's); norm scale 1, shift 0."""
        dtype = dtype or torch.get_default_dtype()
        params, shapes = {}, self.shapes()
        for name, shape in shapes.items():
            if ".conv." in name:
                bound = 1 / math.sqrt(shapes[name.replace("bias", "weight")][1] * 9)
                u = torch.rand(shape, generator=generator, dtype=torch.float64)
                params[name] = ((2 * u - 1) * bound).to(dtype=dtype, device=device)
            else:
                fill = 1.0 if name.endswith("weight") else 0.0
                params[name] = torch.full(shape, fill, dtype=dtype, device=device)
        return params

    def apply(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Embeddings [B, N, F] of ``x`` [B, N, C·H·W], normalized with the statistics of ``x``."""
        return self.embed_support_query(params, x, x[:, :0])[0]

    def embed_support_query(self, params: Params, support: torch.Tensor, query: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings of support [B, K, ·] and query [B, M, ·], normalized by support statistics."""
        if support.shape[-1] != self.in_dim or query.shape[-1] != self.in_dim:
            raise ShapeError(f"Conv4 expects flattened images of {self.in_dim} values {self.image_shape}, "
                             f"got {support.shape[-1]}", "check the task family's image size")
        num_tasks, k = support.shape[:2]
        h = torch.cat([support, query], dim=1)
        n = h.shape[1]
        h = h.reshape(num_tasks * n, *self.image_shape)
        for b in range(self.blocks):
            h = F.conv2d(h, params[f"block{b}.conv.weight"], params[f"block{b}.conv.bias"], padding=1)
            per_task = h.reshape(num_tasks, n, *h.shape[1:])
            ref = per_task[:, :k]
            mean = ref.mean(dim=(1, 3, 4), keepdim=True)
            var = ref.var(dim=(1, 3, 4), unbiased=False, keepdim=True)
            scale = params[f"block{b}.norm.weight"][:, None, None]
            shift = params[f"block{b}.norm.bias"][:, None, None]
            h = ((per_task - mean) * torch.rsqrt(var + EPS) * scale + shift).reshape_as(h)
            h = torch.relu(h)
            if self.pooling:
                h = F.max_pool2d(h, 2)
        h = h.reshape(num_tasks, n, -1)
        return h[:, :k], h[:, k:]

    def check_params(self, params: Params, task_axis: bool = False) -> None:
        check_shapes(self.shapes(), params, repr(self), task_axis)

    def config(self) -> dict:
        return {"image_shape": list(self.image_shape), "channels": self.channels, "blocks": self.blocks,
                "pooling": self.pooling}

    def __repr__(self) -> str:
        return f"Conv4({self.image_shape}, channels={self.channels}, blocks={self.blocks}, pooling={self.pooling})"
