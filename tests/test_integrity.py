import numpy as np
import pytest

from edge_fas.pipeline.decision import reason_code
from edge_fas.pipeline.integrity import IntegrityChecker
from edge_fas.types import DeviceInfo, FrameSet


def make(n, serial="A1", skew=0.0, drop=(), seed=None):
    rng = np.random.default_rng(n if seed is None else seed)
    f = FrameSet(rgb=rng.integers(0, 255, (24, 32, 3), dtype=np.uint8),
                 depth=rng.integers(300, 900, (24, 32), dtype=np.uint16),
                 ir=rng.integers(0, 255, (24, 32), dtype=np.uint8),
                 timestamps={"rgb": n * 33.3 + skew, "depth": n * 33.3, "ir": n * 33.3},
                 counters={"rgb": n, "depth": n, "ir": n}, device=DeviceInfo(serial=serial))
    for m in drop:
        setattr(f, m, None)
    return f


def codes(faults):
    return {reason_code(f) for f in faults}


def test_clean_stream_passes():
    c = IntegrityChecker()
    assert all(c.check(make(i), age_ms=5) == [] for i in range(5))


def test_counter_that_does_not_advance_is_stale():
    c = IntegrityChecker()
    c.check(make(3))
    assert "stale_frame" in codes(c.check(make(3, seed=99)))
    assert "stale_frame" in codes(c.check(make(2, seed=98)))
    assert c.check(make(4)) == []


def test_identical_frame_is_replay_even_with_new_counters():
    c = IntegrityChecker()
    c.check(make(1, seed=7))
    assert codes(c.check(make(2, seed=7))) == {"repeated_frame"}


def test_missing_required_modality():
    c = IntegrityChecker(required_modalities=("rgb", "depth", "ir"))
    faults = c.check(make(0, drop=("ir",)))
    assert codes(faults) == {"missing_modality"} and "ir" in faults[0]
    assert IntegrityChecker(required_modalities=("rgb", "depth")).check(make(0, drop=("ir",))) == []


def test_skew_and_age():
    c = IntegrityChecker(max_skew_ms=10, max_frame_age_ms=100)
    assert codes(c.check(make(0, skew=25.0))) == {"stream_skew"}
    assert codes(c.check(make(1), age_ms=250)) == {"stale_frame"}


def test_serial_allow_list():
    c = IntegrityChecker(allowed_serials=["A1"])
    assert c.check(make(0, serial="A1")) == []
    assert codes(c.check(make(1, serial="B2"))) == {"serial_not_allowed"}


def test_reset_after_reconnect_accepts_restarted_counters():
    c = IntegrityChecker()
    c.check(make(10))
    c.reset()
    assert c.check(make(0)) == []


def test_bad_required_modality_named():
    with pytest.raises(ValueError, match="thermal"):
        IntegrityChecker(required_modalities=("rgb", "thermal"))
