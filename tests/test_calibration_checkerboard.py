"""Checkerboard calibration on synthetic views with known intrinsics and extrinsics."""

import numpy as np
import pytest

from edge_fas.calibration import Extrinsics, Intrinsics
from edge_fas.calibration.checkerboard import calibrate_rig, render_views
from edge_fas.errors import CalibrationError

COLOR = Intrinsics(640, 480, 610.0, 612.0, 322.0, 238.5)
IR = Intrinsics(640, 480, 385.0, 385.5, 318.0, 241.0)
ANGLE = np.deg2rad(0.4)
R = np.array([[np.cos(ANGLE), 0, np.sin(ANGLE)], [0, 1, 0], [-np.sin(ANGLE), 0, np.cos(ANGLE)]])
IR_TO_COLOR = Extrinsics(R, [-0.015, 0.0004, 0.0002])


@pytest.fixture(scope="module")
def views():
    return render_views(COLOR, IR, IR_TO_COLOR, n=10, seed=1)


def test_recovers_known_rig(views):
    cal, report = calibrate_rig(*views)
    assert report.views_used == 10 and report.rms_stereo_px < 0.5
    for got, ref in ((cal.color, COLOR), (cal.ir, IR)):
        assert got.fx == pytest.approx(ref.fx, rel=0.005) and got.fy == pytest.approx(ref.fy, rel=0.005)
    baseline_err = np.linalg.norm(cal.ir_to_color.t - IR_TO_COLOR.t)
    assert baseline_err < 0.001, baseline_err
    assert cal.depth_to_color.t == pytest.approx(cal.ir_to_color.t) and cal.source == "checkerboard"


def test_refuses_with_the_reason(views):
    colour, ir = views
    blank = [np.zeros_like(i) for i in ir[:2]]
    with pytest.raises(CalibrationError, match="board not seen whole in IR"):
        calibrate_rig(colour[:2], blank, min_views=1)
    with pytest.raises(CalibrationError, match="only 3 of 3 views"):
        calibrate_rig(colour[:3], ir[:3])
    with pytest.raises(CalibrationError, match="reprojection error"):
        calibrate_rig(colour, ir, max_rms_px=0.001)
    with pytest.raises(CalibrationError, match="same instant"):
        calibrate_rig(colour, ir[:-1])
