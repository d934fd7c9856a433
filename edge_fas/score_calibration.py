"""Score calibration: a model's raw output turned into a probability of attack that means what it says.

(Camera calibration is `edge_fas.calibration`; this module is about scores.)

A network's score is monotone in its evidence but rarely a probability: the demo model puts bona fide
faces near 0.01 and attacks at 0.992-0.997, so its validation EER threshold (0.9951) sits inside the
attack cluster and decisions turn on the fourth decimal. Calibration fits a monotone map from the
model's logit to P(attack) on a validation split and stores it, with the split it came from, in the
checkpoint meta and the artifact manifest; every runtime applies it in one place
(`edge_fas.runtime.base.Runtime.infer`), so scores leaving a runtime are calibrated probabilities.

Methods (all monotone, so the ranking, the ROC and every achievable operating point are unchanged):

- temperature: P = sigmoid(a * logit)            (Guo et al. 2017; one parameter, a = 1/T)
- platt:       P = sigmoid(a * logit + b)        (Platt 1999, with his smoothed targets, so a
               perfectly separated validation set does not drive a to infinity)
- isotonic:    pool-adjacent-violators on the logit, interpolated between block centres
               (Zadrozny & Elkan 2002), clipped away from 0 and 1

`fit_calibration` fits all three and keeps temperature unless another has a lower negative
log-likelihood on held-out folds of the validation split (5-fold cross-validation, stratified); a more
complex method must win by at least 1% (so a tie keeps the simpler map). The input is the model's
logit (every edge-fas model's score is sigmoid(logit)); from a score alone the logit is recovered as
log(p / (1 - p)).

ECE here is the binary calibration error of P(attack): the bin-weighted mean of |share of attacks -
mean predicted P(attack)| over 15 equal-width bins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ScoreCalibration", "IDENTITY", "fit_calibration", "ece", "nll", "brier", "logit_of", "METHODS"]

METHODS = ("temperature", "platt", "isotonic")
P_MIN = 1e-6  # calibrated probabilities stay in [P_MIN, 1 - P_MIN]: never exactly 0 or 1
LOGIT_MAX = math.log((1 - P_MIN) / P_MIN)
COMPLEXITY_MARGIN = 0.01  # a more complex map must lower the held-out NLL by 1% to be chosen


def logit_of(scores) -> np.ndarray:
    """log(p / (1 - p)) of probabilities, clipped to the calibrated range (float64)."""
    p = np.clip(np.asarray(scores, dtype=np.float64), P_MIN, 1 - P_MIN)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.clip(z, -LOGIT_MAX, LOGIT_MAX)
    return 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class ScoreCalibration:
    """A fitted monotone map logit -> P(attack), and where it came from.

    method: identity | temperature | platt | isotonic. params: temperature {a}; platt {a, b};
    isotonic {x: knots in logit, y: P(attack) at the knots}. split: the data it was fitted on, in
    words. fit: sample counts, the cross-validated NLL of each method, ECE before and after on the
    fitting data (optimistic; held-out numbers belong in the evaluation report)."""

    method: str = "identity"
    params: dict = field(default_factory=dict)
    split: str = "none: uncalibrated model scores"
    fit: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.method not in ("identity",) + METHODS:
            raise ValueError(f"score calibration method {self.method!r}: expected identity or one of {', '.join(METHODS)}")

    @property
    def is_identity(self) -> bool:
        return self.method == "identity"

    def apply_logits(self, logits) -> np.ndarray:
        """Calibrated P(attack) (float32) for raw logits of any shape."""
        z = np.asarray(logits, dtype=np.float64)
        if self.method == "identity":
            p = _sigmoid(z)
        elif self.method == "temperature":
            p = _sigmoid(float(self.params["a"]) * z)
        elif self.method == "platt":
            p = _sigmoid(float(self.params["a"]) * z + float(self.params["b"]))
        else:
            p = np.interp(z, np.asarray(self.params["x"], np.float64), np.asarray(self.params["y"], np.float64))
        return np.clip(p, P_MIN, 1 - P_MIN).astype(np.float32)

    def apply_scores(self, scores) -> np.ndarray:
        """Calibrated P(attack) from raw scores (when a model output has no logit)."""
        if self.is_identity:
            return np.asarray(scores, dtype=np.float32)
        return self.apply_logits(logit_of(scores))

    def calibrate(self, score, logits=None) -> np.ndarray:
        """From a model output: its logit when there is one (exact), else its score."""
        if self.is_identity:
            return np.asarray(score, dtype=np.float32)
        if logits is not None and np.asarray(logits).size == np.asarray(score).size:
            return self.apply_logits(np.asarray(logits).reshape(np.asarray(score).shape))
        return self.apply_scores(score)

    def to_dict(self) -> dict:
        return {"method": self.method, "params": _plain(self.params), "split": self.split, "fit": _plain(self.fit)}

    @classmethod
    def from_dict(cls, d: dict | None) -> "ScoreCalibration":
        """From a manifest / checkpoint-meta section; None or {} is the identity (an uncalibrated model)."""
        if not d:
            return IDENTITY
        if not isinstance(d, dict) or "method" not in d:
            raise ValueError(f"score calibration section {d!r}: expected a mapping with 'method' and 'params'")
        method, params = d["method"], dict(d.get("params") or {})
        need = {"identity": (), "temperature": ("a",), "platt": ("a", "b"), "isotonic": ("x", "y")}.get(method)
        if need is None:
            raise ValueError(f"score calibration method {method!r}: expected identity or one of {', '.join(METHODS)}")
        missing = [k for k in need if k not in params]
        if missing:
            raise ValueError(f"score calibration ({method}) lacks parameter(s) {missing}; re-fit it")
        if method == "isotonic":
            x, y = np.asarray(params["x"], float), np.asarray(params["y"], float)
            if x.size < 1 or x.shape != y.shape or np.any(np.diff(x) <= 0) or np.any(np.diff(y) < 0):
                raise ValueError("isotonic score calibration: knots must be increasing in x and non-decreasing in y")
        return cls(method, params, str(d.get("split", "unknown")), dict(d.get("fit") or {}))


IDENTITY = ScoreCalibration()


def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(f"{float(x):.8g}")
    if isinstance(x, (np.integer,)):
        return int(x)
    return x


# ---- quality measures ---------------------------------------------------------------------------

def ece(probs, labels, bins: int = 15) -> float:
    """Binary expected calibration error of P(attack) over `bins` equal-width bins."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if p.size == 0:
        return float("nan")
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(y[m].mean() - p[m].mean())
    return float(total / p.size)


