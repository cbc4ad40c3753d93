"""Inputs of the fused MLP paths (cpu/torch fused passes, triton kernels) are checked before a
call: a wrong shape, dtype or device is one clear error, never wrong numbers (the Triton kernels
read raw pointers with the learner's sizes compiled in) and never a torch shape error from deep
inside the passes."""

from __future__ import annotations

import pytest
import torch

import innerloop as il
from conftest import gen
from innerloop.engine.learner import Learner
from innerloop.engine.models import MLP

FUSED = [("cpu", {}), ("torch", {"fused": True}), ("triton", {})]


def _problem(backend):
    """Learner 1→16→16→1, shared θ, per-task parameters and data of two tasks of ten points."""
    g = gen(0)
    model = MLP(1, (16, 16), 1)
    theta = model.init(g, dtype=torch.float32, device=backend.device)
    params = {k: v.expand(2, *v.shape).clone() for k, v in theta.items()}
    x, y = (torch.randn(2, 10, 1, generator=g).to(backend.device) for _ in range(2))
    return Learner(model, "mse"), theta, params, x, y


def _primitive_cases(theta, params, x, y):
    """{what the error says: (parameters, x, y)}, each with one thing wrong."""
    return {
        r"x has shape \(2, 10, 2\); the learner takes \[tasks, points, 1\]": (params, x.repeat(1, 1, 2), y),
        r"x has shape \(2, 10\)": (params, x[..., 0], y),
        r"y has shape \(2, 10\) but x has \(2, 10, 1\)": (params, x, y[..., 0]),
        r"y has shape \(3, 10, 1\)": (params, x, y[[0, 1, 1]]),
        r"y has shape \(2, 9, 1\)": (params, x, y[:, :9]),
        "at least one task and one point": (params, x[:, :0], y[:, :0]),
        r"'layer0.weight' has shape \(3, 16, 1\); the learner needs \(2, 16, 1\) \(one row per task\)":
            ({**params, "layer0.weight": params["layer0.weight"][[0, 1, 1]]}, x, y),
        r"'layer0.weight' has shape \(16, 1\); the learner needs \(2, 16, 1\)": (theta, x, y),
        r"missing \['layer2.bias'\]": ({k: v for k, v in params.items() if k != "layer2.bias"}, x, y),
    }


@pytest.mark.parametrize("name,options", FUSED, ids=[n for n, _ in FUSED])
def test_bad_primitive_inputs_are_clear_errors(name, options):
    backend = il.backends.get(name, **options)
    learner, theta, params, x, y = _problem(backend)
    assert backend.fuses(learner)
    for message, (bad_params, bad_x, bad_y) in _primitive_cases(theta, params, x, y).items():
        for primitive in (backend.loss, backend.loss_and_grad):
            with pytest.raises(il.ShapeError, match=message):
                primitive(learner, bad_params, bad_x, bad_y)
        direction = message.replace("'layer0", "direction 'layer0").replace("missing", "directions do not .*: missing")
        with pytest.raises(il.ShapeError, match=direction):
            backend.hvp(learner, params, bad_x, bad_y, bad_params)


@pytest.mark.parametrize("name,options", FUSED, ids=[n for n, _ in FUSED])
def test_bad_meta_gradient_inputs_are_clear_errors(name, options):
    backend = il.backends.get(name, **options)
    learner, theta, params, x, y = _problem(backend)
    cases = {
        "query_x holds 3 tasks but the support set holds 2": (theta, x, y, x[[0, 1, 1]], y[[0, 1, 1]], 2),
        r"query_y has shape \(2, 10\)": (theta, x, y, x, y[..., 0], 2),
        r"'layer0.weight' has shape \(2, 16, 1\); the learner needs \(16, 1\)\n.*no task axis": (params, x, y, x, y, 2),
        "inner_steps must be a whole number >= 0, got -1": (theta, x, y, x, y, -1),
        "inner_steps must be a whole number >= 0, got 1.5": (theta, x, y, x, y, 1.5),
    }
    for message, (shared, sx, sy, qx, qy, steps) in cases.items():
        with pytest.raises(ValueError, match=message):
            backend.meta_gradient(learner, shared, sx, sy, qx, qy, 0.1, steps)


def test_cross_entropy_learners_take_integer_labels_without_a_trailing_axis():
    backend = il.backends.get("cpu")
    model = MLP(2, (8, 8), 3)
    learner = Learner(model, "cross_entropy")
    params = {k: v.expand(2, *v.shape) for k, v in model.init(gen(0)).items()}
    x, labels = torch.randn(2, 5, 2), torch.randint(0, 3, (2, 5))
    assert backend.loss(learner, params, x, labels).shape == (2,)
    with pytest.raises(il.ShapeError, match=r"y has shape \(2, 5, 1\) .* needs \[2, 5\] \(one integer label"):
        backend.loss(learner, params, x, labels[..., None])
    with pytest.raises(il.ShapeError, match=r"cross-entropy learner takes integer class labels"):
        backend.loss(learner, params, x, labels.float())


def test_the_triton_kernels_take_float32_on_their_device_only():
    backend = il.backends.get("triton")
    learner, theta, params, x, y = _problem(backend)
    with pytest.raises(il.ConfigError, match="computes in float32 but got a float64 tensor"):
        backend.loss(learner, params, x.double(), y)
    with pytest.raises(il.ConfigError, match="computes in float32 but got a float16 tensor"):
        backend.hvp(learner, params, x, y, {**params, "layer1.bias": params["layer1.bias"].half()})
    with pytest.raises(il.ConfigError, match="computes in float32 but got a float64 tensor"):
        backend.meta_gradient(learner, theta, x, y, x.double(), y, 0.1, 2)
    with pytest.raises(il.ConfigError, match=r"runs on \w+ but got a tensor on meta"):
        backend.loss_and_grad(learner, params, x.to("meta"), y)
