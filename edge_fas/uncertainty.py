"""How unsure the model is about one face, and the fixed scales its maps are drawn on.

Two per-frame statistics, one per kind of model output (see DESIGN.md, ModelOutput):

- "uncertainty" (MMDG): the mean of the uncertainty map (1 - certainty per token, per modality) over
  the present modalities.
- "trace_dispersion" (spoof-trace network): the standard deviation, over the inner face, of the
  per-pixel spoof-trace magnitude. A bona fide face has a trace near zero everywhere and a clear attack
  a trace everywhere; a trace strong in some parts of the face and absent in others is a face the
  network itself reads two ways.

`fit_abstention` turns a statistic into a level on a validation split: the `quantile` (default 0.99)
of the statistic over the validation bona fide the model accepts at its operating threshold. A frame
that would count as live (score below the threshold) with the statistic above that level is `unknown`
(the decision policy's `uncertain` reason); a frame scored as an attack stays an attack. So
abstention costs about 1% of accepted genuine frames and catches whatever share of accepted attacks
stands out; the evaluation report measures both on held-out data. `fit_map_scales` gives the
viewer an absolute colour scale per map (0 to the validation 99th percentile of its pixel values), so
a live face's small trace stays blue instead of being stretched to red frame by frame.
"""

from __future__ import annotations

import numpy as np

from edge_fas.types import ModelOutput

__all__ = ["STATISTICS", "face_statistic", "map_values", "map_peaks", "fit_abstention", "abstention_rates", "fit_map_scales",
           "INNER_FACE"]

STATISTICS = ("uncertainty", "trace_dispersion")
INNER_FACE = 0.7  # the statistic is taken on the central 70% of the crop: the face, not its surroundings


def _inner(a: np.ndarray) -> np.ndarray:
    """The central INNER_FACE part of the last two axes."""
    h, w = a.shape[-2:]
    dy, dx = int(round(h * (1 - INNER_FACE) / 2)), int(round(w * (1 - INNER_FACE) / 2))
    return a[..., dy:h - dy or None, dx:w - dx or None]


def map_values(output: ModelOutput, kind: str) -> np.ndarray | None:
    """The 2-D map per sample (B, H, W) the viewer draws: trace -> per-pixel magnitude over channels;
    uncertainty -> mean over modalities. None when the output has no such map."""
    if kind not in ("trace", "uncertainty"):
        raise ValueError(f"map kind {kind!r}: expected trace or uncertainty")
    a = getattr(output, kind)
    if a is None:
        return None
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise ValueError(f"{kind} map of shape {a.shape}: expected (B, C, H, W)")
    return np.sqrt((a ** 2).sum(axis=1)) if kind == "trace" else a.mean(axis=1)


def face_statistic(output: ModelOutput) -> tuple[str, np.ndarray] | None:
    """(statistic name, per-sample value (B,)) for a batch of model outputs, or None when the model
    yields neither an uncertainty nor a trace map. MMDG's uncertainty wins when both exist."""
    if output.uncertainty is not None:
        return "uncertainty", _inner(map_values(output, "uncertainty")).reshape(len(output), -1).mean(axis=1)
    if output.trace is not None:
        return "trace_dispersion", _inner(map_values(output, "trace")).reshape(len(output), -1).std(axis=1)
    return None


def map_peaks(output: ModelOutput) -> dict[str, np.ndarray]:
    """Per sample, the 99th percentile of each map's pixel values (for fit_map_scales)."""
    out = {}
    for kind in ("trace", "uncertainty"):
        v = map_values(output, kind)
        if v is not None:
            out[kind] = np.percentile(v.reshape(len(v), -1), 99, axis=1)
    return out


def fit_abstention(statistic: str, values, accepted_bona_fide, accepted_attack, split: str,
                   quantile: float = 0.99) -> dict:
    """The manifest's `abstention` section: the level above which a frame that would count as live is
    `unknown` instead.

    values: the statistic per validation sample; accepted_bona_fide / accepted_attack: masks of the
    bona fide and attack samples scored below the operating threshold. The level is the `quantile` of
    the values over the accepted bona fide: the genuine faces the model lets through define what
    normal looks like, and abstention fires on about 1 - quantile of them."""
    if statistic not in STATISTICS:
        raise ValueError(f"abstention statistic {statistic!r}: expected one of {', '.join(STATISTICS)}")
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    ok = np.asarray(accepted_bona_fide, dtype=bool).reshape(-1)
    bad = np.asarray(accepted_attack, dtype=bool).reshape(-1)
    if v.shape != ok.shape or v.shape != bad.shape or not ok.any():
        raise ValueError("fit_abstention: needs the statistic per sample and at least one accepted bona fide sample")
    if not 0.5 <= quantile < 1.0:
        raise ValueError(f"fit_abstention: quantile {quantile} must lie in [0.5, 1)")
    level = float(np.quantile(v[ok], quantile))
    return {"statistic": statistic, "level": float(f"{level:.6g}"), "quantile": quantile, "split": split,
            "applies_to": "frames scored below the operating threshold (an attack-scored frame stays attack)",
            "on_validation": abstention_rates(v, ok, bad, level)}


def abstention_rates(values, accepted_bona_fide, accepted_attack, level: float) -> dict:
    """How often abstention fires on accepted bona fide (cost) and on accepted attacks (catch)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    fires = v > level
    ok = np.asarray(accepted_bona_fide, bool)
    bad = np.asarray(accepted_attack, bool)
    return {"accepted_bona_fide": int(ok.sum()), "abstains_on_bona_fide": int((fires & ok).sum()),
            "accepted_attacks": int(bad.sum()), "abstains_on_attacks": int((fires & bad).sum())}


def fit_map_scales(peaks: dict[str, np.ndarray], split: str) -> dict:
    """The manifest's `maps` section: {kind: {lo, hi}} from per-sample map peaks on validation."""
    scales = {}
    for kind, p in peaks.items():
        p = np.asarray(p, dtype=np.float64)
        if p.size:
            scales[kind] = {"lo": 0.0, "hi": float(f"{max(float(np.percentile(p, 99)), 1e-6):.6g}")}
    return {"scales": scales, "split": split,
            "meaning": "colour scale of the viewer's maps: lo -> blue, hi -> red, the same for every frame"}
