"""Intel RealSense D4xx through pyrealsense2: live capture, .db3 playback and recording.

`--camera realsense[:SERIAL]` streams colour (rgb8), depth (z16) and IR (index 1, the left imager, which
is co-located with depth) at one profile; `replay:FILE.db3` plays a librealsense recording through the
same code with set_real_time(False), so every frame is delivered, in order, as fast as it is consumed.
Intrinsics, distortion, extrinsics and the depth unit come from the device (or the file) into a
RigCalibration. A live stream that stalls is restarted with back-off (hardware reset first), and the
device that comes back must carry the configured serial; after reconnect_timeout_s the camera gives up
with a CameraError. `Db3Writer` writes real librealsense recordings from any FrameSets through
rs.software_device + rs.recorder (tests and `edge-fas record --format native` use it).

Each stream's frame metadata that says how the site was captured (exposure, gain, auto-exposure, laser
power, white balance; SENSOR_METADATA) is kept in FrameSet.meta["sensor"][stream], so every recorded session
carries it per frame (drivers/session.py writes meta), and Db3Writer writes it back into .db3 recordings.
Keys a device or firmware does not report are absent, never guessed.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from edge_fas.calibration.check import stream_skew_ms
from edge_fas.calibration.rig import Extrinsics, Intrinsics, RigCalibration
from edge_fas.drivers.base import Camera
from edge_fas.errors import CameraError, RecordingError
from edge_fas.types import DeviceInfo, FrameSet

__all__ = ["RealSenseCamera", "Db3Writer", "open_realsense", "list_devices", "calibration_from_profile"]

IR_INDEX = 1  # the left imager: depth is computed in its frame
# rs.frame_metadata_value name -> the key in FrameSet.meta["sensor"][stream] (librealsense's units: exposure
# in microseconds, gain and laser power in the device's own steps, white balance in kelvin)
SENSOR_METADATA = {"actual_exposure": "exposure_us", "gain_level": "gain", "auto_exposure": "auto_exposure",
                   "frame_laser_power": "laser_power", "frame_laser_power_mode": "laser_power_mode",
                   "white_balance": "white_balance_k"}
END_GRACE_S = 0.5  # playback: how long a stopped player must stay quiet before the recording counts as ended


def _rs():
    try:
        import pyrealsense2 as rs
    except ImportError as e:
        raise CameraError("RealSense support needs pyrealsense2 (pip install pyrealsense2; on Jetson build "
                          "librealsense with its Python bindings, see jetson/)") from e
    return rs


def _model_name(rs, model) -> str:
    names = {rs.distortion.none: "none", rs.distortion.brown_conrady: "brown_conrady",
             rs.distortion.modified_brown_conrady: "brown_conrady",
             rs.distortion.inverse_brown_conrady: "inverse_brown_conrady",
             rs.distortion.kannala_brandt4: "kannala_brandt4"}
    return names.get(model, "none")


def _intrinsics(rs, i) -> Intrinsics:
    return Intrinsics(int(i.width), int(i.height), float(i.fx), float(i.fy), float(i.ppx), float(i.ppy),
                      _model_name(rs, i.model), tuple(float(c) for c in i.coeffs))


def _extrinsics(e) -> Extrinsics:
    # librealsense stores the rotation column-major
    return Extrinsics(np.asarray(e.rotation, np.float64).reshape(3, 3).T, np.asarray(e.translation, np.float64))


def calibration_from_profile(profile, depth_scale: float) -> RigCalibration:
    """RigCalibration from a started pipeline profile (live device or file)."""
    rs = _rs()
    try:
        ir = profile.get_stream(rs.stream.infrared, IR_INDEX)
    except RuntimeError:
        ir = None
    return calibration_from_streams(profile.get_stream(rs.stream.color), profile.get_stream(rs.stream.depth), ir,
                                    depth_scale)


def calibration_from_streams(color, depth, ir, depth_scale: float) -> RigCalibration:
    """RigCalibration from the colour, depth and (optional) IR stream profiles."""
    rs = _rs()
    color, depth = color.as_video_stream_profile(), depth.as_video_stream_profile()
    ir = ir.as_video_stream_profile() if ir is not None else None
    return RigCalibration(color=_intrinsics(rs, color.get_intrinsics()), depth=_intrinsics(rs, depth.get_intrinsics()),
                          ir=_intrinsics(rs, ir.get_intrinsics()) if ir is not None else None,
                          depth_to_color=_extrinsics(depth.get_extrinsics_to(color)),
                          ir_to_color=_extrinsics(ir.get_extrinsics_to(color)) if ir is not None else Extrinsics(),
                          depth_scale=float(depth_scale), source="device")


def _device_info(rs, dev, driver="realsense") -> DeviceInfo:
    def info(key):
        return dev.get_info(key) if dev.supports(key) else ""
    return DeviceInfo(model=info(rs.camera_info.name), serial=info(rs.camera_info.serial_number),
                      firmware=info(rs.camera_info.firmware_version), driver=driver)


def _profiles(rs, dev) -> list[str]:
    out = set()
    for sensor in dev.query_sensors():
        for p in sensor.get_stream_profiles():
            if p.is_video_stream_profile():
                v = p.as_video_stream_profile()
                out.add(f"{p.stream_type().name}{p.stream_index() or ''} {v.width()}x{v.height()}@{p.fps()} "
                        f"{p.format().name}")
    return sorted(out)


def list_devices() -> list[dict]:
    """Connected RealSense devices: [{driver, model, serial, firmware, profiles}] (empty when none)."""
    try:
        rs = _rs()
        devices = rs.context().query_devices()
    except (CameraError, RuntimeError):
        return []
    out = []
    for dev in devices:
        d = _device_info(rs, dev).to_dict()
        d["profiles"] = _profiles(rs, dev)
        out.append(d)
    return out


class RealSenseCamera(Camera):
    """Live device (serial or first found) or a .db3/.bag file (playback=PATH). See the module docstring."""

    def __init__(self, serial: str | None = None, width: int = 640, height: int = 480, fps: int = 30,
                 emitter: str = "on", playback: str | Path | None = None, record_to: str | Path | None = None,
                 stall_timeout_s: float = 2.0, reconnect_timeout_s: float = 30.0, start_timeout_s: float = 5.0):
        if emitter not in ("on", "off", "alternate"):
            raise CameraError(f"realsense: emitter={emitter!r}; expected on, off or alternate")
        self.serial, self.width, self.height, self.fps, self.emitter = serial, int(width), int(height), int(fps), emitter
        self.playback = Path(playback) if playback is not None else None
        self.record_to = record_to
        self.stall_timeout_s, self.reconnect_timeout_s = float(stall_timeout_s), float(reconnect_timeout_s)
        self.start_timeout_s = max(float(start_timeout_s), self.stall_timeout_s)
        self.status = "connecting"
        self._pipe = None
        self._closed = False
        self.device = DeviceInfo(driver="replay" if self.playback else "realsense", serial=serial or "")

    # -- start / stop ------------------------------------------------------------------------------
    def open(self) -> "RealSenseCamera":
        rs = _rs()
        self._closed = False
        cfg = rs.config()
        if self.playback is not None:
            self._start_playback(rs)
            return self
        else:
            dev = self._find_device(rs)
            self.serial = dev.get_info(rs.camera_info.serial_number)
            self._check_profile(rs, dev)
            cfg.enable_device(self.serial)
            cfg.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, self.fps)
            cfg.enable_stream(rs.stream.depth, self.width, self.height, rs.format.z16, self.fps)
            cfg.enable_stream(rs.stream.infrared, IR_INDEX, self.width, self.height, rs.format.y8, self.fps)
            if self.record_to:
                cfg.enable_record_to_file(str(self.record_to))
        self._start(rs, cfg)
        return self

    def _start(self, rs, cfg) -> None:
        pipe = rs.pipeline()
        # framesets arrive through a callback into our own queue: for playback the callback blocks until
        # the consumer takes the frame, so nothing is lost; live, the queue holds the newest two only
        self._queue = queue.Queue(maxsize=2)
        self.dropped = 0
        try:
            profile = pipe.start(cfg, self._on_frames)
        except RuntimeError as e:
            what = f"recording {self.playback}" if self.playback else f"RealSense {self.serial}"
            hint = ("the file is truncated or not a librealsense recording" if self.playback
                    else "check the USB 3 cable and that no other program holds the camera")
            raise CameraError(f"{what} would not start: {e} ({hint})") from e
        dev = profile.get_device()
        self._configure_sensors(rs, dev)
        try:
            depth_scale = dev.first_depth_sensor().get_depth_scale()
        except RuntimeError:
            depth_scale = 0.001
        self.depth_scale = float(depth_scale)
        self.calibration = calibration_from_profile(profile, self.depth_scale)
        self.device = _device_info(rs, dev, "replay" if self.playback else "realsense")
        self._pipe, self._profile, self._rsdev = pipe, profile, dev
        self.status = "connected"

    def _start_playback(self, rs) -> None:
        """Play a recording through its sensors, non-real-time before the first frame, so every frame is
        delivered in order (the pipeline's syncer was seen to drop the first and last sets of short files)."""
        if not self.playback.is_file():
            raise CameraError(f"recording {self.playback} does not exist; check the replay:PATH")
        try:
            dev = rs.context().load_device(str(self.playback))
            pb = dev.as_playback()
            pb.set_real_time(False)
            sensors = list(dev.query_sensors())
            streams, owner = {}, {}
            for n, sensor in enumerate(sensors):
                for p in sensor.get_stream_profiles():
                    key = {rs.stream.color: "rgb", rs.stream.depth: "depth", rs.stream.infrared: "ir"}.get(p.stream_type())
                    if key is not None and (key != "ir" or p.stream_index() == IR_INDEX):
                        streams[key], owner[key] = p, n
            if "depth" not in streams or "rgb" not in streams:
                raise CameraError(f"recording {self.playback} has no colour and depth streams "
                                  f"(found {sorted(streams)}); record colour, depth and IR")
            try:
                depth_scale = dev.first_depth_sensor().get_depth_scale()
            except RuntimeError:
                depth_scale = 0.001
            self.depth_scale = float(depth_scale)
            self.calibration = calibration_from_streams(streams["rgb"], streams["depth"], streams.get("ir"),
                                                        self.depth_scale)
            self.device = _device_info(rs, dev, "replay")
            self._queue = queue.Queue(maxsize=8)
            self._pending = {k: [] for k in streams}
            self._kinds = {v.unique_id(): k for k, v in streams.items()}
            # the player starts reading with the first started sensor: hold it until every sensor listens,
            # or the other sensors' first frames go to nobody
            pb.pause()
            for n, sensor in enumerate(sensors):
                mine = [p for k, p in streams.items() if owner[k] == n]
                if mine:
                    sensor.open(mine)
                    sensor.start(self._on_playback_frame)
            pb.resume()
        except RuntimeError as e:
            raise CameraError(f"recording {self.playback} cannot be played by librealsense ({e}); the file is "
                              "truncated or not a librealsense recording") from e
        self._pipe, self._rsdev, self._sensors = None, dev, [s for s in sensors]
        self.status = "connected"

    def _on_playback_frame(self, frame) -> None:
        frame.keep()
        while not self._closed:  # block the player until the consumer takes it: nothing is dropped
            try:
                self._queue.put(frame, timeout=0.1)
                return
            except queue.Full:
                continue

    def _next_playback(self, rs):
        """Group the player's frames into sets: one frame of every stream, in file order; partial at the end."""
        quiet_since = None
        while not self._closed:
            if all(self._pending.values()):
                return {k: v.pop(0) for k, v in self._pending.items()}
            try:
                f = self._queue.get(timeout=0.05)
            except queue.Empty:
                # the player reports "stopped" as soon as it has read the file; its last frames may still be
                # on the way through the sensors' callback threads, so the end is a stopped player plus
                # an empty queue for END_GRACE_S
                if not self._ended(rs):
                    quiet_since = None
                    continue
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= END_GRACE_S:
                    left = {k: v.pop(0) for k, v in self._pending.items() if v}
                    return left or None
                continue
            quiet_since = None
            self._pending[self._kinds[f.get_profile().unique_id()]].append(f)
        return None

    def _find_device(self, rs):
        devices = list(rs.context().query_devices())
        if not devices:
            raise CameraError("no RealSense camera found; check the USB 3 connection and udev rules "
                              "(librealsense's 99-realsense-libusb.rules), then run `edge-fas doctor`")
        if self.serial is None:
            return devices[0]
        for dev in devices:
            if dev.get_info(rs.camera_info.serial_number) == self.serial:
                return dev
        found = [d.get_info(rs.camera_info.serial_number) for d in devices]
        raise CameraError(f"RealSense with serial {self.serial} not found; connected: {', '.join(found)}. "
                          "Use --camera realsense:SERIAL with one of those")

    def _check_profile(self, rs, dev) -> None:
        have = _profiles(rs, dev)
        want = [f"color {self.width}x{self.height}@{self.fps} rgb8", f"depth {self.width}x{self.height}@{self.fps} z16",
                f"infrared{IR_INDEX} {self.width}x{self.height}@{self.fps} y8"]
        missing = [w for w in want if w not in have]
        if missing:
            valid = sorted({h.split(" ")[1] for h in have if h.startswith("depth ")})
            raise CameraError(f"RealSense {self.serial} cannot stream {', '.join(missing)}; profiles it offers for "
                              f"depth: {', '.join(valid)}. Set camera.width/height/fps to one of those")

    def _configure_sensors(self, rs, dev) -> None:
        for sensor in dev.query_sensors():
            if sensor.supports(rs.option.frames_queue_size):
                sensor.set_option(rs.option.frames_queue_size, 2)  # latency never builds up
        depth = dev.first_depth_sensor()
        if depth.supports(rs.option.emitter_enabled):
            depth.set_option(rs.option.emitter_enabled, 0.0 if self.emitter == "off" else 1.0)
        if self.emitter == "alternate":
            if not depth.supports(rs.option.emitter_on_off):
                raise CameraError(f"RealSense {self.serial} ({self.device.model}) cannot alternate its emitter "
                                  "(needs firmware >= 5.12 on a D4xx); set camera.emitter to on or off")
            depth.set_option(rs.option.emitter_on_off, 1.0)

    def _on_frames(self, frame) -> None:
        fs = frame.as_frameset()
        fs.keep()
        try:
            self._queue.put_nowait(fs)
        except queue.Full:  # the consumer is behind: drop the oldest, never let latency build up
            try:
                self._queue.get_nowait()
                self.dropped += 1
            except queue.Empty:
                pass
            self._queue.put_nowait(fs)

    def _next(self, rs, timeout_s: float):
        """The next live frameset as {rgb, depth, ir} frames, or None after timeout_s."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            try:
                fs = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            return {"rgb": fs.get_color_frame(), "depth": fs.get_depth_frame(), "ir": fs.get_infrared_frame(IR_INDEX)}
        return None

    def _ended(self, rs) -> bool:
        try:
            return self._rsdev.as_playback().current_status() == rs.playback_status.stopped
        except RuntimeError:
            return True

    def close(self) -> None:
        self._closed = True
        for sensor in getattr(self, "_sensors", []):
            try:
                sensor.stop()
                sensor.close()
            except RuntimeError:
                pass
        self._sensors = []
        if self._pipe is not None:
            try:
                self._pipe.stop()
            except RuntimeError:
                pass
            self._pipe = None
        self.status = "closed"

    # -- frames ------------------------------------------------------------------------------------
    def frames(self) -> Iterator[FrameSet]:
        if self._pipe is None and self.playback is None or self.status == "closed":
            raise CameraError("RealSense camera is not open; use it as a context manager: "
                              "with open_camera('realsense') as cam: ...")
        rs = _rs()
        last, started = time.monotonic(), False  # a first frame (after open or a reconnect) may take start_timeout_s
        while not self._closed:
            fs = self._next(rs, 0.2) if self.playback is None else self._next_playback(rs)
            if fs is not None:
                last, started = time.monotonic(), True
                if self.status != "connected":
                    self.status = "connected"
                yield self._convert(rs, fs)
                continue
            if self.playback is not None:
                break  # end of the recording (set_real_time(False) never drops frames)
            if time.monotonic() - last > (self.stall_timeout_s if started else self.start_timeout_s):
                self.status = "stalled"
                self._reconnect(rs)
                last, started = time.monotonic(), False
        if not self._closed:
            self.status = "closed"

    def _convert(self, rs, streams: dict) -> FrameSet:
        images, stamps, counters = {}, {}, {}
        meta = {}
        for name, f in streams.items():
            if not f:
                continue
            images[name] = np.asanyarray(f.get_data()).copy()
            stamps[name] = float(f.get_timestamp())
            counters[name] = int(f.get_frame_number())
            if name == "depth":  # which frames had the projector on (emitter "alternate": every other one)
                for key in ("frame_emitter_mode", "frame_laser_power_mode"):
                    md = getattr(rs.frame_metadata_value, key, None)
                    if md is not None and f.supports_frame_metadata(md):
                        meta["emitter_on"] = bool(f.get_frame_metadata(md))
                        break
            sensor = _sensor_metadata(rs, f)
            if sensor:
                meta.setdefault("sensor", {})[name] = sensor
        meta["skew_ms"] = stream_skew_ms(FrameSet(timestamps=stamps))  # for integrity checks
        return FrameSet(rgb=images.get("rgb"), depth=images.get("depth"), ir=images.get("ir"),
                        depth_scale=self.depth_scale, timestamps=stamps, counters=counters, registered=False,
                        device=self.device, calibration=self.calibration, meta=meta)

    def _reconnect(self, rs) -> None:
        """Restart a stalled or unplugged camera with back-off; only the same serial is accepted."""
        self.status = "reconnecting"
        try:
            self._pipe.stop()
        except RuntimeError:
            pass
        try:
            self._rsdev.hardware_reset()
        except RuntimeError:
            pass  # already gone
        deadline = time.monotonic() + self.reconnect_timeout_s if self.reconnect_timeout_s > 0 else float("inf")
        delay = 0.5
        while not self._closed and time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            serials = [d.get_info(rs.camera_info.serial_number) for d in rs.context().query_devices()]
            if self.serial not in serials:
                continue
            try:
                self.open()
                return
            except CameraError:
                continue
        self.status = "failed"
        raise CameraError(f"RealSense {self.serial} did not come back within {self.reconnect_timeout_s:.0f} s; "
                          "check the cable and power, then restart (camera.reconnect_timeout_s sets the wait)")


def _sensor_metadata(rs, frame) -> dict:
    """{key: int} of the SENSOR_METADATA this frame carries."""
    out = {}
    for rs_name, key in SENSOR_METADATA.items():
        md = getattr(rs.frame_metadata_value, rs_name, None)
        if md is not None and frame.supports_frame_metadata(md):
            out[key] = int(frame.get_frame_metadata(md))
    return out


def open_realsense(arg: str | None, config=None) -> RealSenseCamera:
    cam = getattr(config, "camera", None)
    rec = getattr(config, "record", None)
    path = getattr(rec, "path", None)
    return RealSenseCamera(serial=arg, width=getattr(cam, "width", 640), height=getattr(cam, "height", 480),
                           fps=getattr(cam, "fps", 30), emitter=getattr(cam, "emitter", "on"),
                           record_to=path if path and str(path).endswith((".db3", ".bag")) else None,
                           stall_timeout_s=getattr(cam, "stall_timeout_s", 2.0),
                           reconnect_timeout_s=getattr(cam, "reconnect_timeout_s", 30.0),
                           start_timeout_s=getattr(cam, "start_timeout_s", 5.0))


# -- writing librealsense recordings from any frame source ------------------------------------------
class Db3Writer:
    """Writes FrameSets (raw, unregistered) into a librealsense recording via rs.software_device + rs.recorder.

    The first frame fixes the stream sizes; the calibration (intrinsics, extrinsics, depth unit) and the
    device info are stored as the recorded device's, so playback reports them like a real camera's.
    """

    def __init__(self, path: str | Path, calibration: RigCalibration, device: DeviceInfo | None = None,
                 fps: int = 30):
        if calibration is None or calibration.color is None or calibration.depth is None:
            raise RecordingError(f"{path}: a librealsense recording needs colour and depth intrinsics; "
                                 "the source has no calibration")
        self.path = Path(path)
        if self.path.suffix not in (".db3", ".bag"):
            raise RecordingError(f"{self.path}: librealsense recordings end in .db3 (or .bag)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.calibration, self.device, self.fps = calibration, device or DeviceInfo(), int(fps)
        self._rec = None
        self.frames = 0
        self._sent = self._seen = 0

    def _setup(self, frames: FrameSet) -> None:
        rs = _rs()
        cal = self.calibration
        sd = rs.software_device()
        self._depth_s, self._color_s = sd.add_sensor("Stereo Module"), sd.add_sensor("RGB Camera")
        models = {"none": rs.distortion.none, "brown_conrady": rs.distortion.brown_conrady,
                  "inverse_brown_conrady": rs.distortion.inverse_brown_conrady,
                  "kannala_brandt4": rs.distortion.kannala_brandt4}

        def stream(kind, index, uid, fmt, bpp, intr: Intrinsics, shape):
            intr = intr if (intr.width, intr.height) == (shape[1], shape[0]) else intr.scaled(shape[1], shape[0])
            i = rs.intrinsics()
            i.width, i.height, i.fx, i.fy, i.ppx, i.ppy = intr.width, intr.height, intr.fx, intr.fy, intr.cx, intr.cy
            i.model, i.coeffs = models[intr.model], list(intr.coeffs)[:5] + [0.0] * (5 - len(intr.coeffs[:5]))
            v = rs.video_stream()
            v.type, v.index, v.uid, v.width, v.height, v.fps, v.bpp, v.fmt = (kind, index, uid, intr.width, intr.height,
                                                                            self.fps, bpp, fmt)
            v.intrinsics = i
            return v

        def ext(e: Extrinsics):
            x = rs.extrinsics()
            x.rotation, x.translation = e.R.T.ravel().tolist(), e.t.tolist()  # column-major
            return x

        self._streams = {}
        d = frames.depth
        self._streams["depth"] = (self._depth_s, self._depth_s.add_video_stream(
            stream(rs.stream.depth, 0, 0, rs.format.z16, 2, cal.depth, d.shape), True), 2)
        if frames.ir is not None:
            ir_fmt, ir_bpp = (rs.format.y16, 2) if frames.ir.dtype == np.uint16 else (rs.format.y8, 1)
            self._streams["ir"] = (self._depth_s, self._depth_s.add_video_stream(
                stream(rs.stream.infrared, IR_INDEX, 1, ir_fmt, ir_bpp, cal.ir or cal.depth, frames.ir.shape)), ir_bpp)
        self._streams["rgb"] = (self._color_s, self._color_s.add_video_stream(
            stream(rs.stream.color, 0, 2, rs.format.rgb8, 3, cal.color, frames.rgb.shape)), 3)
        self._depth_s.add_read_only_option(rs.option.depth_units, float(frames.depth_scale))
        dp, cp = self._streams["depth"][1], self._streams["rgb"][1]
        dp.register_extrinsics_to(cp, ext(cal.depth_to_color))
        if "ir" in self._streams:
            # depth -> IR = (IR -> colour)^-1 o (depth -> colour)
            to_ir = cal.ir_to_color.inverse()
            d2i = Extrinsics(to_ir.R @ cal.depth_to_color.R, to_ir.R @ cal.depth_to_color.t + to_ir.t)
            dp.register_extrinsics_to(self._streams["ir"][1], ext(d2i))
        sd.register_info(rs.camera_info.name, self.device.model or "edge-fas software device")
        sd.register_info(rs.camera_info.serial_number, self.device.serial or "0")
        sd.register_info(rs.camera_info.firmware_version, self.device.firmware or "")
        self._rec = rs.recorder(str(self.path), sd)
        self._sd = sd
        self._depth_s.open([p for k, (s, p, _) in self._streams.items() if s is self._depth_s])
        self._color_s.open(cp)
        # count what comes out of the sensors: write() waits for it, so a busy machine never makes the
        # software sensor's small queue drop a frame before the recorder has seen it
        self._seen = 0
        self._depth_s.start(self._on_frame)
        self._color_s.start(self._on_frame)

    def _on_frame(self, frame) -> None:
        self._seen += 1

    def write(self, frames: FrameSet) -> None:
        if frames.rgb is None or frames.depth is None:
            raise RecordingError(f"{self.path}: a librealsense recording needs colour and depth in every frame set")
        if frames.registered:
            raise RecordingError(f"{self.path}: record raw frames; these are already registered to colour")
        if self._rec is None:
            self._setup(frames)
        rs = _rs()
        for name, (sensor, profile, bpp) in self._streams.items():
            img = getattr(frames, name)
            if img is None:
                continue
            img = np.ascontiguousarray(img)
            f = rs.software_video_frame()
            f.pixels, f.stride, f.bpp = img, img.shape[1] * bpp, bpp
            f.timestamp = float(frames.timestamps.get(name, self.frames * 1000.0 / self.fps))
            f.domain = rs.timestamp_domain.hardware_clock
            f.frame_number = int(frames.counters.get(name, self.frames))
            f.profile = profile.as_video_stream_profile()
            self._set_metadata(rs, sensor, frames.meta.get("sensor", {}).get(name))
            self._sent += 1
            sensor.on_video_frame(f)
            deadline = time.monotonic() + 5.0
            while self._seen < self._sent:  # the sleep releases the GIL for librealsense's callback thread
                if time.monotonic() > deadline:
                    raise RecordingError(f"{self.path}: librealsense did not take frame {self.frames} ({name}) "
                                         "within 5 s")
                time.sleep(0.0005)
        self.frames += 1

    def _set_metadata(self, rs, sensor, values: dict | None) -> None:
        """The stream's SENSOR_METADATA for the frame about to be sent. A software sensor attaches what was
        last set to every later frame, so a source must give the same keys on every frame (a camera does);
        a frame set without them gets the previous frame's values. A key with no librealsense field (another
        driver's) cannot be stored in a .db3 and is left out; the recording itself never fails over it."""
        names = {key: rs_name for rs_name, key in SENSOR_METADATA.items()}
        for key, value in (values or {}).items():
            if key in names:
                sensor.set_metadata(getattr(rs.frame_metadata_value, names[key]), int(value))

    def close(self) -> None:
        if self._rec is None:
            return
        for s in (self._depth_s, self._color_s):
            s.stop()
            s.close()
        self._rec = None  # the recorder writes the file out when released
        self._sd = None

    def __enter__(self) -> "Db3Writer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_db3(path: str | Path, frames: Iterable[FrameSet], calibration: RigCalibration | None = None,
              device: DeviceInfo | None = None, fps: int = 30) -> int:
    """Write frame sets to a .db3 file; returns how many. Calibration/device default to the first frame's."""
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise RecordingError(f"{path}: no frames to record")
    with Db3Writer(path, calibration or first.calibration, device or first.device, fps) as w:
        w.write(first)
        for f in it:
            w.write(f)
        return w.frames
