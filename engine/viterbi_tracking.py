"""Decision-directed tracking of a drifting channel by the Viterbi receivers (monograph §7.3; the
online mode of Meta-ViterbiNet [110]).

Each held-out channel drifts from block to block (:meth:`~innerloop.engine.tasks.isi_channel.ISIChannel.drift`,
with a block-to-block correlation ρ of ``CORRELATIONS``); a block carries ``PILOTS`` pilots and ``DATA``
data symbols. Every receiver detects block b from a support set of

* ``pilots`` — block b's pilots alone, or
* ``decision-directed`` — block b's pilots plus block b − 1's data symbols labelled with the receiver's
  own Viterbi decisions for them (the states from the decided bits; the first L − 1 symbols of a
  block, whose states reach into the previous block, are left out),

so a receiver that detects well gets many more labels than the pilots give — stale by one block,
and wrong where it erred. Reported: the bit error rate over all ``BLOCKS`` blocks, per channel,
mean ± 95% CI, for each ρ.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from innerloop.engine import isi_detection as detection
from innerloop.engine.stats import summarize
from innerloop.engine.tasks import ISIChannel, TaskBatch, generator_for
from innerloop.engine.viterbi import state_symbols, states_of, viterbi

BLOCKS, PILOTS, DATA, CORRELATIONS = 20, 8, 200, (0.9, 0.95, 0.99, 0.999)
ROTATION_PERIOD, ROTATION_BLOCKS = 10, 60
MODES = ("pilots", "decision-directed")
# support (symbols [B, K, L], received [B, K, 1]) and block -> branch metrics of the block's data
Receiver = Callable[[torch.Tensor, torch.Tensor, TaskBatch], torch.Tensor]


def drifting_blocks(family: ISIChannel, channels: int, seed: int, correlation: float) -> list[TaskBatch]:
    """BLOCKS consecutive blocks (channel view) of ``channels`` held-out channels drifting with ρ = ``correlation``."""
    generator = generator_for(seed, f"viterbi-tracking/{correlation}")
    taps, blocks = family.draw_taps(channels, generator), []
    for block in range(BLOCKS):
        if block:
            taps = family.drift(taps, correlation, generator)
        blocks.append(family.transmit(taps, generator, PILOTS, DATA))
    return blocks


def rotating_blocks(family: ISIChannel, channels: int, seed: int) -> list[TaskBatch]:
    """ROTATION_BLOCKS blocks of ``channels`` channels whose taps turn in the plane of two random
    channels, h_b ∝ cos(2πb/P)·h_A + sin(2πb/P)·h_B with P = ROTATION_PERIOD blocks: a fast variation
    (block-to-block correlation cos(2π/P) ≈ 0.81 at P = 10) that comes back every P blocks."""
    generator = generator_for(seed, "viterbi-tracking/rotating")
    first, second = family.draw_taps(channels, generator), family.draw_taps(channels, generator)
    blocks = []
    for block in range(ROTATION_BLOCKS):
        angle = 2 * math.pi * block / ROTATION_PERIOD
        taps = math.cos(angle) * first + math.sin(angle) * second
        blocks.append(family.transmit(taps / taps.norm(dim=1, keepdim=True), generator, PILOTS, DATA))
    return blocks


def block_states(family: ISIChannel, symbols: torch.Tensor) -> torch.Tensor:
    """State indices [...] of channel-view inputs (s_t, …, s_{t−L+1}) [..., L]."""
    return ((symbols > 0).long() << torch.arange(family.memory)).sum(-1)


def decided_points(family: ISIChannel, block: TaskBatch, bits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel-view points of a block's data labelled by decided bits [B, T]: the states of
    t ≥ L − 1 as symbols [B, T − L + 1, L] and their received samples [B, T − L + 1, 1]."""
    symbols = state_symbols(family.memory, block.query_x.dtype)[states_of(bits, family.memory)]
    return symbols, block.query_y[:, family.memory - 1:]


def tracking_scores(receiver_for: Callable[[ISIChannel], Receiver], channels: int, seed: int
                    ) -> dict[str, dict[str, dict[str, Any]]]:
    """{ρ: {mode: BER summary}} of the receiver that ``receiver_for(family)`` builds, over the drifting
    channels of every ρ in CORRELATIONS (the same channels and symbols for every receiver)."""
    family = ISIChannel(view="channel")
    receiver = receiver_for(family)
    return {str(rho): track(family, drifting_blocks(family, channels, seed, rho), receiver) for rho in CORRELATIONS}


def track(family: ISIChannel, blocks: list[TaskBatch], receiver: Receiver) -> dict[str, dict[str, Any]]:
    """BER of ``receiver`` over the blocks in each support mode of :data:`MODES`."""
    symbols = len(blocks) * blocks[0].query_x.shape[1]
    return {mode: summarize(block_errors(family, blocks, receiver, mode).double() / symbols) for mode in MODES}


def block_errors(family: ISIChannel, blocks: list[TaskBatch], receiver: Receiver, mode: str,
                 learn: Callable[[TaskBatch], None] | None = None) -> torch.Tensor:
    """Bit errors per channel [B] of ``receiver`` over the blocks with the support of ``mode``.

    ``learn`` is called after each block with what the receiver then knows of it: a batch whose support
    is the support the block was detected from (its pilots, then in decision-directed mode block b − 1's
    decided data) and whose query is the block's data labelled with the receiver's decisions — from the
    first block on with pilots alone, from the second with decision direction (the first has no
    previous decisions).
    """
    errors, decided = torch.zeros(blocks[0].num_tasks, dtype=torch.long), None
    for block in blocks:
        support_x, support_y = block.support_x, block.support_y
        if mode == "decision-directed" and decided is not None:
            support_x, support_y = torch.cat([support_x, decided[0]], 1), torch.cat([support_y, decided[1]], 1)
        bits = viterbi(receiver(support_x, support_y, block))
        errors += detection.bit_errors(bits, block_states(family, block.query_x))
        known = decided_points(family, block, bits)
        if learn is not None and (mode == "pilots" or decided is not None):
            learn(TaskBatch(support_x, support_y, *known))
        decided = known
    return errors


def learned_receiver(family: ISIChannel, model, adapt: Callable[[TaskBatch], Any]) -> Receiver:
    """A channel model adapted on the support by ``adapt`` (the meta-learned inner loop)."""
    def receiver(support_x: torch.Tensor, support_y: torch.Tensor, block: TaskBatch) -> torch.Tensor:
        adapted = adapt(TaskBatch(support_x, support_y, block.query_x, block.query_y))
        return detection.channel_model_metrics(model, adapted, block.query_y, family.memory, family.noise_var)

    return receiver


def mmse_receiver(family: ISIChannel) -> Receiver:
    """The linear-model receiver: MMSE taps from the support."""
    def receiver(support_x: torch.Tensor, support_y: torch.Tensor, block: TaskBatch) -> torch.Tensor:
        taps = detection.mmse_taps(family, support_y, block_states(family, support_x))
        return detection.linear_metrics(family, taps, block.query_y)

    return receiver


def genie_receiver(family: ISIChannel) -> Receiver:
    """The true channel of each block (needs no support)."""
    def receiver(support_x: torch.Tensor, support_y: torch.Tensor, block: TaskBatch) -> torch.Tensor:
        return detection.genie_metrics(family, detection.true_taps(block.task_params, family.memory), block.query_y)

    return receiver
