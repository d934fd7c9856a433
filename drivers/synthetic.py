"""The synthetic rig as a camera: `--camera synthetic[:SCENARIO]` (grammar in edge_fas.sim.scenario).

It streams raw, unregistered frame sets at the configured fps, paced in real time (or as fast as it
renders with realtime=False, for tests and benchmarks), with device-clock timestamps and per-stream
frame counters, and puts each frame's ground truth on `FrameSet.truth`. The emitter setting follows
the config: on, off, or alternate (speckle on even frames only; `meta["emitter_on"]` says which).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from edge_fas.drivers.base import Camera
from edge_fas.errors import CameraError
from edge_fas.sim import make_rig
from edge_fas.sim.scenario import Scenario, parse_scenario
from edge_fas.types import FrameSet

COLOR_SKEW_MS = 0.4  # the colour sensor's exposure centre trails the depth pair slightly, as on a D4xx


class SyntheticCamera(Camera):
    kind = "synthetic"
    def __init__(self, scenario: Scenario, width: int = 640, height: int = 480, fps: float = 30.0,
                 emitter: str = "on", realtime: bool = True, max_frames: int | None = None):
        if emitter not in ("on", "off", "alternate"):
            raise CameraError(f"synthetic camera: emitter={emitter!r}; expected on, off or alternate")
        if fps <= 0:
            raise CameraError(f"synthetic camera: fps={fps} must be > 0")
        self.scenario = scenario
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.emitter = emitter
        self.realtime = realtime
        self.max_frames = max_frames
        self.rig = make_rig(scenario.domain, seed=scenario.seed, width=self.width, height=self.height,
                            emitter=emitter != "off", fixed_camera=True)  # one device for the whole stream
        self.calibration = self.rig.calibration
        self.device = self.rig.device
        self.status = "connecting"
        self._closed = False

    def open(self) -> "SyntheticCamera":
        self._closed = False
        self.status = "connected"
        return self

    def close(self) -> None:
        self._closed = True
        self.status = "closed"

    def frames(self) -> Iterator[FrameSet]:
        if self.status != "connected":
            raise CameraError("synthetic camera is not open; use it as a context manager: "
                              "with open_camera('synthetic') as cam: ...")
        start = time.monotonic()
        n = 0
        while not self._closed and (self.max_frames is None or n < self.max_frames):
            seconds = n / self.fps
            where = self.scenario.at(seconds)
            if where is None:
                break
            take_number, take, t = where
            emitter_on = self.emitter == "on" or (self.emitter == "alternate" and n % 2 == 0)
            frames = self.rig.render(take.species, take.index, t, emitter_on=emitter_on)
            stamp = seconds * 1000.0
            frames.timestamps = {"rgb": stamp + COLOR_SKEW_MS, "depth": stamp, "ir": stamp}
            frames.counters = {"rgb": n, "depth": n, "ir": n}
            frames.meta.update({"take": take_number, "scenario": self.scenario.name, "fps": self.fps})
            if self.realtime:
                delay = start + seconds - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            yield frames
            n += 1
        if not self._closed:
            self.status = "closed"


def open_synthetic(arg: str | None, config=None, realtime: bool = True, max_frames: int | None = None) -> SyntheticCamera:
    scenario = parse_scenario(arg)
    cam = getattr(config, "camera", None)
    return SyntheticCamera(scenario,
                           width=getattr(cam, "width", 640), height=getattr(cam, "height", 480),
                           fps=getattr(cam, "fps", 30), emitter=getattr(cam, "emitter", "on"),
                           realtime=realtime, max_frames=max_frames)
