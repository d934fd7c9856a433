"""Which way the face points, from registered depth: the working-pose gate (`face_turned`).

The network, the physics check's limits and the calibrated thresholds were all set on heads turned at
most 30 degrees from the camera (the synthetic rig's pose range). A head turned further is outside what
anything was validated on, and there the physics check's nose test misreads more live faces as sheets (6 of
45 heads turned 35-50 degrees on fresh rig seeds, 2 of 137 inside the range). So the pipeline says
`unknown` with the reason `face_turned` and the angle, and the person is asked to face the camera, as
commercial liveness checks do. Like the working-distance limits it can only withhold `live`, never grant it;
a pose that cannot be compared with the limits (NaN) counts as past them.

The pose is measured in depth, not guessed from the detector's keypoints: on the rig's development seeds
(0-1) a generic head model fitted to BlazeFace's six keypoints was off by 8 degrees (median) and by 20 at
the 95th percentile even after its scale was corrected by least squares, and on a tilted print it
measures the photo's pose, not the sheet's.
- yaw: the slope of a plane fitted to the depth of the eyes-to-mouth region, the window spanning the eye
  keypoints with half the eye distance to either side, from just above the eyes to just below the mouth.
  That window turns with the head. The plane over the detector box's inner face does not: the box follows
  the visible outline, so on a turned head it slides onto the near cheek, and a face is curved, so the plane
  there read the yaw at 0.6 of its true value (dev seeds: heads turned 35-50 degrees were caught 23 times
  in 39, against 37 with the anchored window);
- pitch: the slope of the plane over the inner face (the eyes-to-mouth window is too short to tilt well).
Both are relative to the line of sight to the face, not to the optical axis: a person at the edge of a
wide lens who looks into the camera faces it. Sign: positive yaw points the face to the image's right,
positive pitch points it down. benchmarks/bench_pose.py on fresh rig seeds (16-17): yaw off by 3.5-4.4
degrees (median), pitch by 0.9-4.3; at the default limits 4 of 129 live faces inside them turned away, 37 of
42 heads turned 35-50 degrees and 44 of 46 tilted 30-40 degrees caught.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge_fas.pipeline import decision as D
from edge_fas.pipeline.physics import FaceDepth, FaceSurface, face_depth, face_surface, least_squares

__all__ = ["HeadPose", "measure_head_pose", "head_pose", "pose_faults"]

WINDOW_SIDE = 0.5  # the yaw window reaches this many eye distances past each eye
WINDOW_ABOVE, WINDOW_BELOW = 0.3, 0.15  # ... above the eyes and below the mouth
MIN_WINDOW_DEPTHS = 50


@dataclass(frozen=True)
class HeadPose:
    yaw_deg: float  # + : the face points to the image's right
    pitch_deg: float  # + : the face points down
    anchored: bool  # the yaw came from the eyes-to-mouth window (else the inner face's plane)

    def to_dict(self) -> dict:
        return {"yaw_deg": round(self.yaw_deg, 2), "pitch_deg": round(self.pitch_deg, 2), "anchored": self.anchored}


def _window_yaw(depth_mm: np.ndarray, box, keypoints, z0: float, fx, fy, cx, cy) -> float | None:
    """Yaw (degrees, against the optical axis) of the plane over the eyes-to-mouth window; None without the
    keypoints or with too little depth there."""
    if keypoints is None or len(keypoints) < 4:
        return None
    kp = np.asarray(keypoints, dtype=np.float64)
    eyes_x = sorted((kp[0, 0], kp[1, 0]))
    eye_distance = max(eyes_x[1] - eyes_x[0], 0.25 * (box[2] - box[0]))  # a profile's eyes nearly meet
    eyes_y = 0.5 * (kp[0, 1] + kp[1, 1])
    h, w = depth_mm.shape
    x0 = max(0, int(eyes_x[0] - WINDOW_SIDE * eye_distance))
    x1 = min(w, int(math.ceil(eyes_x[1] + WINDOW_SIDE * eye_distance)))
    y0 = max(0, int(eyes_y - WINDOW_ABOVE * eye_distance))
    y1 = min(h, int(math.ceil(kp[3, 1] + WINDOW_BELOW * eye_distance)))
    if x1 - x0 < 6 or y1 - y0 < 6:
        return None
    patch = depth_mm[y0:y1, x0:x1]
    smooth = cv2.medianBlur(patch, 5)
    valid = (patch > 0) & (smooth > 0) & (np.abs(patch - z0) < 150.0)  # not hair or background behind
    if valid.sum() < MIN_WINDOW_DEPTHS:
        return None
    vv, uu = np.nonzero(valid)
    z = smooth[vv, uu].astype(np.float64)
    return _plane_angles((uu + x0 - cx) / fx * z, (vv + y0 - cy) / fy * z, z)[0]


def _plane_angles(x, y, z) -> tuple[float, float]:
    """(yaw, pitch) in degrees against the optical axis of the plane fitted to 3-D points (mm). Each point
    at its own depth, not the face's median: on a surface turned 20 degrees off-axis that is 1.7 degrees."""
    _, slope_x, slope_y = least_squares(np.stack([np.ones_like(x), x, y], 1), z)
    return math.degrees(math.atan(slope_x)), math.degrees(math.atan(slope_y))


