"""Evaluation report folder: metrics as JSON and Markdown, per-sample scores as CSV, and ROC, DET and
score-histogram plots as PNG (matplotlib, Agg backend: no display needed).

    write_report("runs/eval", scores, labels, species, domains, threshold=0.42, meta={...})
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from statistics import NormalDist

import numpy as np

from edge_fas import metrics

__all__ = ["write_report", "markdown"]


def _fmt(v, pct=True) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{100 * v:.2f}%" if pct else f"{v:.4f}"


def _ci(d: dict | None) -> str:
    """' | [lo, hi] | errors/n' cells for a metrics detail entry (empty cells when there is none)."""
    if not d or d.get("n", 0) == 0:
        return " | | |"
    lo, hi = d["ci95"]
    rule = " (rule of 3)" if str(d.get("ci_method", "")).startswith("rule of 3") else ""
    return f" [{_fmt(lo)}, {_fmt(hi)}]{rule} | {d['errors']}/{d['n']} |"


def markdown(result: dict, title: str = "Evaluation", operating_point: dict | None = None) -> str:
    """The metrics of `metrics.evaluate` as a Markdown page (ISO/IEC 30107-3 names first, each rate
    with its 95% interval and counts); with the operating point it was evaluated at, when given."""
    r = result
    det = r.get("detail") or {}
    lines = [f"# {title}", "",
             f"Samples: {r['n_bona_fide']} bona fide, {r['n_attack']} attack. "
             f"Threshold {_fmt(r['threshold'], pct=False)} ({r['threshold_source']}); "
             "a score >= threshold is classified attack.", ""]
    if operating_point:
        op = operating_point
        lines += [f"Operating point: target **{op['target']}**, threshold {op['threshold']:.6g} chosen on "
                  f"{op['split']}; validated range [{op['validated_range'][0]:.4g}, {op['validated_range'][1]:.4g}].",
                  ""]
    lines += ["## ISO/IEC 30107-3 (95% intervals: Clopper-Pearson; rule of 3 at zero errors)", "",
              "| metric | value | 95% interval | errors / samples |", "|---|---|---|---|"]
    for name, sp in sorted(r["apcer"].items()):
        absent = " (species absent)" if name in r.get("species_absent", []) else ""
        lines.append(f"| APCER ({name}) | {_fmt(sp)}{absent} |{_ci(det.get('apcer', {}).get(name))}")
    worst = (det.get("apcer_max") or {}).get("species")
    lines += [f"| APCER max{f' ({worst})' if worst else ''} | {_fmt(r['apcer_max'])} |{_ci(det.get('apcer_max'))}",
              f"| BPCER | {_fmt(r['bpcer'])} |{_ci(det.get('bpcer'))}"]
    if operating_point and str(operating_point["target"]).startswith("apcer="):
        lines.append(f"| BPCER @ {operating_point['target'].upper().replace('=', ' = ')} (threshold from "
                     f"validation) | {_fmt(r['bpcer'])} |{_ci(det.get('bpcer'))}")
    for a, v in r["bpcer_at_apcer"].items():
        lines.append(f"| BPCER @ APCER = {float(a):.0%} (threshold from these scores: optimistic) | {_fmt(v)} | | |")
    lines += ["", "## Papers' figures (for comparison)", "", "| metric | value |", "|---|---|",
              f"| HTER (at the threshold above) | {_fmt(r['hter'])} |",
              f"| HTER at the test set's own EER threshold (= EER; what SSDG/FLIP/MMDG report) | "
              f"{_fmt(r['hter_at_test_eer'])} |",
              f"| ACER | {_fmt(r['acer'])} |", f"| AUC | {_fmt(r['auc'])} |",
              f"| accuracy | {_fmt(r['accuracy'])} |",
              f"| accuracy at BPCER = 1% | {_fmt(r['accuracy_at_bpcer_1pct'])} |", ""]
    return "\n".join(lines)


def _plots(folder: Path, scores, labels, threshold) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    y = np.asarray(labels)
    if (y == 1).any() and (y == 0).any():
        c = metrics.curve(scores, labels)
        fig, ax = plt.subplots(figsize=(4.5, 4))
        ax.plot(c["bpcer"], 1 - c["apcer"])
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set_xlabel("BPCER (bona fide rejected)")
        ax.set_ylabel("1 - APCER (attacks detected)")
        ax.set_title(f"ROC, AUC = {metrics.auc(scores, labels):.4f}")
        fig.tight_layout()
        fig.savefig(folder / "roc.png", dpi=100)
        plt.close(fig)
        written.append("roc.png")

        nd = NormalDist()
        clip = lambda v: np.clip(v, 1e-4, 1 - 1e-4)  # noqa: E731  (probit of 0 or 1 is infinite)
        fig, ax = plt.subplots(figsize=(4.5, 4))
        ax.plot([nd.inv_cdf(v) for v in clip(c["bpcer"])], [nd.inv_cdf(v) for v in clip(c["apcer"])])
        ticks = [0.001, 0.01, 0.05, 0.2, 0.5, 0.8]
        ax.set_xticks([nd.inv_cdf(t) for t in ticks], [f"{t:g}" for t in ticks])
        ax.set_yticks([nd.inv_cdf(t) for t in ticks], [f"{t:g}" for t in ticks])
        ax.set_xlabel("BPCER")
        ax.set_ylabel("APCER")
        ax.set_title("DET (normal deviate axes)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(folder / "det.png", dpi=100)
        plt.close(fig)
        written.append("det.png")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    bins = np.linspace(0, 1, 41)
    s = np.asarray(scores)
    for lab, name, col in ((0, "bona fide", "tab:green"), (1, "attack", "tab:red")):
        if (y == lab).any():
            ax.hist(s[y == lab], bins=bins, alpha=0.6, label=name, color=col)
    ax.axvline(threshold, color="k", ls="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("score = P(attack)")
    ax.set_ylabel("samples")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "histogram.png", dpi=100)
    plt.close(fig)
    written.append("histogram.png")
    return written


def write_report(folder, scores, labels, species=None, domains=None, threshold=None, meta=None,
                 title: str = "Evaluation", all_species=None, plots: bool = True, paths=None,
                 operating_point: dict | None = None, extra_markdown: str = "") -> dict:
    """Evaluate and write metrics.json, metrics.md, scores.csv and the PNGs into `folder`.

    scores.csv has one row per sample: the sample's path as its source lists it (`paths`), its
    dataset (`domains`), label, species, score and decision. operating_point: the record
    (edge_fas.operating_point.choose) whose threshold is being applied; it goes into the JSON and the
    Markdown. extra_markdown is appended to metrics.md (calibration, abstention). Returns the metrics
    dict (as `metrics.evaluate`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    result = metrics.evaluate(scores, labels, species, threshold=threshold, all_species=all_species)
    doc = {"metrics": metrics.json_ready(result), "meta": meta or {}}
    if operating_point is not None:
        doc["operating_point"] = operating_point
    (folder / "metrics.json").write_text(json.dumps(doc, indent=1, allow_nan=False, default=str))
    (folder / "metrics.md").write_text(markdown(result, title, operating_point) + extra_markdown)
    with open(folder / "scores.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "path", "dataset", "label", "species", "score", "decision"])
        for i, s in enumerate(scores):
            w.writerow([i, paths[i] if paths is not None else "", domains[i] if domains is not None else "",
                        int(labels[i]), species[i] if species is not None else "", f"{s:.6f}",
                        int(s >= result["threshold"])])
    if plots:
        _plots(folder, scores, labels, result["threshold"])
    return result


def model_report_sections(test, threshold: float, calibration=None, abstention: dict | None = None) -> tuple[str, dict]:
    """(Markdown, JSON) about the scores themselves: calibration error on these held-out scores (raw
    model probability vs the calibrated score) and how often abstention fires at its recorded level.
    `test` is an edge_fas.scoring.Scored."""
    from edge_fas.score_calibration import ece, nll
    from edge_fas.uncertainty import abstention_rates

    y = np.asarray(test.label)
    raw = 1.0 / (1.0 + np.exp(-np.clip(np.asarray(test.logits, np.float64), -40, 40)))
    doc, md = {}, []
    if (y == 1).any() and (y == 0).any():
        doc["calibration"] = {"method": getattr(calibration, "method", "identity"),
                              "fitted_on": getattr(calibration, "split", "none"),
                              "ece_raw": ece(raw, y), "ece_calibrated": ece(test.score, y),
                              "nll_raw": nll(raw, y), "nll_calibrated": nll(test.score, y)}
        c = doc["calibration"]
        md += ["", "## Score calibration (on these scores)", "",
               f"Method {c['method']}, fitted on {c['fitted_on']}.", "",
               "| | raw model probability | calibrated P(attack) |", "|---|---|---|",
               f"| ECE (15 bins) | {c['ece_raw']:.4f} | {c['ece_calibrated']:.4f} |",
               f"| NLL | {c['nll_raw']:.4f} | {c['nll_calibrated']:.4f} |"]
    if abstention and test.uncertainty is not None and abstention.get("statistic") == test.statistic:
        accepted = np.asarray(test.score) < threshold
        rates = abstention_rates(test.uncertainty, accepted & (y == 0), accepted & (y == 1), abstention["level"])
        doc["abstention"] = {"statistic": abstention["statistic"], "level": abstention["level"], **rates}
        md += ["", "## Abstention (frames scored below the threshold with the statistic above the level)", "",
               f"{abstention['statistic']} > {abstention['level']:.4g}: unknown on {rates['abstains_on_bona_fide']} of "
               f"{rates['accepted_bona_fide']} accepted bona fide and {rates['abstains_on_attacks']} of "
               f"{rates['accepted_attacks']} accepted attacks."]
    return "\n".join(md) + ("\n" if md else ""), doc
