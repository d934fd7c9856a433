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

from edge_fas.errors import ArtifactError

FACE_MODEL_FILE = "face_detection_short_range.tflite"
FACE_MODEL_SHA256 = "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"


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


class FaceDetector:
    """BlazeFace short-range (faces within ~2 m). Use as a context manager or call close()."""

    def __init__(self, min_score: float = 0.5):
        from mediapipe.tasks.python import BaseOptions
        from mediapipe.tasks.python.vision import FaceDetector as _MpFaceDetector
        from mediapipe.tasks.python.vision import FaceDetectorOptions, RunningMode

        options = FaceDetectorOptions(
            base_options=BaseOptions(model_asset_buffer=face_model_bytes()),
            running_mode=RunningMode.IMAGE,
            min_detection_confidence=min_score,
        )
        self._first_call = True
        with _quiet_native_logs():
            self._detector = _MpFaceDetector.create_from_options(options)
        # close it before interpreter teardown: mediapipe's own __del__ fails once its modules are gone
        self._finalizer = weakref.finalize(self, _close_quietly, self._detector)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in an RGB (H, W, 3) or grey (H, W) uint8 image, best score first."""
        import mediapipe as mp

        if self._detector is None:
            raise RuntimeError("FaceDetector is closed")
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.dtype != np.uint8:
            raise ValueError(f"face detection needs a uint8 image, got {image.dtype}")
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
