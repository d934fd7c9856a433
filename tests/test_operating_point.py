"""Operating points: intervals against the exact binomial, thresholds at a target meeting it on the
validation scores, the validated range, the manifest record, and `edge-fas eval` on the bundled demo."""

import json
import math
from fractions import Fraction

import numpy as np
import pytest

from edge_fas import metrics, operating_point


def exact_cdf(k, n, p):
    """P(X <= k), X ~ Binomial(n, p), in exact rational arithmetic (independent of the code under test)."""
    p = Fraction(p)
    return float(sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1)))


@pytest.mark.parametrize("k, n", [(1, 10), (3, 60), (7, 40), (29, 30), (12, 200)])
def test_clopper_pearson_matches_the_exact_binomial(k, n):
    lo, hi, how = metrics.binomial_interval(k, n)
    assert how == "Clopper-Pearson" and lo < k / n < hi
    assert exact_cdf(k, n, hi) == pytest.approx(0.025, abs=1e-9)  # P(X <= k | hi) = alpha/2
    assert 1 - exact_cdf(k - 1, n, lo) == pytest.approx(0.025, abs=1e-9)  # P(X >= k | lo) = alpha/2


def test_zero_errors_rule_of_three():
    lo, hi, how = metrics.binomial_interval(0, 60)
    assert lo == 0.0 and "rule of 3" in how
    assert exact_cdf(0, 60, hi) == pytest.approx(0.05, abs=1e-12)  # one-sided exact bound
    assert hi == pytest.approx(3 / 60, rel=0.05)  # what the rule of 3 (3/n) approximates
    lo, hi, _ = metrics.binomial_interval(60, 60)
    assert hi == 1.0 and lo == pytest.approx(1 - metrics.binomial_interval(0, 60)[1])
    assert all(math.isnan(v) for v in metrics.binomial_interval(0, 0)[:2])
    # the published CP interval for 3/60 (e.g. R's binom.test): [0.01043, 0.13924]
    lo, hi, _ = metrics.binomial_interval(3, 60)
    assert (round(lo, 5), round(hi, 5)) == (0.01043, 0.13924)


def val_scores(seed=0, n=400):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(int)
    species = np.where(y == 0, "bona_fide", np.where(np.arange(n) % 4 == 1, "print", "flexible_mask"))
    s = np.where(y == 1, rng.beta(5, 2, n), rng.beta(2, 5, n))
    s = np.where(species == "flexible_mask", s * 0.8, s)  # the hard species scores lower
    return s, y, species


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.2])
def test_threshold_at_target_apcer_meets_it_on_validation_with_the_lowest_bpcer(rate):
    s, y, sp = val_scores()
    op = metrics.operating_threshold(s, y, f"apcer={rate}", sp)
    r = metrics.error_rates(s, y, op["threshold"], sp)
    assert op["met"] and r["apcer_max"] <= rate and r == op["rates"]
    # the next distinct score above the threshold would break the target: no lower BPCER meets it
    higher = s[s > op["threshold"]].min()
    assert metrics.error_rates(s, y, np.nextafter(higher, 2), sp)["apcer_max"] > rate
    assert op["threshold"] not in set(s.tolist())  # a midpoint, not a sample's own score


def test_threshold_at_target_bpcer_and_eer():
    s, y, sp = val_scores(1)
    op = metrics.operating_threshold(s, y, "bpcer=5%", sp)
    assert op["target"] == "bpcer=0.05" and op["rates"]["bpcer"] <= 0.05
    lower = s[s < op["threshold"]].max()
    assert metrics.error_rates(s, y, lower, sp)["bpcer"] > 0.05
    eer = metrics.operating_threshold(s, y, "eer", sp)
    t, _ = metrics.eer_threshold(s, y)
    assert metrics.error_rates(s, y, eer["threshold"])["bpcer"] == metrics.error_rates(s, y, t)["bpcer"]


@pytest.mark.parametrize("bad", ["apcer", "apcer=0", "apcer=1.5", "far=0.01", "apcer=abc"])
def test_bad_targets_are_refused_with_the_fix(bad):
    with pytest.raises(ValueError, match="apcer=RATE|rate"):
        metrics.parse_target(bad)


