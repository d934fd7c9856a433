"""OpenNI2 cameras (Orbbec Astra class, PrimeSense) through the `openni` package and libOpenNI2.

`--camera openni[:URI]` opens the first device (or URI; `openni:Dummy` is the test device of Debian's
libopenni2-0) and streams depth plus colour and/or IR. Many of these devices cannot stream colour and IR
at the same time: when the second stream will not start, the camera says so in `meta["note"]` and keeps
the one camera.openni_prefer asks for. Mirroring is switched off. When the device can register depth to
colour in hardware, that mode is used and frame sets come out registered=True; otherwise they are raw
and carry a calibration built from the stream fields of view (source "nominal"; run `edge-fas calibrate`
for a measured one). `.oni` files record with `OpenNICamera(record_to=...)` and play back through
`replay:FILE.oni` with playback speed -1 (as fast as read, every frame).

libOpenNI2 is found at run time (OPENNI2_REDIST, the Debian multiarch path, or the loader's search path);
openni2.initialize wants a folder holding libOpenNI2.so and OpenNI2/Drivers, so one of symlinks is made
in a temporary folder when the library's own folder lacks that layout.
"""

from __future__ import annotations

import atexit
import ctypes.util
import glob
import math
import os
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edge_fas.calibration.check import stream_skew_ms
from edge_fas.calibration.rig import Extrinsics, Intrinsics, RigCalibration
from edge_fas.drivers.base import Camera
from edge_fas.errors import CameraError
from edge_fas.types import DeviceInfo, FrameSet

__all__ = ["OpenNICamera", "open_openni", "list_devices", "find_redist"]

NOMINAL_HFOV_DEG = 60.0  # Astra-class depth/colour field of view, used when the device does not report one
_state = {"initialized": False, "redist": None}
# Debian's libDummyDevice crashes (a background thread, later) once a stream or the device is destroyed;
# Dummy streams are therefore only stopped and kept alive here until the process ends. So is a recording
# whose player never delivered a frame: destroying that device segfaults now and then in oniDeviceClose
# (about 1 in 20 closes of a Dummy recording here, more under load). The openni package's own exit hook
# would still destroy them and call oniShutdown, which segfaults too (exit code 139 after a clean run):
# `_skip_shutdown` stops it from doing that while such objects are kept.
_KEPT_ALIVE: list = []
# oniStreamReadFrame blocks until a frame comes, for ever when none does, so every read waits for a ready frame
# first, in slices (a close() from another thread ends the wait). A recording plays as fast as it is read (speed
# -1): a frame not ready within PLAYBACK_FRAME_TIMEOUT_S never comes (Debian's libOniFile plays no frame of a
# Dummy-device recording). A live device silent for camera.stall_timeout_s is lost: the pipeline reconnects it.
PLAYBACK_FRAME_TIMEOUT_S = 2.0
WAIT_SLICE_S = 0.2
RECORDER_CLOSE_TIMEOUT_S = 10.0  # how long close() waits for libOpenNI2 to destroy an .oni recorder


def _keep_until_exit(*objects) -> None:
    """Keep libOpenNI2 objects that crash when destroyed (module comment at _KEPT_ALIVE) until the process ends."""
    if not _state.get("kept_alive"):
        # registered after the openni package's own exit hook (imported earlier): runs before it
        atexit.register(_skip_shutdown)
        _state["kept_alive"] = True
    _KEPT_ALIVE.extend(objects)


def _skip_shutdown() -> None:
    """At exit, after objects were kept alive (registered by _keep_until_exit only): leave libOpenNI2 loaded (the
    OS reclaims it) instead of letting openni2.unload() destroy them and call oniShutdown, which crashes."""
    try:
        from openni import openni2
        openni2._openni2_initialized = False  # its atexit unload() then returns at once
    except Exception:  # noqa: BLE001 - exiting anyway
        pass


