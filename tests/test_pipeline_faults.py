"""Fault injection: every fail-closed reason provoked on a scripted camera; never `live` while it lasts.

The camera, detector and runtime here are small stand-ins so each fault is exact and fast; the real
pieces run end to end in tests/test_pipeline_e2e.py."""

import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest

from edge_fas.config import load_config
from edge_fas.drivers.base import Camera
from edge_fas.errors import CameraError
from edge_fas.pipeline import Pipeline
from edge_fas.pipeline.decision import reason_code
from edge_fas.preprocess import PreprocessParams
from edge_fas.types import DeviceInfo, FrameSet, ModelOutput

H, W = 48, 64
BOX = (16, 8, 48, 40)


@dataclass
class Det:
    box: tuple
    score: float = 0.9


class BoxDetector:
    """Finds the face wherever frames.meta says (None: no face)."""

    def detect(self, image, hint=None, zoom=True):
        return [Det(BOX)] if image[0, 0, 0] != 0 else []

    def close(self):
        pass


class Runtime:
    threshold = 0.5
    preprocess = PreprocessParams(size=16)

    def __init__(self, score=0.1):
        self.score = score
        self.fail = False

    def infer(self, batch):
        if self.fail:
            raise RuntimeError("device lost")
        return ModelOutput(score=np.array([self.score], np.float32))


def frame(n, serial="S1", face=True, distance_m=0.5, drop=(), skew=0.0, rng=None, person=7):
    rng = rng or np.random.default_rng(n)
    rgb = np.random.default_rng(person).integers(1, 255, (H, W, 3), dtype=np.uint8)  # the same person on every frame
    rgb[1] = rng.integers(1, 255, (W, 3), dtype=np.uint8)  # with a row of its own: an identical frame is a replay
    rgb[0, 0, 0] = 1 if face else 0
    f = FrameSet(rgb=rgb, depth=np.full((H, W), int(distance_m * 1000), np.uint16),
                 ir=rng.integers(0, 255, (H, W), dtype=np.uint8), registered=True,
                 timestamps={"rgb": n * 33.0 + skew, "depth": n * 33.0, "ir": n * 33.0},
                 counters={"rgb": n, "depth": n, "ir": n}, device=DeviceInfo(serial=serial))
    for m in drop:
        setattr(f, m, None)
    return f


def make_pipeline(runtime=None, **overrides):
    cfg = load_config(overrides={"decision.window": 3, "decision.min_live_frames": 2,
                                 "camera.stall_timeout_s": 0.1, **overrides})
    return Pipeline(Camera(), runtime or Runtime(), cfg, detector=BoxDetector(), register=lambda f: f)


def judge(p, frames):
    return [p.process(f)[1] for f in frames]


def codes(v):
    return {reason_code(r) for r in v.reasons}


def test_clean_stream_goes_live_with_stage_latencies():
    p = make_pipeline()
    vs = judge(p, [frame(i) for i in range(4)])
    assert [v.verdict for v in vs] == ["unknown", "live", "live", "live"]
    assert {"registration", "detection", "crop", "inference", "decision", "total"} <= set(vs[-1].latency_ms)
    assert vs[-1].box == BOX and vs[-1].frame["counter"] == 3


class ScriptedRuntime(Runtime):
    def __init__(self, scores):
        super().__init__()
        self.scores = list(scores)

    def infer(self, batch):
        return ModelOutput(score=np.array([self.scores.pop(0)], np.float32))


@pytest.mark.parametrize("step_in", ["someone_else", "nearer"])
def test_a_new_face_in_the_same_place_starts_a_new_window(step_in):
    """A live person, then at once, in the same box, someone else (or a photo raised 20 cm in front) whom the model
    scores live on one frame in two. The window (the default: 4 live frames of 5) used to begin the new face with
    the last one's live frames, so its second frame was `live`; now the new face needs 4 live frames of its own,
    which one in two never makes."""
    p = make_pipeline(ScriptedRuntime([0.1] * 5 + [0.9, 0.1] * 5), **{"decision.window": 5,
                                                                     "decision.min_live_frames": 4})
    told = []
    p.registration.new_face = lambda: told.append(True)
    person = [frame(i) for i in range(5)]
    other = [frame(i, person=8) if step_in == "someone_else" else frame(i, distance_m=0.3) for i in range(5, 15)]
    vs = judge(p, person + other)
    assert vs[4].verdict == "live"
    assert [v.verdict for v in vs[5:]].count("live") == 0 and vs[5].verdict == "attack"
    # the registration check's faces change with the box alone (its limits were validated on faces so told apart)
    assert told == [True]


