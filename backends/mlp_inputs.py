"""What the fused MLP paths require of their inputs, checked on the host before every call.

The fused passes (``cpu``/``torch`` with ``fused=True``) and the Triton kernels compute with the
sizes of the learner's :class:`MLPSpec`; the Triton kernels read raw pointers with those sizes
compiled in, so there a tensor of the wrong shape, dtype or device is not an error at all: it is
wrong numbers (a target row read past its end, a second input feature ignored). The backends
therefore check a fused call's inputs here first and raise one error naming the tensor, what it
is and what it should be. The checks read shapes, dtypes and devices only (no device
synchronisation): 1–4 µs of host time per call.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from innerloop.engine.errors import ConfigError, ShapeError
from innerloop.kernels.mlp_layout import MLPSpec

Params = dict[str, torch.Tensor]
_ON_DEVICE = {"cuda": lambda t: t.is_cuda, "cpu": lambda t: t.is_cpu}


def check_placement(device: torch.device, tensors: Iterable[torch.Tensor]) -> None:
    """Raise ConfigError unless every tensor is float32 on ``device``'s type: what the Triton
    kernels read (on CUDA, or on the CPU when they run in Triton's interpreter)."""
    on_device = _ON_DEVICE[device.type]
    for tensor in tensors:
        if not on_device(tensor):
            raise ConfigError(
                f"the triton backend runs on {device.type} but got a tensor on {tensor.device.type}",
                "move inputs with .to(backend.device) (the algorithms do this for you)",
            )
        if tensor.dtype is not torch.float32:
            raise ConfigError(
                f"the triton backend computes in float32 but got a {str(tensor.dtype).removeprefix('torch.')} tensor",
                "cast inputs with .float() (the algorithms do this for you), or use --backend cpu for float64",
            )


def check_data(spec: MLPSpec, x: torch.Tensor, y: torch.Tensor, split: str = "",
               tasks: int | None = None) -> int:
    """Raise ShapeError unless ``x`` is [B, K, in] and ``y`` [B, K, out] (MSE) or integer labels
    [B, K] (cross-entropy) for the learner's widths, with K ≥ 1 and B ≥ 1 (B == ``tasks`` when
    given); return B."""
    fan_in, fan_out = spec.widths[0], spec.widths[-1]
    name_x, name_y = f"{split}_x" if split else "x", f"{split}_y" if split else "y"
    if x.ndim != 3 or x.shape[2] != fan_in:
        raise ShapeError(f"{name_x} has shape {tuple(x.shape)}; the learner takes [tasks, points, {fan_in}]",
                         f"give {name_x} a task axis, a point axis and {fan_in} input feature(s)")
    batch, points = x.shape[0], x.shape[1]
    labels = spec.loss == "cross_entropy"
    wanted = (batch, points) if labels else (batch, points, fan_out)
    if y.shape != wanted:
        target = "one integer label" if labels else f"one {fan_out}-output target"
        raise ShapeError(f"{name_y} has shape {tuple(y.shape)} but {name_x} has {tuple(x.shape)}: the learner "
                         f"needs {list(wanted)} ({target} per input point)", f"reshape {name_y} to {list(wanted)}")
    if labels and y.is_floating_point():
        raise ShapeError(f"{name_y} holds {y.dtype} numbers but a cross-entropy learner takes integer class labels",
                         f"pass {name_y}.long()")
    if batch < 1 or points < 1:
        raise ShapeError(f"{name_x} has shape {tuple(x.shape)}: a loss needs at least one task and one point",
                         "sample at least one point per task")
    if tasks is not None and batch != tasks:
        raise ShapeError(f"{name_x} holds {batch} tasks but the support set holds {tasks}",
                         "give support and query sets of the same tasks")
    return batch


def check_params(spec: MLPSpec, params: Params, tasks: int | None, what: str = "parameter") -> None:
    """Raise ShapeError unless ``params`` holds exactly the learner's tensors, each [tasks, *shape]
    (one row per task: the primitives' protocol) or, when ``tasks`` is None, of its shape (the
    shared θ a fused meta-gradient starts from)."""
    if len(params) != len(spec.named_shapes):
        _name_error(spec, params, what)
    for name, shape in spec.named_shapes:
        tensor = params.get(name)
        if tensor is None:
            _name_error(spec, params, what)
        got = tensor.shape
        if tasks is None and got != shape:
            raise ShapeError(f"{what} '{name}' has shape {tuple(got)}; the learner needs {shape}",
                             "pass the shared parameters θ, with no task axis (as model.init(...) makes them)")
        if tasks is not None and (got[1:] != shape or got[0] != tasks):
            raise ShapeError(f"{what} '{name}' has shape {tuple(got)}; the learner needs {(tasks, *shape)} "
                             "(one row per task)",
                             "give every task its row (innerloop.engine.params.expand_to_tasks(params, tasks))")


def _name_error(spec: MLPSpec, params: Params, what: str) -> None:
    names = [name for name, _ in spec.named_shapes]
    missing, extra = sorted(set(names) - set(params)), sorted(set(params) - set(names))
    raise ShapeError(f"the {what}s do not match the learner: missing {missing}, unexpected {extra}",
                     "create parameters with model.init(...) for this learner")


def check_primitive_inputs(spec: MLPSpec, params: Params, x: torch.Tensor, y: torch.Tensor,
                           vector: Params | None = None, device: torch.device | None = None) -> None:
    """The inputs of ``loss``/``loss_and_grad``/``hvp``: data (:func:`check_data`), parameters and
    the HVP direction with one row per task; with a ``device`` (the Triton kernels), everything
    float32 on it."""
    tasks = check_data(spec, x, y)
    check_params(spec, params, tasks)
    if vector is not None:
        check_params(spec, vector, tasks, "direction")
    if device is not None:
        check_placement(device, [x, y, *params.values(), *(vector.values() if vector is not None else ())])


def check_meta_gradient_inputs(spec: MLPSpec, params: Params, support_x: torch.Tensor, support_y: torch.Tensor,
                               query_x: torch.Tensor, query_y: torch.Tensor, inner_steps: int,
                               device: torch.device | None = None) -> None:
    """The inputs of ``meta_gradient``: shared parameters θ, support and query sets of the same B
    tasks, a whole number of inner steps ≥ 0; with a ``device``, everything float32 on it."""
    tasks = check_data(spec, support_x, support_y, "support")
    check_data(spec, query_x, query_y, "query", tasks)
    check_params(spec, params, None)
    if int(inner_steps) != inner_steps or inner_steps < 0:
        raise ConfigError(f"inner_steps must be a whole number >= 0, got {inner_steps}",
                          "pass the number of inner SGD steps")
    if device is not None:
        check_placement(device, (support_x, support_y, query_x, query_y, *params.values()))
