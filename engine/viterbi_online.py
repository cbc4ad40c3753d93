"""Online meta-learning of the Viterbi receivers' initialization on a drifting channel (monograph
§7.3; Meta-ViterbiNet [110]).

Decision-directed tracking (:mod:`~innerloop.engine.viterbi_tracking`) adapts the channel model of
every block from the offline meta-learned initialization θ, so nothing learned on earlier blocks of
a channel carries over except the previous block's decided labels. Here each channel c keeps its own
initialization θ_c, starting at θ, and improves it after every block from what the receiver knows:
``UPDATES`` Adam steps (``ONLINE_LR``) on the mean objective over the ``WINDOW`` most recent
tasks of the channel. A task asks exactly what detection needs: after the inner loop on what is
known before a block, a good model of that block.

Each block is detected by adapting θ_c on the support of one of the tracking modes — its pilots
alone, or ([110]'s protocol) its pilots plus block b − 1's decided data — and the task of a block
(from the first block with pilots alone, from the second with decision direction) is:

* support: the support the block was detected from; query: the block's data labelled by the
  receiver's own decisions.

Updates of θ_c, after each block:

* ``fixed`` — none (θ_c = θ: the tracking table of :mod:`~innerloop.engine.viterbi_tracking`);
* ``online-meta`` — the gradient is the algorithm's meta-gradient on those tasks (MAML: through the
  inner SGD steps; CAVIA: through the context steps), monograph eq. 2.5;
* ``online-tuning`` — the gradient of the query loss at θ_c itself (the same algorithm with 0 inner
  steps): ViterbiNet's online training of its weights on its own decisions, the non-meta baseline.

The decided labels may be wrong; both updates learn from them alike. All channels run together: their
initializations are stacked and updated by per-task meta-gradients
(:meth:`~innerloop.engine.algorithms.maml.MAML.per_task_meta_gradients`), so the algorithm is one of
the MAML family (MAML, FOMAML, ANIL, CAVIA). The second-order meta-gradient through CAVIA's 10
context steps on decision-directed supports of 205 points is the costly part (about 2 minutes per
correlation for 100 channels on one CPU core), hence the experiment's ``ONLINE_CHANNELS``.
"""

from __future__ import annotations

from typing import Any

import torch

from innerloop.engine import viterbi_tracking as tracking
from innerloop.engine.algorithms.maml import MAML
from innerloop.engine.errors import ConfigError, NonFiniteError, require_positive
from innerloop.engine.params import Params, all_finite
from innerloop.engine.stats import summarize
from innerloop.engine.tasks import ISIChannel, TaskBatch

ONLINE_MODES = ("online-tuning", "online-meta")
WINDOW, UPDATES, ONLINE_LR, ONLINE_CHANNELS = 2, 5, 0.003, 100


class OnlineInitializations:
    """One initialization θ_c per channel, stacked on a leading channel axis, and their Adam state;
    :meth:`learn` takes a batch holding one task per channel. Adam acts elementwise and every channel
    steps together, so one optimizer over the stack is one independent optimizer per channel."""

    def __init__(self, theta: Params, channels: int, updater: MAML, lr: float | None = None,
                 window: int | None = None, updates: int | None = None) -> None:
        """``lr``, ``window``, ``updates``: default ONLINE_LR, WINDOW, UPDATES."""
        lr, window, updates = (ONLINE_LR if lr is None else lr, WINDOW if window is None else window,
                               UPDATES if updates is None else updates)
        if int(window) != window or window < 1 or int(updates) != updates or updates < 0:
            raise ConfigError(f"need a window >= 1 of past blocks and updates >= 0 steps per block, got {window} "
                              f"and {updates}", f"e.g. window={WINDOW}, updates={UPDATES}")
        require_positive("lr", lr)
        self.params = {k: v.detach().unsqueeze(0).repeat(channels, *([1] * v.ndim)) for k, v in theta.items()}
        self.updater, self.window, self.updates = updater, int(window), int(updates)
        self.optimizer = torch.optim.Adam(list(self.params.values()), lr=lr)
        self.tasks: list[TaskBatch] = []

    def learn(self, tasks: TaskBatch) -> None:
        """Store ``tasks`` (one per channel) and take ``updates`` Adam steps, each channel on the mean
        gradient over its newest ``window`` tasks from its own θ_c."""
        self.tasks = [*self.tasks, tasks][-self.window:]
        per_channel = len(self.tasks)
        batch = TaskBatch(*(torch.stack([getattr(t, name) for t in self.tasks], 1).flatten(0, 1)
                            for name in ("support_x", "support_y", "query_x", "query_y")))  # channel-major
        for _ in range(self.updates):
            starts = {k: v.repeat_interleave(per_channel, 0) for k, v in self.params.items()}
            grad = self.updater.per_task_meta_gradients(starts, batch).grad
            if not all_finite(grad):
                raise NonFiniteError("an online update of the receivers' initializations is not finite",
                                     "lower ONLINE_LR or the algorithm's inner step size")
            for name, p in self.params.items():
                p.grad = grad[name].unflatten(0, (-1, per_channel)).mean(1)
            self.optimizer.step()


