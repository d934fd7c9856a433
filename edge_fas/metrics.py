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

Uncertainty: every error rate comes with its counts and a 95% interval: Clopper-Pearson (the exact
binomial interval) when there are errors, and at zero errors the one-sided exact upper bound
1 - 0.05^(1/n), which the "rule of 3" (3/n) approximates, as ISO/IEC 30107-3 and bob.measure do.

Operating points (``operating_threshold``): a target "apcer=0.01" (APCER of the worst species at most
1%, as few bona fide rejected as possible), "bpcer=0.05" or "eer", chosen on a validation split and
then applied unchanged to test data.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

__all__ = ["evaluate", "error_rates", "curve", "eer_threshold", "threshold_at_apcer",
           "threshold_at_bpcer", "auc", "auc_interval", "APCER_POINTS", "ATTACK_SPECIES_DEFAULT", "binomial_interval",
           "parse_target", "operating_threshold", "validated_range"]

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


def _bisect(f, lo: float, hi: float) -> float:
    """The root of an increasing f on [lo, hi] (f(lo) <= 0 <= f(hi)), to double precision."""
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        if f(mid) <= 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed exactly in log space."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])
    i = np.arange(0, k + 1)
    terms = log_fact[n] - log_fact[i] - log_fact[n - i] + i * math.log(p) + (n - i) * math.log1p(-p)
    top = float(terms.max())
    return min(1.0, math.exp(top) * float(np.exp(terms - top).sum()))


def binomial_interval(errors: int, n: int, confidence: float = 0.95) -> tuple[float, float, str]:
    """(low, high, method) for an error rate errors/n.

    Clopper-Pearson (exact, two-sided) when 0 < errors < n. At zero errors the one-sided exact bound
    [0, 1 - alpha^(1/n)] (the "rule of 3": about 3/n at 95%); at errors == n its mirror image.
    n == 0 gives (nan, nan, 'no samples')."""
    errors, n = int(errors), int(n)
    if n <= 0:
        return _NAN, _NAN, "no samples"
    if not 0 <= errors <= n:
        raise ValueError(f"binomial_interval: {errors} errors out of {n}")
    alpha = 1.0 - confidence
    if errors == 0:
        return 0.0, 1.0 - alpha ** (1.0 / n), "rule of 3 (one-sided exact)"
    if errors == n:
        return alpha ** (1.0 / n), 1.0, "rule of 3 (one-sided exact)"
    # upper: P(X <= k | p) = alpha/2 (decreasing in p); lower: P(X >= k | p) = alpha/2 (increasing in p)
    hi = _bisect(lambda p: alpha / 2 - _binom_cdf(errors, n, p), 0.0, 1.0)
    lo = _bisect(lambda p: (1.0 - _binom_cdf(errors - 1, n, p)) - alpha / 2, 0.0, 1.0)
    return lo, hi, "Clopper-Pearson"


def _interval(errors: int, n: int) -> dict:
    lo, hi, how = binomial_interval(errors, n)
    return {"rate": _rate(errors, n), "errors": int(errors), "n": int(n), "ci95": [lo, hi], "ci_method": how}


