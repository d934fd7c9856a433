"""The real BlazeFace detector finds the synthetic faces: >= 95% of bona fide and >= 90% of attack frames
of a 200-frame sample at 640x480 across all four domains, distances 0.35-1.2 m, and every species."""

import numpy as np

from edge_fas.face import FaceDetector
from edge_fas.sim import ATTACK_SPECIES, DOMAINS, Rig


def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
    return ix / (area(a) + area(b) - ix + 1e-9)


def test_detector_finds_synthetic_faces_in_a_200_frame_sample():
    rigs = {d: Rig(d, seed=11) for d in DOMAINS}
    found = {"bona_fide": [], "attack": []}
    distances = []
    with FaceDetector() as detector:
        for i in range(200):
            domain = DOMAINS[(i // 2) % len(DOMAINS)]  # every domain gets bona fide and attacks
            species = "bona_fide" if i % 2 == 0 else ATTACK_SPECIES[(i // 2) % len(ATTACK_SPECIES)]
            frames = rigs[domain].render(species, i, t=0.1 * (i % 7))
            distances.append(frames.truth.distance_m)
            hit = any(iou(d.box, frames.truth.face_box) > 0.3 for d in detector.detect(frames.rgb))
            found["bona_fide" if species == "bona_fide" else "attack"].append(hit)
    assert min(distances) < 0.5 and max(distances) > 1.0  # the sample spans the working range
    assert np.mean(found["bona_fide"]) >= 0.95, np.mean(found["bona_fide"])
    assert np.mean(found["attack"]) >= 0.90, np.mean(found["attack"])
