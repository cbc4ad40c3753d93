"""``innerloop experiment channel-prediction``: meta-learned linear channel predictors in closed form
(monograph §5.4, eqs. 5.19–5.23, Fig. 5.9).

Frames of the ``channel-prediction`` family (N_R = 2, N_T = 4, W = 2, so S = 16; 4 paths; window
L = 5; lag δ = 1; 20 dB) are the tasks. The predictor of eq. 5.19 is linear,
ĥ_{i+δ}ᵀ = vec(H^L_i)ᵀ W (W = conj(ϕ), SL × S complex), and every method is solved in closed form:

* ``meta`` — iMAML (eqs. 5.21–5.23): W_k = argmin L_{D_k^tr}(W) + (λ/2)‖W − Θ‖², the bias Θ
  meta-learned on ``META_FRAMES`` frames with N_tr training and ``META_VALIDATION`` validation
  windows each, by the least-squares solution of monograph eq. 2.12;
* ``joint`` — Θ fit to the pooled windows of the same frames (monograph eq. 1.2), then the same
  regularized adaptation;
* ``conventional`` — Θ = 0: ridge regression on the frame's N_tr windows alone (eq. 5.20);
* ``outdated`` — no learning: ĥ_{i+δ} = h_i, the latest channel;
* ``lstd-meta`` and ``lstd-joint`` — the long-short-term decomposition of eq. 5.24
  (:mod:`innerloop.engine.lstd`): each frame's R long-term features estimated from its training
  windows, one scalar L-tap filter for the R fading amplitudes, its bias meta-learned by iMAML's
  closed form or fit jointly, then adapted to the frame by the same ridge regression.

λ of each learned method (and R ∈ ``RANKS`` for LSTD) is chosen per N_tr from ``LAMBDAS`` by the NMSE
on ``VALIDATION_FRAMES`` meta-validation frames. Scored on ``tasks`` held-out frames after adapting on their first N_tr
windows: NMSE = ‖ĥ − h‖²/‖h‖² on ``TEST_WINDOWS`` later windows, mean ± 95% CI over frames, for N_tr in
``TRAINING_WINDOWS``, and each meta-learned predictor's (naïve and LSTD) NMSE minus every other
method's, paired over the same frames. Writes ``channel_prediction.json`` and ``channel_prediction.png``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from innerloop.engine.closed_form import imaml_ridge_meta_solution, ridge_adapted
from innerloop.engine.errors import ConfigError
from innerloop.engine.experiment_setup import prepare
from innerloop.engine.lstd import long_term_basis, predict_channels, short_term_windows
from innerloop.engine.rundir import atomic_write_json
from innerloop.engine.stats import summarize
from innerloop.engine.tasks import generator_for
from innerloop.engine.tasks.channel_prediction import ChannelPrediction, complex_of

TRAINING_WINDOWS = (1, 2, 4, 8, 16, 32, 64)
META_FRAMES, META_VALIDATION, VALIDATION_FRAMES, TEST_WINDOWS = 100, 50, 100, 50
LAMBDAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
METHODS = ("meta", "joint", "conventional", "outdated", "lstd-meta", "lstd-joint")
RANKS = (2, 4, 8, 16)  # R = S = 16 keeps every direction (the scalar-filter decomposition alone)
EXAMPLE_WINDOWS = 4  # the figure's example frame adapts on this many windows


def frames(family: ChannelPrediction, count: int, shots: int, queries: int, purpose: str, seed: int
           ) -> tuple[torch.Tensor, ...]:
    """Complex windows (support x, support y, query x, query y) of ``count`` frames."""
    batch = family.sample(count, generator_for(seed, f"channel-prediction/{purpose}"), shots=shots, queries=queries)
    return tuple(complex_of(t) for t in (batch.support_x, batch.support_y, batch.query_x, batch.query_y))


def nmse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-frame mean over windows of ‖ĥ − h‖²/‖h‖², for [B, N, S] complex tensors."""
    return (((prediction - target).abs() ** 2).sum(-1) / (target.abs() ** 2).sum(-1)).mean(dim=1)


def kind(method: str) -> tuple[str, bool]:
    """(the bias ``meta``/``joint``/``conventional``/``outdated``, whether the LSTD of eq. 5.24 is used)."""
    return method.removeprefix("lstd-"), method.startswith("lstd-")


def _reduced(frames_: tuple[torch.Tensor, ...], rank: int) -> tuple[torch.Tensor, ...]:
    """The frames' amplitude regression tasks (support and query), on the long-term bases estimated
    from their training windows."""
    sx, sy, qx, qy = frames_
    basis = long_term_basis(sx, sy, rank)
    return (*short_term_windows(sx, sy, basis), *short_term_windows(qx, qy, basis))


def bias(method: str, train: tuple[torch.Tensor, ...], lam: float, rank: int | None = None) -> torch.Tensor:
    """The bias of ``method`` from the meta-training frames: Θ [SL, S] for the naïve predictor, the
    filter bias [L] for LSTD (``rank`` long-term features)."""
    base, decomposed = kind(method)
    sx, sy, qx, qy = _reduced(train, rank) if decomposed else train
    if base == "meta":
        return imaml_ridge_meta_solution(sx, sy, qx, qy, lam)
    if base == "joint":
        x, y = torch.cat([sx, qx], dim=1).flatten(0, 1), torch.cat([sy, qy], dim=1).flatten(0, 1)
        solution = torch.linalg.lstsq(x, y).solution
        return solution.squeeze(-1) if decomposed else solution
    return torch.zeros(sx.shape[-1], sy.shape[-1], dtype=sx.dtype)


