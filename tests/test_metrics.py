"""Metrics against cases worked out by hand (ISO/IEC 30107-3 names; score >= threshold = attack)."""

import json
import math

import numpy as np
import pytest

from edge_fas import metrics

# 4 bona fide, 4 attacks (2 print, 2 replay); the print at 0.35 sits below the bona fide at 0.4.
SCORES = [0.1, 0.2, 0.3, 0.4, 0.35, 0.6, 0.7, 0.9]
LABELS = [0, 0, 0, 0, 1, 1, 1, 1]
SPECIES = ["bona_fide"] * 4 + ["print", "print", "replay", "replay"]


def test_fixed_threshold_by_hand():
    r = metrics.evaluate(SCORES, LABELS, SPECIES, threshold=0.5)
    assert r["threshold_source"] == "given"
    assert r["apcer"] == {"print": 0.5, "replay": 0.0}   # 0.35 < 0.5 missed
    assert r["apcer_max"] == 0.5
    assert r["apcer_pooled"] == 0.25
    assert r["bpcer"] == 0.0
    assert r["hter"] == 0.125
    assert r["acer"] == 0.25
    assert r["accuracy"] == 7 / 8


def test_eer_threshold_used_and_labelled_when_none_given():
    r = metrics.evaluate(SCORES, LABELS, SPECIES)
    # at t=0.4: one attack (0.35) below, one bona fide (0.4) at/above -> 1/4 each
    assert r["threshold"] == 0.4
    assert r["threshold_source"] == "eer of evaluated scores"
    assert r["eer"] == 0.25
    assert r["hter_at_test_eer"] == 0.25
    assert r["auc"] == 15 / 16   # 0.35 loses only to 0.4
    # APCER <= 1/5/10% needs t <= 0.35, where the bona fide 0.4 is rejected: BPCER 1/4
    assert r["bpcer_at_apcer"] == {0.01: 0.25, 0.05: 0.25, 0.10: 0.25}
    # BPCER <= 1% first holds at t=0.6: 0.35 missed -> 7/8 correct
    assert r["accuracy_at_bpcer_1pct"] == 7 / 8


def test_ties():
    assert metrics.auc([0.5, 0.5], [0, 1]) == 0.5
    assert metrics.auc([0.2, 0.6, 0.6, 0.8], [0, 0, 1, 1]) == 0.875
    r = metrics.evaluate([0.5, 0.5], [0, 1], threshold=0.5)
    assert r["bpcer"] == 1.0 and r["apcer_pooled"] == 0.0  # equal to threshold counts as attack
    thr, eer = metrics.eer_threshold([0.5, 0.5], [0, 1])
    assert (thr, eer) == (0.5, 0.5)


def test_perfect_separation():
    r = metrics.evaluate([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])
    assert r["eer"] == 0.0 and r["auc"] == 1.0 and r["hter"] == 0.0
    assert r["threshold"] == 0.8


def test_one_class_empty_gives_nan_not_zero():
    r = metrics.evaluate([0.1, 0.7, 0.3], [0, 0, 0])
    assert r["threshold"] == 0.5 and "one class is empty" in r["threshold_source"]
    assert r["bpcer"] == pytest.approx(1 / 3)
    assert math.isnan(r["apcer_max"]) and r["apcer"] == {}
    assert math.isnan(r["eer"]) and math.isnan(r["auc"]) and math.isnan(r["hter"])
    assert all(math.isnan(v) for v in r["bpcer_at_apcer"].values())
    r = metrics.evaluate([0.9, 0.2], [1, 1], threshold=0.5)
    assert r["apcer_pooled"] == 0.5 and math.isnan(r["bpcer"])
    with pytest.raises(ValueError, match="both"):
        metrics.eer_threshold([0.1], [0])


def test_species_absent_is_reported_not_hidden():
    r = metrics.evaluate(SCORES, LABELS, SPECIES, threshold=0.5,
                         all_species=["print", "replay", "rigid_mask"])
    assert math.isnan(r["apcer"]["rigid_mask"]) and r["species_absent"] == ["rigid_mask"]
    assert r["apcer_max"] == 0.5  # the absent species does not enter the max
    j = metrics.json_ready(r)
    text = json.dumps(j, allow_nan=False)
    assert '"rigid_mask": null' in text and '"0.05": 0.25' in text


def test_without_species_all_attacks_pool():
    r = metrics.evaluate(SCORES, LABELS, threshold=0.5)
    assert r["apcer"] == {"attack": 0.25}


def test_curve_matches_pointwise_rates():
    rng = np.random.default_rng(0)
    s = rng.random(50)
    y = rng.integers(0, 2, 50)
    c = metrics.curve(s, y)
    for k in (0, 7, 20, len(c["threshold"]) - 1):
        e = metrics.error_rates(s, y, c["threshold"][k])
        assert c["apcer"][k] == pytest.approx(e["apcer_pooled"])
        assert c["bpcer"][k] == pytest.approx(e["bpcer"])
    # brute-force AUC over all pairs
    pos, neg = s[y == 1], s[y == 0]
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert metrics.auc(s, y) == pytest.approx(brute)


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="polarity"):
        metrics.evaluate([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="differ in length"):
        metrics.evaluate([0.1, 0.2], [0])
    with pytest.raises(ValueError, match="NaN"):
        metrics.evaluate([float("nan"), 0.2], [0, 1])


def test_auc_interval_brackets_the_auc_and_narrows_with_more_samples():
    from edge_fas.metrics import auc, auc_interval
    assert auc_interval([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == (1.0, 1.0)  # separated in every resample
    rng = np.random.default_rng(3)
    widths = []
    for n in (40, 400):
        y = np.repeat([0, 1], n)
        s = rng.normal(y * 1.0, 1.0)
        lo, hi = auc_interval(s, y)
        assert lo < auc(s, y) < hi
        widths.append(hi - lo)
    assert widths[1] < 0.5 * widths[0]
