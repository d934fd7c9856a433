"""Orbbec cameras (Femto, Gemini, Astra 2) through the Orbbec SDK v1 Python wrapper (pyorbbecsdk).

`--camera orbbec[:SERIAL]` streams colour, depth and IR at one profile with the SDK's frame sync, raw,
with the device calibration, for edge_fas.calibration.register_to_color (IR is the depth imager, so it
follows depth exactly). registered=True uses the SDK's depth-to-colour alignment instead (hardware where
the device has it, software otherwise); that aligns depth only, so IR is then left out (meta["note"]). Recording uses the SDK's
own .bag format (Pipeline.start_recording).

Each stream's capture settings from the frame metadata (SENSOR_METADATA: exposure, gain, auto-exposure,
white balance, laser power and status) go into FrameSet.meta["sensor"][stream], and so into recorded
sessions. The units are the device's: Orbbec's header says exposure is usually in 100 us steps for colour
and 1 us for depth/IR, so the key is `exposure`, not RealSense's `exposure_us`. Written against
pyorbbecsdk's Frame.has_metadata / get_metadata_value and OBFrameMetadataType (1.x and 2.x bind the same
names); never run against a device here.

The wrapper's extension links against libOrbbecSDK.so.*, which the wheel ships in site-packages but not
on the loader path: it is preloaded with ctypes (RTLD_GLOBAL) before `import pyorbbecsdk`. Wheels built
for a newer glibc cannot load at all; the CameraError then says so.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sysconfig
import time
from collections.abc import Iterator

import cv2
import numpy as np

from edge_fas.calibration.check import stream_skew_ms
from edge_fas.calibration.rig import Extrinsics, Intrinsics, RigCalibration
from edge_fas.drivers.base import Camera
from edge_fas.errors import CameraError
from edge_fas.types import DeviceInfo, FrameSet

__all__ = ["OrbbecCamera", "open_orbbec", "list_devices", "load_sdk", "calibration_from_param", "sensor_metadata"]

_sdk = {"module": None}
# OBFrameMetadataType name -> the key in FrameSet.meta["sensor"][stream] (values in the device's units)
SENSOR_METADATA = {"EXPOSURE": "exposure", "GAIN": "gain", "AUTO_EXPOSURE": "auto_exposure",
                   "WHITE_BALANCE": "white_balance", "LASER_POWER": "laser_power", "LASER_STATUS": "laser_on"}


def load_sdk():
    """Import pyorbbecsdk after preloading its libOrbbecSDK; CameraError with the reason if it cannot."""
    if _sdk["module"] is not None:
        return _sdk["module"]
    roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    for root in roots:
        for lib in sorted(glob.glob(os.path.join(root, "libOrbbecSDK.so*")), key=len, reverse=True):
            try:
                ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
                break
            except OSError:
                continue
    try:
        import pyorbbecsdk
    except ImportError as e:
        raise CameraError(f"the Orbbec SDK cannot load here ({e}); install pyorbbecsdk for this platform "
                          "(pip install pyorbbecsdk-community, or build the SDK's Python wrapper)") from e
    _sdk["module"] = pyorbbecsdk
    return pyorbbecsdk


def list_devices() -> list[dict]:
    """Connected Orbbec devices: [{driver, model, serial, firmware, profiles}] (empty when none or no SDK)."""
    try:
        ob = load_sdk()
        devices = ob.Context().query_devices()
    except Exception:
        return []
    out = []
    for i in range(devices.get_count()):
        try:
            dev = devices.get_device_by_index(i)
            info = dev.get_device_info()
            profiles = []
            pipe = ob.Pipeline(dev)
            for name, st in (("color", ob.OBSensorType.COLOR_SENSOR), ("depth", ob.OBSensorType.DEPTH_SENSOR),
                             ("ir", ob.OBSensorType.IR_SENSOR)):
                try:
                    plist = pipe.get_stream_profile_list(st)
                except Exception:
                    continue
                for k in range(plist.get_count()):
                    p = plist.get_stream_profile_by_index(k).as_video_stream_profile()
                    profiles.append(f"{name} {p.get_width()}x{p.get_height()}@{p.get_fps()} {p.get_format()}")
            out.append({"driver": "orbbec", "model": info.get_name(), "serial": info.get_serial_number(),
                        "firmware": info.get_firmware_version(), "profiles": sorted(set(profiles))})
        except Exception:
            continue
    return out


def _intr(i, d) -> Intrinsics:
    coeffs = (d.k1, d.k2, d.p1, d.p2, d.k3) if d is not None else (0.0,) * 5
    model = "brown_conrady" if any(abs(c) > 0 for c in coeffs) else "none"
    return Intrinsics(int(i.width), int(i.height), float(i.fx), float(i.fy), float(i.cx), float(i.cy), model, coeffs)


def calibration_from_param(param, depth_scale: float, registered: bool) -> RigCalibration:
    """RigCalibration from an OBCameraParam (depth-to-colour translation is in millimetres)."""
    color = _intr(param.rgb_intrinsic, param.rgb_distortion)
    depth = _intr(param.depth_intrinsic, param.depth_distortion)
    if registered:  # depth and IR already in colour pixels
        return RigCalibration(color=color, depth=color, ir=color, depth_scale=depth_scale, source="device")
    R = np.asarray(param.transform.rot, np.float64).reshape(3, 3)
    t = np.asarray(param.transform.transform, np.float64).reshape(3) / 1000.0
    ext = Extrinsics(R, t)
    return RigCalibration(color=color, depth=depth, ir=depth, depth_to_color=ext, ir_to_color=ext,
                          depth_scale=depth_scale, source="device")


class OrbbecCamera(Camera):
    def __init__(self, serial: str | None = None, width: int = 640, height: int = 480, fps: int = 30,
                 registered: bool = False, record_to: str | None = None, stall_timeout_s: float = 2.0,
                 start_timeout_s: float = 5.0):
        self.serial, self.width, self.height, self.fps = serial, int(width), int(height), int(fps)
        self.stall_timeout_s = float(stall_timeout_s)
        self.start_timeout_s = max(float(start_timeout_s), self.stall_timeout_s)
        self.want_registered, self.record_to = registered, record_to
        self.status = "connecting"
        self.device = DeviceInfo(driver="orbbec", serial=serial or "")
        self._pipe = None

    def open(self) -> "OrbbecCamera":
        ob = load_sdk()
        devices = ob.Context().query_devices()
        if devices.get_count() == 0:
            raise CameraError("no Orbbec camera found; check the USB 3 connection and the SDK's udev rules, "
                              "then run `edge-fas doctor`")
        if self.serial:
            try:
                dev = devices.get_device_by_serial_number(self.serial)
            except Exception as e:
                found = [devices.get_device_serial_number_by_index(i) for i in range(devices.get_count())]
                raise CameraError(f"Orbbec camera with serial {self.serial} not found; connected: "
                                  f"{', '.join(found)}") from e
        else:
            dev = devices.get_device_by_index(0)
        info = dev.get_device_info()
        self.device = DeviceInfo(model=info.get_name(), serial=info.get_serial_number(),
                                 firmware=info.get_firmware_version(), driver="orbbec")
        pipe = ob.Pipeline(dev)
        cfg = ob.Config()
        for name, st, fmt in (("color", ob.OBSensorType.COLOR_SENSOR, ob.OBFormat.RGB),
                              ("depth", ob.OBSensorType.DEPTH_SENSOR, ob.OBFormat.Y16),
                              ("ir", ob.OBSensorType.IR_SENSOR, ob.OBFormat.Y8)):
            try:
                plist = pipe.get_stream_profile_list(st)
            except Exception:
                if name == "ir":
                    continue  # some models have no separate IR stream
                raise CameraError(f"{self.device.model} has no {name} sensor; edge-fas needs colour and depth")
            try:
                profile = plist.get_video_stream_profile(self.width, self.height, fmt, self.fps)
            except Exception:
                try:  # any format at that size and rate (colour often comes as MJPG)
                    profile = plist.get_video_stream_profile(self.width, self.height, ob.OBFormat.UNKNOWN_FORMAT,
                                                             self.fps)
                except Exception as e:
                    raise CameraError(f"{self.device.model} cannot stream {name} at {self.width}x{self.height}@"
                                      f"{self.fps}; run `edge-fas doctor` for its profiles and set camera.width/"
                                      "height/fps to one of those") from e
            cfg.enable_stream(profile)
        if self.want_registered:
            cfg.set_align_mode(ob.OBAlignMode.HW_MODE)
        try:
            pipe.enable_frame_sync()
            pipe.start(cfg)
        except Exception as e:
            if not self.want_registered:
                raise CameraError(f"{self.device.model} would not start: {e}") from e
            cfg.set_align_mode(ob.OBAlignMode.SW_MODE)  # no hardware alignment at this profile
            pipe.start(cfg)
        if self.record_to:
            pipe.start_recording(str(self.record_to))
        self._pipe, self._ob = pipe, ob
        self._param = pipe.get_camera_param()
        self.calibration = None  # set from the first depth frame (its scale)
        self.status = "connected"
        return self

    def _image(self, frame, kind: str) -> np.ndarray | None:
        if frame is None:
            return None
        ob = self._ob
        w, h = frame.get_width(), frame.get_height()
        data = np.asanyarray(frame.get_data())
        fmt = frame.get_format()
        if kind == "rgb":
            if fmt == ob.OBFormat.MJPG:
                bgr = cv2.imdecode(data.reshape(-1).astype(np.uint8), cv2.IMREAD_COLOR)
                return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            return data.reshape(h, w, 3).copy()
        if kind == "depth" or fmt in (ob.OBFormat.Y16, ob.OBFormat.Y10, ob.OBFormat.Y12):
            return np.frombuffer(data.tobytes(), np.uint16).reshape(h, w).copy()
        return data.reshape(h, w).astype(np.uint8).copy()

    def frames(self) -> Iterator[FrameSet]:
        if self._pipe is None:
            raise CameraError("Orbbec camera is not open; use it as a context manager")
        last, limit, setting = time.monotonic(), self.start_timeout_s, "start"  # a first frame may take longer
        while self.status not in ("closed", "failed"):
            fs = self._pipe.wait_for_frames(200)
            color, depth, ir = (fs.get_color_frame(), fs.get_depth_frame(), fs.get_ir_frame()) if fs is not None \
                else (None, None, None)
            if depth is None or color is None:
                if time.monotonic() - last > limit:  # lost: the pipeline closes and reopens it
                    self.status = "stalled"
                    raise CameraError(f"Orbbec camera {self.device.serial or '(first)'}: no colour and depth frame "
                                      f"for {limit:g} s (camera.{setting}_timeout_s); check the USB cable and power")
                continue
            last, limit, setting = time.monotonic(), self.stall_timeout_s, "stall"
            scale = float(depth.get_depth_scale()) * 0.001  # the SDK gives millimetres per unit
            if self.calibration is None:
                self.calibration = calibration_from_param(self._param, scale, self.want_registered)
            stamps = {k: float(f.get_timestamp()) for k, f in (("rgb", color), ("depth", depth), ("ir", ir)) if f}
            counters = {k: int(f.get_index()) for k, f in (("rgb", color), ("depth", depth), ("ir", ir)) if f}
            meta = {"note": "IR left out: the SDK aligns depth only"} if self.want_registered and ir else {}
            meta["skew_ms"] = stream_skew_ms(FrameSet(timestamps=stamps))  # for integrity checks
            sensor = {k: sensor_metadata(self._ob, f) for k, f in (("rgb", color), ("depth", depth), ("ir", ir))}
            sensor = {k: v for k, v in sensor.items() if v}
            if sensor:
                meta["sensor"] = sensor
            yield FrameSet(rgb=self._image(color, "rgb"), depth=self._image(depth, "depth"),
                           ir=None if self.want_registered else self._image(ir, "ir"), meta=meta, depth_scale=scale, timestamps=stamps, counters=counters,
                           registered=self.want_registered, device=self.device, calibration=self.calibration)

    def close(self) -> None:
        if self._pipe is not None:
            try:
                if self.record_to:
                    self._pipe.stop_recording()
                self._pipe.stop()
            except Exception:
                pass
            self._pipe = None
        self.status = "closed"


def sensor_metadata(ob, frame) -> dict:
    """{key: int} of the SENSOR_METADATA this frame carries (none for a missing frame or an SDK without them)."""
    if frame is None or not hasattr(frame, "has_metadata"):
        return {}
    out = {}
    for name, key in SENSOR_METADATA.items():
        kind = getattr(ob.OBFrameMetadataType, name, None)
        try:
            if kind is not None and frame.has_metadata(kind):
                out[key] = int(frame.get_metadata_value(kind))
        except Exception:  # noqa: BLE001 - the SDK's OBError on a device without it: a diagnostic never stops capture
            continue
    return out


def open_orbbec(arg: str | None, config=None) -> OrbbecCamera:
    cam = getattr(config, "camera", None)
    return OrbbecCamera(serial=arg, width=getattr(cam, "width", 640), height=getattr(cam, "height", 480),
                        fps=getattr(cam, "fps", 30), stall_timeout_s=getattr(cam, "stall_timeout_s", 2.0),
                        start_timeout_s=getattr(cam, "start_timeout_s", 5.0))
