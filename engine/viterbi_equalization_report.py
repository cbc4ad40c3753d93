"""The numbers of ``innerloop experiment viterbi-equalization`` read off its JSON document: the
summary (lowest BER per pilot count, paired differences against the model-based receiver and between
the online updates) and the Markdown tables (BER vs pilots and SNR, drifting channels, online
initializations)."""

from __future__ import annotations

from typing import Any

import torch

from innerloop.engine import viterbi_online as online
from innerloop.engine import viterbi_tracking as tracking
from innerloop.engine.stats import summarize


def summary(document: dict[str, Any]) -> dict[str, Any]:
    """BER per receiver and pilot count, the lowest without the genie, each learned receiver's BER
    minus the model-based receiver's paired over the same channels, and whether it is significantly
    lower (the 95% CI of the paired difference below 0)."""
    entries = {**document["rows"], **document["baselines"]}
    pilots_, symbols = [str(n) for n in document["pilots"]], document["eval_symbols"]
    table = {name: {n: entry["ber"][n]["mean"] for n in pilots_} for name, entry in entries.items()}
    lowest = {n: min((name for name in table if name != "genie-viterbi"), key=lambda name: table[name][n])
              for n in pilots_}
    versus = {}
    for name in [*document["rows"], "scratch"]:
        versus[f"{name} - mmse-viterbi"] = {n: summarize(
            (torch.tensor(entries[name]["ber"][n]["errors"]) - torch.tensor(entries["mmse-viterbi"]["ber"][n]["errors"])
             ).double() / symbols) for n in pilots_}
    below = {key: [n for n, d in diff.items() if d["mean"] + d["ci95"] < 0] for key, diff in versus.items()}
    return {"ber": table, "lowest_ber_without_genie": lowest, "paired_differences": versus,
            "pilots_where_significantly_below_mmse": below, "online_paired_differences": online_differences(document)}


def online_differences(document: dict[str, Any]) -> dict[str, Any]:
    """Per method with online rows, support and ρ (and ``"rotating"`` for the rotating channels): the BER
    differences online-meta − fixed, online-tuning − fixed and online-meta − online-tuning, paired over
    the same channels."""
    pairs = (("online-meta", "fixed"), ("online-tuning", "fixed"), ("online-meta", "online-tuning"))

    def paired(entry: dict[str, Any], a: str, b: str, blocks: int) -> dict[str, float]:
        symbols = blocks * document["tracking"]["data"]
        return summarize((torch.tensor(entry[a]["errors"]) - torch.tensor(entry[b]["errors"])).double() / symbols)

    def by_support(scores: dict[str, Any], blocks: int) -> dict[str, Any]:
        return {support: {f"{a} - {b}": paired(entry, a, b, blocks) for a, b in pairs}
                for support, entry in scores.items()}

    blocks = document["tracking"]["blocks"]
    differences = {name: {rho: by_support(scores, blocks) for rho, scores in row["online"].items()}
                   for name, row in document["rows"].items() if "online" in row}
    for name, row in document["rows"].items():
        if "rotating" in row:
            differences[name]["rotating"] = by_support(row["rotating"], document["online"]["rotation_blocks"])
    return differences


def online_table(document: dict[str, Any]) -> str:
    """Online initialization: BER per method and support (rows) and ρ: fixed / online-tuning / online-meta."""
    if not any("online" in row for row in document["rows"].values()):
        return ""
    rhos = [str(r) for r in document["tracking"]["correlations"]]
    lines = ["| receiver, support | " + " | ".join(f"ρ = {r}: fixed / online-tuning / online-meta" for r in rhos)
             + " |", "|---|" + "---|" * len(rhos)]
    for name, row in document["rows"].items():
        for support in tracking.MODES if "online" in row else ():
            cells = [" / ".join(f"{row['online'][r][support][update]['mean']:.4f}"
                                for update in ("fixed", *online.ONLINE_MODES)) for r in rhos]
            lines.append(f"| {name}, {support} | " + " | ".join(cells) + " |")
    rotating = {name: row["rotating"] for name, row in document["rows"].items() if "rotating" in row}
    if rotating:
        lines += ["", f"Rotating channels (period {document['online']['rotation_period']} blocks, "
                  f"{document['online']['rotation_blocks']} blocks):", "",
                  "| receiver, support | fixed | online-tuning | online-meta |", "|---|---|---|---|"]
        for name, scores in rotating.items():
            for support, entry in scores.items():
                lines.append(f"| {name}, {support} | " + " | ".join(
                    f"{entry[update]['mean']:.4f} ± {entry[update]['ci95']:.4f}"
                    for update in ("fixed", *online.ONLINE_MODES)) + " |")
    return "\n".join(lines)


def tracking_table(document: dict[str, Any]) -> str:
    """Drifting channels: BER ± 95% CI per receiver (rows) and ρ, pilots alone / decision-directed."""
    rhos = [str(r) for r in document["tracking"]["correlations"]]
    lines = ["| receiver | " + " | ".join(f"ρ = {r}: pilots / decision-directed" for r in rhos) + " |",
             "|---|" + "---|" * len(rhos)]
    for name, entry in {**document["rows"], **document["baselines"]}.items():
        if "tracking" in entry:
            cells = [" / ".join(f"{entry['tracking'][r][mode]['mean']:.4f} ± {entry['tracking'][r][mode]['ci95']:.4f}"
                                for mode in tracking.MODES) for r in rhos]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ber_table(document: dict[str, Any]) -> str:
    """BER ± 95% CI per receiver (rows) and pilot count, then per SNR at SWEEP_PILOTS, as Markdown;
    then the drifting-channel table."""
    pilots_ = [str(n) for n in document["pilots"]]
    snrs = [str(s) for s in document["snrs_db"]]
    lines = ["| receiver | " + " | ".join(f"{n} pilots" for n in pilots_) + " | "
             + " | ".join(f"{float(s):g} dB" for s in snrs) + " |", "|---|" + "---|" * (len(pilots_) + len(snrs))]
    for name, entry in {**document["rows"], **document["baselines"]}.items():
        cells = [f"{entry['ber'][n]['mean']:.4f} ± {entry['ber'][n]['ci95']:.4f}" for n in pilots_]
        cells += [f"{entry['ber_vs_snr'][s]['mean']:.4f}" for s in snrs]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n\n".join(filter(None, ["\n".join(lines), tracking_table(document), online_table(document)]))
