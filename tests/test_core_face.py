import os

import cv2
import matplotlib
import numpy as np
import pytest

from edge_fas import face
from edge_fas.errors import ArtifactError
from edge_fas.face import FaceDetector


@pytest.fixture(scope="module")
def grace_hopper():
    path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    return cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)


def test_bundled_blazeface_finds_a_real_face(grace_hopper):
    with FaceDetector() as det:
        dets = det.detect(grace_hopper)
        assert len(dets) == 1
        d = dets[0]
        assert d.score > 0.8
        x0, y0, x1, y1 = d.box
        assert 150 < x0 < 200 and 320 < x1 < 400 and 120 < y0 < 180 and 300 < y1 < 380
        assert d.keypoints.shape == (6, 2)
        # eyes above the mouth
        assert d.keypoints[0, 1] < d.keypoints[3, 1] and d.keypoints[1, 1] < d.keypoints[3, 1]
        assert det.detect(np.full((240, 320, 3), 128, np.uint8)) == []
        grey = cv2.cvtColor(grace_hopper, cv2.COLOR_RGB2GRAY)
        assert len(det.detect(grey)) == 1  # IR-like single-channel input works too


def test_tampered_face_model_is_refused(monkeypatch):
    monkeypatch.setattr(face, "FACE_MODEL_SHA256", "0" * 64)
    with pytest.raises(ArtifactError, match="face_detection_short_range.tflite.*reinstall"):
        FaceDetector()


