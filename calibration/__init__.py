"""Rig calibration model and the registration of depth and IR into the colour camera."""

from edge_fas.calibration.rig import Extrinsics, Intrinsics, RigCalibration

__all__ = ["Intrinsics", "Extrinsics", "RigCalibration"]
