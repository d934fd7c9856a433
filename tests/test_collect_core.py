"""Collect without Qt: labels and consent gate, face check on the synthetic rig, the take recorder."""

import threading
import time

import numpy as np
import pytest

from edge_fas.apps.collect import SPECIES, CollectError, TakeRecorder, TakeSpec, face_check, new_subject_id
from edge_fas.types import FrameSet


class MemoryWriter:
    """Records the calls a SessionWriter receives; `delay_s` simulates a slow disk."""

    def __init__(self, delay_s=0.0, fail_at=None):
        self.calls, self.frames = [], []
        self.delay_s, self.fail_at = delay_s, fail_at
        self.gate = threading.Event()
        self.gate.set()

    def begin_take(self, **labels):
        self.calls.append(("begin", labels))

    def write(self, frames):
        self.gate.wait()
        time.sleep(self.delay_s)
        if self.fail_at is not None and len(self.frames) == self.fail_at:
            raise OSError("No space left on device")
        self.frames.append(frames)

    def end_take(self):
        self.calls.append(("end", len(self.frames)))


def _frame(n):
    return FrameSet(rgb=np.zeros((4, 4, 3), np.uint8), counters={"rgb": n})


def test_species_match_the_synthetic_rig():
    from edge_fas.sim import SPECIES as SIM_SPECIES
    assert SPECIES == tuple(SIM_SPECIES)


def test_consent_gate_and_pseudonymous_ids():
    assert TakeSpec(new_subject_id(), "bona_fide", consent=True).problems() == []
    # a real camera shows a person in every take, attacks too (the presenter, the face on a print or mask)
    for species in ("bona_fide", "print"):
        with pytest.raises(CollectError, match="consent"):
            TakeSpec("S-0001", species).check()
    assert TakeSpec(new_subject_id(), "print", synthetic=True).problems() == []  # the rig shows nobody
    assert TakeSpec(new_subject_id(), "bona_fide", synthetic=True).problems() == []
    for bad in ("jane.doe@example.org", "Jane Doe", "", "x", "John.Smith"):
        assert any("pseudonym" in p for p in TakeSpec(bad, "print", consent=True).problems()), bad
    assert any("species" in p for p in TakeSpec("S-1", "mannequin", consent=True).problems())
    assert any("did you mean 'bona_fide'" in p for p in TakeSpec("S-1", "bonafide", consent=True).problems())
    assert TakeSpec("S-1", "print").label == 1 and TakeSpec("S-1", consent=True).label == 0


def test_refused_take_writes_nothing():
    w = MemoryWriter()
    with pytest.raises(CollectError, match="consent"):
        TakeRecorder(w, TakeSpec("S-1", "bona_fide", consent=False))
    assert w.calls == []


def test_recorder_writes_every_frame_in_order():
    w = MemoryWriter(delay_s=0.001)
    rec = TakeRecorder(w, TakeSpec("S-7", "replay", site="lab", domain="surf", notes="tablet", consent=True),
                       queue_frames=4)
    for n in range(30):
        rec.put(_frame(n))
    assert rec.finish() == 30
    assert [f.counter for f in w.frames] == list(range(30))
    assert w.calls[0] == ("begin", {"label": 1, "species": "replay", "subject_id": "S-7", "consent": True,
                                    "notes": "tablet"})
    assert w.calls[-1] == ("end", 30)


def test_slow_disk_stops_the_take_cleanly_never_silently():
    w = MemoryWriter()
    w.gate.clear()  # the disk stalls
    rec = TakeRecorder(w, TakeSpec("S-2", "print", consent=True), queue_frames=3, put_timeout_s=0.05)
    with pytest.raises(CollectError, match="cannot keep up"):
        for n in range(10):
            rec.put(_frame(n))
    accepted = n  # frames put before the one refused
    with pytest.raises(CollectError, match="stopped"):
        rec.put(_frame(99))
    w.gate.set()
    assert rec.finish() == accepted == len(w.frames)
    assert [f.counter for f in w.frames] == list(range(accepted))


def test_write_error_is_reported_by_finish():
    w = MemoryWriter(fail_at=2)
    rec = TakeRecorder(w, TakeSpec("S-3", "print", consent=True))
    for n in range(5):
        rec.put(_frame(n))
    with pytest.raises(CollectError, match="No space left"):
        rec.finish()
    assert len(w.frames) == 2 and w.calls[-1] == ("end", 2)


@pytest.fixture(scope="module")
def rig_frame():
    from edge_fas.sim import Rig
    return Rig("surf", seed=0, width=320, height=240, emitter=True).render("bona_fide", 0, 0.0)


@pytest.fixture(scope="module")
def detector():
    from edge_fas.face import FaceDetector
    with FaceDetector() as d:
        yield d


def test_face_check_on_the_synthetic_rig(rig_frame, detector):
    c = face_check(rig_frame, detector)
    assert c.ok and c.face_found, c.text()
    assert abs(c.distance_m - rig_frame.truth.distance_m) < 0.1
    assert "face found" in c.text() and "rgb✓" in c.text()
    far = face_check(rig_frame, detector, max_distance_m=0.2)
    assert not far.ok and "outside" in far.text()
    no_ir = face_check(rig_frame.replace(ir=None), detector)
    assert not no_ir.ok and "ir stream missing" in no_ir.issues
    blank = face_check(rig_frame.replace(rgb=np.zeros_like(rig_frame.rgb), ir=None), detector)
    assert not blank.face_found and "no face in view" in blank.issues and blank.distance_m is None
