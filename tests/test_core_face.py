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