@pytest.mark.parametrize("fault,code", [
    (lambda n: frame(n, face=False), "no_face"),
    (lambda n: frame(n, distance_m=2.5), "face_too_far"),
    (lambda n: frame(n, distance_m=0.1), "face_too_near"),
    (lambda n: frame(n, drop=("ir",)), "missing_modality"),
    (lambda n: frame(n, skew=120.0), "stream_skew"),
    (lambda n: frame(n, serial="INTRUDER"), "serial_not_allowed"),
])
def test_each_fault_gives_unknown_and_live_must_be_rebuilt(fault, code):
    p = make_pipeline(**{"camera.allowed_serials": ["S1"]})
    judge(p, [frame(i) for i in range(3)])
    faulty = judge(p, [fault(n) for n in range(3, 6)])
    assert all(v.verdict == "unknown" and code in codes(v) for v in faulty), [v.reasons for v in faulty]
    after = judge(p, [frame(n) for n in range(10, 12)])  # timestamps past any skewed ones
    assert [v.verdict for v in after] == ["unknown", "live"]


def test_repeated_frame_is_judged_attack():
    p = make_pipeline()
    judge(p, [frame(i) for i in range(3)])
    same = frame(3, rng=np.random.default_rng(2))  # identical pixels to frame 2, fresh counters
    v = p.process(same)[1]
    assert v.verdict == "attack" and "repeated_frame" in codes(v)


def test_counter_going_back_is_stale():
    p = make_pipeline()
    judge(p, [frame(i) for i in range(5)])
    v = p.process(frame(2, rng=np.random.default_rng(77)))[1]
    assert v.verdict == "unknown" and "stale_frame" in codes(v)


def test_runtime_exception_fails_closed_and_recovers():
    rt = Runtime()
    p = make_pipeline(rt)
    judge(p, [frame(i) for i in range(3)])
    rt.fail = True
    vs = judge(p, [frame(n) for n in range(3, 5)])
    assert all(v.verdict == "unknown" and "runtime_error" in codes(v) for v in vs)
    rt.fail = False
    assert [v.verdict for v in judge(p, [frame(5), frame(6)])] == ["unknown", "live"]


def test_attack_scores_never_live():
    p = make_pipeline(Runtime(score=0.9))
    assert {v.verdict for v in judge(p, [frame(i) for i in range(6)])} == {"attack"}


def test_site_threshold_overrides_artifact():
    p = make_pipeline(Runtime(score=0.3), **{"decision.threshold": 0.2})
    assert p.policy.threshold == 0.2
    assert {v.verdict for v in judge(p, [frame(i) for i in range(4)])} == {"attack"}


# ---- threaded: stalled camera, disconnect/reconnect, faults on frames the worker skipped ------------

class ScriptedCamera(Camera):
    """Plays `script` items: a FrameSet, ("stall", seconds) or ("raise", message) (a disconnect)."""

    def __init__(self, script, pace_s=0.003):
        self.script = list(script)
        self.pace_s = pace_s
        self.pos = 0
        self.status = "connecting"
        self.opens = 0
        self._closed = threading.Event()

    def open(self):
        self.opens += 1
        self._closed.clear()
        self.status = "connected"
        return self

    def close(self):
        self.status = "closed"
        self._closed.set()

    def frames(self):
        while self.pos < len(self.script) and not self._closed.is_set():
            item = self.script[self.pos]
            self.pos += 1
            if isinstance(item, tuple) and item[0] == "stall":
                self.status = "connected"
                if self._closed.wait(item[1]):
                    return
            elif isinstance(item, tuple) and item[0] == "raise":
                self.status = "reconnecting"
                raise CameraError(item[1])
            else:
                time.sleep(self.pace_s)
                yield item


def run_threaded(script, runtime=None, pace_s=0.003, **overrides):
    cam = ScriptedCamera(script, pace_s)
    cfg = load_config(overrides={"decision.window": 3, "decision.min_live_frames": 2,
                                 "camera.stall_timeout_s": 0.1, **overrides})
    p = Pipeline(cam, runtime or Runtime(), cfg, detector=BoxDetector(), register=lambda f: f)
    results = []
    p.on_result = results.append
    p.start()
    assert p.wait(timeout=20), "pipeline did not finish its script"
    p.stop()
    return p, cam, results


def tagged(frames, tag):
    for f in frames:
        f.meta["tag"] = tag
    return frames


def test_stalled_camera_reports_stall_and_no_live_while_it_lasts():
    script = tagged([frame(i) for i in range(6)], "ok") + [("stall", 0.5)] + tagged([frame(i) for i in range(6, 12)], "after")
    p, _, results = run_threaded(script, pace_s=0.01)  # slow enough that several frames get judged
    stalled = [r for r in results if r.frames is None]
    assert len(stalled) >= 2
    assert all(r.verdict.verdict == "unknown" and "camera_stalled" in codes(r.verdict) for r in stalled)
    assert results[-1].verdict.verdict == "live"  # recovers once frames flow again
    assert p.latest().fps_display >= 0 and p.latest().camera_status == "closed"