def predict(method: str, theta: torch.Tensor | None, lam: float, frames_: tuple[torch.Tensor, ...],
            rank: int | None = None) -> torch.Tensor:
    """Predictions ĥ [B, M, S] of the query windows, ``method`` adapted on each frame's support windows."""
    sx, sy, qx, qy = frames_
    if method == "outdated":
        return qx[..., :qy.shape[-1]]
    if kind(method)[1]:  # only the support windows are reduced: the query's amplitudes come from predict_channels
        basis = long_term_basis(sx, sy, rank)
        return predict_channels(qx, basis, ridge_adapted(*short_term_windows(sx, sy, basis), theta, lam))
    return qx @ ridge_adapted(sx, sy, theta, lam)


def _run_method(method: str, train, validation, test) -> tuple[dict[str, Any], torch.Tensor]:
    """For one method, given the meta-training, validation and test frames of one N_tr: λ (and for
    LSTD the rank R) chosen on the validation frames, the test NMSE summary and the real part of the
    first test frame's predictions of its first channel entry (the figure's example); and the
    per-frame test NMSE."""
    if method == "outdated":
        per_frame = nmse(predict(method, None, 0.0, test), test[3])
        return {"nmse": summarize(per_frame), "example": predict(method, None, 0.0, test)[0, :, 0].real.tolist()}, \
            per_frame
    ranks = RANKS if kind(method)[1] else (None,)
    candidates = {(lam, rank): bias(method, train, lam, rank) for rank in ranks for lam in LAMBDAS}
    validation_nmse = {(lam, rank): float(nmse(predict(method, theta, lam, validation, rank), validation[3]).mean())
                       for (lam, rank), theta in candidates.items()}
    lam, rank = best = min(validation_nmse, key=validation_nmse.get)
    predictions = predict(method, candidates[best], lam, test, rank)
    per_frame = nmse(predictions, test[3])
    row = {"lambda": lam, "validation_nmse": {_label(key): v for key, v in validation_nmse.items()},
           "nmse": summarize(per_frame), "example": predictions[0, :, 0].real.tolist()}
    return ({**row, "rank": rank} if rank is not None else row), per_frame


def _label(key: tuple[float, int | None]) -> str:
    lam, rank = key
    return f"{lam:g}" if rank is None else f"lambda={lam:g},R={rank}"


def channel_prediction(out: str | Path, iters: int | None = None, tasks: int = 200,
                       algorithms: list[str] | None = None, seed: int = 0, jobs: int = 1) -> dict[str, Any]:
    """Run the experiment (see the module docstring); returns the JSON document it writes."""
    from innerloop.engine.channel_prediction_plots import plot

    if iters is not None:
        raise ConfigError("channel-prediction is solved in closed form and has no meta-iterations",
                          "drop --iters")
    methods, out = prepare("channel-prediction method", algorithms, list(METHODS), jobs, out, tasks=tasks)
    family = ChannelPrediction()
    rows: dict[str, dict[str, Any]] = {m: {} for m in methods}
    example: dict[str, Any] = {}
    for shots in TRAINING_WINDOWS:
        validation = frames(family, VALIDATION_FRAMES, shots, TEST_WINDOWS, "meta-val", seed)
        test = frames(family, tasks, shots, TEST_WINDOWS, "meta-test", seed)
        train = frames(family, META_FRAMES, shots, META_VALIDATION, "meta-train", seed)
        per_frame = {}
        for method in methods:
            rows[method][str(shots)], per_frame[method] = _run_method(method, train, validation, test)
        for lead in ("meta", "lstd-meta"):  # paired over the same held-out frames
            if lead in per_frame:
                rows[lead][str(shots)]["minus"] = {other: summarize(per_frame[lead] - values)
                                                   for other, values in per_frame.items() if other != lead}
        if shots == EXAMPLE_WINDOWS:
            example = {"shots": shots, "target": test[3][0, :, 0].real.tolist()}
        print(f"[channel-prediction] N_tr = {shots:>2}: " + ", ".join(
            f"{m} {10 * math.log10(rows[m][str(shots)]['nmse']['mean']):.1f} dB" for m in methods), flush=True)
    document = {"experiment": "channel-prediction", "task_options": family.config(), "held_out_frames": tasks,
                "seed": seed, "training_windows": list(TRAINING_WINDOWS), "meta_frames": META_FRAMES,
                "meta_validation_windows": META_VALIDATION, "validation_frames": VALIDATION_FRAMES,
                "test_windows": TEST_WINDOWS, "lambdas": list(LAMBDAS), "rows": rows, "example": example}
    document["summary"] = {m: {n: 10 * math.log10(entry["nmse"]["mean"]) for n, entry in by_n.items()}
                           for m, by_n in rows.items()}
    atomic_write_json(out / "channel_prediction.json", document)
    plot(document, out / "channel_prediction.png")
    return document
