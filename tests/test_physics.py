"""The physics check vetoes flat and cylindrical faces and IR-dark screens, passes a real (rendered)
face, never turns an attack into live, and decides alone only where the network cannot; abstention
fires on injected uncertainty."""

import numpy as np
import pytest

from edge_fas.calibration import Intrinsics, RigCalibration, register_to_color
from edge_fas.config import DecisionConfig, load_config
from edge_fas.pipeline import decision as D
from edge_fas.pipeline.decision import DecisionPolicy, reason_code
from edge_fas.pipeline.physics import PhysicsCheck, choose_mode
from edge_fas.types import DeviceInfo, FrameSet, ModelOutput
from tests.test_pipeline_faults import BOX, H, W, BoxDetector, Runtime, frame, judge

F = 600.0  # focal length (px) of the hand-built surfaces below


def surface_frames(height_mm, z_m=0.6, ir_level=120):
    """A registered 480x640 frame set whose depth is z_m minus height_mm(x_mm, y_mm) over the image."""
    h, w = 480, 640
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    x, y = (u - w / 2) / F * z_m * 1000, (v - h / 2) / F * z_m * 1000
    depth = np.round(z_m * 1000 - height_mm(x, y)).astype(np.uint16)
    k = Intrinsics(width=w, height=h, fx=F, fy=F, cx=w / 2, cy=h / 2)
    rng = np.random.default_rng(0)
    ir = np.clip(ir_level + rng.normal(0, 4, (h, w)), 0, 255).astype(np.uint8)
    return FrameSet(rgb=np.zeros((h, w, 3), np.uint8), depth=depth, ir=ir, registered=True,
                    calibration=RigCalibration(color=k, depth=k, ir=k))


FACE_BOX = (245, 165, 395, 335)  # about 15 cm at 0.6 m


def codes(findings):
    return {reason_code(f) for f in findings}


def test_flat_face_is_vetoed_even_tilted():
    res = PhysicsCheck().check(surface_frames(lambda x, y: 0.3 * x + 0.1 * y), FACE_BOX)
    assert codes(res.findings) == {D.FLAT_FACE} and res.measurements["plane_relief_mm"] < 3
    assert res.score > 0.5 and D.FLAT_FACE in D.ATTACK_EVIDENCE


def test_cylindrical_sheet_is_vetoed():
    r = 80.0  # a print bent round an 8 cm radius: well off any plane, but no nose
    res = PhysicsCheck().check(surface_frames(lambda x, y: np.sqrt(np.clip(r * r - x * x, 0, None)) - r), FACE_BOX)
    assert res.measurements["plane_relief_mm"] > 12 and res.measurements["quadric_relief_mm"] < 2
    assert codes(res.findings) == {D.NO_FACIAL_RELIEF} and res.score > 0.5


def test_dome_with_a_nose_passes_relief_and_a_dark_face_is_a_screen():
    def face(x, y):
        dome = 60 * np.sqrt(np.clip(1 - (x / 80) ** 2 - (y / 100) ** 2, 0, None))
        return dome + 22 * np.exp(-(x / 10) ** 2 - ((y - 5) / 25) ** 2)
    res = PhysicsCheck().check(surface_frames(face), FACE_BOX)
    assert res.findings == [] and res.score < 0.5 and res.measurements["quadric_relief_mm"] > 8
    dark = PhysicsCheck().check(surface_frames(face, ir_level=6), FACE_BOX)
    assert codes(dark.findings) == {D.FACE_DARK_IN_IR}


# BlazeFace's first keypoints (right eye, left eye, nose tip) where the hand-built face below has them:
# the nose at x = 0, y = +5 mm, the eyes 30 mm to either side and 25 mm up (1 px = 1 mm at 0.6 m)
EYES_NOSE = np.array([[290.0, 215.0], [350.0, 215.0], [320.0, 245.0]])


def face_with_nose(x, y):
    dome = 60 * np.sqrt(np.clip(1 - (x / 80) ** 2 - (y / 100) ** 2, 0, None))
    return dome + 22 * np.exp(-(x / 10) ** 2 - ((y - 5) / 25) ** 2)


def test_a_noisy_sheet_with_a_bump_off_the_nose_is_vetoed_at_the_keypoints():
    # low-frequency depth noise can lift a tilted sheet's residual past both relief limits; the nose keypoint
    # finds no nose there (time-of-flight cameras on the randomised rig: docs/demo-model.md)
    def sheet(x, y):
        return 0.3 * x + 0.1 * y + 25 * np.exp(-((x - 35) / 20) ** 2 - ((y - 40) / 20) ** 2)
    without = PhysicsCheck(checks=("relief",)).check(surface_frames(sheet), FACE_BOX)
    assert without.findings == [] and without.measurements["quadric_relief_mm"] > 4.5
    res = PhysicsCheck(checks=("relief",)).check(surface_frames(sheet), FACE_BOX, EYES_NOSE)
    assert abs(res.measurements["nose_over_eyes_mm"]) < 2
    assert codes(res.findings) == {D.NO_NOSE_IN_DEPTH} and D.NO_NOSE_IN_DEPTH not in D.ATTACK_EVIDENCE
    assert res.score > 0.5
    live = PhysicsCheck(checks=("relief",)).check(surface_frames(face_with_nose), FACE_BOX, EYES_NOSE)
    assert live.findings == [] and live.measurements["nose_over_eyes_mm"] > 20 and live.score < 0.5
    # a tilt moves the eyes against the nose; measured off the fitted plane it does not
    tilted = PhysicsCheck(checks=("relief",)).check(
        surface_frames(lambda x, y: face_with_nose(x, y) + 0.5 * y), FACE_BOX, EYES_NOSE)
    assert abs(tilted.measurements["nose_over_eyes_mm"] - live.measurements["nose_over_eyes_mm"]) < 2


