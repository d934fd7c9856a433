"""Camera drivers behind one function: `open_camera(spec, config=None)`.

spec: realsense[:SERIAL], openni[:URI], orbbec[:SERIAL], synthetic[:SCENARIO], replay:PATH.
Driver modules import their SDK lazily, so a missing SDK only matters for the camera that needs it.

With `calibration.file` set (a rig YAML from `edge-fas calibrate`), a live camera's frame sets carry that
calibration in place of the device's (factory, or the nominal field-of-view one of OpenNI devices without
hardware registration), so registration, the checks, recordings and collected takes all use it. A file that
names the camera it was measured on stops the stream of any other camera. The synthetic rig and replays keep
the calibration they come with (`edge-fas calibrate --apply` puts a later calibration into a recorded session).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging

from edge_fas.drivers.base import Camera
from edge_fas.errors import CalibrationError, CameraError

log = logging.getLogger(__name__)
OWN_CALIBRATION = ("synthetic", "replay")  # sources whose calibration.file does not apply

# kind -> (module, factory function name); each factory is factory(arg: str | None, config) -> Camera
DRIVERS = {
    "synthetic": ("edge_fas.drivers.synthetic", "open_synthetic"),
    "realsense": ("edge_fas.drivers.realsense", "open_realsense"),
    "openni": ("edge_fas.drivers.openni", "open_openni"),
    "orbbec": ("edge_fas.drivers.orbbec", "open_orbbec"),
    "replay": ("edge_fas.drivers.replay", "open_replay"),
}


def parse_spec(spec: str) -> tuple[str, str | None]:
    kind, sep, arg = str(spec).partition(":")
    kind = kind.strip().lower()
    if kind not in DRIVERS:
        raise CameraError(f"camera spec {spec!r}: unknown camera kind {kind!r}; expected one of "
                          "realsense[:SERIAL], openni[:URI], orbbec[:SERIAL], synthetic[:SCENARIO], replay:PATH")
    if kind == "replay" and not arg:
        raise CameraError(f"camera spec {spec!r}: replay needs a path, e.g. replay:session.db3")
    return kind, (arg or None)


def open_camera(spec: str, config=None) -> Camera:
    """Create the camera for `spec` (not yet streaming; use it as a context manager).

    config: an edge_fas.config.Config (its `camera` section sets resolution, fps, emitter, ...).
    """
    kind, arg = parse_spec(spec)
    module_name, factory = DRIVERS[kind]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("edge_fas"):
            raise CameraError(f"camera kind {kind!r} is not available in this build of edge-fas ({e.name})") from e
        raise
    camera = getattr(module, factory)(arg, config)
    # what opened it, whatever the recording claims about its device: production refuses synthetic
    # and replay, and every verdict says which kind of source it judged
    camera.kind = kind
    path = getattr(getattr(config, "calibration", None), "file", None)
    if path and kind in OWN_CALIBRATION:
        log.warning("calibration.file %s is not applied to a %s camera, which carries its own calibration", path, kind)
    elif path:
        use_calibration_file(camera, path)
    return camera


def use_calibration_file(camera: Camera, path) -> None:
    """Make every frame set `camera` yields carry the rig calibration in `path` (loaded now: a missing or bad
    file stops the start). The depth unit stays the device's. A camera that registers depth to colour in
    hardware cannot take one: its first frame set raises CalibrationError."""
    from edge_fas.calibration.rig import RigCalibration

    calibration = RigCalibration.load(path)
    if not (calibration.camera_serial or calibration.camera_model):
        log.warning("calibration.file %s does not say which camera it was measured on, so it is applied to any "
                    "camera; `edge-fas calibrate --camera SPEC` (or --images with --serial) records the camera",
                    path)
    device_frames = camera.frames
    by_depth_unit = {}  # the file's geometry with the device's depth unit, made once per unit

    def frames():
        for fs in device_frames():
            if fs.registered:
                raise CalibrationError(f"calibration.file {path}: the {camera.kind} camera registers depth to colour "
                                       "in hardware, so a rig calibration cannot apply to its frames; omit "
                                       "calibration.file (the device's registration is used)")
            problem = calibration.camera_problem(fs.device)
            if problem:
                raise CalibrationError(f"calibration.file {path} belongs to another camera: {problem}. Calibrate "
                                       "this camera (edge-fas calibrate --camera SPEC --out FILE) and point "
                                       "calibration.file at that file, or omit calibration.file")
            if fs.depth_scale not in by_depth_unit:
                by_depth_unit[fs.depth_scale] = dataclasses.replace(calibration, depth_scale=fs.depth_scale)
            yield fs.replace(calibration=by_depth_unit[fs.depth_scale])

    camera.frames = frames  # this instance only: the driver's own method still produces the frames


__all__ = ["Camera", "open_camera", "parse_spec", "DRIVERS"]