def test_disconnect_and_reconnect_restarts_counters_without_false_stale():
    first = tagged([frame(i) for i in range(100, 106)], "ok")
    second = tagged([frame(i) for i in range(0, 8)], "after")  # a new connection starts counting again
    p, cam, results = run_threaded(first + [("raise", "USB unplugged")] + second, pace_s=0.01)
    assert cam.opens >= 2
    gap = [r for r in results if r.frames is None]
    assert all(r.verdict.verdict != "live" for r in gap)
    assert results[-1].verdict.verdict == "live"
    assert not any("stale_frame" in codes(r.verdict) for r in results if r.frames is not None
                   and r.frames.meta.get("tag") == "after" and r.frames.counter >= 3)


def test_faults_of_skipped_frames_are_carried_to_the_next_judged_frame():
    # a slow runtime makes the worker skip frames; a single replayed frame must still be caught
    class Slow(Runtime):
        def infer(self, batch):
            time.sleep(0.03)
            return super().infer(batch)

    frames = [frame(i) for i in range(30)]
    frames[15] = frame(15, rng=np.random.default_rng(14))  # replay of frame 14
    p, _, results = run_threaded(frames, Slow())
    assert p.counters()["dropped"] > 0
    assert any("repeated_frame" in codes(r.verdict) for r in results)
    judged = [r for r in results if r.frames is not None and 15 <= r.frames.counter]
    assert judged and judged[0].verdict.verdict == "attack"


def test_bright_colour_registers_only_around_the_face_when_roi_is_supported():
    calls = []

    def register(frames, roi=None):
        calls.append(roi)
        return frames

    p = Pipeline(Camera(), Runtime(), load_config(), detector=BoxDetector(), register=register)
    p.process(frame(0))
    (roi,) = calls
    assert roi[0] <= BOX[0] and roi[1] <= BOX[1] and roi[2] >= BOX[2] and roi[3] >= BOX[3]
    calls.clear()
    p.process(frame(1, face=False))
    assert calls == []  # no face: nothing to register


def test_dark_colour_detects_on_registered_ir():
    seen = []

    class IrDetector(BoxDetector):
        def detect(self, image, hint=None, zoom=True):
            seen.append(image.shape)
            return [Det(BOX)]

    p = Pipeline(Camera(), Runtime(), load_config(), detector=IrDetector(), register=lambda f: f)
    dark = frame(0)
    dark.rgb[:] = 5
    v = p.process(dark)[1]
    assert seen == [(H, W)]  # the single-channel IR image, not colour
    assert v.box == BOX and v.score is not None


def test_a_skipped_prepared_frame_hands_on_its_faults_and_face_change():
    from edge_fas.pipeline.pipeline import _carry_prepared, _Prepared

    dropped = _Prepared(frame(1), ["repeated_frame: rgb"], changed=True)
    newer = _Prepared(frame(2), ["no_face"])
    _carry_prepared(dropped, newer)
    assert newer.faults == ["no_face", "repeated_frame: rgb"] and newer.changed


class CallRecorder(BoxDetector):
    """BoxDetector that records what the pipeline asks of each detect() call: (hint, zoom)."""

    def __init__(self):
        self.calls = []

    def detect(self, image, hint=None, zoom=True):
        self.calls.append((hint, zoom))
        return super().detect(image)


def test_detector_is_given_the_tracked_box_as_its_zoom_hint():
    det = CallRecorder()
    p = Pipeline(Camera(), Runtime(), load_config(), detector=det, register=lambda f: f)
    judge(p, [frame(0), frame(1), frame(2, face=False), frame(3)])
    hints = [hint for hint, _ in det.calls]
    assert hints[0] is None  # nothing tracked yet
    assert hints[1] == hints[2] == hints[3] == BOX  # the face tracked so far, also on the frame it went missing


def test_the_zoom_search_is_spaced_out_while_no_face_is_tracked():
    det = CallRecorder()
    cfg = load_config(overrides={"detector.zoom_interval": 3})
    p = Pipeline(Camera(), Runtime(), cfg, detector=det, register=lambda f: f)
    judge(p, [frame(i, face=False) for i in range(7)])
    assert [zoom for _, zoom in det.calls] == [True, False, False, True, False, False, True]  # idle: one in three
    det.calls.clear()
    judge(p, [frame(7), frame(8), frame(9, face=False), frame(10, face=False)])
    assert [zoom for _, zoom in det.calls] == [False, True, True, True]  # a face tracked (also while briefly lost)
