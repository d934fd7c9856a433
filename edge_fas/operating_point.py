"""The operating point an artifact ships with: chosen on validation, evidenced on held-out data.

`choose(val, target)` picks the threshold for a target ("apcer=0.01", "bpcer=0.05" or "eer") on the
validation scores (calibrated P(attack)) and returns the manifest's `operating_point` section:

    operating_point:
      target: apcer=0.01
      threshold: 0.0108          # on the calibrated scale
      validated_range: [lo, hi]  # thresholds the validation evidence speaks for (metrics.validated_range)
      split: <which data the threshold was chosen on>
      scale: calibrated P(attack)
      evidence:
        validation: {data, met, apcer: {species: {rate, errors, n, ci95, ci_method}}, apcer_max, apcer_pooled, bpcer}
        test: {...the same at this threshold on held-out data, when given}

The artifact's `threshold` section ({value, split}) is kept equal to it (`threshold_section`), so
everything that reads the old key reads the same number. `evidence_table` renders one evidence block
as the per-species Markdown table the reports and the benchmark print.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from edge_fas import metrics
from edge_fas import uncertainty as U
from edge_fas.score_calibration import ece, fit_calibration, nll

# manifest / checkpoint-meta sections the decision record fills (besides `threshold`)
DECISION_KEYS = ("calibration", "operating_point", "abstention", "maps")

__all__ = ["choose", "evidence", "threshold_section", "evidence_table", "fit_decision_record", "decision_sections",
           "refusal_warning", "REFUSES_MOST",
           "attach_to_artifact", "DECISION_KEYS", "SCALE"]

SCALE = "calibrated P(attack)"


def _r(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(f"{v:.6g}")


def _plain_detail(d: dict) -> dict:
    return {"rate": _r(d["rate"]), "errors": d["errors"], "n": d["n"], "ci95": [_r(v) for v in d["ci95"]],
            "ci_method": d["ci_method"], **({"species": d["species"]} if "species" in d else {})}


def evidence(scores, labels, species, threshold: float, data: str, all_species=None) -> dict:
    """Per-species APCER, APCER_max, pooled APCER and BPCER at `threshold`, with counts and 95% intervals."""
    r = metrics.error_rates(scores, labels, threshold, species)
    d = r["detail"]
    per = {k: _plain_detail(v) for k, v in d["apcer"].items()}
    for name in all_species or ():
        per.setdefault(name, _plain_detail(metrics._interval(0, 0)))  # expected species with no sample: shown
    return {"data": data, "samples": int(len(labels)), "apcer": per, "apcer_max": _plain_detail(d["apcer_max"]),
            "apcer_pooled": _plain_detail(d["apcer_pooled"]), "bpcer": _plain_detail(d["bpcer"])}


def choose(val_scores, val_labels, val_species, target: str, split: str, test=None, all_species=None) -> dict:
    """The `operating_point` section for `target`, chosen on the validation scores.

    test: optional (scores, labels, species, description) of held-out data never used for training or
    selection; its rates at the chosen threshold go into evidence.test."""
    op = metrics.operating_threshold(val_scores, val_labels, target, val_species)
    t = op["threshold"]
    ev = {"validation": {**evidence(val_scores, val_labels, val_species, t, split), "met": op["met"]}}
    if test is not None:
        scores, labels, species, description = test
        ev["test"] = evidence(scores, labels, species, t, description, all_species)
    return {"target": op["target"], "threshold": float(t),
            "validated_range": [float(v) for v in metrics.validated_range(val_scores, val_labels, t, val_species)],
            "split": split, "scale": SCALE, "evidence": ev}


def threshold_section(operating_point: dict) -> dict:
    """The manifest's `threshold` section, consistent with the operating point."""
    return {"value": float(operating_point["threshold"]),
            "split": f"{operating_point['target']} on the validation data: {operating_point['split']}",
            "scale": operating_point.get("scale", SCALE)}


# the validation BPCER from which an operating point is called out wherever it is written or loaded: a
# kiosk that fails closed on most people is safe and unusable, and whoever deploys it should know first
REFUSES_MOST = 0.5


def refusal_warning(operating_point: dict | None) -> str | None:
    """A warning when the operating point judged most bona fide validation samples to be attacks (its own
    evidence, recorded when it was chosen); None otherwise or without evidence."""
    op = operating_point or {}
    val = (op.get("evidence") or {}).get("validation") or {}
    bpcer = val.get("bpcer") or {}
    if bpcer.get("rate") is None or bpcer["rate"] < REFUSES_MOST:
        return None
    worst = val.get("apcer_max") or {}
    setter = (f"; the attack species that sets the threshold is {worst['species']} (APCER {worst['rate']:.1%} there)"
              if worst.get("species") and worst.get("rate") is not None else "")
    return (f"operating point {op.get('target')} (threshold {float(op.get('threshold', float('nan'))):.4g}) judged "
            f"{bpcer['rate']:.0%} of people attacks on its validation data ({bpcer.get('errors')} of {bpcer.get('n')}"
            f" samples){setter}. A kiosk with it fails closed on most people: choose another operating point "
            "knowingly (benchmarks/bench_tradeoff.py shows what each lets through, bench_operating_point.py "
            "--refit-into writes one) or train a model that separates that species")


