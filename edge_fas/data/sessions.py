"""Face crops from recorded sessions (drivers/session.py): field data for fine-tuning at a new site.

Each take contributes `frames_per_take` evenly spaced frames. Depth and IR are registered to colour
(edge_fas.calibration.register_to_color) when the session stored them raw. The face box comes from
the BlazeFace detector, as in the live pipeline: the detection overlapping the frame's truth box
when it has one (synthetic sessions), else the largest face; the truth box itself only where the
detector finds nothing near it. Frames with no face are skipped and counted in the CropSet's meta.
The domain is the session's domain (its site), the species the take's label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_fas.data.crops import CropSet
from edge_fas.face import detection_near
from edge_fas.preprocess import PreprocessParams, crop_face

__all__ = ["session_crops"]


def session_crops(paths, params: PreprocessParams | None = None, frames_per_take: int = 10, detector=None) -> CropSet:
    from edge_fas.drivers.session import SessionReader

    params = params or PreprocessParams()
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    crops, labels, species, domains = [], [], [], []
    skipped, own_detector = 0, None
    try:
        for p in paths:
            if not Path(p).exists():
                raise FileNotFoundError(f"session {p} does not exist; pass a folder written by `edge-fas record`/`collect`")
            reader = SessionReader(p)
            for take in reader.takes:
                frames = list(reader.frames(take=take.id))
                if not frames:
                    continue
                pick = np.unique(np.linspace(0, len(frames) - 1, min(frames_per_take, len(frames))).round().astype(int))
                for k in pick:
                    f = frames[k]
                    if not f.registered and (f.depth is not None or f.ir is not None) and f.calibration is not None:
                        from edge_fas.calibration import register_to_color

                        f = register_to_color(f)
                    truth_box = f.truth.face_box if f.truth is not None else None
                    box = None
                    if f.rgb is not None:  # the detector frames the crop, as live
                        if detector is None and own_detector is None:
                            from edge_fas.face import FaceDetector

                            own_detector = FaceDetector()
                        dets = (detector or own_detector).detect(f.rgb)
                        if truth_box is not None:
                            near = detection_near(dets, truth_box)
                            box = near.box if near is not None else truth_box
                        elif dets:
                            box = max(dets, key=lambda d: d.area).box
                    box = box if box is not None else truth_box
                    if box is None:
                        skipped += 1
                        continue
                    crops.append(crop_face(f, box, params))
                    labels.append(int(take.label))
                    species.append(take.species or ("attack" if take.label else "bona_fide"))
                    domains.append(reader.domain or Path(p).name)
    finally:
        if own_detector is not None:
            own_detector.close()
    cs = CropSet.from_crops(crops, labels, species, domains,
                            meta={"source": "sessions", "sessions": [str(p) for p in paths], "skipped_no_face": skipped})
    return cs
