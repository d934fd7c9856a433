import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest

from edge_fas.pipeline.mailbox import Mailbox
from edge_fas.pipeline.tracker import FaceTracker, face_distance_m, iou, select


def test_mailbox_keeps_only_newest_and_counts_drops():
    mb = Mailbox()
    for i in range(5):
        mb.put(i)
    assert mb.get(timeout=0) == 4
    assert mb.dropped == 4 and mb.put_count == 5
    assert mb.get(timeout=0.01) is None


def test_mailbox_get_wakes_on_put_and_on_close():
    mb = Mailbox()
    threading.Timer(0.05, mb.put, args=("x",)).start()
    assert mb.get(timeout=2) == "x"
    threading.Timer(0.05, mb.close).start()
    t0 = time.monotonic()
    assert mb.get(timeout=2) is None
    assert time.monotonic() - t0 < 1.5


@dataclass
class Det:
    box: tuple


def test_select_policies():
    small_center, big_corner = Det((90, 70, 110, 90)), Det((0, 0, 60, 60))
    assert select([small_center, big_corner], "largest") is big_corner
    assert select([small_center, big_corner], "center", image_shape=(160, 200)) is small_center
    depth = np.full((160, 200), 1.2, np.float32)
    depth[70:90, 90:110] = 0.5
    assert select([small_center, big_corner], "closest", depth_m=depth) is small_center
    assert select([], "largest") is None
    with pytest.raises(ValueError, match="detector.select"):
        select([small_center], "random")


def test_face_distance_ignores_holes():
    d = np.zeros((100, 100), np.float32)
    d[40:60, 40:60] = 0.6
    assert face_distance_m(d, (30, 30, 70, 70)) == pytest.approx(0.6)
    assert face_distance_m(np.zeros((10, 10), np.float32), (0, 0, 10, 10)) is None


def test_tracker_smooths_jitter_and_restarts_on_jump():
    tr = FaceTracker(smoothing=0.6)
    box, changed = tr.update((100, 100, 200, 200))
    assert changed and box == (100, 100, 200, 200)
    box, changed = tr.update((110, 100, 210, 200))
    assert not changed and box == (104, 100, 204, 200)  # 0.6 * old + 0.4 * new
    box, changed = tr.update((400, 300, 480, 380))
    assert changed and box == (400, 300, 480, 380)
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0


def test_tracker_forgets_after_missing_frames():
    tr = FaceTracker(max_missing=2)
    tr.update((0, 0, 50, 50))
    assert tr.update(None) == (None, False)
    assert tr.update(None) == (None, False)
    assert tr.update(None) == (None, True)
    assert tr.update((0, 0, 50, 50))[1] is True