def find_redist() -> str:
    """A folder openni2.initialize accepts: libOpenNI2.so with OpenNI2/Drivers beside it."""
    candidates = []
    if os.environ.get("OPENNI2_REDIST"):
        candidates.append(Path(os.environ["OPENNI2_REDIST"]))
    candidates += [Path(p).parent for p in sorted(glob.glob("/usr/lib/*-linux-gnu/libOpenNI2.so*"))]
    found = ctypes.util.find_library("OpenNI2")
    if found and os.path.isabs(found):
        candidates.append(Path(found).parent)
    for folder in candidates:
        libs = sorted(folder.glob("libOpenNI2.so*"))
        drivers = folder / "OpenNI2" / "Drivers"
        if not libs or not drivers.is_dir():
            continue
        if (folder / "libOpenNI2.so").exists():
            return str(folder)
        # one folder of symlinks per user and library folder, reused by later runs
        tmp = Path(tempfile.gettempdir()) / f"edge-fas-openni2-{os.getuid()}-{zlib.crc32(str(folder).encode()):08x}"
        tmp.mkdir(exist_ok=True)
        for name, target in (("libOpenNI2.so", libs[0]), ("OpenNI2", folder / "OpenNI2")):
            link = tmp / name
            if not link.exists():
                link.symlink_to(target)
        return str(tmp)
    raise CameraError("libOpenNI2 not found; install it (Debian/Ubuntu: apt install libopenni2-0) or set "
                      "OPENNI2_REDIST to the folder holding libOpenNI2.so and OpenNI2/Drivers")


def _openni2():
    try:
        from openni import openni2
    except ImportError as e:
        raise CameraError("OpenNI2 support needs the 'openni' Python package (pip install openni)") from e
    if not _state["initialized"]:
        redist = find_redist()
        try:
            openni2.initialize(redist)
        except Exception as e:  # the package raises its own error types
            raise CameraError(f"OpenNI2 would not initialise from {redist}: {e}") from e
        _state.update(initialized=True, redist=redist)
    return openni2


def list_devices() -> list[dict]:
    """Connected OpenNI2 devices: [{driver, model, serial, firmware, profiles}] (empty when none)."""
    try:
        openni2 = _openni2()
        uris = openni2.Device.enumerate_uris()
    except Exception:
        return []
    out = []
    for uri in uris:
        try:
            dev = openni2.Device(uri)
        except Exception:
            continue
        info = dev.get_device_info()
        profiles = []
        for name, st in (("depth", openni2.SENSOR_DEPTH), ("color", openni2.SENSOR_COLOR), ("ir", openni2.SENSOR_IR)):
            if dev.has_sensor(st):
                profiles += [f"{name} {m.resolutionX}x{m.resolutionY}@{m.fps} {str(m.pixelFormat).rsplit('.', 1)[-1]}"
                             for m in dev.get_sensor_info(st).videoModes]
        out.append({"driver": "openni", "model": f"{info.vendor.decode()} {info.name.decode()}".strip(),
                    "serial": uri.decode(), "firmware": "", "profiles": sorted(set(profiles))})
        dev.close()
    return out


def _nominal_intrinsics(stream, width: int, height: int) -> Intrinsics:
    try:
        hfov, vfov = float(stream.get_horizontal_fov()), float(stream.get_vertical_fov())
    except Exception:
        hfov = math.radians(NOMINAL_HFOV_DEG)
        vfov = 2 * math.atan(math.tan(hfov / 2) * height / width)
    fx = width / 2 / math.tan(hfov / 2)
    fy = height / 2 / math.tan(vfov / 2)
    return Intrinsics(width, height, fx, fy, (width - 1) / 2, (height - 1) / 2)