def _far_face(grace_hopper, scale=0.25, at=(400, 260), size=(480, 640)):
    """Grace Hopper's photo shrunk so her face is ~8% of a 640-wide frame (a face at ~1.4 m on a D435's
    colour camera), pasted on a grey frame at `at`: (frame, the big photo's face box mapped to the frame)."""
    small = cv2.resize(grace_hopper, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = np.full(size + (3,), 110, np.uint8)
    x, y = at
    canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
    with FaceDetector(zoom_search=False) as det:
        big = det.detect(grace_hopper)[0].box
    return canvas, tuple(v * scale + o for v, o in zip(big, (x, y, x, y)))


def test_zoom_search_finds_a_face_too_small_for_the_whole_frame(grace_hopper):
    frame, expected = _far_face(grace_hopper)
    assert (expected[2] - expected[0]) / frame.shape[1] < 0.1
    with FaceDetector(zoom_search=False) as plain:
        assert plain.detect(frame) == []  # the premise: BlazeFace short-range misses it on the whole frame
    with FaceDetector() as det:
        assert det.detect(frame, zoom=False) == []  # this call's zoom search skipped (the pipeline's idle frames)
        found = det.detect(frame)
    assert len(found) == 1
    d = found[0]
    assert face.iou(d.box, expected) > 0.6, (d.box, expected)  # in the whole frame's pixels, not the tile's
    x0, y0, x1, y1 = d.box
    assert all(x0 <= kx <= x1 and y0 - 5 <= ky <= y1 for kx, ky in d.keypoints[:4])
    assert d.keypoints[0, 1] < d.keypoints[3, 1]  # eyes above the mouth


def test_zoom_search_looks_in_the_tracked_window_first(grace_hopper):
    frame, expected = _far_face(grace_hopper, at=(60, 40))
    with FaceDetector() as det:
        calls = []
        once = det._detect_once
        det._detect_once = lambda image: calls.append(image.shape) or once(image)
        assert det.detect(frame)
        assert len(calls) == 10  # the whole frame, then the 3 x 3 grid
        calls.clear()
        tracked = det.detect(frame, hint=expected)
        assert len(calls) == 2  # the whole frame, then the tracked box's window
        assert face.iou(tracked[0].box, expected) > 0.6
        calls.clear()
        assert det.detect(np.full((480, 640, 3), 110, np.uint8), hint=expected) == []
        assert len(calls) == 11  # the face left: its window is empty, so the whole grid is searched


def test_zoom_detections_must_be_small_and_confident():
    """False faces on zoomed tiles scored lower than true ones on the development seeds, and a face wider
    than a quarter of the frame is seen on the whole frame: a zoomed detection failing either is dropped."""
    det = FaceDetector.__new__(FaceDetector)  # no model needed: the tiles' detections are scripted
    det._detector, det.zoom_search, det.zoom_min_score = object(), True, 0.6
    shape = (480, 640, 3)
    scripted = {(320, 240): [face.Detection((10, 10, 60, 60), 0.9, np.zeros((6, 2), np.float32)),  # small, sure
                             face.Detection((100, 20, 150, 70), 0.55, np.zeros((6, 2), np.float32)),  # unsure
                             face.Detection((0, 0, 200, 200), 0.95, np.zeros((6, 2), np.float32))]}  # too wide
    det._detect_once = lambda image: [] if image.shape[:2] == shape[:2] else scripted.get(image.shape[1::-1], [])
    found = det.detect(np.zeros(shape, np.uint8))
    boxes = {d.box for d in found}
    assert all(d.score >= 0.6 and d.box[2] - d.box[0] <= 160 for d in found)
    assert (10, 10, 60, 60) in boxes and (330, 250, 380, 300) in boxes  # the tiles' offsets applied
    assert len(found) == 9  # one per grid window: the sure, small face each window reported


def test_grid_windows_hold_every_quarter_size_box_whole():
    rng = np.random.default_rng(0)
    shape = (480, 640)
    tiles = face.zoom_tiles(shape)
    for _ in range(2000):
        bw, bh = rng.uniform(1, 160), rng.uniform(1, 120)
        x0, y0 = rng.uniform(0, 640 - bw), rng.uniform(0, 480 - bh)
        box = (x0, y0, x0 + bw, y0 + bh)
        assert any(t[0] <= box[0] and t[1] <= box[1] and box[2] <= t[2] and box[3] <= t[3] for t in tiles), box
    assert face.hint_tile(shape, (600, 440, 630, 470)) == (320, 240, 640, 480)  # kept inside the frame
    assert face.hint_tile(shape, (0, 0, 400, 100)) is None  # wider than a window


def test_merge_prefers_the_order_given_and_drops_cut_duplicates():
    kp = np.zeros((6, 2), np.float32)
    whole = face.Detection((100, 100, 160, 160), 0.7, kp)
    cut = face.Detection((100, 100, 130, 160), 0.9, kp)  # the same face cut by a tile's edge, scored higher
    other = face.Detection((300, 300, 340, 340), 0.8, kp)
    tile = (0, 0, 130, 240)
    assert face.cut_by_tile(cut.box, tile, (480, 640)) and not face.cut_by_tile(whole.box, (0, 0, 320, 240), (480, 640))
    assert not face.cut_by_tile((0, 0, 50, 50), tile, (480, 640))  # the frame's own edge is no cut
    merged = face.merge_detections([whole, other, cut])
    assert merged == [other, whole]  # the cut copy lies inside the whole face: dropped; best score first


def test_a_face_whole_in_one_window_wins_over_its_copy_cut_by_another():
    det = FaceDetector.__new__(FaceDetector)  # no model needed: the windows' detections are scripted
    det._detector, det.zoom_search, det.zoom_min_score = object(), True, 0.6
    kp = np.zeros((6, 2), np.float32)
    replies = iter([[],  # the whole frame
                    [face.Detection((280, 100, 320, 160), 0.95, kp)],  # window (0, 0): cut at its right edge
                    [face.Detection((120, 100, 190, 160), 0.80, kp)]])  # window (160, 0): the same face, whole
    det._detect_once = lambda image: next(replies, [])
    found = det.detect(np.zeros((480, 640, 3), np.uint8))
    assert [d.box for d in found] == [(280, 100, 350, 160)]


def test_a_detector_whose_native_library_cannot_load_names_the_debian_packages(monkeypatch):
    # seen on a headless CUDA image: mediapipe's libmediapipe.so links libEGL.so.1 and libGLESv2.so.2
    from mediapipe.tasks.python.vision import FaceDetector as MpFaceDetector

    from edge_fas.errors import EdgeFasError
    from edge_fas.face import FaceDetector

    def missing_gl(options):
        raise OSError("libEGL.so.1: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(MpFaceDetector, "create_from_options", staticmethod(missing_gl))
    with pytest.raises(EdgeFasError, match=r"libEGL\.so\.1: cannot open.*install libegl1 and libgles2"):
        FaceDetector()
