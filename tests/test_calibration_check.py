"""Registration check on the synthetic rig (right vs wrong calibration), stream skew, calibrate CLI."""

import cv2
import numpy as np
import pytest

from edge_fas.calibration import Extrinsics
from edge_fas.calibration.check import check_skew, registration_check, stream_skew_ms
from edge_fas.cli import main
from edge_fas.errors import CalibrationError
from edge_fas.types import FrameSet

sim = pytest.importorskip("edge_fas.sim.rig")


@pytest.mark.parametrize("index", [0, 3])
def test_check_tells_good_from_bad_calibration(index):
    rig = sim.Rig("cefa", seed=0, width=320, height=240)
    frames = rig.render("bona_fide", index, 0.0)
    good = registration_check(frames)
    cal = rig.calibration
    wrong = Extrinsics(cal.depth_to_color.R, cal.depth_to_color.t + np.array([0.03, 0.0, 0.0]))  # 3 cm off
    bad_cal = type(cal)(color=cal.color, depth=cal.depth, ir=cal.ir, depth_to_color=wrong, ir_to_color=wrong)
    bad = registration_check(frames, bad_cal)
    assert bad.misalignment_px > good.misalignment_px + 2.0
    # depth registered 3 cm too far right must be moved left to fit the colour edges
    assert bad.shift_px[0] - good.shift_px[0] <= -3
    assert good.overlay.shape == frames.rgb.shape and good.edge_pixels > 20


def test_stream_skew():
    f = FrameSet(timestamps={"rgb": 100.4, "depth": 100.0, "ir": 100.0})
    assert stream_skew_ms(f) == pytest.approx(0.4)
    assert check_skew(f, 1.0) == (True, pytest.approx(0.4))
    assert check_skew(f.replace(timestamps={"rgb": 150.0, "depth": 100.0}), 40.0)[0] is False
    assert stream_skew_ms(FrameSet(timestamps={"depth": 5.0})) == 0.0