def error_rates(scores, labels, threshold: float, species=None) -> dict:
    """APCER per species, its max, pooled APCER and BPCER at one threshold, with their counts and
    95% intervals under "detail" (per species, "apcer_max" = the worst species', pooled, bpcer)."""
    s, y, sp = _as_arrays(scores, labels, species)
    attack = y == 1
    says_attack = s >= threshold
    per, detail = {}, {"apcer": {}}
    for name in sorted({str(n) for n in sp[attack]}):
        m = attack & (sp.astype(str) == name)
        e, n = int(np.sum(m & ~says_attack)), int(np.sum(m))
        per[name] = _rate(e, n)
        detail["apcer"][name] = _interval(e, n)
    apcer_max = max(per.values()) if per else _NAN
    worst = max(per, key=lambda k: (per[k], -detail["apcer"][k]["n"])) if per else None
    detail["apcer_max"] = dict(detail["apcer"][worst], species=worst) if worst else _interval(0, 0)
    e_a, n_a = int(np.sum(attack & ~says_attack)), int(np.sum(attack))
    e_b, n_b = int(np.sum(~attack & says_attack)), int(np.sum(~attack))
    detail["apcer_pooled"], detail["bpcer"] = _interval(e_a, n_a), _interval(e_b, n_b)
    return {
        "apcer": per,
        "apcer_max": apcer_max,
        "apcer_pooled": _rate(e_a, n_a),
        "bpcer": _rate(e_b, n_b),
        "detail": detail,
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


def parse_target(target: str) -> tuple[str, float | None]:
    """'apcer=0.01' -> ('apcer', 0.01); 'bpcer=5%' -> ('bpcer', 0.05); 'eer' -> ('eer', None)."""
    text = str(target).strip().lower().replace(" ", "")
    if text == "eer":
        return "eer", None
    kind, sep, value = text.partition("=")
    if not sep or kind not in ("apcer", "bpcer"):
        raise ValueError(f"operating-point target {target!r}: expected apcer=RATE, bpcer=RATE or eer "
                         "(e.g. apcer=0.01 for at most 1% of attacks accepted)")
    try:
        rate = float(value[:-1]) / 100.0 if value.endswith("%") else float(value)
    except ValueError:
        raise ValueError(f"operating-point target {target!r}: {value!r} is not a rate (e.g. 0.01 or 1%)") from None
    if not 0.0 < rate < 1.0:
        raise ValueError(f"operating-point target {target!r}: the rate must lie strictly between 0 and 1")
    return kind, rate


def operating_threshold(scores, labels, target: str, species=None) -> dict:
    """The threshold for `target` on these (validation) scores.

    apcer=x: APCER_max <= x with the lowest BPCER; bpcer=x: BPCER <= x with the lowest APCER_max;
    eer: where pooled APCER and BPCER are closest. Every threshold in an interval between two
    neighbouring distinct scores gives the same decisions here; the one returned is the midpoint of
    the chosen interval (not a sample's own score), so a test sample a hair from a validation sample
    is not decided by rounding. Returns {target, threshold, met (the target holds on these scores),
    rates (error_rates at the threshold)}; raises ValueError if a class is empty."""
    kind, rate = parse_target(target)
    s, y, sp = _as_arrays(scores, labels, species)
    if not np.any(y == 1) or not np.any(y == 0):
        raise ValueError("operating_threshold: the validation scores need both bona fide and attack samples")
    c = curve(s, y, sp)
    thr = c["threshold"]  # ascending distinct scores, then +inf
    if kind == "eer":
        i = int(np.nonzero(thr == eer_threshold(s, y)[0])[0][0])
        met = True
    elif kind == "apcer":
        ok = np.nonzero(c["apcer_max"] <= rate + 1e-12)[0]
        i, met = (int(ok.max()), True) if ok.size else (0, False)
    else:
        ok = np.nonzero(c["bpcer"] <= rate + 1e-12)[0]
        i, met = (int(ok.min()), True) if ok.size else (len(thr) - 1, False)
    # decisions are the same for any t in (thr[i-1], thr[i]]: take the midpoint of that interval
    upper = float(thr[i])
    lower = float(thr[i - 1]) if i > 0 else None
    if not math.isfinite(upper):  # everything bona fide: just above the top score
        t = float(np.nextafter(float(thr[i - 1]), np.inf)) if i > 0 else 1.0
    elif lower is None:
        t = upper
    else:
        t = (lower + upper) / 2.0
        if not (lower < t <= upper):
            t = upper
    return {"target": f"{kind}={rate:g}" if rate is not None else "eer", "threshold": t, "met": bool(met),
            "rates": error_rates(s, y, t, sp)}


def validated_range(scores, labels, threshold: float, species=None) -> list[float]:
    """[lo, hi]: the thresholds the validation scores speak for.

    lo is the highest threshold at which no validation attack of any species passes and hi the lowest at
    which no validation bona fide is rejected (swapped when the classes separate): below lo a threshold
    only rejects more bona fide with no measured gain, above hi it only lets more attacks through. The
    operating threshold is always inside. A site threshold outside this range has no validation evidence."""
    s, y, sp = _as_arrays(scores, labels, species)
    c = curve(s, y, sp)
    thr = c["threshold"]
    zero_apcer = np.nonzero(c["apcer_max"] <= 0)[0]
    zero_bpcer = np.nonzero(c["bpcer"] <= 0)[0]
    a = float(thr[zero_apcer.max()]) if zero_apcer.size else float(thr[0])
    b = float(thr[zero_bpcer.min()]) if zero_bpcer.size else float(thr[-2])
    if not math.isfinite(b):  # no bona fide rejected only with everything accepted
        b = float(np.nextafter(float(thr[-2]), np.inf))
    if not math.isfinite(a):
        a = b
    lo, hi = min(a, b, threshold), max(a, b, threshold)
    return [lo, hi]


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


def auc_interval(scores, labels, reps: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the AUC, resampling bona fide and attacks separately."""
    s, y, _ = _as_arrays(scores, labels)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    out = []
    for _ in range(reps):
        idx = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        out.append(auc(s[idx], y[idx]))
    return float(np.percentile(out, 2.5)), float(np.percentile(out, 97.5))


def _nan_to_none(x):
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
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
    detail = r["detail"]
    absent = []
    for name in all_species or ():
        if name not in apcer:
            apcer[name] = _NAN
            detail["apcer"][name] = _interval(0, 0)
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
        "detail": detail,  # counts and 95% intervals of the ISO rates at this threshold
    }


def json_ready(result: dict) -> dict:
    """NaN -> None and float keys -> strings, so json.dumps gives valid JSON."""
    out = dict(result)
    out["bpcer_at_apcer"] = {f"{k:g}": v for k, v in result["bpcer_at_apcer"].items()}
    return _nan_to_none(out)