def zero_step(algorithm: MAML) -> MAML:
    """The same algorithm class, model and backend with no inner step: its 'meta-gradient' is the
    gradient of the query loss at the initialization itself."""
    return type(algorithm)(algorithm.model, algorithm.backend, inner_lr=algorithm.inner_lr, inner_steps=0)


def online_errors(family: ISIChannel, blocks: list[TaskBatch], algorithm: MAML, theta: Params, mode: str,
                  support: str = "decision-directed") -> torch.Tensor:
    """Bit errors per channel [B] over the blocks when every channel's initialization is learned online
    in ``mode`` (one of :data:`ONLINE_MODES`), detecting with the support of tracking mode ``support``."""
    if mode not in ONLINE_MODES:
        raise ConfigError(f"unknown online mode {mode!r}", f"choose one of: {', '.join(ONLINE_MODES)}")
    if not isinstance(algorithm, MAML):
        raise ConfigError(f"online initializations step one initialization per channel, which {algorithm!r} does "
                          "not support", "use an algorithm of the MAML family: maml, fomaml, anil or cavia")
    if not blocks:
        raise ConfigError("no blocks to detect", "pass the blocks of viterbi_tracking.drifting_blocks(...)")
    state = OnlineInitializations(theta, blocks[0].num_tasks,
                                  algorithm if mode == "online-meta" else zero_step(algorithm))
    receiver = tracking.learned_receiver(family, algorithm.model, lambda b: algorithm.per_task_adapt(state.params, b))
    return tracking.block_errors(family, blocks, receiver, support, learn=state.learn)


def online_scores(algorithm: MAML, theta: Params, channels: int, seed: int, held_out: int
                  ) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """{ρ: {support: {update: BER summary with per-channel errors}}} on the first ``channels`` of the
    ``held_out`` drifting trajectories of :func:`viterbi_tracking.tracking_scores` (the same channels and
    symbols), for both supports of :data:`viterbi_tracking.MODES` and the updates ``fixed`` (θ itself, the
    tracking table's receiver) and :data:`ONLINE_MODES`, all on the same channels for paired comparisons."""
    family = ISIChannel(view="channel")
    return {str(rho): _scores(family, [block.select(slice(0, channels)) for block in
                                       tracking.drifting_blocks(family, held_out, seed, rho)], algorithm, theta)
            for rho in tracking.CORRELATIONS}


def rotating_scores(algorithm: MAML, theta: Params, channels: int, seed: int) -> dict[str, dict[str, dict[str, Any]]]:
    """{support: {update: BER summary with per-channel errors}} as :func:`online_scores`, on ``channels``
    channels that rotate with period ROTATION_PERIOD (:func:`viterbi_tracking.rotating_blocks`)."""
    family = ISIChannel(view="channel")
    return _scores(family, tracking.rotating_blocks(family, channels, seed), algorithm, theta)


def _scores(family: ISIChannel, blocks: list[TaskBatch], algorithm: MAML, theta: Params
            ) -> dict[str, dict[str, dict[str, Any]]]:
    receiver = tracking.learned_receiver(family, algorithm.model, lambda b: algorithm.adapt(theta, b))
    symbols = len(blocks) * blocks[0].query_x.shape[1]
    scores = {}
    for support in tracking.MODES:
        errors = {"fixed": tracking.block_errors(family, blocks, receiver, support),
                  **{mode: online_errors(family, blocks, algorithm, theta, mode, support) for mode in ONLINE_MODES}}
        scores[support] = {update: {**summarize(e.double() / symbols), "errors": e.tolist()}
                           for update, e in errors.items()}
    return scores