def _pct(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}%"


def _row(name: str, d: dict) -> str:
    lo, hi = d["ci95"]
    ci = "n/a" if lo is None or (isinstance(lo, float) and math.isnan(lo)) else f"[{_pct(lo)}, {_pct(hi)}]"
    note = " (rule of 3)" if d["ci_method"].startswith("rule of 3") else ""
    return f"| {name} | {_pct(d['rate'])} | {ci}{note} | {d['errors']}/{d['n']} |"


def evidence_table(ev: dict, title: str | None = None) -> str:
    """One evidence block as a Markdown table: per-species APCER, APCER_max, pooled APCER, BPCER."""
    lines = [] if title is None else [f"**{title}** ({ev['data']})", ""]
    lines += ["| rate | value | 95% interval | errors / samples |", "|---|---|---|---|"]
    for name, d in sorted(ev["apcer"].items()):
        lines.append(_row(f"APCER {name}", d))
    worst = ev["apcer_max"].get("species")
    lines.append(_row(f"APCER_max{f' ({worst})' if worst else ''}", ev["apcer_max"]))
    lines.append(_row("APCER pooled", ev["apcer_pooled"]))
    lines.append(_row("BPCER", ev["bpcer"]))
    return "\n".join(lines)


def fit_decision_record(val, target: str, test=None, all_species=None, abstain_quantile: float = 0.99) -> dict:
    """Everything an artifact needs to decide, fitted on a validation Scored (edge_fas.scoring):
    calibration (on raw logits), the operating point for `target` on the calibrated scores, the
    `threshold` section consistent with it, the abstention level and the maps' colour scales.

    test: a Scored of held-out data (never used for training or selection): calibration's held-out
    ECE/NLL, the operating point's test evidence and abstention's held-out rates come from it."""
    cal = fit_calibration(val.logits, val.label, split=val.data)
    p_val = cal.apply_logits(val.logits)
    test_rates = None
    if test is not None:
        p_test = cal.apply_logits(test.logits)
        raw = 1.0 / (1.0 + np.exp(-np.clip(np.asarray(test.logits, np.float64), -40, 40)))
        held = {"data": test.data, "ece_before": round(ece(raw, test.label), 5),
                "ece_after": round(ece(p_test, test.label), 5), "nll_before": round(nll(raw, test.label), 5),
                "nll_after": round(nll(p_test, test.label), 5)}
        cal = dataclasses.replace(cal, fit={**cal.fit, "held_out": held})
        test_rates = (p_test, test.label, test.species, test.data)
    op = choose(p_val, val.label, val.species, target, val.data, test_rates, all_species)
    record = {"calibration": cal.to_dict(), "operating_point": op, "threshold": threshold_section(op)}
    t = op["threshold"]
    if val.statistic is not None and np.any((p_val < t) & (val.label == 0)):
        ab = U.fit_abstention(val.statistic, val.uncertainty, (p_val < t) & (val.label == 0),
                              (p_val < t) & (val.label == 1), val.data, abstain_quantile)
        if test is not None and test.uncertainty is not None:
            ab["held_out"] = {"data": test.data, **U.abstention_rates(
                test.uncertainty, (p_test < t) & (test.label == 0), (p_test < t) & (test.label == 1), ab["level"])}
        record["abstention"] = ab
    if val.map_peaks:
        record["maps"] = U.fit_map_scales(val.map_peaks, val.data)
    return record


def attach_to_artifact(artifact, record: dict):
    """Write `record`'s sections (fit_decision_record) into an artifact's manifest, files unchanged;
    returns the reloaded Artifact. For re-calibrating an exported model without re-exporting it."""
    from edge_fas import artifact as art

    manifest = art.manifest_body(artifact.manifest)
    for key in DECISION_KEYS:
        manifest.pop(key, None)
    manifest.update(json_plain(record))
    art.write_manifest(artifact.folder, manifest, list(artifact.manifest["files"]))
    return art.load_artifact(artifact.folder)


def json_plain(x):
    """numpy values -> plain Python (YAML-safe), recursively."""
    if isinstance(x, dict):
        return {str(k): json_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def decision_sections(meta: dict) -> dict:
    """The decision sections a checkpoint's meta carries (for the exporter), `threshold` included when
    there is an operating point."""
    out = {k: meta[k] for k in DECISION_KEYS if meta.get(k)}
    if "operating_point" in out:
        out["threshold"] = threshold_section(out["operating_point"])
    return out
