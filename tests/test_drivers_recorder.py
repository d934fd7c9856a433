"""Recorder thread: everything queued is written, a full queue stops the take cleanly and says so."""

import threading

import numpy as np
import pytest

from edge_fas.drivers.recorder import Recorder
from edge_fas.drivers.session import SessionReader
from edge_fas.errors import RecordingError
from edge_fas.types import FrameSet


def _f(n):
    return FrameSet(rgb=np.full((8, 8, 3), n, np.uint8), depth=np.full((8, 8), n, np.uint16), counters={"depth": n})


def test_all_queued_frames_are_written(tmp_path):
    with Recorder(tmp_path / "s", take={"species": "print", "consent": True}, queue_frames=50) as rec:
        for n in range(20):
            rec.put(_f(n))
    assert rec.stats["written"] == 20 and rec.stats["error"] is None
    r = SessionReader(tmp_path / "s")
    assert [int(f.depth[0, 0]) for f in r] == list(range(20)) and r.takes[0].complete


def test_full_queue_ends_take_cleanly_and_raises(tmp_path):
    gate = threading.Event()
    rec = Recorder(tmp_path / "s", take={"species": "print", "consent": True}, queue_frames=3)
    real_write = rec._writer.write
    rec._writer.write = lambda f: (gate.wait(10), real_write(f))  # a disk that stalls
    with pytest.raises(RecordingError, match="could not keep up"):
        for n in range(10):
            rec.put(_f(n))
    gate.set()
    stats = rec.close()
    with pytest.raises(RecordingError, match="could not keep up"):
        rec.put(_f(99))
    r = SessionReader(tmp_path / "s")
    # what was accepted is on disk, in order, and the take is closed properly
    assert len(r) == stats["written"] >= 3 and r.takes[0].complete
    assert [int(f.depth[0, 0]) for f in r] == list(range(len(r)))


def test_write_error_is_reported(tmp_path):
    rec = Recorder(tmp_path / "s", take={"species": "print", "consent": True})
    rec.put(FrameSet(depth=np.zeros((4, 4), np.float32)))
    rec.close()
    assert "uint8 or uint16" in rec.stats["error"]
    with pytest.raises(RecordingError, match="failed after 0 frames"):
        rec.put(_f(1))
