"""CUDA graphs for repeated calls of one shape: capture once, then replay on new values.

A call of a fused kernel at small B costs the host more than the GPU (Python, Triton's launcher,
allocations; issue 6's H100 table: 0.28 ms eager against 0.087 ms replayed at B = 1). A graph
replay skips all of it. :func:`cuda_graphed` captures a call that reads fixed tensors;
:class:`GraphCache` makes that usable on fresh inputs: per call signature one graph whose
*static* inputs each call's tensors are copied into (one multi-tensor copy), replayed, and whose
outputs are cloned so the next replay cannot overwrite what an earlier call returned.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import torch

Outputs = tuple[torch.Tensor, ...]


def cuda_graphed(fn: Callable[[], object], device: torch.device, warmup: int = 3) -> Callable[[], object]:
    """``fn`` captured once in a CUDA graph; the returned callable replays it and returns the outputs
    of the captured call (static: every replay overwrites them). ``fn`` must read only tensors that
    stay alive and in place, and must not synchronize with the host (no ``.item()``)."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # warm-up off the default stream, as torch.cuda.graph requires
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = fn()

    def replay() -> object:
        graph.replay()
        return outputs

    return replay


class GraphCache:
    """Up to ``capacity`` captured calls, least recently used evicted first (its graph's memory
    pool is freed with it).

    ``cache(key, fn, inputs)`` returns ``fn(static)`` for ``static`` holding the values of
    ``inputs``: the first call with ``key`` clones ``inputs`` into static buffers and captures
    ``fn`` on them with ``capture`` (:func:`cuda_graphed`); later calls copy ``inputs`` into the
    buffers and replay. ``key`` must determine everything the capture bakes in: every input's
    shape and dtype, and every non-tensor argument of ``fn``. Outputs are fresh tensors.
    """

    def __init__(self, device: torch.device, capacity: int = 8,
                 capture: Callable[[Callable[[], object], torch.device], Callable[[], object]] = cuda_graphed) -> None:
        if capacity < 1:
            raise ValueError(f"a graph cache needs room for at least one graph, got capacity={capacity}")
        self.device, self.capacity, self._capture = device, capacity, capture
        self._entries: OrderedDict[Hashable, tuple[list[torch.Tensor], Callable[[], object]]] = OrderedDict()
        self.captures = 0  # graphs captured so far (a test and a user can see recaptures)

    def __call__(self, key: Hashable, fn: Callable[[list[torch.Tensor]], Outputs],
                 inputs: Sequence[torch.Tensor]) -> Outputs:
        entry = self._entries.get(key)
        if entry is None:
            static = [t.clone(memory_format=torch.contiguous_format) for t in inputs]
            entry = (static, self._capture(lambda: fn(static), self.device))
            self.captures += 1
            self._entries[key] = entry
            if len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
            torch._foreach_copy_(entry[0], list(inputs))  # one multi-tensor launch for every input
        return tuple(out.clone() for out in entry[1]())

    def __len__(self) -> int:
        return len(self._entries)
