"""The live pipeline: capture -> prepare -> judge, three threads joined by one-slot mailboxes.

capture thread: camera.frames() -> host arrival stamp and stream integrity checks on EVERY frame ->
Mailbox (a newer frame replaces an untaken one, counted as dropped, and inherits its faults) and
`newest` for the display. It reconnects a camera that raises, for up to camera.reconnect_timeout_s.

prepare thread (stage A): newest frame -> age check -> face detection (colour, or registered IR when
colour is too dark) -> face selection + tracker -> registration (only around the face when the
registration takes an ROI) -> working-distance and head-pose checks (edge_fas.pipeline.pose) -> crop.
Every calibration.monitor_interval_s it hands the registered face to the running registration check
(edge_fas.pipeline.registration_monitor, on a thread of its own), whose `registration_drift` refuses every
frame while depth and colour no longer line up around the last faces.
When no frame comes for camera.stall_timeout_s it hands on a stall (or disconnect) instead, so verdicts
keep coming.

judge thread (stage B): runtime inference -> DecisionPolicy -> Result, handed to `on_result` and kept
for `latest()`. Stage A also runs the physics check (edge_fas.pipeline.physics) on the registered
face: its findings veto the network's score, or, in `detector` mode (a real camera with a model trained
on synthetic data only), its score replaces the network's. Stage B hands the model's uncertainty at
the face (edge_fas.uncertainty) to the policy, which abstains above the artifact's calibrated level. Inference of one frame overlaps the preparation of the next (numpy, OpenCV and the
runtime release the GIL), and only this thread touches the decision policy. Any exception becomes a
fault reason, never `live`. `process(frames)` runs both stages synchronously (tests, tools).
"""

from __future__ import annotations

import inspect
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from edge_fas.config import Config
from edge_fas.deployment import event_context
from edge_fas.errors import CameraError
from edge_fas.pipeline import decision as D
from edge_fas.pipeline.decision import DecisionPolicy, reason
from edge_fas.pipeline.integrity import IntegrityChecker
from edge_fas.pipeline.mailbox import Mailbox
from edge_fas.pipeline.physics import THRESHOLD as PHYSICS_THRESHOLD
from edge_fas.pipeline.physics import PhysicsCheck, choose_mode, face_depth
from edge_fas.pipeline.pose import head_pose, pose_faults
from edge_fas.pipeline.registration_monitor import RegistrationMonitor
from edge_fas.pipeline.tracker import BOX_CHANGES, FaceTracker, face_distance_m, select
from edge_fas.preprocess import crop_face, framed_box, outline_centred, square_box
from edge_fas.types import FrameSet, Verdict
from edge_fas.uncertainty import face_statistic

log = logging.getLogger(__name__)

ROI_MARGIN = 1.25  # registered area around the face, relative to the crop square
BAD_STATUSES = ("stalled", "reconnecting", "failed")  # "closed" at the end of a source is no fault


class _Rate:
    """Events per second over the last `n` events."""

    def __init__(self, n: int = 30):
        self.times: deque[float] = deque(maxlen=n)

    def tick(self, t: float) -> None:
        self.times.append(t)

    def rate(self) -> float:
        if len(self.times) < 2 or self.times[-1] <= self.times[0]:
            return 0.0
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])


@dataclass
class Result:
    frames: FrameSet | None
    verdict: Verdict
    camera_status: str = "unknown"
    counters: dict = field(default_factory=dict)

    @property
    def fps_display(self) -> float:
        return self.counters.get("fps_display", 0.0)

    @property
    def fps_decisions(self) -> float:
        return self.counters.get("fps_decisions", 0.0)

    @property
    def dropped(self) -> int:
        return self.counters.get("dropped", 0)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    hi = float(np.percentile(img, 99.5)) or 1.0
    return np.clip(img.astype(np.float32) * (255.0 / hi), 0, 255).astype(np.uint8)


