"""The reference backend: torch.func transforms vmapped over the task axis (seed 000 §10.2).

* loss: ``vmap(task_loss)``
* loss_and_grad: ``vmap(grad_and_value(task_loss))``
* hvp: forward-over-reverse, ``vmap(jvp(grad(task_loss)))`` — the Pearlmutter product
  ∇²L·v = d/dε ∇L(θ + εv)|₀ (seed 000 eq. 2.7) without forming the Hessian.

No Python loop over tasks; any dtype (float64 for gradient checks). ``cpu`` is this backend
pinned to the CPU (the oracle every other backend is tested against); ``torch`` runs the same
code on any torch device, so GPU users have a working baseline.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.func import grad, grad_and_value, jvp, vmap

from innerloop.backends.base import Backend, LearnerLike, Params
from innerloop.engine.errors import BackendUnavailableError, ConfigError

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


def parse_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """A torch dtype from a dtype or its name ("float32", "float64", ...)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype '{dtype}'", f"choose one of: {', '.join(DTYPES)}")
    return DTYPES[name]


class TorchFuncBackend(Backend):
    """torch.func on any torch device (``device="cuda"``, ``"cpu"``, ...)."""

    name = "torch"
    provides = frozenset({"loss", "loss_and_grad", "hvp", "autograd"})
    description = "torch.func (vmap/grad/jvp) on any torch device; the GPU baseline"

    def __init__(
        self,
        dtype: torch.dtype | str = torch.float32,
        device: torch.device | str | None = None,
        capabilities: Iterable[str] | str | None = None,
    ) -> None:
        super().__init__(capabilities)
        self.dtype = parse_dtype(dtype)
        reason = self.unavailable_reason(device=device)
        if reason:
            raise BackendUnavailableError(reason, "use --backend cpu, or install a CUDA build of torch")
        self.device = torch.device(device) if device is not None else self.default_device()

    @staticmethod
    def default_device() -> torch.device:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    @classmethod
    def unavailable_reason(cls, device: torch.device | str | None = None, **_: object) -> str | None:
        if device is None:
            return None
        try:
            dev = torch.device(device)
        except RuntimeError:
            return f"'{device}' is not a torch device name (try 'cpu' or 'cuda')"
        if dev.type == "cuda" and not torch.cuda.is_available():
            return "device 'cuda' was requested but torch sees no CUDA GPU on this machine"
        return None

    def loss(self, learner: LearnerLike, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self._require("loss")
        return vmap(learner.task_loss)(params, x, y)

    def loss_and_grad(
        self, learner: LearnerLike, params: Params, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, Params]:
        self._require("loss_and_grad")
        grads, losses = vmap(grad_and_value(learner.task_loss))(params, x, y)
        return losses, grads

    def hvp(
        self, learner: LearnerLike, params: Params, x: torch.Tensor, y: torch.Tensor, vector: Params
    ) -> Params:
        self._require("hvp")

        def task_hvp(p: Params, xb: torch.Tensor, yb: torch.Tensor, v: Params) -> Params:
            return jvp(lambda q: grad(learner.task_loss)(q, xb, yb), (p,), (v,))[1]

        return vmap(task_hvp)(params, x, y, vector)


class CPUBackend(TorchFuncBackend):
    """The reference backend: torch.func on the CPU, any dtype."""

    name = "cpu"
    description = "reference: torch.func (vmap/grad/jvp) on the CPU, any dtype"

    def __init__(
        self, dtype: torch.dtype | str = torch.float32, capabilities: Iterable[str] | str | None = None
    ) -> None:
        super().__init__(dtype=dtype, device="cpu", capabilities=capabilities)
