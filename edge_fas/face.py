"""Face detection with the vendored BlazeFace model through mediapipe's Tasks FaceDetector."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import weakref
from dataclasses import dataclass
from importlib import resources

import numpy as np

from edge_fas.errors import ArtifactError, EdgeFasError

FACE_MODEL_FILE = "face_detection_short_range.tflite"
FACE_MODEL_SHA256 = "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
SEARCH_VERSION = 2  # how FaceDetector searches a frame (2: the 2x zoom search); caches of face crops key on it


def iou(a, b) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = box_area(a) + box_area(b) - inter
    return float(inter / union) if union > 0 else 0.0


def box_area(box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def detection_near(detections, box, min_iou: float = 0.3) -> "Detection | None":
    """The detection overlapping `box` most (at least `min_iou`): the detector's framing of a known face."""
    best = max(detections, key=lambda d: iou(d.box, box), default=None)
    return best if best is not None and iou(best.box, box) >= min_iou else None


@dataclass
class Detection:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels
    score: float
    keypoints: np.ndarray  # (6, 2) pixels: right eye, left eye, nose tip, mouth, right ear, left ear

    @property
    def area(self) -> int:
        return max(0, self.box[2] - self.box[0]) * max(0, self.box[3] - self.box[1])

    @property
    def center(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


def face_model_bytes() -> bytes:
    """The bundled BlazeFace model, verified against its recorded sha256."""
    data = resources.files("edge_fas.assets").joinpath(FACE_MODEL_FILE).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != FACE_MODEL_SHA256:
        raise ArtifactError(
            f"bundled face model {FACE_MODEL_FILE} has sha256 {digest}, expected {FACE_MODEL_SHA256}; "
            "the package is damaged or was modified: reinstall edge-fas")
    return data


@contextlib.contextmanager
def _quiet_native_logs():
    """Silence LiteRT's C++ INFO lines (written straight to fd 2) while the detector starts and stops.

    Python exceptions still propagate; set EDGE_FAS_NATIVE_LOGS=1 to see the native output.
    """
    if os.environ.get("EDGE_FAS_NATIVE_LOGS"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


ZOOM_GRID = (0.0, 0.25, 0.5)  # tile origins, as fractions of the frame: 3 x 3 half-size tiles overlapping by half
# Zoomed tiles show BlazeFace more background to mistake for a face. On the randomised rig's development seeds
# (0-1) its false detections there scored 0.51-0.69 (median 0.56) against 0.79 for true faces, and true faces
# it found were at most 0.21 of the frame's width: a bigger face is seen on the whole frame. So a zoomed
# detection must score ZOOM_SCORE_MARGIN above min_score and be at most ZOOM_MAX_WIDTH of the frame wide.
ZOOM_SCORE_MARGIN = 0.1
ZOOM_MAX_WIDTH = 0.25


def zoom_tiles(shape) -> list[tuple[int, int, int, int]]:
    """The 3 x 3 grid of half-size windows (x0, y0, x1, y1) for the 2x zoom search. Any face up to a
    quarter of the frame's width and height fits whole in one of them."""
    h, w = shape[:2]
    tw, th = w // 2, h // 2
    return [(int(fx * w), int(fy * h), int(fx * w) + tw, int(fy * h) + th) for fy in ZOOM_GRID for fx in ZOOM_GRID]


def hint_tile(shape, box) -> tuple[int, int, int, int] | None:
    """The half-size window centred on `box` (kept inside the frame), or None when the box does not fit."""
    h, w = shape[:2]
    tw, th = w // 2, h // 2
    if box is None or box[2] - box[0] > tw or box[3] - box[1] > th:
        return None
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0 = int(round(min(max(cx - tw / 2, 0), w - tw)))
    y0 = int(round(min(max(cy - th / 2, 0), h - th)))
    return x0, y0, x0 + tw, y0 + th


def merge_detections(ranked, min_iou: float = 0.3, min_inside: float = 0.6) -> list[Detection]:
    """Detections in the order given (the preferred first), less any that overlaps an earlier one
    (IoU >= min_iou) or lies mostly inside it; returned best score first."""
    kept: list[Detection] = []
    for d in ranked:
        def covered(k):
            x0, y0 = max(d.box[0], k.box[0]), max(d.box[1], k.box[1])
            x1, y1 = min(d.box[2], k.box[2]), min(d.box[3], k.box[3])
            inter = max(0, x1 - x0) * max(0, y1 - y0)
            return iou(d.box, k.box) >= min_iou or inter >= min_inside * max(d.area, 1)
        if not any(covered(k) for k in kept):
            kept.append(d)
    return sorted(kept, key=lambda d: -d.score)


def cut_by_tile(box, tile, shape, margin: int = 2) -> bool:
    """Whether `box` touches an edge of `tile` that is not the frame's edge (the face may go on beyond it)."""
    h, w = shape[:2]
    return ((box[0] <= tile[0] + margin and tile[0] > 0) or (box[1] <= tile[1] + margin and tile[1] > 0)
            or (box[2] >= tile[2] - margin and tile[2] < w) or (box[3] >= tile[3] - margin and tile[3] < h))


class FaceDetector:
    """BlazeFace short-range (faces within ~2 m). Use as a context manager or call close().

    BlazeFace short-range sees the frame at 128 x 128, so it misses faces under about an eighth of the
    frame's width: a face at 1.2-1.5 m on a 70-90 degree lens (a RealSense D435's colour camera at 1.5 m
    gives ~7%). With `zoom_search` (the default), a frame where the whole image shows no face is searched
    again at 2x on overlapping half-size tiles, the tracked box's window first; this costs nothing while a
    face is found on the whole frame."""

    def __init__(self, min_score: float = 0.5, zoom_search: bool = True):
        from mediapipe.tasks.python import BaseOptions
        from mediapipe.tasks.python.vision import FaceDetector as _MpFaceDetector
        from mediapipe.tasks.python.vision import FaceDetectorOptions, RunningMode

        options = FaceDetectorOptions(
            base_options=BaseOptions(model_asset_buffer=face_model_bytes()),
            running_mode=RunningMode.IMAGE,
            min_detection_confidence=min_score,
        )
        self._first_call = True
        self.zoom_search = bool(zoom_search)
        self.zoom_min_score = min(1.0, min_score + ZOOM_SCORE_MARGIN)
        try:
            with _quiet_native_logs():
                self._detector = _MpFaceDetector.create_from_options(options)
        except OSError as e:  # its native library links the GL loaders, which headless images often lack
            raise EdgeFasError(f"the face detector (mediapipe) cannot load its native library: {e}. It needs "
                               "libEGL.so.1 and libGLESv2.so.2 even on the CPU: on Debian/Ubuntu install libegl1 "
                               "and libgles2 (`make system-packages` does)") from e
        # close it before interpreter teardown: mediapipe's own __del__ fails once its modules are gone
        self._finalizer = weakref.finalize(self, _close_quietly, self._detector)

    def detect(self, image: np.ndarray, hint=None, zoom: bool = True) -> list[Detection]:
        """Faces in an RGB (H, W, 3) or grey (H, W) uint8 image, best score first. `hint`: the box tracked
        on the previous frame, whose 2x window the zoom search tries first (the whole grid only when it
        finds nothing there). zoom=False skips the zoom search on this call (the live pipeline spaces it
        out while no face is tracked)."""
        if self._detector is None:
            raise RuntimeError("FaceDetector is closed")
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.dtype != np.uint8:
            raise ValueError(f"face detection needs a uint8 image, got {image.dtype}")
        found = self._detect_once(image)
        if found or not (self.zoom_search and zoom):
            return found
        tracked = hint_tile(image.shape, hint)
        if tracked is not None:  # the tracked face's own window: one call per frame while it is followed
            found = self._detect_in(image, tracked)
            if found:
                return found
        # a face whole in one tile is preferred over the same face cut by another tile's edge
        found = [(cut_by_tile(d.box, t, image.shape), d)
                 for t in zoom_tiles(image.shape) for d in self._detect_in(image, t)]
        return merge_detections([d for _, d in sorted(found, key=lambda cd: (cd[0], -cd[1].score))])

    def _detect_in(self, image: np.ndarray, tile) -> list[Detection]:
        """Zoomed detections in one window of `image` (in the whole image's pixels) that pass the zoom
        search's stricter score and size limits."""
        x0, y0, x1, y1 = tile
        out = []
        for d in self._detect_once(image[y0:y1, x0:x1]):
            b = d.box
            if d.score < self.zoom_min_score or b[2] - b[0] > ZOOM_MAX_WIDTH * image.shape[1]:
                continue
            out.append(Detection((b[0] + x0, b[1] + y0, b[2] + x0, b[3] + y0), d.score,
                                 d.keypoints + np.array([x0, y0], dtype=np.float32)))
        return out

    def _detect_once(self, image: np.ndarray) -> list[Detection]:
        import mediapipe as mp

        h, w = image.shape[:2]
        mp_image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
        if self._first_call:  # LiteRT logs its set-up notes on the first inference
            with _quiet_native_logs():
                result = self._detector.detect(mp_image)
            self._first_call = False
        else:
            result = self._detector.detect(mp_image)
        out = []
        for d in result.detections:
            b = d.bounding_box
            x0, y0 = max(0, b.origin_x), max(0, b.origin_y)
            x1, y1 = min(w, b.origin_x + b.width), min(h, b.origin_y + b.height)
            kps = np.array([[k.x * w, k.y * h] for k in (d.keypoints or [])], dtype=np.float32).reshape(-1, 2)
            score = d.categories[0].score if d.categories else 0.0
            out.append(Detection((int(x0), int(y0), int(x1), int(y1)), float(score), kps))
        out.sort(key=lambda d: -d.score)
        return out

    def close(self) -> None:
        if self._detector is not None:
            self._detector = None
            self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()



def _close_quietly(detector) -> None:
    try:
        with _quiet_native_logs():
            detector.close()
    except Exception:  # noqa: BLE001 - at exit mediapipe's dispatcher is already shut down;
        detector._handle = None  # the process is ending: let its __del__ skip the close it cannot do
