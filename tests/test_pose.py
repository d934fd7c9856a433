"""The head-pose gate: depth gives the yaw and pitch against the line of sight, a head turned past the
limits is `unknown` with `face_turned` (never `attack`, never `live`), and the rendered rig's turned heads
are caught."""

import math

import numpy as np
import pytest

from edge_fas.calibration import register_to_color
from edge_fas.config import load_config
from edge_fas.pipeline import decision as D
from edge_fas.pipeline.pose import HeadPose, head_pose, pose_faults
from tests.test_physics import F, FACE_BOX, EYES_NOSE, FlatDepthPipelineFrames, face_with_nose, make, surface_frames
from tests.test_pipeline_faults import Runtime, judge

MOUTH = np.array([[320.0, 275.0]])
KEYPOINTS = np.vstack([EYES_NOSE, MOUTH])  # right eye, left eye, nose tip, mouth of the hand-built face


def tan(deg):
    return math.tan(math.radians(deg))


@pytest.mark.parametrize("yaw, pitch", [(0, 0), (12, 0), (-40, 0), (0, 30), (20, -15)])
def test_a_face_sloped_in_depth_reads_its_slope(yaw, pitch):
    # depth grows to the image's right: the face points right (+yaw); grows downwards: it points down (+pitch).
    # The dome is centred on the box's inner face (14 mm below the image centre), so frontal reads frontal.
    frames = surface_frames(lambda x, y: face_with_nose(x, y - 14) - tan(yaw) * x - tan(pitch) * y)
    pose = head_pose(frames, FACE_BOX, KEYPOINTS)
    assert pose.anchored
    # within 4 degrees: surface_frames spaces x and y at 0.6 m, the measurement at the face's median depth
    assert pose.yaw_deg == pytest.approx(yaw, abs=4) and pose.pitch_deg == pytest.approx(pitch, abs=4)
    turned = abs(yaw) > 30 or abs(pitch) > 25
    assert bool(pose_faults(pose, 30, 25)) == turned


def test_the_yaw_window_follows_the_eyes_and_mouth_not_the_box():
    # a turned head: the detector box still spans the visible outline, the features sit in its right part,
    # and only there the surface turns 40 degrees; the plane over the box's inner face reads far less
    keypoints = np.array([[345.0, 215.0], [385.0, 215.0], [370.0, 245.0], [365.0, 275.0]])

    def half_turned(x, y):
        return -np.where(x > 0, tan(40) * x, 0.0)
    frames = surface_frames(half_turned)
    anchored = head_pose(frames, FACE_BOX, keypoints)
    plane_only = head_pose(frames, FACE_BOX, None)
    assert anchored.anchored and not plane_only.anchored
    assert anchored.yaw_deg == pytest.approx(40, abs=4)  # 4: surface_frames is not exact perspective
    assert plane_only.yaw_deg < anchored.yaw_deg - 8, plane_only
    assert [D.reason_code(r) for r in pose_faults(anchored, 30, 25)] == [D.FACE_TURNED]


def plane_frames(point_mm, normal):
    """surface_frames' camera looking at the plane through `point_mm` with `normal` (exact depth per ray)."""
    frames = surface_frames(lambda x, y: 0.0 * x)
    h, w = frames.depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([(u - w / 2) / F, (v - h / 2) / F, np.ones_like(u)], -1)
    frames.depth = np.round(np.dot(normal, point_mm) / (rays @ np.asarray(normal, np.float64))).astype(np.uint16)
    return frames


def test_facing_the_camera_off_axis_reads_frontal():
    # a sheet off to the right of the image that faces the camera (its normal along the ray) is frontal;
    # the same sheet square to the optical axis is turned by the ray's angle
    box = (445, 165, 595, 335)
    centre = np.array([(520 - 320) / F, (250 - 240) / F, 1.0]) * 600.0
    facing = head_pose(plane_frames(centre, centre / np.linalg.norm(centre)), box, None)
    square = head_pose(plane_frames(centre, [0.0, 0.0, 1.0]), box, None)
    ray = math.degrees(math.atan2(520 - 320, F))
    assert facing.yaw_deg == pytest.approx(0, abs=1) and facing.pitch_deg == pytest.approx(0, abs=1)
    assert square.yaw_deg == pytest.approx(ray, abs=1) and ray > 18