def nll(probs, labels) -> float:
    """Mean negative log-likelihood of the labels under P(attack) (probabilities clipped to [1e-6, 1-1e-6])."""
    p = np.clip(np.asarray(probs, dtype=np.float64).reshape(-1), P_MIN, 1 - P_MIN)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def brier(probs, labels) -> float:
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    return float(np.mean((p - y) ** 2))


# ---- fitting ------------------------------------------------------------------------------------

def _platt_targets(y: np.ndarray) -> np.ndarray:
    """Platt's smoothed targets: (N+ + 1)/(N+ + 2) for attacks, 1/(N- + 2) for bona fide."""
    n_pos, n_neg = float(np.sum(y == 1)), float(np.sum(y == 0))
    return np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1.0 / (n_neg + 2))


def _fit_logistic(z: np.ndarray, y: np.ndarray, with_bias: bool) -> tuple[float, float]:
    """Newton's method on the cross-entropy of sigmoid(a z + b) against Platt's targets."""
    t = _platt_targets(y)
    a, b = 1.0, 0.0
    X = np.stack([z, np.ones_like(z)], 1) if with_bias else z[:, None]
    w = np.array([a, b]) if with_bias else np.array([a])
    for _ in range(100):
        p = _sigmoid(X @ w)
        grad = X.T @ (p - t)
        hess = (X * (p * (1 - p))[:, None]).T @ X + 1e-9 * np.eye(X.shape[1])
        step = np.linalg.solve(hess, grad)
        # damped: halve the step until the loss does not rise (keeps Newton safe on flat or odd data)
        loss = _xent(X @ w, t)
        for _ in range(30):
            if _xent(X @ (w - step), t) <= loss + 1e-12:
                break
            step = step / 2
        w = w - step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(w[0]), float(w[1]) if with_bias else 0.0


def _xent(z: np.ndarray, t: np.ndarray) -> float:
    # stable cross-entropy of sigmoid(z) against soft targets t
    return float(np.mean(np.logaddexp(0.0, z) - t * z))