class OpenNICamera(Camera):
    """A live OpenNI2 device (uri=None: the first) or an .oni recording (playback=PATH)."""

    def __init__(self, uri: str | None = None, width: int = 640, height: int = 480, fps: int = 30,
                 prefer: str = "color", playback: str | Path | None = None, record_to: str | Path | None = None,
                 stall_timeout_s: float = 2.0, start_timeout_s: float = 5.0):
        if prefer not in ("color", "ir"):
            raise CameraError(f"openni: prefer={prefer!r}; expected color or ir")
        self.uri, self.width, self.height, self.fps, self.prefer = uri, int(width), int(height), int(fps), prefer
        self.playback = Path(playback) if playback is not None else None
        self.record_to = record_to
        self.stall_timeout_s = float(stall_timeout_s)
        self.start_timeout_s = max(float(start_timeout_s), self.stall_timeout_s)
        self.status = "connecting"
        self.device = DeviceInfo(driver="replay" if self.playback else "openni", serial=uri or "")
        self._dev, self._streams, self._recorder, self.note = None, {}, None, ""
        self.recording_closed: bool | None = None  # after close() with record_to: did libOpenNI2 finish the file
        self._player_stuck = False  # a recording that played no frame in time: its device is kept, not destroyed

    def open(self) -> "OpenNICamera":
        openni2 = _openni2()
        try:
            if self.playback is not None:
                if not self.playback.is_file():
                    raise CameraError(f"recording {self.playback} does not exist; check the replay:PATH")
                self._dev = openni2.Device.open_file(str(self.playback).encode())
                self._dev.playback.set_speed(-1)  # as fast as read: every frame, in order
                self._dev.playback.set_repeat_enabled(False)
            elif self.uri:
                if self.uri.lower() == "dummy":
                    _keep_until_exit()  # its objects will be kept: openni2's shutdown must not run
                self._dev = openni2.Device(self.uri.encode())
            else:
                uris = openni2.Device.enumerate_uris()
                if not uris:
                    raise CameraError("no OpenNI2 camera found; check the USB connection and udev rules, "
                                      "then run `edge-fas doctor` (openni:Dummy opens the test device)")
                self._dev = openni2.Device(uris[0])
        except CameraError:
            raise
        except Exception as e:
            what = f"recording {self.playback}" if self.playback else f"OpenNI2 device {self.uri or '(first)'}"
            raise CameraError(f"{what} would not open: {e}") from e
        info = self._dev.get_device_info()
        self.device = DeviceInfo(model=f"{info.vendor.decode()} {info.name.decode()}".strip() or "OpenNI2",
                                 serial=info.uri.decode(), firmware="",
                                 driver="replay" if self.playback else "openni")
        try:
            self._start_streams(openni2)
        except BaseException:
            self.close()  # streams must be destroyed before their device, never left to the garbage collector
            raise
        self.status = "connected"
        return self

    def _start_streams(self, openni2) -> None:
        dev = self._dev
        if not dev.has_sensor(openni2.SENSOR_DEPTH):
            raise CameraError(f"{self.device.model} has no depth sensor; edge-fas needs depth")
        wanted = [("depth", openni2.SENSOR_DEPTH)]
        for name, st in (("rgb", openni2.SENSOR_COLOR), ("ir", openni2.SENSOR_IR)):
            if dev.has_sensor(st):
                wanted.append((name, st))
        if {"rgb", "ir"} <= {n for n, _ in wanted} and self.prefer == "ir":
            wanted = [wanted[0], wanted[2], wanted[1]]  # start the preferred one first
        for name, st in wanted:
            stream = {"depth": dev.create_depth_stream, "rgb": dev.create_color_stream,
                      "ir": dev.create_ir_stream}[name]()
            if self.playback is None:
                try:
                    self._set_mode(openni2, stream, st, name)
                except CameraError:
                    self._streams[name] = stream  # close() disposes of it safely
                    raise
                try:
                    stream.set_mirroring_enabled(False)
                except Exception:
                    pass
            try:
                stream.start()
            except Exception as e:
                if name in ("rgb", "ir") and ({"rgb", "ir"} & set(self._streams)):
                    self.note = (f"{self.device.model} cannot stream colour and IR together; streaming "
                                 f"{'IR' if 'ir' in self._streams else 'colour'} (camera.openni_prefer)")
                    stream.close()
                    continue
                raise CameraError(f"{self.device.model}: the {name} stream would not start: {e}") from e
            self._streams[name] = stream
        registered = False
        if self.playback is None and "rgb" in self._streams and dev.is_image_registration_mode_supported(
                openni2.IMAGE_REGISTRATION_DEPTH_TO_COLOR):
            dev.set_image_registration_mode(openni2.IMAGE_REGISTRATION_DEPTH_TO_COLOR)
            registered = True
        self.registered = registered
        mode = self._streams["depth"].get_video_mode()
        depth_intr = _nominal_intrinsics(self._streams["depth"], mode.resolutionX, mode.resolutionY)
        intr = {}
        for name in ("rgb", "ir"):
            if name in self._streams:
                m = self._streams[name].get_video_mode()
                intr[name] = _nominal_intrinsics(self._streams[name], m.resolutionX, m.resolutionY)
        self.depth_scale = 0.0001 if mode.pixelFormat == openni2.PIXEL_FORMAT_DEPTH_100_UM else 0.001
        self.calibration = RigCalibration(color=intr.get("rgb", depth_intr), depth=depth_intr,
                                          ir=intr.get("ir", depth_intr), depth_to_color=Extrinsics(),
                                          ir_to_color=Extrinsics(), depth_scale=self.depth_scale, source="nominal")
        if self.record_to and self.playback is None:
            self._recorder = openni2.Recorder(str(self.record_to).encode())
            for s in self._streams.values():
                self._recorder.attach(s)
            self._recorder.start()

    def _close_recorder(self) -> None:
        """Destroy the .oni recorder, waiting at most RECORDER_CLOSE_TIMEOUT_S for libOpenNI2.

        oniRecorderDestroy can deadlock inside libOpenNI2: seen here about once in 80 recordings of Debian's
        Dummy device, its frame threads and the recorder's detach blocked on each other's locks. A stop of
        the camera must not freeze the pipeline, so the destroy runs on a helper thread; if it does not
        return, the error is logged and recorded in `note` (the .oni may lack its last frames) and the
        stuck thread is left to the process's exit."""
        import logging
        import threading

        recorder, self._recorder = self._recorder, None
        done = threading.Event()

        def destroy():
            try:
                recorder.close()
            finally:
                done.set()

        threading.Thread(target=destroy, name="oni-recorder-close", daemon=True).start()
        if done.wait(RECORDER_CLOSE_TIMEOUT_S):
            self.recording_closed = True
            return
        self.recording_closed = False
        self.note = (f"libOpenNI2 did not finish closing the recording {self.record_to} within "
                     f"{RECORDER_CLOSE_TIMEOUT_S:.0f} s (a deadlock inside the library); the file may lack its "
                     "last frames: check it with `edge-fas inspect` before relying on it")
        logging.getLogger(__name__).error(self.note)

    def _set_mode(self, openni2, stream, sensor_type, name) -> None:
        modes = list(self._dev.get_sensor_info(sensor_type).videoModes)
        fit = [m for m in modes if (m.resolutionX, m.resolutionY, m.fps) == (self.width, self.height, self.fps)]
        if not fit:
            offered = sorted({f"{m.resolutionX}x{m.resolutionY}@{m.fps}" for m in modes})
            if (self.width, self.height) == (640, 480) and self.fps == 30:
                return  # the default profile: take the device's own default mode
            raise CameraError(f"{self.device.model} cannot stream {name} at {self.width}x{self.height}@{self.fps}; "
                              f"it offers {', '.join(offered)}. Set camera.width/height/fps to one of those")
        stream.set_video_mode(fit[0])

    def frames(self) -> Iterator[FrameSet]:
        if self._dev is None:
            raise CameraError("OpenNI2 camera is not open; use it as a context manager")
        openni2 = _openni2()
        names = list(self._streams)
        count = None
        if self.playback is not None:
            count = min(self._dev.playback.get_number_of_frames(s) for s in self._streams.values())
        n = 0
        while self.status != "closed" and (count is None or n < count):
            images, stamps, counters = {}, {}, {}
            for name in names:
                if not self._frame_ready(openni2, name, n, count):
                    return  # closed while waiting
                f = self._streams[name].read_frame()
                w, h = f.width, f.height
                if name == "rgb":
                    img = np.frombuffer(f.get_buffer_as_uint8(), np.uint8).reshape(h, w, 3).copy()
                elif name == "depth":
                    img = np.frombuffer(f.get_buffer_as_uint16(), np.uint16).reshape(h, w).copy()
                else:
                    fmt = f.videoMode.pixelFormat
                    img = (np.frombuffer(f.get_buffer_as_uint16(), np.uint16) if fmt != openni2.PIXEL_FORMAT_GRAY8
                           else np.frombuffer(f.get_buffer_as_uint8(), np.uint8)).reshape(h, w).copy()
                images[name], stamps[name], counters[name] = img, f.timestamp / 1000.0, int(f.frameIndex)
            meta = {"note": self.note} if self.note else {}
            meta["skew_ms"] = stream_skew_ms(FrameSet(timestamps=stamps))  # for integrity checks
            yield FrameSet(rgb=images.get("rgb"), depth=images.get("depth"), ir=images.get("ir"),
                           depth_scale=self.depth_scale, timestamps=stamps, counters=counters,
                           registered=self.registered, device=self.device, calibration=self.calibration, meta=meta)
            n += 1

    def _frame_ready(self, openni2, name: str, n: int, count: int | None) -> bool:
        """True once the `name` stream has a frame to read, False when the camera was closed meanwhile; CameraError
        when none comes in time (module comment at PLAYBACK_FRAME_TIMEOUT_S)."""
        limit = PLAYBACK_FRAME_TIMEOUT_S if self.playback is not None \
            else self.stall_timeout_s if n > 0 else self.start_timeout_s  # a first frame may take longer
        deadline = time.monotonic() + limit
        while openni2.wait_for_any_stream([self._streams[name]], timeout=WAIT_SLICE_S) is None:
            if self.status == "closed":
                return False
            if time.monotonic() < deadline:
                continue
            if self.playback is not None:
                self._player_stuck = True  # close() keeps this device instead of destroying it
                raise CameraError(
                    f"recording {self.playback}: libOpenNI2 played no {name} frame within {limit:g} s (frame {n + 1} "
                    f"of the {count} it lists): the file is cut short, or this system's OpenNI2 cannot play it "
                    "(Debian's libopenni2-0 plays no frame of a recording of OpenNI's Dummy device). Play it where it "
                    "was recorded, or record labelled session folders instead (`edge-fas collect`)")
            self.status = "stalled"
            raise CameraError(f"OpenNI2 device {self.device.serial or self.uri or '(first)'}: no {name} frame for "
                              f"{limit:g} s (camera.{'stall' if n > 0 else 'start'}_timeout_s); check the USB cable "
                              "and power")
        return True

    def close(self) -> None:
        # stop everything before the interpreter exits: libOpenNI2 crashes when unloaded with live streams
        if self._recorder is not None:
            self._recorder.stop()
        for s in self._streams.values():
            try:
                s.stop()
            except Exception:
                pass
        if self._recorder is not None:  # destroyed once no stream of ours delivers frames into it
            self._close_recorder()
        keep = self._player_stuck or (self.playback is None and (self.uri or "").lower() == "dummy")
        for s in self._streams.values():
            try:
                if keep:
                    _keep_until_exit(s)
                else:
                    s.close()
            except Exception:
                pass
        self._streams = {}
        if self._dev is not None and keep:
            _keep_until_exit(self._dev)
            self._dev = None
        if self._dev is not None:
            try:
                self._dev.close()
            except Exception:
                pass
            self._dev = None
        self.status = "closed"


def open_openni(arg: str | None, config=None) -> OpenNICamera:
    cam = getattr(config, "camera", None)
    rec = getattr(config, "record", None)
    path = getattr(rec, "path", None)
    return OpenNICamera(uri=arg, width=getattr(cam, "width", 640), height=getattr(cam, "height", 480),
                        fps=getattr(cam, "fps", 30), prefer=getattr(cam, "openni_prefer", "color"),
                        record_to=path if path and str(path).endswith(".oni") else None,
                        stall_timeout_s=getattr(cam, "stall_timeout_s", 2.0),
                        start_timeout_s=getattr(cam, "start_timeout_s", 5.0))
