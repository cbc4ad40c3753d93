"""The torch backends: torch.func transforms vmapped over the task axis (seed 000 §10.2), and
closed-form fused MLP passes (issue 5) for the learners they can realize.

torch.func path (any learner, any dtype):

* loss: ``vmap(task_loss)``
* loss_and_grad: ``vmap(grad_and_value(task_loss))``
* hvp: forward-over-reverse, ``vmap(jvp(grad(task_loss)))`` — the Pearlmutter product
  ∇²L·v = d/dε ∇L(θ + εv)|₀ (seed 000 eq. 2.7) without forming the Hessian.

Fused path (``fused=True``): for MLP learners (ReLU/tanh/GELU/SiLU, MSE/cross-entropy) the same
primitives and a whole MAML meta-gradient (``meta_gradient``) run as batched closed-form
forward/backward/R-passes (:mod:`innerloop.kernels`), several times faster on small networks.
The fused passes are not differentiable by autograd, so a call whose inputs require grad takes
the torch.func path; so does every learner that is not such an MLP.

``cpu`` pins the CPU and fuses by default; ``backends.get("cpu", fused=False)`` is the pure
torch.func oracle every fused or kernel path is tested against. ``torch`` runs on any torch
device and defaults to torch.func, the GPU baseline.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import torch
from torch.func import grad, grad_and_value, jvp, vmap

from innerloop.backends.base import Backend, LearnerLike, Params, check_task_axes
from innerloop.backends.mlp_inputs import check_meta_gradient_inputs, check_primitive_inputs
from innerloop.engine.errors import BackendUnavailableError, ConfigError
from innerloop.kernels.fused_maml import maml_meta_gradient
from innerloop.kernels.mlp_layout import MLPSpec
from innerloop.kernels.mlp_primitives import mlp_hvp, mlp_loss, mlp_loss_and_grad

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


def parse_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """A torch dtype from a dtype or its name ("float32", "float64", ...)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype '{dtype}'", f"choose one of: {', '.join(DTYPES)}")
    return DTYPES[name]


@lru_cache(maxsize=64)
def _spec_of(learner: LearnerLike) -> MLPSpec | None:
    return MLPSpec.of(learner)


def _records_grad(*tensors: torch.Tensor | Params) -> bool:
    if not torch.is_grad_enabled():
        return False
    flat = [t for x in tensors for t in (x.values() if isinstance(x, dict) else (x,))]
    return any(t.requires_grad for t in flat)


class TorchFuncBackend(Backend):
    """torch.func on any torch device (``device="cuda"``, ``"cpu"``, ...); ``fused=True`` adds the
    closed-form MLP passes and the fused ``meta_gradient``."""

    name = "torch"
    provides = frozenset({"loss", "loss_and_grad", "hvp", "autograd", "meta_gradient"})
    description = "torch.func (vmap/grad/jvp) on any torch device; the GPU baseline (fused=True: fused MLP passes)"
    default_fused = False
    optional = {"meta_gradient": "fused=true"}

    def __init__(
        self,
        dtype: torch.dtype | str = torch.float32,
        device: torch.device | str | None = None,
        capabilities: Iterable[str] | str | None = None,
        fused: bool | None = None,
    ) -> None:
        self.fused = self.default_fused if fused is None else bool(fused)
        if not self.fused:
            if capabilities is not None and "meta_gradient" in (
                capabilities.split(",") if isinstance(capabilities, str) else capabilities
            ):
                raise ConfigError(
                    f"backend '{self.name}' offers 'meta_gradient' only with fused=True",
                    "drop 'meta_gradient' from the capabilities or pass fused=True",
                )
            capabilities = sorted(self.provides - {"meta_gradient"}) if capabilities is None else capabilities
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

    def fuses(self, learner: LearnerLike) -> bool:
        return self.fused and _spec_of(learner) is not None

    def _fused_spec(self, learner: LearnerLike, *tensors: torch.Tensor | Params) -> MLPSpec | None:
        """The learner's MLP spec when this call runs fused (fused backend, MLP learner, no autograd)."""
        if not self.fused or _records_grad(*tensors):
            return None
        return _spec_of(learner)

    def loss(self, learner: LearnerLike, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self._require("loss")
        spec = self._fused_spec(learner, params, x)
        if spec is not None:
            check_primitive_inputs(spec, params, x, y)
            return mlp_loss(spec, params, x, y)
        check_task_axes(params, x, y)
        return vmap(learner.task_loss)(params, x, y)

    def loss_and_grad(
        self, learner: LearnerLike, params: Params, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, Params]:
        self._require("loss_and_grad")
        spec = self._fused_spec(learner, params, x)
        if spec is not None:
            check_primitive_inputs(spec, params, x, y)
            return mlp_loss_and_grad(spec, params, x, y)
        check_task_axes(params, x, y)
        grads, losses = vmap(grad_and_value(learner.task_loss))(params, x, y)
        return losses, grads

    def hvp(
        self, learner: LearnerLike, params: Params, x: torch.Tensor, y: torch.Tensor, vector: Params
    ) -> Params:
        self._require("hvp")
        spec = self._fused_spec(learner, params, x, vector)
        if spec is not None:
            check_primitive_inputs(spec, params, x, y, vector)
            return mlp_hvp(spec, params, x, y, vector)
        check_task_axes(params, x, y, vector)

        def task_hvp(p: Params, xb: torch.Tensor, yb: torch.Tensor, v: Params) -> Params:
            return jvp(lambda q: grad(learner.task_loss)(q, xb, yb), (p,), (v,))[1]

        return vmap(task_hvp)(params, x, y, vector)

    def meta_gradient(
        self, learner: LearnerLike, params: Params, support_x: torch.Tensor, support_y: torch.Tensor,
        query_x: torch.Tensor, query_y: torch.Tensor, inner_lr: float, inner_steps: int, first_order: bool = False,
    ) -> tuple[torch.Tensor, Params]:
        self._require("meta_gradient")
        spec = _spec_of(learner)
        if spec is None:
            raise ConfigError(
                f"backend '{self.name}' cannot fuse the learner {learner.model!r} with loss '{learner.loss_name}'",
                "fused meta-gradients cover MLPs (relu/tanh/gelu/silu) with mse or cross_entropy; "
                "check backend.fuses(learner) first",
            )
        check_meta_gradient_inputs(spec, params, support_x, support_y, query_x, query_y, inner_steps)
        with torch.no_grad():
            return maml_meta_gradient(spec, params, support_x, support_y, query_x, query_y,
                                      inner_lr, inner_steps, first_order)


class CPUBackend(TorchFuncBackend):
    """The CPU backend: fused MLP passes by default, torch.func (any dtype) for everything else;
    ``fused=False`` is the pure torch.func reference."""

    name = "cpu"
    description = ("CPU: fused closed-form MLP passes, torch.func for other learners "
                   "(fused=False: pure torch.func oracle)")
    default_fused = True
    optional: dict[str, str] = {}

    def __init__(
        self, dtype: torch.dtype | str = torch.float32, capabilities: Iterable[str] | str | None = None,
        fused: bool | None = None,
    ) -> None:
        super().__init__(dtype=dtype, device="cpu", capabilities=capabilities, fused=fused)
