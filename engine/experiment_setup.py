"""What every multi-run experiment checks before it starts — the names it was asked to run, the
number of worker processes, and its output directory —, how it writes its results, and the
one-line summary of each experiment that ``innerloop experiment --help`` and ``innerloop list`` show (kept here, free of
heavy imports, so that building the command line stays cheap)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from innerloop.engine.errors import ConfigError, unknown_name

SUMMARIES = {
    "algorithm-table": "every gradient-lens algorithm on sinusoid at K = 5 and 10 vs random init and joint learning",
    "figure-2.4": "monograph Fig. 2.4: joint learning, MAML, iMAML, BMAML vs data per task and number of tasks",
    "neuromorphic": "spiking FOMAML/Reptile learning-rule variants and a recurrent network on double-motif "
                    "(snn backend)",
    "quantum-bayes": "Born-machine Bayesian meta-learning on binary-prototype-regression (quantum backend) vs "
                     "mean-field, uniform, joint and exact Bayes",
    "demodulation": "few-pilot 16-QAM demodulation with I/Q imbalance: MAML, FOMAML, Reptile, CAVIA, BMAML, joint vs "
                    "scratch and MMSE + ML; SER vs pilots and calibration (monograph §5.2)",
    "demodulation-devices": "demodulation SER vs the number of meta-training devices: CAVIA, MAML, joint "
                            "(monograph Fig. 5.4)",
    "online-demodulation": "online (continual) meta-learning of a demodulator as devices arrive: prequential and "
                           "held-out SER of CAVIA/MAML/BMAML with and without replay or active selection vs MMSE + ML "
                           "(monograph §5.2, §7.1.1, §7.1.3)",
    "channel-coding": "encoder/decoder over a 3-tap channel: BLER vs training iterations on new channels from MAML, "
                      "joint and random starts, each with a plain and a radio-transformer-network receiver "
                      "(monograph §5.3)",
    "model-free-link": "online meta-learning of an encoder/decoder without a channel model (REINFORCE transmitter, "
                       "context-adapted receiver) over time-correlated channels: BLER vs frames and vs correlation "
                       "against online joint training and BPSK + ML (monograph §7.1.1, Figs. 7.1–7.2)",
    "meta-rl": "meta-reinforcement learning on 2D navigation to unobserved goals: return after 0-3 policy-gradient "
               "steps for MAML (REINFORCE and LVC Hessians), FOMAML, Reptile and joint training vs a random start "
               "and the optimal return (monograph §7.1.2)",
    "uabs-trajectory": "continual meta-RL of an aerial base station's flight over changing vehicular traffic, without "
                       "revisiting old patterns: prequential and held-out return of MAML, FOMAML, FOMAML with "
                       "revisiting and online joint training vs a random start and the trajectory planned with the "
                       "road known (monograph §7.1.2, [138])",
    "channel-prediction": "closed-form iMAML linear channel predictors, naive and with the long-short-term "
                          "decomposition, vs joint, conventional and outdated CSI (monograph §5.4; no --iters)",
    "power-control": "REGNN power control over changing topologies: sum-rate vs meta-training periods for joint, "
                     "FOMAML, Reptile and modular meta-learning vs WMMSE and full power (monograph §5.5, Fig. 5.11)",
    "viterbi-equalization": "Viterbi detection on an unknown saturating ISI channel with meta-learned branch "
                            "metrics (MAML, CAVIA channel models; ViterbiNet classifier) vs joint, scratch, "
                            "MMSE-tap and genie Viterbi: BER vs pilots and SNR, decision-directed tracking of "
                            "drifting channels, and per-channel initializations learned online (Meta-ViterbiNet; "
                            "monograph §7.3)",
    "theory": "seed 000 §6–9 on trained meta-learners: Theorem 2's implicit prior, inner-step sensitivity, "
              "meta-gradient variance vs B, FMO convergence bound, Amit–Meir PAC-Bayes bound for softened MAML and for "
              "a learner that minimizes it; monograph ch. 4 exactly: "
              "information-theoretic bounds, task similarity, minimum excess meta-risk, meta linear regression; "
              "double descent of min-norm meta-learners, misspecified Bayesian meta-learning, degenerate "
              "lower levels (--algos picks parts)",
}


def prepare(kind: str, asked: Sequence[str] | None, known: Sequence[str], jobs: int,
            out: str | Path, tasks: int | None = None) -> tuple[list[str], Path]:
    """(the names to run — ``asked`` or all ``known`` —, the created output directory); a
    ConfigError names an unknown ``kind``, a bad ``jobs`` or, when given, fewer than 2 held-out
    ``tasks`` (a confidence interval needs two)."""
    names = list(asked or known)
    for name in names:
        if name not in known:
            raise unknown_name(kind, name, known)
    if int(jobs) != jobs or jobs < 1:
        raise ConfigError(f"jobs must be a positive integer, got {jobs}", "e.g. --jobs 2")
    if tasks is not None and (int(tasks) != tasks or tasks < 2):
        raise ConfigError(f"--tasks must be an integer >= 2, got {tasks}", "e.g. --tasks 200")
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    return names, path


def write_results(out: Path, stem: str, document: dict[str, Any], markdown: str,
                  plot: Callable[[dict[str, Any], Path], None]) -> None:
    """OUT/STEM.json (strict JSON, written atomically), OUT/STEM.md (``markdown``) and OUT/STEM.png
    (drawn by ``plot``)."""
    from innerloop.engine.rundir import atomic_write_json, atomic_write_text

    atomic_write_json(out / f"{stem}.json", document)
    atomic_write_text(out / f"{stem}.md", markdown + "\n")
    plot(document, out / f"{stem}.png")