def bright_enough(rgb, dark_rgb_mean: float) -> bool:
    """Whether faces are searched in the colour image (else in IR): detector.dark_rgb_mean."""
    return rgb is not None and float(rgb[::8, ::8].mean()) >= dark_rgb_mean


def detection_image(frames: FrameSet, dark_rgb_mean: float) -> np.ndarray | None:
    """The image faces are searched in: colour, or the registered IR (8-bit) when colour is too dark or
    absent; None when there is neither."""
    if bright_enough(frames.rgb, dark_rgb_mean):
        return frames.rgb
    if frames.ir is None or not frames.registered:
        return None
    return _to_uint8(frames.ir)


def _carry_faults(dropped: FrameSet, newer: FrameSet) -> None:
    """A frame replaced in the mailbox before it was judged passes its faults on (fail closed)."""
    carried = [f for f in dropped.meta.get("faults", ()) if f not in newer.meta.get("faults", ())]
    if carried:
        newer.meta["faults"] = list(newer.meta.get("faults", ())) + carried


@dataclass
class _Prepared:
    """A frame on its way from stage A (prepare) to stage B (judge). frames None: a stall/disconnect."""

    frames: FrameSet | None
    faults: list
    start: float = 0.0
    mark: float = 0.0
    age_ms: float | None = None
    box: tuple | None = None
    changed: bool = False
    crop: object = None
    keypoints: object = None
    physics: object = None  # PhysicsResult of this frame, when the check ran
    pose: object = None  # HeadPose of this frame, when depth measured it
    handed: float | None = None
    latency: dict = field(default_factory=dict)

    def __post_init__(self):
        self.mark = self.start


def _carry_prepared(dropped: "_Prepared", newer: "_Prepared") -> None:
    """Stage B skipped a prepared frame: its faults and a face change still count (fail closed)."""
    newer.faults += [f for f in dropped.faults if f not in newer.faults]
    newer.changed = newer.changed or dropped.changed


def distance_faults(depth_m, box, decision_config) -> list[str]:
    """The working-distance check: the face's median depth (metres) against decision.min/max_distance_m, or
    `no_depth_at_face` when depth is required and the face has none."""
    d = decision_config
    z = face_distance_m(depth_m, box)
    if z is None:
        return [reason(D.NO_DEPTH, "no depth measurement on the face")] if "depth" in d.required_modalities else []
    if z < d.min_distance_m:
        return [reason(D.TOO_NEAR, f"{z:.2f} m < {d.min_distance_m:g} m")]
    if z > d.max_distance_m:
        return [reason(D.TOO_FAR, f"{z:.2f} m > {d.max_distance_m:g} m")]
    return []


def _default_register():
    from edge_fas.calibration import register_to_color
    return register_to_color