def _fit_isotonic(z: np.ndarray, y: np.ndarray) -> tuple[list, list]:
    """Pool adjacent violators on (z sorted, y); knots at block mean z, values the block means of y,
    clipped to [1/(2n), 1 - 1/(2n)] so no calibrated score is certain."""
    order = np.argsort(z, kind="mergesort")
    zs, ys = z[order], y[order].astype(np.float64)
    # merge equal z first: one knot per distinct value
    _, start = np.unique(zs, return_index=True)
    counts = np.diff(np.append(start, zs.size)).astype(np.float64)
    sums = np.add.reduceat(ys, start)
    zsum = np.add.reduceat(zs, start)
    blocks: list[list[float]] = []  # [sum_y, count, sum_z]
    for s, c, zz in zip(sums, counts, zsum):
        blocks.append([s, c, zz])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            s2, c2, z2 = blocks.pop()
            blocks[-1][0] += s2
            blocks[-1][1] += c2
            blocks[-1][2] += z2
    n = float(z.size)
    lo, hi = 1.0 / (2 * n), 1.0 - 1.0 / (2 * n)
    x = [b[2] / b[1] for b in blocks]
    v = [float(np.clip(b[0] / b[1], lo, hi)) for b in blocks]
    return x, v


def _fit_one(method: str, z: np.ndarray, y: np.ndarray) -> ScoreCalibration:
    if method == "temperature":
        a, _ = _fit_logistic(z, y, with_bias=False)
        return ScoreCalibration("temperature", {"a": a})
    if method == "platt":
        a, b = _fit_logistic(z, y, with_bias=True)
        return ScoreCalibration("platt", {"a": a, "b": b})
    x, v = _fit_isotonic(z, y)
    return ScoreCalibration("isotonic", {"x": x, "y": v})


def _folds(y: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """Stratified fold index of every sample (deterministic in seed)."""
    rng = np.random.default_rng(seed)
    fold = np.empty(y.size, int)
    for cls in (0, 1):
        idx = np.nonzero(y == cls)[0]
        rng.shuffle(idx)
        fold[idx] = np.arange(idx.size) % k
    return [np.nonzero(fold == f)[0] for f in range(k)]


def fit_calibration(logits, labels, split: str, methods=METHODS, folds: int = 5, seed: int = 0) -> ScoreCalibration:
    """Fit the calibration on a validation split's raw logits and labels (1 = attack).

    Chooses among `methods` by 5-fold cross-validated NLL (temperature unless another wins by 1%), then
    refits the chosen method on all of it. `split` says which data this is (it goes into the manifest).
    Raises ValueError when a class is missing (nothing to calibrate against)."""
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(int)
    if z.shape != y.shape:
        raise ValueError(f"fit_calibration: {z.size} logits but {y.size} labels")
    if not np.all(np.isfinite(z)):
        raise ValueError("fit_calibration: logits contain NaN or inf; check the model output")
    n_pos, n_neg = int(np.sum(y == 1)), int(np.sum(y == 0))
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"fit_calibration: the split has {n_pos} attack and {n_neg} bona fide samples; "
                         "calibration needs both")
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"fit_calibration: unknown method(s) {bad}; expected some of {', '.join(METHODS)}")
    z = np.clip(z, -LOGIT_MAX, LOGIT_MAX)
    k = max(2, min(folds, n_pos, n_neg))
    cv = {}
    parts = _folds(y, k, seed)
    for m in methods:
        held = np.empty(z.size)
        for f in parts:
            train = np.setdiff1d(np.arange(z.size), f)
            held[f] = _fit_one(m, z[train], y[train]).apply_logits(z[f])
        cv[m] = nll(held, y)
    chosen = methods[0]
    for m in methods[1:]:  # in order of complexity
        if cv[m] < cv[chosen] * (1 - COMPLEXITY_MARGIN):
            chosen = m
    cal = _fit_one(chosen, z, y)
    raw = _sigmoid(z)
    after = cal.apply_logits(z)
    fit = {"samples": int(z.size), "attack": n_pos, "bona_fide": n_neg, "cv_folds": k,
           "cv_nll": {m: round(v, 5) for m, v in cv.items()}, "chosen_by": "lowest cross-validated NLL "
           f"(a more complex map must win by {COMPLEXITY_MARGIN:.0%})",
           "on_fit_data": {"ece_before": round(ece(raw, y), 5), "ece_after": round(ece(after, y), 5),
                           "nll_before": round(nll(raw, y), 5), "nll_after": round(nll(after, y), 5)}}
    return ScoreCalibration(cal.method, _plain(cal.params), split, fit)
