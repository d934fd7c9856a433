"""Presentation-attack-detection metrics, named as in ISO/IEC 30107-3, plus the papers' figures.

Conventions (everywhere in edge-fas): scores are P(attack); labels 1 = attack, 0 = bona fide; a sample
is *classified as attack* when ``score >= threshold``.

- APCER (per PAI species): share of that species' attack presentations classified bona fide.
  ``apcer_max`` is the maximum over the species present (ISO's APCER_AP).
- BPCER: share of bona fide presentations classified attack.
- BPCER at APCER = x: lowest BPCER over thresholds whose ``apcer_max <= x``.
- EER: the operating point where pooled APCER and BPCER are closest; ``eer`` = their mean there.
- HTER = (pooled APCER + BPCER) / 2; ACER = (apcer_max + BPCER) / 2 (the OULU/ISO-style average).
- AUC: probability that a random attack scores above a random bona fide (ties count one half).

With no threshold given, ``evaluate`` uses the EER threshold of *these* scores and records that in
``threshold_source`` ("eer of evaluated scores"): this is what SSDG/FLIP/MMDG-style papers report as
HTER, and it is optimistic. For ISO-style numbers fix the threshold on a validation split
(``eer_threshold(val_scores, val_labels)`` or ``threshold_at_bpcer``) and pass it in.

Undefined quantities (a class with no samples) are ``float('nan')``, never silently 0.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

__all__ = ["evaluate", "error_rates", "curve", "eer_threshold", "threshold_at_apcer",
           "threshold_at_bpcer", "auc", "APCER_POINTS", "ATTACK_SPECIES_DEFAULT"]

APCER_POINTS = (0.01, 0.05, 0.10)
ATTACK_SPECIES_DEFAULT = "attack"  # species name used when none are given
_NAN = float("nan")


def _as_arrays(scores, labels, species=None):
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"metrics: scores ({s.size}) and labels ({y.size}) differ in length")
    if not np.all(np.isfinite(s)):
        raise ValueError("metrics: scores contain NaN or inf; check the model output")
    if y.size and not np.all((y == 0) | (y == 1)):
        bad = sorted(set(np.unique(y).tolist()) - {0, 1})
        raise ValueError(f"metrics: labels must be 0 (bona fide) or 1 (attack), got {bad}; "
                         "convert the dataset's polarity first")
    y = y.astype(np.int64)
    if species is None:
        sp = np.where(y == 1, ATTACK_SPECIES_DEFAULT, "bona_fide").astype(object)
    else:
        sp = np.asarray(list(species), dtype=object).reshape(-1)
        if sp.shape != y.shape:
            raise ValueError(f"metrics: species ({sp.size}) and labels ({y.size}) differ in length")
    return s, y, sp


def _rate(errors: int, total: int) -> float:
    return errors / total if total else _NAN


def error_rates(scores, labels, threshold: float, species=None) -> dict:
    """APCER per species, its max, pooled APCER and BPCER at one threshold."""
    s, y, sp = _as_arrays(scores, labels, species)
    attack = y == 1
    says_attack = s >= threshold
    per = {}
    for name in sorted({str(n) for n in sp[attack]}):
        m = attack & (sp.astype(str) == name)
        per[name] = _rate(int(np.sum(m & ~says_attack)), int(np.sum(m)))
    apcer_max = max(per.values()) if per else _NAN
    return {
        "apcer": per,
        "apcer_max": apcer_max,
        "apcer_pooled": _rate(int(np.sum(attack & ~says_attack)), int(np.sum(attack))),
        "bpcer": _rate(int(np.sum(~attack & says_attack)), int(np.sum(~attack))),
    }


def curve(scores, labels, species=None) -> dict:
    """Error rates at every distinct threshold, ascending: the candidate thresholds are the distinct
    scores plus +inf (everything bona fide). Returns arrays threshold, apcer (pooled), apcer_max, bpcer."""
    s, y, sp = _as_arrays(scores, labels, species)
    thr = np.append(np.unique(s), np.inf)
    attack = y == 1

    def miss_rate(mask):  # share of mask's samples with score < t, for every t
        v = np.sort(s[mask])
        if v.size == 0:
            return np.full(thr.shape, _NAN)
        return np.searchsorted(v, thr, side="left") / v.size

    apcer = miss_rate(attack)
    names = sorted({str(n) for n in sp[attack]})
    if names:
        sp_str = sp.astype(str)
        apcer_max = np.max(np.stack([miss_rate(attack & (sp_str == n)) for n in names]), axis=0)
    else:
        apcer_max = np.full(thr.shape, _NAN)
    bpcer = 1.0 - miss_rate(~attack)
    return {"threshold": thr, "apcer": apcer, "apcer_max": apcer_max, "bpcer": bpcer}


def eer_threshold(scores, labels) -> tuple[float, float]:
    """(threshold, eer): the threshold where pooled APCER and BPCER are closest (ties: the lower sum,
    then the lower threshold). Raises ValueError if either class is empty."""
    c = curve(scores, labels)
    if np.isnan(c["apcer"][0]) or np.isnan(c["bpcer"][0]):
        raise ValueError("metrics: the EER needs both bona fide and attack samples")
    gap = np.abs(c["apcer"] - c["bpcer"])
    total = c["apcer"] + c["bpcer"]
    i = np.lexsort((c["threshold"], total, gap))[0]
    return float(c["threshold"][i]), float(total[i] / 2.0)


def threshold_at_apcer(scores, labels, target: float, species=None) -> float:
    """Highest threshold at which APCER_max <= target (highest threshold = lowest BPCER)."""
    c = curve(scores, labels, species)
    ok = c["apcer_max"] <= target + 1e-12
    if not np.any(ok):
        return _NAN
    return float(c["threshold"][np.nonzero(ok)[0].max()])


def threshold_at_bpcer(scores, labels, target: float) -> float:
    """Lowest threshold at which BPCER <= target (lowest threshold = lowest APCER)."""
    c = curve(scores, labels)
    ok = c["bpcer"] <= target + 1e-12
    if not np.any(ok):
        return _NAN
    return float(c["threshold"][np.nonzero(ok)[0].min()])


def auc(scores, labels) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks); NaN if a class is empty."""
    s, y, _ = _as_arrays(scores, labels)
    n_pos, n_neg = int(np.sum(y == 1)), int(np.sum(y == 0))
    if n_pos == 0 or n_neg == 0:
        return _NAN
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_s = s[order]
    # mid-ranks for ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    mid = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(mid, counts)
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _nan_to_none(x):
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def evaluate(scores, labels, species: Sequence[str] | None = None, threshold: float | None = None,
             all_species: Iterable[str] | None = None) -> dict:
    """All metrics for one set of scores. See the module docstring for definitions.

    species: per-sample PAI species (bona fide samples' entries are ignored). all_species: species
    expected in the test set; any with no sample is reported with APCER None ("absent") so a table
    never hides a missing species. Returns a plain dict (JSON-ready once `json_ready` is applied).
    """
    s, y, sp = _as_arrays(scores, labels, species)
    n_attack, n_bona = int(np.sum(y == 1)), int(np.sum(y == 0))
    both = n_attack > 0 and n_bona > 0

    eer_thr, eer = eer_threshold(s, y) if both else (_NAN, _NAN)
    if threshold is not None:
        thr, source = float(threshold), "given"
    elif both:
        thr, source = eer_thr, "eer of evaluated scores"
    else:
        thr, source = 0.5, "default 0.5 (EER undefined: one class is empty)"

    r = error_rates(s, y, thr, sp)
    apcer = dict(r["apcer"])
    absent = []
    for name in all_species or ():
        if name not in apcer:
            apcer[name] = _NAN
            absent.append(name)

    bpcer_at = {}
    for a in APCER_POINTS:
        t = threshold_at_apcer(s, y, a, sp) if both else _NAN
        bpcer_at[a] = _NAN if math.isnan(t) else error_rates(s, y, t, sp)["bpcer"]

    t1 = threshold_at_bpcer(s, y, 0.01) if both else _NAN
    acc_at_bpcer1 = _NAN if math.isnan(t1) else float(np.mean((s >= t1) == (y == 1)))
    # HTER at this set's own EER threshold, labelled as such (the papers' figure)
    hter_eer = eer if both else _NAN

    return {
        "threshold": thr,
        "threshold_source": source,
        "n_attack": n_attack,
        "n_bona_fide": n_bona,
        "apcer": apcer,
        "species_absent": absent,
        "apcer_max": r["apcer_max"],
        "apcer_pooled": r["apcer_pooled"],
        "bpcer": r["bpcer"],
        "bpcer_at_apcer": bpcer_at,
        "eer": eer,
        "eer_threshold": eer_thr,
        "auc": auc(s, y),
        "hter": (r["apcer_pooled"] + r["bpcer"]) / 2.0,
        "hter_at_test_eer": hter_eer,
        "acer": (r["apcer_max"] + r["bpcer"]) / 2.0,
        "accuracy": float(np.mean((s >= thr) == (y == 1))) if y.size else _NAN,
        "accuracy_at_bpcer_1pct": acc_at_bpcer1,
    }


def json_ready(result: dict) -> dict:
    """NaN -> None and float keys -> strings, so json.dumps gives valid JSON."""
    out = dict(result)
    out["bpcer_at_apcer"] = {f"{k:g}": v for k, v in result["bpcer_at_apcer"].items()}
    return _nan_to_none(out)