def measure_head_pose(depth_mm: np.ndarray, box, keypoints, fx: float, fy: float, cx: float,
                      cy: float, surface: FaceSurface | None = None) -> HeadPose | None:
    """The face's yaw and pitch (degrees, relative to the line of sight) from a registered depth image (mm,
    0 = hole, float32), the detector box and keypoints (right eye, left eye, nose tip, mouth, ...; may be
    None). None when the face has too little depth. `surface`: the face's points when already measured."""
    surface = surface if surface is not None else face_surface(depth_mm, box, fx, fy, cx, cy)
    if surface is None:
        return None
    at_depth = surface.z / surface.z0  # face_surface spaces x and y at the median depth
    plane_yaw, pitch = _plane_angles(surface.x * at_depth, surface.y * at_depth, surface.z)
    yaw = _window_yaw(depth_mm, box, keypoints, surface.z0, fx, fy, cx, cy)
    anchored = yaw is not None
    if yaw is None:
        yaw = plane_yaw
    # relative to the ray to the face's centre: facing the camera off-axis reads 0
    u, v = 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])
    return HeadPose(yaw + math.degrees(math.atan2(u - cx, fx)), pitch + math.degrees(math.atan2(v - cy, fy)),
                    anchored)


def head_pose(frames, box, keypoints=None, face: FaceDepth | None = None) -> HeadPose | None:
    """measure_head_pose on a registered frame set (depth registered to colour); None without one. `face`:
    face_depth(frames, box) when the caller has it already (the pipeline shares it with the physics check)."""
    face = face if face is not None else face_depth(frames, box)
    if face is None or face.surface is None:
        return None
    k = face.k
    return measure_head_pose(face.depth_mm, box, keypoints, k.fx, k.fy, k.cx, k.cy, face.surface)


def pose_faults(pose: HeadPose | None, max_yaw_deg: float, max_pitch_deg: float) -> list[str]:
    """[`face_turned` reason] when the pose is past a limit; [] otherwise or when it was not measured (the
    pipeline's no-depth check covers a face without depth)."""
    if pose is None:
        return []
    past = []
    if not abs(pose.yaw_deg) <= max_yaw_deg:  # NaN is past the limit too: fail closed
        past.append(f"turned {abs(pose.yaw_deg):.0f} deg {'right' if pose.yaw_deg > 0 else 'left'} in the image "
                    f"> {max_yaw_deg:g}")
    if not abs(pose.pitch_deg) <= max_pitch_deg:
        way = "down" if pose.pitch_deg > 0 else "up"
        past.append(f"tilted {abs(pose.pitch_deg):.0f} deg {way} > {max_pitch_deg:g}")
    if not past:
        return []
    return [D.reason(D.FACE_TURNED, f"{', '.join(past)} (decision.max_yaw_deg/max_pitch_deg): face the camera")]
