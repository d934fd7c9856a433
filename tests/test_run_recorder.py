"""`run --record`'s StreamRecorder: a disk too slow for the stream loses frames visibly, and every
take written holds consecutive frames only."""

import time

import pytest

from edge_fas.config import load_config
from edge_fas.drivers.session import SessionReader, SessionWriter
from edge_fas.drivers.synthetic import open_synthetic
from edge_fas.pipeline.recorder import StreamRecorder


def test_slow_disk_splits_takes_instead_of_leaving_gaps(tmp_path, monkeypatch, caplog):
    slow_write = SessionWriter.write

    def write(self, frames):
        time.sleep(0.02)  # a disk slower than the stream
        return slow_write(self, frames)

    monkeypatch.setattr(SessionWriter, "write", write)
    config = load_config(overrides={"camera.width": 96, "camera.height": 72})
    with open_synthetic("bona_fide", config, realtime=False, max_frames=60) as cam:
        recorder = StreamRecorder(tmp_path / "session", cam, queue_frames=3)
        for frames in cam.frames():
            recorder.put(frames)
        recorder.close()
    assert recorder.dropped > 0 and recorder.written + recorder.dropped == 60
    assert "not written" in caplog.text
    reader = SessionReader(tmp_path / "session")
    assert len(reader.takes) > 1
    counters = {}
    for take_id, i in reader.index():
        counters.setdefault(take_id, []).append(reader.load(take_id, i).counter)
    for seq in counters.values():
        assert seq == list(range(seq[0], seq[0] + len(seq))), seq  # no gap inside a take
    assert sum(map(len, counters.values())) == recorder.written


def test_unlabelled_stream_is_refused_with_the_fix(tmp_path):
    config = load_config(overrides={"camera.width": 96, "camera.height": 72})
    with open_synthetic("bona_fide", config, realtime=False, max_frames=2) as cam:
        recorder = StreamRecorder(tmp_path / "s", cam)
        for frames in cam.frames():
            recorder.put(frames.replace(truth=None))
        with pytest.raises(Exception, match="edge-fas collect"):
            recorder.close()
