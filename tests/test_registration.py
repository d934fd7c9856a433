"""register_to_color: geometry against hand-computed projections, z-buffer, holes, IR, errors."""

import numpy as np
import pytest

from edge_fas.calibration import Extrinsics, Intrinsics, RigCalibration, register_to_color
from edge_fas.errors import CalibrationError
from edge_fas.types import FrameSet

W, H = 160, 120


def _cal(t=(0.0, 0.0, 0.0), color_f=100.0, depth_f=100.0, ir=None, ir_to_color=None):
    color = Intrinsics(W, H, color_f, color_f, W / 2, H / 2)
    depth = Intrinsics(W, H, depth_f, depth_f, W / 2, H / 2)
    return RigCalibration(color=color, depth=depth, ir=ir if ir is not None else depth,
                          depth_to_color=Extrinsics(np.eye(3), np.array(t)),
                          ir_to_color=ir_to_color if ir_to_color is not None else Extrinsics(np.eye(3), np.array(t)),
                          source="test")


def _frames(depth, cal, ir=None):
    return FrameSet(rgb=np.zeros((H, W, 3), np.uint8), depth=depth, ir=ir, calibration=cal)


def test_identity_rig_keeps_depth_and_ir():
    # rs.align geometry: a depth pixel covers the colour pixels from round(x - 0.5) to round(x + 0.5), i.e. a
    # 2 x 2 splat on an identical camera, so check the middle of 4 x 4 blocks of random depth
    rng = np.random.default_rng(0)
    depth = np.kron(rng.integers(500, 3000, (H // 4, W // 4)), np.ones((4, 4))).astype(np.uint16)
    ir = np.kron(rng.integers(0, 255, (H // 4, W // 4)), np.ones((4, 4))).astype(np.uint8)
    out = register_to_color(_frames(depth, _cal(), ir))
    assert out.registered and out.depth.dtype == np.uint16 and out.ir.dtype == np.uint8
    mid = np.zeros((H, W), bool)
    mid[1::4, :] = mid[2::4, :] = True
    mid &= np.isin(np.arange(W) % 4, (1, 2))[None, :]
    np.testing.assert_array_equal(out.depth[mid], depth[mid])
    np.testing.assert_array_equal(out.ir[mid], ir[mid])


def test_baseline_shift_matches_hand_projection():
    # one depth pixel at (x=80, y=60), 1 m away; the colour camera sees the point 0.0525 m to the right and
    # its principal point is 0.25 px lower: the pixel's centre lands at (85.25, 60.25), its square on 85..86 x 60..61
    depth = np.zeros((H, W), np.uint16)
    depth[60, 80] = 1000
    cal = _cal(t=(0.0525, 0.0, 0.0))
    cal.color = Intrinsics(W, H, 100.0, 100.0, W / 2, H / 2 + 0.25)
    out = register_to_color(_frames(depth, cal))
    ys, xs = np.nonzero(out.depth)
    assert set(xs.tolist()) == {85, 86} and set(ys.tolist()) == {60, 61}
    assert (out.depth[60:62, 85:87] == 1000).all()


def test_magnified_colour_splats_without_cracks_and_holes_stay_zero():
    depth = np.zeros((H, W), np.uint16)
    depth[40:80, 50:110] = 800  # a plane patch; the rest has no measurement
    out = register_to_color(_frames(depth, _cal(color_f=180.0)))
    # the patch covers colour pixels 80 + (x - 80) * 1.8 ... with no cracks inside
    inner = out.depth[60 - 30:60 + 30, 80 - 45:80 + 45]
    assert (inner == 800).all()
    assert out.depth[0:5].max() == 0 and out.depth[:, :5].max() == 0


def test_nearest_surface_wins_and_ir_follows_it():
    depth = np.full((H, W), 3000, np.uint16)  # a wall at 3 m
    ir = np.full((H, W), 10, np.uint8)
    depth[50:70, 70:90] = 400  # a near object at 0.4 m
    ir[50:70, 70:90] = 200
    out = register_to_color(_frames(depth, _cal(t=(0.04, 0.0, 0.0)), ir))
    # the near object shifts 100 * 0.04 / 0.4 = 10 px, the wall only ~1.3 px: the object occludes wall pixels
    obj = out.depth[52:68, 82:98]
    assert (obj == 400).all() and (out.ir[52:68, 82:98] == 200).all()
    wall = (out.depth == 3000)
    assert (out.ir[wall] == 10).all()
    # a disocclusion hole opens left of the object, where the colour camera sees wall the depth camera could not
    assert (out.depth[55:65, 72:78] == 0).all()


def test_separate_ir_imager_is_looked_up_through_depth():
    ir_intr = Intrinsics(W, H, 100.0, 100.0, W / 2, H / 2)
    # IR imager 2 cm to the right of the depth imager (as seen from colour), depth at colour
    cal = _cal(t=(0.0, 0.0, 0.0), ir=ir_intr, ir_to_color=Extrinsics(np.eye(3), np.array([0.02, 0.0, 0.0])))
    cal.color = Intrinsics(W, H, 100.0, 100.0, W / 2 + 0.25, H / 2 + 0.25)  # splat edges off the .5 boundaries
    depth = np.full((H, W), 1000, np.uint16)
    ir = np.tile(np.arange(W, dtype=np.uint16), (H, 1))  # IR value = IR column
    out = register_to_color(_frames(depth, cal, ir))
    # a point at colour column u sits at IR column u - 100 * 0.02 / 1 = u - 2; the 2-pixel splat (see above)
    # gives colour pixel u the depth pixel u or u - 1, so the IR column is u - 2 or u - 3
    got = out.ir[60, 20:140].astype(int) - np.arange(20, 140)
    assert set(got.tolist()) <= {-2, -3}


def test_already_registered_and_missing_depth():
    depth = np.full((H, W), 1000, np.uint16)
    f = _frames(depth, _cal()).replace(registered=True)
    assert register_to_color(f) is f
    g = register_to_color(_frames(None, _cal(t=(0.01, 0, 0)), np.zeros((H, W), np.uint8)))
    assert g.registered and g.ir is None and "ir dropped" in g.meta["registration"]


def test_scaled_stream_uses_scaled_intrinsics():
    depth = np.full((H // 2, W // 2), 1000, np.uint16)
    out = register_to_color(_frames(depth, _cal()))
    assert out.depth.shape == (H, W) and (out.depth[2:-2, 2:-2] == 1000).all()


def test_errors_name_the_problem():
    depth = np.full((H, W), 1000, np.uint16)
    with pytest.raises(CalibrationError, match="no calibration"):
        register_to_color(FrameSet(rgb=np.zeros((H, W, 3), np.uint8), depth=depth))
    with pytest.raises(CalibrationError, match="aspect"):
        register_to_color(_frames(np.zeros((H, H), np.uint16), _cal()))
    with pytest.raises(CalibrationError, match="uint16"):
        register_to_color(_frames(depth.astype(np.float32), _cal()))
    with pytest.raises(CalibrationError, match="IR must be .* uint8 or uint16.*convert"):
        register_to_color(_frames(depth, _cal(), np.zeros((H, W), np.float32)))


def test_synthetic_rig_face_depth_lands_on_face_box():
    sim = pytest.importorskip("edge_fas.sim.rig")
    rig = sim.Rig("cefa", seed=0, width=320, height=240)
    frames = rig.render("bona_fide", 0, 0.0)
    out = register_to_color(frames)
    x0, y0, x1, y1 = frames.truth.face_box
    face = out.depth_m()[y0:y1, x0:x1]
    valid = face > 0
    assert valid.mean() > 0.8
    # the face is the nearest thing in the box and sits at the true distance
    assert abs(np.median(face[valid]) - frames.truth.distance_m) < 0.1


def test_nothing_lands_gives_empty_depth_and_ir():
    # every depth pixel is behind the colour camera's view: no pass at all, empty images, no crash
    depth = np.full((H, W), 100, np.uint16)  # 0.1 m with a 1 m baseline: all off-image
    out = register_to_color(_frames(depth, _cal(t=(1.0, 0.0, 0.0)), np.full((H, W), 7, np.uint8)))
    assert out.depth.max() == 0 and out.ir.shape == (H, W) and out.ir.max() == 0


@pytest.mark.parametrize("model", ["brown_conrady", "inverse_brown_conrady"])
def test_distorted_colour_camera(model):
    import cv2
    coeffs = (0.12, -0.05, 0.001, -0.0008, 0.0)
    cal = _cal()
    cal.color = Intrinsics(W, H, 100.0, 100.0, W / 2, H / 2, model, coeffs)
    depth = np.zeros((H, W), np.uint16)
    depth[30, 40] = 1000  # ray (-0.4, -0.3, 1) in both cameras (identity extrinsics)
    out = register_to_color(_frames(depth, cal))
    ys, xs = np.nonzero(out.depth)
    ray = np.array([[[-0.4, -0.3]]])
    if model == "brown_conrady":  # pixel = distort(ray)
        uv, _ = cv2.projectPoints(np.array([[-0.4, -0.3, 1.0]]), np.zeros(3), np.zeros(3), cal.color.K, np.array(coeffs))
    else:  # ray = distort(pixel): the pixel is the undistorted ray
        uv = cv2.undistortPoints(ray, np.eye(3), np.array(coeffs), None, None, cal.color.K,
                                     (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-12))
    u, v = uv.reshape(2)
    assert abs(u - 40) > 1 or abs(v - 30) > 1  # the distortion really moves it
    # the 2 x 2 splat of the pixel centre (u, v) covers round(u - 0.5 .. u + 0.5)
    assert xs.min() <= u + 0.5 and xs.max() >= u - 0.5 and ys.min() <= v + 0.5 and ys.max() >= v - 0.5
    assert xs.max() - xs.min() <= 2 and ys.max() - ys.min() <= 2


def test_roi_matches_full_registration_inside_and_is_empty_outside():
    sim = pytest.importorskip("edge_fas.sim.rig")
    rig = sim.Rig("cefa", seed=1, width=320, height=240)
    frames = rig.render("rigid_mask", 2, 0.0)
    full = register_to_color(frames)
    x0, y0, x1, y1 = 100, 60, 220, 180
    part = register_to_color(frames, roi=(x0, y0, x1, y1))
    assert part.meta["registration_roi"] == (x0, y0, x1, y1)
    inner = (slice(y0 + 4, y1 - 4), slice(x0 + 4, x1 - 4))  # away from the border, where splats are cut
    np.testing.assert_array_equal(part.depth[inner], full.depth[inner])
    np.testing.assert_array_equal(part.ir[inner], full.ir[inner])
    outside = np.ones(part.depth.shape, bool)
    outside[y0:y1, x0:x1] = False
    assert part.depth[outside].max() == 0 and part.ir[outside].max() == 0


def test_no_landing_pixels_with_ir_present():  # reported by D: Rig('wmca', 0, 160, 120), print 200004 at t=1.163
    sim = pytest.importorskip("edge_fas.sim.rig")
    frames = sim.Rig("wmca", 0, 160, 120).render("print", 200004, 1.163)
    out = register_to_color(frames)
    assert out.depth.shape == (120, 160) and out.ir.shape == (120, 160)
