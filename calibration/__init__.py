"""Rig calibration model and the registration of depth and IR into the colour camera."""

from edge_fas.calibration.rig import Extrinsics, Intrinsics, RigCalibration
from edge_fas.calibration.registration import register_to_color

__all__ = ["Intrinsics", "Extrinsics", "RigCalibration", "register_to_color"]
