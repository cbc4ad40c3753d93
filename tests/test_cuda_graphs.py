"""GraphCache: one captured call per signature, replayed on new values (backends/cuda_graphs.py).

On the CPU a stand-in capture is used whose replay re-runs the function on the static buffers and
writes its fixed outputs — what a CUDA graph replay does — so the cache's own logic (static copies, keys, fresh
outputs, eviction) is tested here; the real capture is tested on a GPU (``gpu`` marker)."""

from __future__ import annotations

import pytest
import torch

from conftest import replay_by_rerunning
from innerloop.backends.cuda_graphs import GraphCache


def _cache(capacity=8):
    return GraphCache(torch.device("cpu"), capacity=capacity, capture=replay_by_rerunning)


def _affine(static):
    """A call whose outputs depend on every input: (a·b + c, Σa)."""
    a, b, c = static
    return a * b + c, a.sum(dim=0)


def test_each_call_sees_its_own_values_and_gets_fresh_outputs():
    cache, g = _cache(), torch.Generator().manual_seed(0)
    results, inputs = [], []
    for _ in range(3):
        values = [torch.randn(4, 3, generator=g) for _ in range(3)]
        inputs.append(values)
        results.append(cache("shape-1", _affine, values))
    assert cache.captures == 1
    for values, result in zip(inputs, results):  # earlier outputs were not overwritten by later replays
        for got, expected in zip(result, _affine(values)):
            assert torch.equal(got, expected)


def test_static_buffers_do_not_alias_the_callers_tensors():
    cache = _cache()
    a, b, c = torch.ones(2, 2), torch.full((2, 2), 2.0), torch.zeros(2, 2)
    cache("k", _affine, [a, b, c])
    a.fill_(100.0)  # the caller reuses its tensor; the graph's copy of the first call must not change with it
    out, total = cache("k", _affine, [torch.ones(2, 2), b, c])
    assert torch.equal(out, torch.full((2, 2), 2.0)) and torch.equal(total, torch.full((2,), 2.0))


def test_non_contiguous_inputs_are_copied_by_value():
    cache = _cache()
    a = torch.arange(6.0).view(2, 3)
    b, c = torch.ones(3, 2).t(), torch.zeros(2, 3)
    cache("k", _affine, [a, b, c])
    out, _ = cache("k", _affine, [torch.arange(6.0).view(3, 2).t(), b, c])
    assert torch.equal(out, torch.arange(6.0).view(3, 2).t())


def test_every_signature_has_its_graph_and_the_least_recently_used_goes_first():
    cache = _cache(capacity=2)
    x = [torch.ones(1)] * 3
    for key in ("a", "b", "a", "c"):  # "b" is the least recently used when "c" arrives
        cache(key, _affine, x)
    assert cache.captures == 3 and len(cache) == 2
    cache("a", _affine, x)
    assert cache.captures == 3
    cache("b", _affine, x)  # evicted: captured again
    assert cache.captures == 4 and len(cache) == 2
    with pytest.raises(ValueError, match="at least one graph"):
        GraphCache(torch.device("cpu"), capacity=0)