def test_calibrate_cli_synthetic_and_images(tmp_path, capsys):
    out = tmp_path / "rig.yaml"
    assert main(["calibrate", "--synthetic", "--views", "8", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "vs. the simulated rig" in text and out.is_file()
    from edge_fas.calibration import RigCalibration
    from edge_fas.calibration.checkerboard import render_views
    from edge_fas.sim.rig import Rig
    made = RigCalibration.load(out)
    assert made.source == "checkerboard" and made.camera_serial == Rig(seed=0).device.serial  # the camera it is of
    assert main(["calibrate", "--images", str(tmp_path), "--out", str(out)]) != 0
    assert "no color_*.png" in capsys.readouterr().err
    truth = Rig(seed=0).calibration
    for n, (c, ir) in enumerate(zip(*render_views(truth.color, truth.ir, truth.ir_to_color, n=8, pattern=(9, 6),
                                                   square_m=0.025))):
        cv2.imwrite(str(tmp_path / f"color_{n:02d}.png"), cv2.cvtColor(c, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(tmp_path / f"ir_{n:02d}.png"), ir)
    assert main(["calibrate", "--images", str(tmp_path), "--out", str(out), "--serial", "0042", "--model", "D415"]) == 0
    made = RigCalibration.load(out)
    assert (made.camera_model, made.camera_serial) == ("D415", "0042")
    assert main(["calibrate", "--images", str(tmp_path), "--out", str(out)]) == 0
    assert "does not name the camera" in capsys.readouterr().out and not RigCalibration.load(out).camera_serial


def test_calibrate_check_cli(tmp_path, capsys):
    """The rig's own calibration passes (the shift-only check read 3-4 px on its heads and failed it)."""
    overlay = tmp_path / "check.png"
    rc = main(["calibrate", "--check", "--camera", "synthetic", "--overlay", str(overlay), "--frames", "5"])
    out = capsys.readouterr().out
    assert rc == 0 and overlay.is_file() and "over 5 still frames" in out, out
    # a calibration file is checked on any source it is given with (a replay too), and only on its own camera's
    from edge_fas.sim.rig import Rig
    other = Rig(seed=0).calibration
    other.camera_serial = "ANOTHER-UNIT"
    other.save(tmp_path / "rig.yaml")
    rc = main(["calibrate", "--check", "--camera", "synthetic", "--overlay", str(overlay), "--frames", "2",
               "--calibration-file", str(tmp_path / "rig.yaml")])
    assert rc == 2 and "belongs to another camera" in capsys.readouterr().err


def _disc_scene(depth_of_object, texture=True, colour_edge=True):
    """A registered 320x240 frame set: a bright disc (radius 60 px, a dark line across it) on a dark wall in
    colour, `depth_of_object(inside)` giving the depth image (metres) from the disc's colour mask."""
    from edge_fas.calibration import Intrinsics, RigCalibration

    yy, xx = np.mgrid[0:240, 0:320]
    inside = (xx - 160) ** 2 + (yy - 120) ** 2 <= 60 ** 2
    grey = np.where(inside, 200, 60 if colour_edge else 200).astype(np.uint8)
    if texture:
        grey[115:118, 120:200] = 40  # texture inside the object, which a shift-only search was pulled onto
    rng = np.random.default_rng(0)
    rgb = np.clip(np.repeat(grey[..., None], 3, 2) + rng.normal(0, 2, (240, 320, 3)), 0, 255).astype(np.uint8)
    depth = np.round(depth_of_object(inside) * 1000).astype(np.uint16)
    k = Intrinsics(320, 240, 300.0, 300.0, 160.0, 120.0)
    return FrameSet(rgb=rgb, depth=depth, depth_scale=0.001, registered=True,
                    calibration=RigCalibration(color=k, depth=k, ir=k))


def _grown(inside, px):
    return cv2.dilate(inside.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1,) * 2)) > 0


@pytest.mark.parametrize("case, shift, growth", [
    ("aligned", (0, 0), 0), ("moved right 4 px", (-4, 0), 0), ("fattened 3 px", (0, 0), 3),
    ("shadow left of it", (0, 0), 0), ("flying pixels right of it", (0, 0), 0)])
def test_the_check_reads_a_shift_and_not_an_outline_the_depth_camera_grew(case, shift, growth):
    """A registration error moves every outline the same way; a depth camera's edge handling grows (or shrinks)
    every outline along its own normal, leaves a hole (the stereo shadow) beside it, or scatters flying pixels
    between it and the background. Only the first is misalignment."""
    def depth(inside):
        obj = inside
        if case == "moved right 4 px":
            obj = np.roll(inside, 4, axis=1)
        if case == "fattened 3 px":
            obj = _grown(inside, 3)
        d = np.where(obj, 0.5, 1.0)
        if case == "shadow left of it":
            d[_grown(inside, 12) & ~obj & (np.arange(320)[None, :] < 160)] = 0.0
        if case == "flying pixels right of it":
            band = _grown(inside, 2) & ~obj & (np.arange(320)[None, :] > 160)
            d[band] = np.random.default_rng(1).uniform(0.5, 1.0, band.sum())
        return d

    from edge_fas.calibration.check import registration_check
    r = registration_check(_disc_scene(depth))
    assert r.measurable, case
    assert abs(r.shift_px[0] - shift[0]) <= 0.75 and abs(r.shift_px[1] - shift[1]) <= 0.75, (case, r.shift_px)
    assert abs(r.growth_px - growth) <= 1.5, (case, r.growth_px)
    assert not r.at_search_edge


def test_a_stream_wider_than_640_pixels_is_checked_on_a_640_view_against_a_limit_scaled_to_its_width():
    """At 1280 pixels wide the same misregistration reads twice the pixels and the search reaches half as far: right
    calibrations failed a 2 px limit that they passed at 640 (docs/deployment.md). So a wider stream is read on a
    640-wide view, its shift given back in its own pixels, and the limit (pixels of a 640-wide image) scaled."""
    from edge_fas.calibration.check import limit_px, registration_check
    small = _disc_scene(lambda inside: np.where(np.roll(inside, 20, axis=1), 0.5, 1.0))
    wide = small.replace(rgb=cv2.resize(small.rgb, (1280, 960), interpolation=cv2.INTER_LINEAR),
                         depth=cv2.resize(small.depth, (1280, 960), interpolation=cv2.INTER_NEAREST))
    r = registration_check(wide)  # 80 px at 1280: past the search natively, 40 px on the view
    assert r.measurable and not r.at_search_edge, r
    assert abs(r.shift_px[0] + 80.0) <= 3.0 and abs(r.shift_px[1]) <= 3.0, r.shift_px
    assert r.overlay.shape == (960, 1280, 3)  # drawn on the view, shown at the stream's size
    assert limit_px(2.0, 1280) == 4.0 and limit_px(2.0, 640) == 2.0 and limit_px(2.0, 320) == 2.0


def test_outlines_farther_apart_than_the_first_search_reaches_are_read_by_a_wider_one():
    """A camera knocked hard puts the outlines 20-60 px apart. The search out to 16 px then ended at its edge and the
    fit explained too little: no reading at all, and the technician was told to fix the scene instead."""
    from edge_fas.calibration.check import registration_check

    def moved(px):
        return registration_check(_disc_scene(lambda inside: np.where(np.roll(inside, px, axis=1), 0.5, 1.0)))
    far = moved(30)
    assert far.measurable and not far.at_search_edge
    assert abs(far.shift_px[0] + 30) <= 1.0 and abs(far.shift_px[1]) <= 1.0, far.shift_px
    assert moved(70).at_search_edge  # past the wider search too: said, not read


def test_calibrate_check_says_when_the_registration_may_be_off_by_more_than_it_reads(tmp_path, capsys):
    from edge_fas.sim.rig import Rig
    def check(metres):
        cal = Rig(seed=0).calibration
        cal.depth_to_color = cal.ir_to_color = Extrinsics(cal.depth_to_color.R,
                                                          cal.depth_to_color.t + np.array([metres, 0.0, 0.0]))
        cal.save(tmp_path / "off.yaml")
        rc = main(["calibrate", "--check", "--camera", "synthetic", "--overlay", str(tmp_path / "o.png"), "--frames",
                   "2", "--calibration-file", str(tmp_path / "off.yaml")])
        return rc, capsys.readouterr()

    rc, said = check(0.04)  # 4 cm off: about 50 px at this distance, read to the wider search's edge
    assert rc == 1 and "AT LEAST that" in said.out and "48 px search" in said.out, said
    rc, said = check(0.08)  # 8 cm off: beyond it, and the view explains too little
    assert rc == 2 and "edge of the check's 48 px search" in said.err and "calibrate again" in said.err, said


def test_a_view_without_outlines_in_colour_is_not_measurable_and_noise_is_no_outline():
    from edge_fas.calibration.check import registration_check
    stripes = np.full((240, 320, 3), 90, np.uint8)
    stripes[:, :60:8] = 220  # colour edges, but none where the object's outline is
    r = registration_check(_disc_scene(lambda inside: np.where(inside, 0.5, 1.0)).replace(rgb=stripes))
    assert not r.measurable and r.edge_pixels > 300
    noisy_wall = lambda inside: 3.0 + np.random.default_rng(2).normal(0, 0.05, inside.shape)  # no object at all
    with pytest.raises(CalibrationError, match="no depth border"):
        registration_check(_disc_scene(noisy_wall))


def test_still_frames_combine_into_their_median_depth():
    from edge_fas.calibration.check import steady_frames
    rng = np.random.default_rng(3)
    base = _disc_scene(lambda inside: np.where(inside, 0.5, 1.0))
    frames = []
    for n in range(5):
        depth = base.depth.astype(np.int32) + rng.integers(-20, 21, base.depth.shape)
        depth[rng.random(base.depth.shape) < 0.2] = 0  # dropouts
        depth[0, 0] = 0 if n < 3 else 700  # valid in fewer than half the frames
        frames.append(base.replace(depth=depth.astype(np.uint16)))
    steady = steady_frames(frames)
    assert steady.depth[0, 0] == 0 and steady.rgb is frames[2].rgb
    assert np.abs(steady.depth.astype(int) - base.depth)[1:, 1:].mean() < np.abs(frames[0].depth.astype(int) - base.depth)[1:, 1:].mean() / 3


@pytest.mark.parametrize("metres", [0.0, 0.02])
def test_a_face_box_reads_the_same_shift_from_frames_registered_only_around_it_as_from_the_whole_frame(metres):
    """measure_registration with a box reads only the box and what the search can reach; on frames registered only
    around the face, as the pipeline does (depth 0 outside its ROI, which is not a hole in the scene), it must read
    what the whole frame's check reads there."""
    from edge_fas.calibration import register_to_color
    from edge_fas.calibration.check import measure_registration
    rig = sim.Rig("wmca", seed=0)
    frames = rig.render("bona_fide", 3, 0.0)
    cal = rig.calibration
    moved = Extrinsics(cal.depth_to_color.R, cal.depth_to_color.t + np.array([metres, 0.0, 0.0]))
    frames = frames.replace(calibration=type(cal)(color=cal.color, depth=cal.depth, ir=cal.ir, depth_to_color=moved,
                                                  ir_to_color=moved))
    x0, y0, x1, y1 = frames.truth.face_box
    w, h = x1 - x0, y1 - y0
    box = (x0 - 0.3 * w, y0 - 0.3 * h, x1 + 0.3 * w, y1 + 0.3 * h)
    roi = tuple(int(round(v)) for v in box)  # registered no further than the box: the check must not read the
    # unregistered zeros around it as the shadow of the head (without that, this face reads (-1.4, 0.3) px, not -4, -2)
    whole = registration_check(frames, box=box)
    face = measure_registration(register_to_color(frames, roi=roi), box, overlay=False)
    assert whole.measurable and face.measurable and face.overlay is None
    assert np.allclose(face.shift_px, whole.shift_px, atol=0.3), (face.shift_px, whole.shift_px)
    assert (abs(face.shift_px[0]) > 5) == bool(metres)  # 2 cm at ~0.6 m: well over 5 px
