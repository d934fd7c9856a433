import math

import pytest

from edge_fas.config import load_config
from edge_fas.pipeline.decision import (ATTACK_EVIDENCE, NO_FACE, REPEATED_FRAME, DecisionPolicy, reason,
                                        reason_code)


def run(policy, scores):
    return [policy.decide(s).verdict for s in scores]


def test_live_needs_min_live_frames_then_holds():
    p = DecisionPolicy(0.5, window=5, min_live_frames=3, hysteresis=0.05)
    assert run(p, [0.1, 0.1, 0.1, 0.1]) == ["unknown", "unknown", "live", "live"]


def test_single_attack_frame_ends_live_immediately():
    p = DecisionPolicy(0.5, window=5, min_live_frames=3)
    run(p, [0.1] * 5)
    v = p.decide(0.9)
    assert v.verdict != "live"
    # attack once attack frames are at least as many as live ones in the window
    assert run(p, [0.95, 0.95]) == ["unknown", "attack"]


def test_consistent_attack_scores_say_attack():
    p = DecisionPolicy(0.5, window=5, min_live_frames=3)
    assert run(p, [0.9, 0.8, 0.7]) == ["attack", "attack", "attack"]
    assert reason_code(p.decide(0.9).reasons[0]) == "attack_score"


def test_hysteresis_margin_needed_to_flip_a_standing_attack():
    p = DecisionPolicy(0.5, window=5, min_live_frames=2, hysteresis=0.1)
    assert run(p, [0.9, 0.9, 0.9])[-1] == "attack"
    # 0.45 is below the threshold but within the margin: it never turns a standing attack into live
    assert "live" not in run(p, [0.45] * 8)
    assert run(p, [0.3] * 5)[-1] == "live"
    # from no standing verdict (a fresh face) consistent sub-threshold frames are enough
    p.reset()
    assert run(p, [0.45, 0.45]) == ["unknown", "live"]


def test_fault_gives_unknown_with_reason_and_discards_live_evidence():
    p = DecisionPolicy(0.5, window=5, min_live_frames=3)
    run(p, [0.1] * 5)
    v = p.decide(0.1, [reason(NO_FACE)])
    assert v.verdict == "unknown" and v.reasons == ["no_face"]
    # live evidence must be rebuilt from scratch
    assert run(p, [0.1, 0.1, 0.1]) == ["unknown", "unknown", "live"]


def test_attack_evidence_fault_gives_attack():
    assert REPEATED_FRAME in ATTACK_EVIDENCE
    p = DecisionPolicy(0.5)
    v = p.decide(0.01, [reason(REPEATED_FRAME, "rgb identical to previous frame")])
    assert v.verdict == "attack"
    assert reason_code(v.reasons[0]) == REPEATED_FRAME


@pytest.mark.parametrize("bad", [math.nan, -0.1, 1.5])
def test_invalid_score_fails_closed(bad):
    p = DecisionPolicy(0.5, window=1, min_live_frames=1)
    v = p.decide(bad)
    assert v.verdict == "unknown" and reason_code(v.reasons[0]) == "runtime_error"


def test_no_score_and_no_fault_is_not_live():
    p = DecisionPolicy(0.5, window=1, min_live_frames=1)
    assert p.decide(None).verdict == "unknown"


def test_threshold_from_config_overrides_artifact():
    cfg = load_config(overrides={"decision.threshold": 0.2})
    assert DecisionPolicy.from_config(cfg.decision, 0.7).threshold == 0.2
    cfg = load_config()
    assert DecisionPolicy.from_config(cfg.decision, 0.7).threshold == 0.7


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="threshold"):
        DecisionPolicy(1.5)
    with pytest.raises(ValueError, match="min_live_frames"):
        DecisionPolicy(0.5, window=2, min_live_frames=3)
