"""Branch metrics for Viterbi detection on the ``isi-channel`` family: model-based and learned
(monograph §7.3; ViterbiNet [198], meta-learned in [110]).

Every receiver here hands :func:`~innerloop.engine.viterbi.viterbi` per-time metrics
c_t(s) = log p(y_t | s) + const(t) over the 2^L channel states:

* :func:`genie_metrics` — the true channel: taps h, front end ψ and noise σ²,
  c_t(s) = −(y_t − ψ(Σ_l h_l s_l))² / 2σ²  (the maximum-likelihood sequence detector);
* :func:`linear_metrics` with :func:`mmse_taps` — the model-based receiver: it assumes the
  linear channel y = Σ_l h_l s_{t−l} + w and estimates h from the pilots by the posterior mean
  under the prior h ~ N(0, diag(p)),  ĥ = (SᵀS/σ² + P⁻¹)⁻¹ Sᵀy/σ²  (S the pilots' state symbols);
* :func:`learned_metrics` — ViterbiNet: a classifier of p(s | y_t) trained on the pilots, whose
  log-probabilities are valid metrics since log p(y_t | s) = log p(s | y_t) + log p(y_t) − log p(s)
  with p(s) uniform and log p(y_t) the same for every path.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from innerloop.engine.calibration import class_probabilities
from innerloop.engine.learner import Learner
from innerloop.engine.params import Params
from innerloop.engine.tasks.isi_channel import ISIChannel
from innerloop.engine.viterbi import state_symbols

LOG_PROB_FLOOR = -1e4  # a classifier may round a probability to 0; the Viterbi metrics must stay finite


def true_taps(batch_params: dict[str, torch.Tensor], memory: int) -> torch.Tensor:
    """The taps h [B, L] recorded in a batch's task parameters."""
    return torch.stack([batch_params[f"tap{lag}"].double() for lag in range(memory)], dim=1)


def gaussian_metrics(received: torch.Tensor, means: torch.Tensor, noise_var: float) -> torch.Tensor:
    """−(y_t − μ_s)² / 2σ² [B, T, S] for received y [B, T, 1] and state means μ [B, S]."""
    return -(received.double() - means[:, None, :]) ** 2 / (2 * noise_var)


def genie_metrics(family: ISIChannel, taps: torch.Tensor, received: torch.Tensor) -> torch.Tensor:
    """Exact log-likelihoods (up to a constant) under the true taps [B, L] and front end."""
    return gaussian_metrics(received, family.noiseless(taps), family.noise_var)


def mmse_taps(family: ISIChannel, pilots_x: torch.Tensor, pilot_states: torch.Tensor) -> torch.Tensor:
    """ĥ [B, L]: the posterior mean of the taps under the linear model from pilots y [B, K, 1]
    with known states [B, K]."""
    symbols = state_symbols(family.memory)[pilot_states]  # [B, K, L]
    precision = symbols.transpose(1, 2) @ symbols / family.noise_var + torch.diag(1 / family.profile())
    moment = symbols.transpose(1, 2) @ pilots_x.double() / family.noise_var
    return torch.linalg.solve(precision, moment)[..., 0]


def linear_metrics(family: ISIChannel, taps: torch.Tensor, received: torch.Tensor) -> torch.Tensor:
    """Log-likelihoods (up to a constant) of the linear channel with taps [B, L], no saturation."""
    return gaussian_metrics(received, taps.double() @ state_symbols(family.memory).T, family.noise_var)


def learned_metrics(model: Any, params: Params, received: torch.Tensor) -> torch.Tensor:
    """log p(s | y_t) [B, T, S] of a state classifier with per-task ``params`` (an ensemble's
    mixture for BMAML)."""
    with torch.no_grad():
        probabilities = class_probabilities(model, params, received)
    return probabilities.double().log().clamp_min(LOG_PROB_FLOOR)


def bit_errors(bits: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """Wrong bits per block [B]: the newest bit of state_t is b_t."""
    return (bits != (states & 1)).sum(dim=1)


def bpsk_awgn_ber(snr: float) -> float:
    """Q(√snr) with snr = 1/σ²: the bit error rate of BPSK on the memoryless AWGN channel y = s + w."""
    return 0.5 * math.erfc(math.sqrt(snr / 2))


def channel_model_outputs(model: Any, params: Params, memory: int, dtype: torch.dtype) -> torch.Tensor:
    """f(s) [B, 2^L] of a channel-view regressor with per-task ``params`` [B, ...] at every state's symbols."""
    tasks = next(iter(params.values())).shape[0]
    symbols = state_symbols(memory, dtype).expand(tasks, -1, -1)
    with torch.no_grad():
        return Learner(model, "mse").predict_tasks(params, symbols)[..., 0].double()


def channel_model_metrics(model: Any, params: Params, received: torch.Tensor, memory: int,
                          noise_var: float) -> torch.Tensor:
    """Gaussian log-likelihoods (up to a constant) around a learned channel f(s) with per-task
    ``params``: the regressor of the ``channel`` view evaluated at every state's symbols."""
    return gaussian_metrics(received, channel_model_outputs(model, params, memory, received.dtype), noise_var)