def test_headless_sink_lines_and_truth_summary():
    import io
    import json

    from edge_fas.pipeline.pipeline import Result
    from edge_fas.pipeline.sinks import HeadlessSink
    from edge_fas.types import FrameSet, GroundTruth, Verdict

    out = io.StringIO()
    sink = HeadlessSink(out)
    cases = [(0, "live"), (0, "live"), (0, "unknown"), (1, "attack"), (1, "live"), (1, "attack")]
    for i, (label, verdict) in enumerate(cases):
        truth = GroundTruth(label, "bona_fide" if label == 0 else "print", face_box=(np.int64(1), 2, 3, 4))
        v = Verdict(verdict, score=0.3, threshold=0.5, latency_ms={"total": 10.0 * (i + 1)}, truth=truth)
        sink(Result(FrameSet(), v, "connected", {"frames": 6, "dropped": 1}))
    rows = [json.loads(x) for x in out.getvalue().splitlines()]
    assert len(rows) == 6 and rows[0]["truth"]["face_box"] == [1, 2, 3, 4]  # numpy values serialised
    s = sink.summary()
    assert s["by_verdict"] == {"live": 3, "unknown": 1, "attack": 2} and s["dropped"] == 1
    t = s["truth"]
    assert t["attack_judged_live"] == 1 and t["attack_judged_live_by_species"] == {"print": 1}
    assert t["accuracy_decided"] == pytest.approx(4 / 5) and t["bona_fide_live_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert t["unknown_rate"] == pytest.approx(1 / 6, abs=1e-4)
    assert s["latency_ms"]["p50"] == pytest.approx(35.0)


def test_systemd_watchdog_pings_only_on_healthy_fresh_frames(tmp_path):
    import socket

    from edge_fas.pipeline.pipeline import Result
    from edge_fas.pipeline.systemd import Watchdog
    from edge_fas.types import FrameSet, Verdict

    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(1)
    now = [0.0]
    wd = Watchdog(path, min_interval_s=1.0, clock=lambda: now[0])
    wd(Result(None, Verdict("unknown", reasons=["camera_stalled: no frame"])))  # stall: nothing sent
    wd(Result(FrameSet(), Verdict("unknown", reasons=["repeated_frame: rgb"])))  # replayed: nothing
    wd(Result(FrameSet(), Verdict("unknown", reasons=["no_face"])))  # empty kiosk is healthy
    assert server.recv(100).startswith(b"READY=1") and server.recv(100) == b"WATCHDOG=1"
    now[0] = 0.5
    wd(Result(FrameSet(), Verdict("live")))  # rate limited
    now[0] = 1.6
    wd(Result(FrameSet(), Verdict("live")))
    assert server.recv(100) == b"WATCHDOG=1" and wd.pings == 2
    server.close()
    assert Watchdog("").enabled is False


def _photo(name):
    import os

    import cv2
    import matplotlib

    from edge_fas.assets import faces

    path = (os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg") if name == "grace_hopper"
            else os.path.join(os.path.dirname(faces.__file__), "astronaut.jpg"))
    return cv2.resize(cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB), (640, 480))


def test_tracker_starts_over_when_someone_else_appears_in_the_same_place():
    """Overlap alone kept one face over two people (or a person and the photo they raise): the decision window began
    the new face with the last one's live frames. Real photos of two people, the second in the first's box."""
    from edge_fas.face import FaceDetector

    hopper, astronaut = _photo("grace_hopper"), _photo("astronaut")
    with FaceDetector() as detector:
        box = detector.detect(hopper)[0].box
    tr = FaceTracker()
    assert tr.update(box, hopper)[1] is True and tr.why == "first"
    # the same face a few pixels on, brighter and with some noise: the same face
    moved = np.clip(np.roll(hopper, 3, axis=1).astype(np.float32) * 1.3
                    + np.random.default_rng(0).normal(0, 4, hopper.shape), 0, 255).astype(np.uint8)
    shifted = (box[0] + 3, box[1], box[2] + 3, box[3])
    assert tr.update(shifted, moved)[1] is False
    assert tr.update(shifted, moved)[1] is False
    # someone else where she stood, found on the very next frame: a new face, though the boxes overlap
    assert iou(tr.box, shifted) > 0.9
    assert tr.update(shifted, astronaut)[1] is True and tr.why == "look"
    assert tr.update(shifted, astronaut)[1] is False  # and then that face goes on
    # no image: the look is not checked (overlap only, as before)
    assert tr.update(shifted, None)[1] is False


def test_tracker_starts_over_when_the_face_jumps_in_depth():
    tr = FaceTracker()
    tr.update((100, 100, 200, 200))
    assert tr.moved(0.60, 0.0) is False  # the first distance
    assert tr.moved(0.62, 33.3) is False  # 0.6 m/s: a person leaning in
    assert tr.moved(0.62, 66.6) is False and tr.moved(None, 100.0) is False  # no depth at the face: nothing said
    assert tr.moved(0.38, 133.3) is True and tr.why == "distance"  # 24 cm in 67 ms: a photo raised in front
    assert tr.moved(0.40, 166.6) is False  # speed from the new face's distance on
    assert tr.moved(0.90, 2000.0) is False  # a slow walk back over two seconds
    tr.update(None), tr.update(None), tr.update(None), tr.update(None)  # lost
    assert tr.moved(0.3, 2100.0) is False  # no face tracked: nothing to compare
    tr.update((100, 100, 200, 200))
    assert tr.moved(0.5, None) is False and tr.moved(0.52, None) is False  # no timestamps: 30 fps taken
    assert tr.moved(0.7, None) is True