def test_no_depth_no_pose_and_no_fault():
    frames = surface_frames(face_with_nose)
    frames.depth[:] = 0
    assert head_pose(frames, FACE_BOX, KEYPOINTS) is None and pose_faults(None, 30, 25) == []
    frames.depth = None
    assert head_pose(frames, FACE_BOX, KEYPOINTS) is None


def test_the_reason_names_the_direction_the_keys_and_the_fix():
    (text,) = pose_faults(HeadPose(-41.0, 28.0, True), 30, 25)
    assert text.startswith("face_turned:") and "turned 41 deg left" in text and "tilted 28 deg down" in text
    assert "decision.max_yaw_deg" in text and "face the camera" in text
    assert D.FACE_TURNED not in D.ATTACK_EVIDENCE
    assert pose_faults(HeadPose(float("nan"), 0.0, True), 30, 25)  # unmeasurable is never inside the limits


def test_rendered_turned_heads_are_turned_away_and_frontal_ones_are_not():
    from edge_fas.face import FaceDetector, detection_near
    from edge_fas.sim import RANGE_SETS, make_rig

    measured = {}
    with FaceDetector() as det:
        for rig_yaw in (0.0, 42.0, -42.0):
            ranges = RANGE_SETS["rand"].with_overrides(f"rand_yaw{rig_yaw:+.0f}", {"pose.yaw_deg": rig_yaw,
                                                                                 "pose.pitch_deg": 0.0})
            rig = make_rig(ranges.name, seed=3, ranges=ranges)
            for index in range(6):  # the first frame whose face the detector finds
                frames = rig.render("bona_fide", index=index, t=0.3)
                found = detection_near(det.detect(frames.rgb), frames.truth.face_box)
                if found is not None:
                    break
            assert found is not None, rig_yaw
            measured[rig_yaw] = head_pose(register_to_color(frames), found.box, found.keypoints)
    # the rig's positive yaw turns the face to the image's left
    assert abs(measured[0.0].yaw_deg) < 15 and not pose_faults(measured[0.0], 30, 25)
    assert measured[42.0].yaw_deg < -30 and measured[-42.0].yaw_deg > 30
    assert all(pose_faults(measured[y], 30, 25) for y in (42.0, -42.0))


class TurnedDepthPipelineFrames(FlatDepthPipelineFrames):
    """The stand-in frames with the sheet turned 45 degrees (depth grows to the image's right)."""

    @staticmethod
    def make(n):
        f = FlatDepthPipelineFrames.make(n)
        u = np.arange(f.depth.shape[1], dtype=np.float64)
        z = 500.0 + (u - 32.0) / 60.0 * 500.0 * tan(45)
        f.depth[:] = np.clip(z, 1, None).astype(np.uint16)[None, :]
        return f


def test_the_pipeline_says_unknown_for_a_turned_head_and_reports_the_pose():
    frames = [TurnedDepthPipelineFrames.make(i) for i in range(4)]
    p = make(Runtime(score=0.05), **{"decision.physics": "off"})
    verdicts = judge(p, frames)
    assert all(v.verdict == "unknown" for v in verdicts)
    assert all(any(D.reason_code(r) == D.FACE_TURNED for r in v.reasons) for v in verdicts)
    pose = verdicts[-1].to_dict()["pose"]
    assert pose["yaw_deg"] == pytest.approx(45, abs=3) and not pose["anchored"]
    wide = make(Runtime(score=0.05), **{"decision.physics": "off", "decision.max_yaw_deg": 60})
    assert judge(wide, frames)[-1].verdict == "live"
    frontal = judge(make(Runtime(score=0.05), **{"decision.physics": "off"}),
                    [FlatDepthPipelineFrames.make(i) for i in range(4)])
    assert frontal[-1].verdict == "live" and abs(frontal[-1].to_dict()["pose"]["yaw_deg"]) < 1


def test_a_pose_limit_past_45_degrees_is_a_weakening():
    from edge_fas.deployment import check_start
    from edge_fas.errors import ConfigError
    from tests.test_deployment_safety import _fake_artifact

    with pytest.raises(ConfigError, match="pose_check_off"):
        check_start(load_config(overrides={"decision.max_yaw_deg": 60}), "synthetic", _fake_artifact())
    accepted = load_config(overrides={"decision.max_pitch_deg": 50, "deployment.accept_risks": "pose_check_off"})
    assert check_start(accepted, "synthetic", _fake_artifact()) == ["pose_check_off"]
    assert check_start(load_config(), "synthetic", _fake_artifact()) == []