class Pipeline:
    """no_drop: every captured frame is judged, in order (capture waits for the pipeline instead of
    replacing an untaken frame, and the frame-age check is off): the same recording then gives the
    same verdicts every run. For replays and the synthetic rig only; a live camera must not queue."""

    def __init__(self, camera, runtime, config: Config | None = None, detector=None, register=None,
                 max_frames: int | None = None, clock=time.monotonic, no_drop: bool = False):
        self.camera = camera
        self.runtime = runtime
        self.config = config if config is not None else Config()
        self._detector = detector
        self._own_detector = detector is None
        self.register = register or _default_register()
        try:
            self._register_roi = "roi" in inspect.signature(self.register).parameters
        except (TypeError, ValueError):
            self._register_roi = False
        self.max_frames = max_frames
        self.clock = clock
        self.no_drop = bool(no_drop)
        self.on_result = None  # callable(Result), called from the processing thread
        self.on_frame = None  # callable(FrameSet), every captured frame, capture thread; must not block
        self.policy = DecisionPolicy.from_config(self.config.decision, float(runtime.threshold),
                                                 (getattr(runtime, "manifest", None) or {}).get("abstention"))
        d = self.config.decision
        self.physics = PhysicsCheck.from_config(d) if d.physics != "off" else None
        self.physics_mode: str | None = "off" if d.physics == "off" else None  # decided once the camera is open
        self.physics_reason = "decision.physics = off" if d.physics == "off" else ""
        self.integrity = IntegrityChecker.from_config(self.config)
        self.registration = RegistrationMonitor.from_config(self.config.calibration)  # None: calibration.monitor off
        self.context = event_context(self.config, getattr(camera, "kind", None), getattr(runtime, "artifact", None))
        d = self.config.detector
        self.tracker = FaceTracker(smoothing=d.smoothing)
        self._untracked = 0  # frames since a face was last tracked: spaces out the idle zoom search
        self.mailbox = Mailbox()  # capture -> stage A (prepare)
        self._stage = Mailbox()  # stage A -> stage B (judge)
        self.frames_captured = 0
        self.decisions = 0
        self.newest: FrameSet | None = None
        self._latest: Result | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._capture_done = threading.Event()
        self._capture_rate, self._decision_rate = _Rate(), _Rate()
        self._threads: list[threading.Thread] = []
        self.error: BaseException | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "Pipeline":
        if self._threads:
            raise RuntimeError("Pipeline already started")
        if self._detector is None:
            from edge_fas.face import FaceDetector
            self._detector = FaceDetector(min_score=self.config.detector.min_score,
                                          zoom_search=self.config.detector.zoom_search)
        if getattr(self.camera, "status", "connected") != "connected":
            self.camera.open()
        self._decide_physics_mode(getattr(getattr(self.camera, "device", None), "driver", ""))
        self._threads = [threading.Thread(target=self._capture_loop, name="edge-fas-capture", daemon=True),
                         threading.Thread(target=self._prepare_loop, name="edge-fas-prepare", daemon=True),
                         threading.Thread(target=self._judge_loop, name="edge-fas-judge", daemon=True)]
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.mailbox.close()
        self._stage.close()
        try:
            self.camera.close()
        except Exception as e:  # closing a broken camera must not hide the stop
            log.warning("closing camera: %s", e)
        for t in self._threads:
            t.join(timeout)
        if self.registration is not None:
            self.registration.close()
        if self._own_detector and self._detector is not None:
            self._detector.close()
            self._detector = None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the source is exhausted (or max_frames) and every frame taken is judged."""
        end = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if end is None else max(0.0, end - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def __enter__(self) -> "Pipeline":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _decide_physics_mode(self, driver: str) -> None:
        """Network + physics veto, or the physics check alone (a real camera, a synthetic-only model)."""
        if self.physics_mode is not None:
            return
        self.physics_mode, self.physics_reason = choose_mode(self.config.decision.physics, driver or "",
                                                             getattr(self.runtime, "manifest", None))
        if self.physics_mode == "detector":  # its own score scale: the policy judges it at its threshold
            d = self.config.decision
            self.policy = DecisionPolicy(PHYSICS_THRESHOLD, d.window, d.min_live_frames, d.hysteresis)
        log.info("physics check: %s (%s)", self.physics_mode, self.physics_reason)

    # -- results -------------------------------------------------------------------------------
    def counters(self) -> dict:
        out = {"fps_display": round(self._capture_rate.rate(), 2),
               "fps_decisions": round(self._decision_rate.rate(), 2),
               "dropped": self.mailbox.dropped + self._stage.dropped, "frames": self.frames_captured,
               "decisions": self.decisions}
        if self.registration is not None:  # the running registration check's state (the status file shows it)
            out["registration"] = self.registration.summary()
        return out

    @property
    def camera_status(self) -> str:
        return str(getattr(self.camera, "status", "unknown"))

    def latest(self) -> Result | None:
        """The newest captured frame with the latest verdict (the display runs at camera rate)."""
        with self._lock:
            last = self._latest
        if last is None:
            return None
        newest = self.newest if self.newest is not None else last.frames
        return Result(newest, last.verdict, self.camera_status, self.counters())

    # -- capture thread ------------------------------------------------------------------------
    def _capture_loop(self) -> None:
        cam_cfg = self.config.camera
        lost_since = None
        try:
            while not self._stop.is_set():
                try:
                    for frames in self.camera.frames():
                        if self._stop.is_set():
                            break
                        lost_since = None
                        frames.meta["host_time"] = self.clock()
                        frames.meta["faults"] = self._stream_faults(frames)
                        self.newest = frames
                        self.frames_captured += 1
                        self._capture_rate.tick(frames.meta["host_time"])
                        if self.on_frame is not None:
                            try:
                                self.on_frame(frames)
                            except Exception:
                                log.exception("on_frame callback failed")
                        if self.no_drop and not self.mailbox.wait_empty():
                            return  # stopped while waiting
                        self.mailbox.put(frames, carry=_carry_faults)
                        if self.max_frames is not None and self.frames_captured >= self.max_frames:
                            return
                    return  # the source ended (scenario over, recording exhausted, camera closed)
                except CameraError as e:
                    if self._stop.is_set():
                        return
                    now = time.monotonic()
                    lost_since = lost_since or now
                    log.warning("camera lost (%s); reconnecting", e)
                    self.camera.status = "reconnecting"
                    if cam_cfg.reconnect_timeout_s and now - lost_since > cam_cfg.reconnect_timeout_s:
                        self.camera.status = "failed"
                        self.error = e
                        return
                    self._stop.wait(0.2)
                    try:
                        self.camera.close()
                        self.camera.open()
                        self.integrity.reset()  # counters restart on a new connection
                    except CameraError as e2:
                        log.warning("reconnect failed: %s", e2)
                        self.camera.status = "reconnecting"
        except Exception as e:  # an unexpected driver bug: stop capturing, the worker reports it
            log.exception("capture thread failed")
            self.error = e
            self.camera.status = "failed"
        finally:
            self._capture_done.set()
            self.mailbox.close()

    def _stream_faults(self, frames: FrameSet) -> list[str]:
        try:
            return self.integrity.check(frames)
        except Exception as e:  # a malformed frame set is a fault, not a crash
            return [reason(D.PIPELINE_ERROR, f"integrity check failed: {e!r}")]

    # -- processing thread ---------------------------------------------------------------------
    def _prepare_loop(self) -> None:
        """Stage A: newest frame -> checks, detection, registration, crop -> stage B's mailbox."""
        stall_s = self.config.camera.stall_timeout_s
        try:
            while True:
                frames = self.mailbox.get(timeout=stall_s)
                if frames is None:
                    if self._stop.is_set() or (self._capture_done.is_set() and self.mailbox.closed):
                        if self.error is not None and not self._stop.is_set():
                            self._handoff(_Prepared(None, [reason(D.CAMERA_DISCONNECTED,
                                                                  f"camera failed: {self.error}")]))
                        return
                    code = D.CAMERA_DISCONNECTED if self.camera_status in ("reconnecting", "failed") else D.CAMERA_STALLED
                    self._handoff(_Prepared(None, [reason(code, f"no frame for {stall_s:g} s "
                                                                f"(camera {self.camera_status})")]))
                    continue
                try:
                    prepared = self.prepare(frames)
                except Exception as e:  # never let a bug say live or kill the loop
                    log.exception("preparing a frame failed")
                    prepared = _Prepared(frames, [reason(D.PIPELINE_ERROR, repr(e))])
                self._handoff(prepared)
        finally:
            self._stage.close()

    def _handoff(self, prepared: "_Prepared") -> None:
        if self.no_drop:
            self._stage.wait_empty()
        prepared.handed = self.clock()
        self._stage.put(prepared, carry=_carry_prepared)

    def _judge_loop(self) -> None:
        """Stage B: inference and the decision (the only thread touching the policy) -> Result."""
        while True:
            prepared = self._stage.get(timeout=0.5)
            if prepared is None:
                if self._stage.closed:
                    return
                continue
            try:
                verdict = self.judge(prepared)
            except Exception as e:
                log.exception("judging a frame failed")
                verdict = self._fault_verdict(reason(D.PIPELINE_ERROR, repr(e)))
            self._emit(prepared.frames, verdict)

    def _fault_verdict(self, *faults: str) -> Verdict:
        return self.policy.decide(None, list(faults))

    def _emit(self, frames: FrameSet | None, verdict: Verdict) -> None:
        device = frames.device if frames is not None else getattr(self.camera, "device", None)
        camera = {**self.context["camera"], "serial": str(getattr(device, "serial", ""))}
        verdict.context = {**self.context, "camera": camera, "time": round(time.time(), 3),  # wall clock
                           "health": {"registration_check": "off" if self.registration is None
                                      else self.registration.state()}}
        self.decisions += 1
        self._decision_rate.tick(self.clock())
        result = Result(frames, verdict, self.camera_status, self.counters())
        with self._lock:
            self._latest = result
        if self.on_result is not None:
            try:
                self.on_result(result)
            except Exception:
                log.exception("on_result callback failed")

    def _bright(self, frames: FrameSet) -> bool:
        return bright_enough(frames.rgb, self.config.detector.dark_rgb_mean)

    def _detect(self, frames: FrameSet):
        """Faces on colour, or on (registered) IR when the colour image is too dark (or absent). The tracked
        box is the detector's hint: where its zoom search looks first for a face too small for the whole frame."""
        hint = None if self.tracker.box is None else tuple(float(v) for v in self.tracker.box)
        # with nothing tracked, the zoomed grid (ten detector calls) runs on one frame in zoom_interval
        zoom = hint is not None or self._untracked % self.config.detector.zoom_interval == 0
        self._untracked = 0 if hint is not None else self._untracked + 1
        image = detection_image(frames, self.config.detector.dark_rgb_mean)
        if image is None:
            return [], None
        return self._detector.detect(image, hint=hint, zoom=zoom), image

    def _register(self, frames: FrameSet, box=None) -> FrameSet:
        """Registered frames; with a face box only its surroundings when the registration supports an ROI
        (depth outside stays 0 = no measurement, which the crop never reaches)."""
        if box is not None and self._register_roi:
            sq = square_box(box, self.runtime.preprocess.crop_scale * ROI_MARGIN)
            return self.register(frames, roi=tuple(int(round(v)) for v in sq))
        return self.register(frames)

    def process(self, frames: FrameSet) -> tuple[FrameSet, Verdict]:
        """Judge one frame set synchronously: (the frames as captured, verdict). The running pipeline
        does the same in two threads, so one frame's inference overlaps the next one's preparation."""
        return frames, self.judge(self.prepare(frames))

    def prepare(self, frames: FrameSet) -> "_Prepared":
        """Stream checks, face detection and tracking, registration, working distance, crop and the
        physics check.

        Colour is the same before and after registration, so on a bright colour image the face is found
        first and only its surroundings are registered (when the registration takes an ROI); in the dark,
        or to pick the closest face, everything is registered first."""
        t0 = self.clock()
        p = _Prepared(frames, [], start=t0)

        def lap(name):
            now = self.clock()
            p.latency[name] = (now - p.mark) * 1000.0
            p.mark = now

        host = frames.meta.get("host_time")
        if host is not None:
            p.age_ms = (t0 - host) * 1000.0
            p.latency["capture_age"] = p.age_ms
        stream = frames.meta["faults"] if "faults" in frames.meta else self._stream_faults(frames)  # direct calls
        p.faults += list(stream) + ([] if self.no_drop else self.integrity.check_age(p.age_ms))
        if self.camera_status in BAD_STATUSES:
            p.faults.append(reason(D.CAMERA_DISCONNECTED if self.camera_status != "stalled" else D.CAMERA_STALLED,
                                   f"camera {self.camera_status}"))

        reg = None
        if not self._bright(frames) or self.config.detector.select == "closest":
            reg, fault = self._try_register(frames)
            p.faults += fault
            lap("registration")
        detections, image = self._detect(reg if reg is not None else frames)
        depth_m = reg.depth_m() if reg is not None and reg.registered else None
        chosen = select(detections, self.config.detector.select, image_shape=None if image is None else image.shape,
                        depth_m=depth_m)
        p.box, p.changed = self.tracker.update(chosen.box if chosen is not None else None, image)
        p.keypoints = getattr(chosen, "keypoints", None)
        lap("detection")
        if reg is None and p.box is not None:
            reg, fault = self._try_register(frames, p.box)
            p.faults += fault
            lap("registration")
        # the registration check's faces change with the box alone (tracker module: its limits were validated on
        # faces so told apart; told apart by look too, a right camera was refused on development seeds)
        box_changed = p.changed and self.tracker.why in BOX_CHANGES
        if p.box is not None and reg is not None and reg.registered:
            # a face whose distance jumps is someone (or something) else in the same place (tracker module)
            p.changed = self.tracker.moved(face_distance_m(reg.depth_m(), p.box), frames.timestamp_ms) or p.changed

        if p.box is None:
            p.faults.append(reason(D.NO_FACE))
        elif reg is not None:
            p.faults += distance_faults(reg.depth_m() if reg.registered else None, p.box, self.config.decision)
            face = None
            try:
                face = face_depth(reg, p.box)  # once: the head pose and the physics check read the same points
                p.pose = head_pose(reg, p.box, p.keypoints, face)
                p.faults += pose_faults(p.pose, self.config.decision.max_yaw_deg, self.config.decision.max_pitch_deg)
            except Exception as e:  # an unmeasurable pose must not let a frame through unchecked
                p.faults.append(reason(D.PIPELINE_ERROR, f"head pose failed: {e!r}"))
            lap("pose")
            try:
                p.crop = self._crop(reg, p.box, frames)
            except Exception as e:
                p.faults.append(reason(D.PIPELINE_ERROR, f"crop failed: {e}"))
            lap("crop")
            if self.physics is not None:
                self._decide_physics_mode(frames.device.driver)  # direct process() calls: decided here
                try:
                    p.physics = self.physics.check(reg, p.box, p.keypoints, face)
                except Exception as e:  # a bug in a check must not let a frame through unchecked
                    p.faults.append(reason(D.PIPELINE_ERROR, f"physics check failed: {e!r}"))
                lap("physics")
        if self.registration is not None:  # after the physics check, with its findings (UNREAD_FINDINGS)
            findings = () if p.physics is None else [D.reason_code(r) for r in p.physics.findings]
            p.faults += self._registration_faults(reg, p.box, box_changed, findings)
        return p

    def judge(self, p: "_Prepared") -> Verdict:
        """Inference on the prepared crop and the fail-closed decision, with the per-stage latency."""
        if p.handed is not None:
            now = self.clock()
            p.latency["handoff"] = (now - p.handed) * 1000.0
            p.mark = now
        if p.changed:
            self.policy.reset()  # a new face: its window starts empty
        if p.frames is None:  # stall or disconnect: no frame to judge
            return self.policy.decide(None, p.faults)
        out, score, uncertainty = None, None, None
        if p.physics is not None:
            p.faults += [f for f in p.physics.findings if f not in p.faults]  # the physics check can only veto
        if self.physics_mode == "detector":  # no network trained for this camera: the physics check decides
            if p.crop is not None:
                score = None if p.physics is None else p.physics.score
                if score is None:
                    p.faults.append(reason(D.PHYSICS_UNMEASURED, "the physics check could not measure this face "
                                                                 "(no depth or IR on it)"))
        elif p.crop is not None:
            try:
                out = self.runtime.infer(p.crop.as_batch())
                score = float(np.asarray(out.score).reshape(-1)[0])
                stat = face_statistic(out)
                uncertainty = None if stat is None else (stat[0], float(stat[1][0]))
            except Exception as e:
                p.faults.append(reason(D.RUNTIME_ERROR, f"{type(e).__name__}: {e}"))
            now = self.clock()
            p.latency["inference"] = (now - p.mark) * 1000.0
            p.mark = now
        frames = p.frames
        frame_ids = {"counter": frames.counter, "timestamp_ms": frames.timestamp_ms,
                     "counters": dict(frames.counters)}
        verdict = self.policy.decide(score, p.faults, uncertainty=uncertainty, frame=frame_ids, truth=frames.truth,
                                     box=p.box, output=out, physics=p.physics, pose=p.pose)
        end = self.clock()
        p.latency["decision"] = (end - p.mark) * 1000.0
        p.latency["total"] = (end - p.start) * 1000.0 + (p.age_ms or 0.0)
        verdict.latency_ms = p.latency
        return verdict

    def _registration_faults(self, reg: FrameSet | None, box, changed: bool, findings=()) -> list[str]:
        """Offer the face, with the physics check's findings on it, to the running registration check (its own thread
        while the pipeline runs live; here, in order, for replays judged frame by frame and direct process() calls)
        and take its verdict."""
        try:
            if changed:
                self.registration.new_face()
            if reg is not None and box is not None:
                self.registration.offer(reg, box, synchronous=self.no_drop or not self._threads, findings=findings)
            return self.registration.faults()
        except Exception as e:  # the monitor failing must not let frames through unchecked
            return [reason(D.PIPELINE_ERROR, f"registration monitor failed: {e!r}")]

    def _try_register(self, frames: FrameSet, box=None) -> tuple[FrameSet | None, list[str]]:
        try:
            return self._register(frames, box), []
        except Exception as e:
            return None, [reason(D.PIPELINE_ERROR, f"registration failed: {e}")]

    def _crop(self, reg: FrameSet, box, frames: FrameSet | None = None):
        """The network's crop of the face at `box`, framed as the artifact's preprocessing says. A depth-sized
        (metric) frame can reach past the region registered around the detector's box; then `frames` are registered
        again around that frame, so the crop never lacks depth where training's fully registered crops had it. The
        silhouette framing searches the head's outline over the metric frame's crop square, so that square is
        registered before the outline is read."""
        params = self.runtime.preprocess
        if params.framing != "silhouette":
            framed = framed_box(reg, box, params)
            if frames is not None and framed is not box:
                reg = _register_around(self.register, params, reg, frames, framed)
            return crop_face(reg, framed, params)
        # the outline is read once, on frames registered over the metric square it searches
        framed = framed_box(reg, box, replace(params, framing="metric"))
        if framed is not box:
            if frames is not None:
                reg = _register_around(self.register, params, reg, frames, framed)
            framed = outline_centred(reg, framed, params)
            if frames is not None:  # moved sideways, the square can reach past that region
                reg = _register_around(self.register, params, reg, frames, framed)
        return crop_face(reg, framed, params)


def _register_around(register, params, reg: FrameSet, frames: FrameSet, framed) -> FrameSet:
    """`reg`, or `frames` registered again (by `register`) around `framed` where its crop square reaches past the
    region `reg` was registered over."""
    roi = reg.meta.get("registration_roi")
    if roi is None:
        return reg
    from edge_fas.calibration.registration import clip_roi

    first = next(a for a in (reg.rgb, reg.depth, reg.ir) if a is not None)
    x0, y0, x1, y1 = square_box(framed, params.crop_scale)
    needed = clip_roi((math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1)), first.shape[1], first.shape[0])
    if needed[0] < roi[0] or needed[1] < roi[1] or needed[2] > roi[2] or needed[3] > roi[3]:
        return register(frames, roi=tuple(int(round(v)) for v in square_box(framed, params.crop_scale * ROI_MARGIN)))
    return reg
