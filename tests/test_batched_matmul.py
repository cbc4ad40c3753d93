"""matmul_into against torch.matmul in float64: every route (outer product, shared right operand,
GEMM, thin multiply-and-reduce, strided output) with every kind of addend and scale."""

import itertools

import pytest
import torch

from innerloop.kernels.batched_matmul import matmul_into

TASKS = 3


def _operand(rows: int, cols: int, transposed: bool, shared: bool, g: torch.Generator) -> torch.Tensor:
    """[B, rows, cols] stored row-major, or as the transpose of a [B, cols, rows] tensor, or (shared)
    one matrix expanded over the tasks with batch stride 0."""
    batch = 1 if shared else TASKS
    if transposed:
        t = torch.randn(batch, cols, rows, generator=g, dtype=torch.float64).transpose(1, 2)
    else:
        t = torch.randn(batch, rows, cols, generator=g, dtype=torch.float64)
    return t.expand(TASKS, rows, cols) if shared else t


def _output(rows: int, cols: int, strided: bool) -> torch.Tensor:
    """A contiguous [B, rows, cols] buffer, or the second half of a row-stacked one."""
    if strided:
        return torch.full((TASKS, 2 * rows, cols), float("nan"), dtype=torch.float64)[:, rows:]
    return torch.full((TASKS, rows, cols), float("nan"), dtype=torch.float64)


SHAPES = [(1, 4, 5), (4, 5, 1), (4, 1, 5), (1, 4, 1), (4, 5, 6), (10, 40, 40)]
ADDENDS = ["none", "bias", "base", "accumulate"]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("addend_kind", ADDENDS)
def test_matmul_into_equals_matmul_for_every_layout(shape, addend_kind):
    m, k, n = shape
    g = torch.Generator().manual_seed(m * 100 + k * 10 + n)
    alphas = (1.0,) if addend_kind == "none" else (1.0, -0.3)
    for a_t, b_t, shared, strided, alpha in itertools.product((False, True), (False, True), (False, True),
                                                              (False, True), alphas):
        a = _operand(m, k, a_t, False, g)
        b = _operand(k, n, b_t, shared, g)
        out = _output(m, n, strided)
        scratch = torch.empty(TASKS, m, n, dtype=torch.float64)
        if addend_kind == "accumulate":
            out.copy_(torch.randn(out.shape, generator=g, dtype=torch.float64))
            addend, before = out, out.clone()
        elif addend_kind == "bias":
            addend = torch.randn(TASKS, 1, n, generator=g, dtype=torch.float64)
            before = addend
        elif addend_kind == "base":
            addend = torch.randn(TASKS, m, n, generator=g, dtype=torch.float64)
            before = addend
        else:
            addend, before = None, 0.0
        expected = before + alpha * torch.matmul(a, b)
        matmul_into(out, a, b, addend, alpha, scratch=scratch)
        layout = dict(a_transposed=a_t, b_transposed=b_t, shared=shared, strided_out=strided, alpha=alpha)
        assert torch.allclose(out, expected, rtol=1e-12, atol=1e-12), layout


def test_a_shared_bias_row_for_every_task_uses_the_one_gemm_route():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(TASKS, 4, 5, generator=g, dtype=torch.float64)
    b = torch.randn(5, 6, generator=g, dtype=torch.float64).expand(TASKS, 5, 6)
    bias = torch.randn(6, generator=g, dtype=torch.float64).expand(TASKS, 6).unsqueeze(1)
    out = torch.empty(TASKS, 4, 6, dtype=torch.float64)
    matmul_into(out, a, b, bias)
    assert torch.allclose(out, bias + a @ b, rtol=1e-12, atol=1e-12)


def test_a_scale_without_an_addend_is_refused():
    z = torch.zeros(TASKS, 2, 2)
    with pytest.raises(ValueError, match="only when it is added"):
        matmul_into(z, z, z, alpha=2.0)