def test_a_nose_keypoint_that_slipped_off_the_tip_still_finds_the_nose():
    # BlazeFace's nose keypoint lands up to a quarter of the box off the tip on small or turned faces; the
    # median at the keypoint then read 4-8 mm on a live face (a veto), the search around it reads the nose
    for slip in [(25, 0), (20, 20), (0, 30)]:  # a sixth to a fifth of the 150 px box
        kp = EYES_NOSE + np.array([[0, 0], [0, 0], slip])
        live = PhysicsCheck(checks=("relief",)).check(surface_frames(face_with_nose), FACE_BOX, kp)
        assert live.measurements["nose_over_eyes_mm"] > 12 and live.findings == [], slip
        sheet = PhysicsCheck(checks=("relief",)).check(surface_frames(lambda x, y: 0.3 * x + 0.1 * y), FACE_BOX, kp)
        assert abs(sheet.measurements["nose_over_eyes_mm"]) < 2 and sheet.findings and sheet.score > 0.5


def test_the_nose_is_measured_when_a_turned_heads_eye_lies_near_the_box_side():
    # on a turned head BlazeFace puts the far eye near the box's side, past the inner face the relief is
    # fitted on; the eye's height is read off the whole box (the plane still comes from the inner face)
    turned = np.array([[258.0, 215.0], [340.0, 215.0], [310.0, 245.0]])  # the right eye 13 px from the side
    res = PhysicsCheck(checks=("relief",)).check(surface_frames(face_with_nose), FACE_BOX, turned)
    assert res.measurements["nose_over_eyes_mm"] > 20 and res.findings == []
    sheet = PhysicsCheck(checks=("relief",)).check(surface_frames(lambda x, y: 0.3 * x + 0.1 * y), FACE_BOX, turned)
    assert abs(sheet.measurements["nose_over_eyes_mm"]) < 2


@pytest.mark.parametrize("species, expected", [("bona_fide", set()), ("print", {D.FLAT_FACE}),
                                               ("replay", {D.FLAT_FACE, D.FACE_DARK_IN_IR})])
def test_rendered_rig_faces(species, expected):
    from edge_fas.face import FaceDetector, detection_near
    from edge_fas.sim import Rig

    frames = Rig("wmca", seed=7, width=640, height=480).render(species, index=2, t=0.4)
    with FaceDetector() as det:
        found = detection_near(det.detect(frames.rgb), frames.truth.face_box)
    res = PhysicsCheck().check(register_to_color(frames), found.box, found.keypoints)
    assert codes(res.findings) >= expected and (not expected or res.score > 0.5)
    if not expected:
        assert res.findings == [] and res.score < 0.5 and set(res.measurements) == {
            "plane_relief_mm", "quadric_relief_mm", "nose_over_eyes_mm", "face_ir", "pupil_contrast"}
        assert res.measurements["nose_over_eyes_mm"] > 10


class FlatDepthPipelineFrames:
    """Frames whose registered depth is a flat sheet (the stand-in test frames have a constant depth)."""

    @staticmethod
    def make(n):
        f = frame(n)
        k = Intrinsics(width=W, height=H, fx=60.0, fy=60.0, cx=W / 2, cy=H / 2)
        f.calibration = RigCalibration(color=k, depth=k, ir=k)
        f.ir[:] = 128
        return f


def make(runtime, **overrides):
    from edge_fas.drivers.base import Camera
    from edge_fas.pipeline import Pipeline

    cfg = load_config(overrides={"decision.window": 3, "decision.min_live_frames": 2, **overrides})
    return Pipeline(Camera(), runtime, cfg, detector=BoxDetector(), register=lambda f: f)