def test_validated_range_holds_the_threshold_and_the_contested_scores():
    s, y, sp = val_scores(2)
    op = metrics.operating_threshold(s, y, "apcer=0.05", sp)
    lo, hi = metrics.validated_range(s, y, op["threshold"], sp)
    assert lo <= op["threshold"] <= hi and 0.0 < lo < hi < 1.0
    assert metrics.error_rates(s, y, lo, sp)["apcer_max"] == 0.0  # below lo: only more bona fide rejected
    assert metrics.error_rates(s, y, hi, sp)["bpcer"] == 0.0  # above hi: only more attacks accepted


def test_manifest_record_is_consistent_and_carries_intervals():
    s, y, sp = val_scores(3)
    t_s, t_y, t_sp = val_scores(4)
    op = operating_point.choose(s, y, sp, "apcer=0.05", "toy validation", (t_s, t_y, t_sp, "toy test"),
                                all_species=["print", "flexible_mask", "replay"])
    assert set(op) >= {"target", "threshold", "validated_range", "split", "evidence"}
    test = op["evidence"]["test"]
    assert test["apcer"]["replay"]["n"] == 0  # an expected species with no sample is listed, not hidden
    fm = test["apcer"]["flexible_mask"]
    assert fm["errors"] == int(np.sum((t_sp == "flexible_mask") & (t_s < op["threshold"])))
    assert fm["ci95"][0] <= fm["rate"] <= fm["ci95"][1]
    assert op["evidence"]["validation"]["met"] and op["evidence"]["validation"]["apcer_max"]["rate"] <= 0.05
    section = operating_point.threshold_section(op)
    assert section["value"] == op["threshold"] and "validation" in section["split"]
    table = operating_point.evidence_table(test, "test")
    assert "| APCER replay | n/a | n/a | 0/0 |" in table and "| BPCER |" in table
    json.dumps(op, allow_nan=False)


def test_eval_scores_the_bundled_demo_through_its_runtime(tmp_path):
    from edge_fas.cli import main

    out = tmp_path / "rep"
    assert main(["eval", "demo", "--out", str(out), "--domains", "surf", "--per-domain", "8", "--rig-size",
                 "160x120", "--seed", "3", "--target", "eer", "--cache-dir", str(tmp_path / "c"), "--no-plots"]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["operating_point"]["target"] == "eer" and doc["metrics"]["threshold_source"] == "given"
    assert doc["metrics"]["threshold"] == pytest.approx(doc["operating_point"]["threshold"])
    assert "onnxruntime" in doc["meta"]["scored_by"] and doc["meta"]["calibration"]["method"] == "isotonic"
    md = (out / "metrics.md").read_text()
    assert "95% interval" in md and "Score calibration" in md


def test_an_operating_point_that_refuses_most_people_is_called_out_where_it_is_loaded(capsys):
    from types import SimpleNamespace

    from edge_fas.commands.run import _warn_if_it_refuses_most_people

    def op(bpcer, threshold=0.0415):
        return {"target": "apcer=0.05", "threshold": threshold,
                "evidence": {"validation": {"bpcer": {"rate": bpcer, "errors": round(bpcer * 491), "n": 491},
                                            "apcer_max": {"rate": 0.049, "species": "flexible_mask"}}}}

    text = operating_point.refusal_warning(op(0.88))
    assert "88% of people" in text and "432 of 491" in text and "flexible_mask (APCER 4.9% there)" in text
    assert operating_point.refusal_warning(op(0.29)) is None  # the bundled model's 29%: not most people
    assert operating_point.refusal_warning({"target": "eer", "threshold": 0.5}) is None  # no evidence recorded
    assert operating_point.refusal_warning(None) is None
    # `edge-fas run` says it when that operating point is the one in use, not when the config moved the threshold
    _warn_if_it_refuses_most_people(SimpleNamespace(manifest={"operating_point": op(0.88)}), 0.0415)
    assert "edge-fas run: warning: operating point apcer=0.05" in capsys.readouterr().err
    _warn_if_it_refuses_most_people(SimpleNamespace(manifest={"operating_point": op(0.88)}), 0.3)
    assert capsys.readouterr().err == ""
