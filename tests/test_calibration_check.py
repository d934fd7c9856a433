"""Registration check on the synthetic rig (right vs wrong calibration), stream skew, calibrate CLI."""

import cv2
import numpy as np
import pytest

from edge_fas.calibration import Extrinsics
from edge_fas.calibration.check import check_skew, registration_check, stream_skew_ms
from edge_fas.cli import main
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
    overlay = tmp_path / "check.png"
    rc = main(["calibrate", "--check", "--camera", "synthetic", "--overlay", str(overlay),
               "--camera-width", "320", "--camera-height", "240"])
    assert rc in (0, 1) and overlay.is_file()  # 1: above calibration.max_reprojection_px
    assert "registration misalignment" in capsys.readouterr().out