def test_physics_never_turns_an_attack_into_live_and_vetoes_a_live_score(monkeypatch):
    import edge_fas.pipeline.physics as P

    monkeypatch.setattr(P, "MIN_POINTS", 50)  # the stand-in frames are 64 x 48
    frames = [FlatDepthPipelineFrames.make(n) for n in range(1, 8)]
    # the network says live on every frame, the face is flat: never live, attack with the physics reason
    verdicts = judge(make(Runtime(score=0.05)), frames)
    assert all(v.verdict == "attack" for v in verdicts)
    assert all(D.FLAT_FACE in {reason_code(r) for r in v.reasons} for v in verdicts)
    assert verdicts[-1].to_dict()["physics"]["findings"]
    # the network says attack and the physics check has nothing against the face: still attack
    passing = make(Runtime(score=0.95), **{"decision.physics_checks": "ir"})
    assert all(v.verdict == "attack" for v in judge(passing, frames))
    # off: the check does not run
    off = make(Runtime(score=0.05), **{"decision.physics": "off"})
    assert judge(off, frames)[-1].verdict == "live" and off.physics_mode == "off"


def test_mode_choice():
    synthetic_only = {"training": {"source": "synthetic"}}
    assert choose_mode("auto", "realsense", synthetic_only)[0] == "detector"
    assert choose_mode("auto", "synthetic", synthetic_only)[0] == "veto"
    assert choose_mode("auto", "realsense", {"training": {"source": "sessions"}})[0] == "veto"
    assert choose_mode("off", "realsense", synthetic_only)[0] == "off"
    with pytest.raises(ValueError, match="decision.physics"):
        choose_mode("sometimes", "realsense", None)
    with pytest.raises(ValueError, match="physics_checks"):
        PhysicsCheck(checks=("relief", "aura"))


def test_detector_mode_decides_without_the_network(monkeypatch):
    import edge_fas.pipeline.physics as P

    monkeypatch.setattr(P, "MIN_POINTS", 50)

    class Exploding(Runtime):
        def infer(self, batch):
            raise AssertionError("the network must not run in detector mode")

    p = make(Exploding(), **{"decision.physics": "detector"})
    frames = [FlatDepthPipelineFrames.make(n) for n in range(1, 5)]
    verdicts = judge(p, frames)
    assert p.physics_mode == "detector" and p.policy.threshold == P.THRESHOLD
    assert all(v.verdict == "attack" and v.score > 0.5 for v in verdicts)
    # no depth on the face: the detector cannot measure it and says unknown, never live
    bare = [frame(n) for n in range(1, 5)]
    for f in bare:
        f.depth = None
    v = judge(make(Exploding(), **{"decision.physics": "detector", "decision.required_modalities": "rgb"}), bare)
    assert {x.verdict for x in v} == {"unknown"}
    assert D.PHYSICS_UNMEASURED in {reason_code(r) for r in v[-1].reasons}


# ---- abstention ---------------------------------------------------------------------------------

def test_policy_abstains_on_uncertain_live_frames_only():
    p = DecisionPolicy(0.5, window=3, min_live_frames=2, abstain_level=0.2)
    v = p.decide(0.1, uncertainty=("uncertainty", 0.6))
    assert v.verdict == "unknown" and reason_code(v.reasons[0]) == D.UNCERTAIN and "0.6" in v.reasons[0]
    assert p.decide(0.1, uncertainty=("uncertainty", 0.1)).verdict == "unknown"  # 1/2 live: gathering
    assert p.decide(0.1, uncertainty=("uncertainty", 0.1)).verdict == "live"
    fresh = DecisionPolicy(0.5, window=3, min_live_frames=2, abstain_level=0.2)
    assert fresh.decide(0.9, uncertainty=("uncertainty", 0.9)).verdict == "attack"  # attack stays attack
    assert p.decide(0.1, uncertainty=("uncertainty", float("nan"))).verdict == "unknown"
    assert DecisionPolicy(0.5).decide(0.1, uncertainty=("uncertainty", 9.0)).verdict != "attack"


class UncertainRuntime(Runtime):
    """Scores live; its MMDG-style uncertainty map is high from frame `from_frame` on (injected)."""

    manifest = {"abstention": {"statistic": "uncertainty", "level": 0.3}}

    def __init__(self, from_frame):
        super().__init__(score=0.1)
        self.calls, self.from_frame = 0, from_frame

    def infer(self, batch):
        self.calls += 1
        u = np.full((1, 3, 4, 4), 0.9 if self.calls >= self.from_frame else 0.05, np.float32)
        return ModelOutput(score=np.array([self.score], np.float32), uncertainty=u)


def test_pipeline_abstains_on_injected_uncertainty_at_the_artifacts_level():
    frames = [frame(n) for n in range(1, 7)]
    v = judge(make(UncertainRuntime(from_frame=4)), frames)
    assert [x.verdict for x in v[:3]] == ["unknown", "live", "live"]
    assert all(x.verdict == "unknown" and D.UNCERTAIN in {reason_code(r) for r in x.reasons} for x in v[3:])
    # a site may turn abstention off (its config) and then the same frames are live
    v = judge(make(UncertainRuntime(from_frame=4), **{"decision.abstain": "false"}), frames)
    assert v[-1].verdict == "live"


def test_decision_config_defaults_match_the_physics_limits():
    from edge_fas.pipeline.physics import PhysicsLimits

    assert PhysicsLimits.from_config(DecisionConfig()) == PhysicsLimits()
    assert DeviceInfo().driver == ""
