"""The running registration check (edge_fas.pipeline.registration_monitor): it refuses frames while the median of
its readings around faces lies beyond its limit, and only then.

The first tests feed scripted readings (an injected `measure`) so each rule is exact; the last ones run the real
check on the synthetic rig's frames, with its true calibration and with another one, through Pipeline.process and
through the running pipeline's own thread."""

import json
import logging
import os
import threading
from dataclasses import dataclass, field

import numpy as np
import pytest

from edge_fas.calibration.check import RegistrationCheck
from edge_fas.config import load_config
from edge_fas.errors import CalibrationError, ConfigError
from edge_fas.pipeline.decision import reason_code
from edge_fas.pipeline.guidance import OUT_OF_SERVICE, prompt
from edge_fas.pipeline.registration_monitor import BLIND_FACES, BLIND_START, RegistrationMonitor
from edge_fas.types import FrameSet


def Reading(shift_px, matched_pixels=500, matched=0.5):
    """A check's result with this shift, explaining `matched` of its outline pixels."""
    return RegistrationCheck(float(np.hypot(*shift_px)), tuple(shift_px), 0.0, matched_pixels, None, matched, -1.0,
                             matched_pixels)


@dataclass
class Frames:
    timestamp_ms: float
    registered: bool = True
    rgb: object = field(default_factory=lambda: np.zeros((480, 640, 3), np.uint8))
    depth: object = 1
    device: object = None  # the camera's DeviceInfo (its serial keys the saved state)


class Script:
    """measure() returning the next scripted item: a Reading, or an exception to raise."""

    def __init__(self, items):
        self.items = list(items)
        self.boxes = []

    def __call__(self, reg, box, overlay=True):
        self.boxes.append(box)
        item = self.items.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


def feed(monitor, n, start_ms=0.0, step_ms=500.0, new_face=False):
    """n frames, one reading each (step_ms >= the interval); new_face: a new face first. The faults after each."""
    if new_face:
        monitor.new_face()
    faults = []
    for i in range(n):
        monitor.offer(Frames(start_ms + i * step_ms), (100, 100, 200, 220), synchronous=True)
        faults.append([reason_code(f) for f in monitor.faults()])
    return faults


def faces(monitor, shifts, readings=2):
    """One face per shift, each read `readings` times (a minute apart); the faults after each face."""
    out = []
    for _ in shifts:
        monitor.clock_ms = getattr(monitor, "clock_ms", 0.0) + 60_000.0
        out.append(feed(monitor, readings, start_ms=monitor.clock_ms, new_face=True)[-1])
    return out


def test_a_shift_that_every_face_shows_is_refused_once_enough_faces_agree_and_released_when_they_no_longer_do():
    wrong, right = Reading((7.0, 1.0)), Reading((0.3, -0.2))
    m = RegistrationMonitor(limit_px=5.0, faces=3, min_faces=2, measure=Script([wrong] * 6 + [right] * 6))
    assert faces(m, range(6)) == [[], ["registration_drift"], ["registration_drift"], ["registration_drift"], [],
                                  []]  # from the fifth face, two of the last three read right
    assert m.summary() == {"faces": 3, "drift_px": pytest.approx(0.36, abs=0.01), "apart_px": pytest.approx(0.36, abs=0.01),
                           "refusing": False, "taken": 12, "unmeasurable": 0, "faces_seen": 6, "faces_read": 6,
                           "blind": False}


def test_once_refusing_it_goes_on_until_the_faces_read_within_half_the_limit():
    script = Script([Reading((9.0, 0.0))] * 2 + [Reading((4.0, 0.0))] * 4 + [Reading((1.0, 0.0))] * 4)
    m = RegistrationMonitor(limit_px=6.0, faces=1, min_faces=1, measure=script)
    assert faces(m, range(5)) == [["registration_drift"]] * 3 + [[], []]  # 4 px < 6, but not yet within 3
    first = RegistrationMonitor(limit_px=6.0, faces=1, min_faces=1, measure=Script([Reading((4.0, 0.0))] * 2))
    assert faces(first, [0]) == [[]]  # 4 px never refused: the limit is 6


def test_the_face_being_read_when_a_refusal_began_cannot_release_it():
    """The check's faces change with the box: takes that follow each other in one place stay one face. On fresh seeds
    58-59 a wrong calibration was refused on a bona fide face; a paper mask in the same box then read 4-6 px off, that
    face's median came back within half the limit, and the mask was judged live. Only faces that began after the
    refusal release it."""
    right, wrong = Reading((1.0, 0.0)), Reading((20.0, 0.0))
    m = RegistrationMonitor(limit_px=6.0, faces=5, min_faces=2, measure=Script([right] * 2 + [wrong] * 3 + [right] * 16))
    feed(m, 2, new_face=True)
    assert feed(m, 3, start_ms=60_000.0, new_face=True)[-1] == ["registration_drift"]
    text = m.faults()[0]
    assert "once 2 faces that came after the refusal read within 3 px" in text and m.state() == "refusing"
    # the same face (the mask in the same box) reads right for as long as it likes: still refused
    assert feed(m, 12, start_ms=120_000.0) == [["registration_drift"]] * 12
    assert m.drift()[0] == pytest.approx(1.0)  # its median is back within half the limit
    assert "beyond the limit (6 px) and 0 of the faces since have been read" in m.faults()[0]
    # a face that came after: one is not enough, two release it
    m.clock_ms = 200_000.0
    assert faces(m, range(2)) == [["registration_drift"], []]


def test_one_face_that_stays_cannot_fail_a_rig_however_long_it_reads_wrong():
    """Hair that depth does not see on one side of a head reads as a shift for as long as that person stays."""
    m = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=3, measure=Script([Reading((8.0, 0.0))] * 40))
    assert feed(m, 40, new_face=True)[-1] == []
    assert m.summary()["faces"] == 1


def test_a_face_read_once_counts_for_nothing():
    m = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=1, measure=Script([Reading((8.0, 0.0))] * 3))
    assert faces(m, [0], readings=1) == [[]]
    assert faces(m, [0], readings=2) == [["registration_drift"]]


def test_the_fault_names_the_distance_the_limit_and_the_fix_and_the_kiosk_shows_out_of_service():
    m = RegistrationMonitor(limit_px=2.0, faces=3, min_faces=1, measure=Script([Reading((0.0, -9.0))] * 2))
    faces(m, [0])
    (text,) = m.faults()
    assert text.startswith("registration_drift: depth lies 9.0 px") and "limit 2 px" in text
    assert "calibrate --check" in text
    assert prompt("unknown", [text]) == OUT_OF_SERVICE


def test_the_limit_scales_with_the_image_width():
    m = RegistrationMonitor(limit_px=6.0, faces=1, min_faces=1, measure=Script([Reading((9.0, 0.0))] * 2),
                            reference_view=False)  # the scripted readings are in the stream's own pixels
    m.new_face()
    for t in (0.0, 500.0):
        m.offer(Frames(t, rgb=np.zeros((720, 1280, 3), np.uint8)), (100, 100, 200, 220), synchronous=True)
    assert m.limit == 12.0 and m.faults() == []  # 9 px of a 1280-pixel image: 4.5 px of a 640-pixel one


def test_faces_that_read_every_way_do_not_add_up_to_a_drift():
    """A right calibration's odd faces (6 px each, every way) have a median shift near 0."""
    angles = np.linspace(0, 2 * np.pi, 5, endpoint=False)
    script = Script([Reading((6.0 * np.cos(a), 6.0 * np.sin(a))) for a in angles for _ in range(2)])
    m = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=3, measure=script)
    assert faces(m, angles)[-1] == []
    assert m.summary()["drift_px"] < 3.0


def test_views_without_outlines_count_for_nothing():
    script = Script([CalibrationError("no border"), Reading((9.0, 0.0), matched=0.02), Reading((9.0, 0.0)),
                     Reading((9.0, 0.0))])
    m = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=1, measure=script)
    assert feed(m, 4, new_face=True) == [[], [], [], ["registration_drift"]]
    assert m.summary() == {"faces": 1, "drift_px": 9.0, "apart_px": None, "refusing": True, "taken": 4,
                           "unmeasurable": 2, "faces_seen": 1, "faces_read": 1, "blind": False}
    # (how far apart waits for APART_MIN_FACES faces)


def test_a_face_on_a_screen_does_not_move_the_drift():
    """A face shown on a phone or a print: colour edges with no depth outline behind them, so the fit explains
    little of the outline (4-9%) and its shift says nothing about the calibration. Such readings do not count for
    the drift (only, among the other faces, for how far apart outlines lie); a real face's, explaining half its
    outline, do."""
    screen = [Reading((10.0, -30.0), matched_pixels=900, matched=0.06) for _ in range(4)]
    m = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=2, measure=Script(screen))
    assert faces(m, range(2)) == [[], []] and m.summary()["drift_px"] is None
    face = [Reading((10.0, -30.0), matched_pixels=900, matched=0.5) for _ in range(4)]
    m = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=2, measure=Script(face))
    assert faces(m, range(2))[-1] == ["registration_drift"]


def test_frames_with_a_finding_the_check_is_told_to_leave_are_not_read_and_the_next_frame_due_is(monkeypatch):
    """UNREAD_FINDINGS (shipped empty: a print's sheet has a real outline, docs/deployment.md): a frame with every
    code of one of its groups is not read, nor counted as a face the check failed to read; the next frame due is."""
    from edge_fas.pipeline import registration_monitor as M
    assert M.UNREAD_FINDINGS == ()  # faces found flat are read
    monkeypatch.setattr(M, "UNREAD_FINDINGS", (frozenset({"flat_face", "face_dark_in_ir"}), frozenset({"x"})))
    script = Script([Reading((0.5, 0.0))] * 3)
    m = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=1, measure=script)
    m.new_face()
    for t in (0.0, 500.0, 1000.0):  # a screen: flat and dark in near-IR
        m.offer(Frames(t), (100, 100, 200, 220), synchronous=True, findings=["face_dark_in_ir", "flat_face"])
    assert len(script.items) == 3 and m.summary()["taken"] == 0 and m.summary()["faces_seen"] == 0
    m.offer(Frames(1033.0), (100, 100, 200, 220), synchronous=True, findings=["flat_face"])  # due, half a group: read
    m.offer(Frames(1066.0), (100, 100, 200, 220), synchronous=True)  # within the interval: not read
    m.offer(Frames(1533.0), (100, 100, 200, 220), synchronous=True, findings=["x", "no_pupils_in_ir"])  # left out
    m.offer(Frames(1566.0), (100, 100, 200, 220), synchronous=True)  # due: read
    assert len(script.items) == 1 and m.summary()["taken"] == 2 and m.summary()["faces_read"] == 1


def test_a_check_that_can_read_almost_no_face_says_it_is_blind_and_sees_again_when_faces_read(caplog):
    """A camera whose views give readings under MIN_MATCHED_PX outline pixels (a wall right behind the visitors) leaves
    the drift rule nothing to judge: with a wrong calibration it would never refuse. That is reported, not refused:
    from BLIND_START faces the check had time for, while fewer than min_faces of the last BLIND_FACES were read."""
    faint = Reading((9.0, 0.0), matched_pixels=120, matched=0.5)  # 9 px off, but too little outline to count
    good = Reading((0.5, 0.0))
    script = Script([faint] * 2 * (BLIND_START - 1) + [faint] * 2 + [good] * 4 + [faint] * 2 * BLIND_FACES)
    m = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=2, measure=script)
    with caplog.at_level(logging.INFO, logger="edge_fas.pipeline.registration_monitor"):
        assert m.state() == "waiting"
        faces(m, range(BLIND_START - 1))
        assert m.blind() is None and not m.summary()["blind"]  # too few faces yet to say
        assert faces(m, [0]) == [[]]  # blind: no fault, the frames are still judged
        text = m.blind()
        assert m.state() == "blind"
        assert f"of the last {BLIND_START} faces it had time for, 0 gave readings" in text
        assert "needs 2 to judge" in text and "calibrate --check" in text
        summary = m.summary()
        assert summary["blind"] and summary["blind_detail"] == text
        assert (summary["faces_seen"], summary["faces_read"]) == (BLIND_START, 0)
        assert [r.levelname for r in caplog.records] == ["WARNING"]  # once, when it went blind
        faces(m, range(2))  # two faces read: it could judge again
        assert m.blind() is None and m.summary()["faces_read"] == 2 and m.state() == "judging"
        assert m.summary()["drift_px"] == pytest.approx(0.5)
        faces(m, range(BLIND_FACES - 2))  # ... until one of them is out of the last BLIND_FACES
        assert m.blind() is None
        faces(m, [0])
        assert f"of the last {BLIND_FACES} faces it had time for, 1 gave" in m.blind()
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO", "WARNING"]


def test_a_site_that_asks_for_it_has_a_blind_check_refuse_every_frame_until_faces_read_again(tmp_path):
    """calibration.monitor_blind: refuse. The kiosk says "Out of service" (nothing for the person to do), the readings
    go on while frames are refused, two faces read release it, and a restart resumes the refusal before any frame."""
    state = tmp_path / "registration.json"
    faint = Reading((9.0, 0.0), matched_pixels=120, matched=0.5)
    m = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=2, state_file=state, blind="refuse",
                            measure=Script([faint] * 2 * BLIND_START + [Reading((0.5, 0.0))] * 4))
    assert faces(m, range(BLIND_START - 1))[-1] == []  # too few faces yet to say it is blind
    assert faces(m, [0]) == [["registration_unchecked"]]
    (fault,) = m.faults()
    assert "every frame is refused (calibration.monitor_blind: refuse)" in fault and "calibrate --check" in fault
    assert m.state() == "blind" and "every frame is refused" in m.summary()["blind_detail"]
    assert prompt("unknown", m.faults()) == OUT_OF_SERVICE
    again = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=2, state_file=state, blind="refuse",
                                measure=m._measure)
    assert [reason_code(f) for f in again.faults()] == ["registration_unchecked"]  # before any frame
    assert faces(again, range(2)) == [["registration_unchecked"], []]  # read while refused; the second face releases
    # the default only reports it: the same faces, no fault
    reported = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=2, measure=Script([faint] * 2 * BLIND_START))
    assert faces(reported, range(BLIND_START))[-1] == [] and reported.state() == "blind"
    with pytest.raises(ValueError, match="refuse"):
        RegistrationMonitor(blind="deny")


def test_a_colour_stream_narrower_than_validated_is_warned_of_once(caplog):
    """At 320x240 the check refused right cameras and could not read half of them (docs/deployment.md)."""
    m = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=2, measure=Script([Reading((0.5, 0.0))] * 4))
    with caplog.at_level(logging.WARNING, logger="edge_fas.pipeline.registration_monitor"):
        for t in (0.0, 500.0, 1000.0):
            m.offer(Frames(t, rgb=np.zeros((240, 320, 3), np.uint8)), (50, 50, 100, 110), synchronous=True)
    (said,) = [r.getMessage() for r in caplog.records]
    assert "validated on colour 640 pixels wide, this stream is 320" in said and "640x480 or wider" in said
    caplog.clear()
    wide = RegistrationMonitor(measure=Script([Reading((0.5, 0.0))]))
    with caplog.at_level(logging.WARNING, logger="edge_fas.pipeline.registration_monitor"):
        wide.offer(Frames(0.0), (100, 100, 200, 220), synchronous=True)
    assert caplog.records == []


def _wide_disc(depth_moved_px):
    """A registered 1280x720 frame set: a bright disc (a face, radius 160 px) 0.5 m away on a dark wall 1 m away,
    its depth outline `depth_moved_px` to the right of its colour edge."""
    yy, xx = np.mgrid[0:720, 0:1280]
    inside = (xx - 640) ** 2 + (yy - 360) ** 2 <= 160 ** 2
    grey = np.where(inside, 200, 60).astype(np.uint8)
    grey[350:356, 540:740] = 40  # texture inside the face
    rgb = np.clip(np.repeat(grey[..., None], 3, 2) + np.random.default_rng(0).normal(0, 2, (720, 1280, 3)), 0, 255)
    depth = np.where(np.roll(inside, depth_moved_px, axis=1), 500, 1000).astype(np.uint16)
    return FrameSet(rgb=rgb.astype(np.uint8), depth=depth, depth_scale=0.001, registered=True,
                    timestamps={"rgb": 0.0})


@pytest.mark.parametrize("moved", [6, 80])
def test_a_stream_wider_than_640_pixels_is_read_at_640_and_its_shift_given_in_its_own_pixels(moved):
    """At 1280x720 the search (16, then 48 pixels) reaches half as far relative to the image as at the 640 pixels it
    was chosen at: an 80 px misregistration (40 px at 640) lies past it when read natively."""
    from edge_fas.calibration.check import measure_registration
    from edge_fas.pipeline.registration_monitor import read_at_reference_width

    frames, box = _wide_disc(moved), (440.0, 160.0, 840.0, 560.0)
    widths = []

    def measure(reg, b, overlay=False):
        widths.append(reg.rgb.shape[1])
        return measure_registration(reg, b, overlay=overlay)

    r = read_at_reference_width(measure, frames, box)
    assert widths == [640]
    assert r.shift_px[0] == pytest.approx(-moved, abs=1.5) and abs(r.shift_px[1]) <= 1.5 and not r.at_search_edge
    assert r.explains(0.5)
    native = measure_registration(frames, box, overlay=False)
    if moved == 80:  # read natively it reaches the edge of its search and reads a lower bound
        assert native.at_search_edge and abs(native.shift_px[0]) < 60
    else:
        assert native.shift_px[0] == pytest.approx(-moved, abs=1.0)
    # registered only around the face (the live pipeline's ROI): the region is scaled with the view
    depth = np.zeros_like(frames.depth)
    depth[120:600, 400:880] = frames.depth[120:600, 400:880]
    roi = frames.replace(depth=depth, meta={"registration_roi": (400, 120, 880, 600)})
    assert read_at_reference_width(measure, roi, box).shift_px == pytest.approx(r.shift_px, abs=0.5)
    # a stream 640 pixels wide is read as it comes
    narrow = frames.replace(rgb=frames.rgb[120:600, 320:960], depth=frames.depth[120:600, 320:960])
    assert read_at_reference_width(measure, narrow, (120.0, 40.0, 520.0, 440.0)).shift_px == \
        measure_registration(narrow, (120.0, 40.0, 520.0, 440.0), overlay=False).shift_px and widths[-1] == 640


def test_readings_that_explain_almost_none_of_their_outline_say_nothing_about_how_far_apart_it_lies():
    """A face on a phone or a print: colour edges with no depth outline behind them, readings 10-60 px every way that
    explain about 1% of the outline; or people on a camera whose outlines it reads badly (1-5%). They must not add up
    to a far-apart refusal of a right camera."""
    angles = np.linspace(0, 2 * np.pi, 5, endpoint=False)
    screen = [Reading((25.0 * np.cos(a), 25.0 * np.sin(a)), matched_pixels=250, matched=0.01) for a in angles
              for _ in range(2)]
    m = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=3, measure=Script(screen))
    assert faces(m, angles) == [[]] * 5 and m.summary()["apart_px"] is None
    weak = [Reading(r.shift_px, matched_pixels=250, matched=0.03) for r in screen]  # people on a camera it reads badly
    m = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=3, measure=Script(weak))
    assert faces(m, angles) == [[]] * 5 and m.summary()["apart_px"] is None
    knocked = [Reading(r.shift_px, matched_pixels=250, matched=0.06) for r in screen]  # a knock's readings explain more
    m = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=3, measure=Script(knocked))
    assert faces(m, angles)[-1] == ["registration_drift"]


def test_faces_that_left_before_a_second_reading_do_not_make_it_blind():
    """Passers-by read once say nothing about the camera."""
    m = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=2, measure=Script([CalibrationError("no border")] * 40))
    faces(m, range(40), readings=1)
    assert m.blind() is None and m.summary()["faces_seen"] == 0


def test_faces_whose_outlines_lie_far_apart_every_way_are_refused():
    """A knock past the search's reach: the readings explain little of the outlines and point every way (their
    per-axis median stays small), but every face's outlines read far apart. Readings that matched too few outline
    pixels still count for nothing."""
    angles = np.linspace(0, 2 * np.pi, 5, endpoint=False)
    far = [Reading((25.0 * np.cos(a), 25.0 * np.sin(a)), matched=0.06) for a in angles for _ in range(2)]
    m = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=3, measure=Script(far))
    assert faces(m, angles) == [[], [], ["registration_drift"], ["registration_drift"], ["registration_drift"]]
    summary = m.summary()
    assert summary["drift_px"] is None and summary["apart_px"] == pytest.approx(25.0)
    assert "farther than the check reads" in m.faults()[0]
    # the same readings with too few outline pixels matched say nothing
    few = [Reading(r.shift_px, matched_pixels=40, matched=0.06) for r in far]
    m = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=3, measure=Script(few))
    assert faces(m, angles)[-1] == [] and m.summary()["apart_px"] is None
    # and right faces (within half of the limit, every way) release it
    right = [Reading((2.0 * np.cos(a), 2.0 * np.sin(a)), matched=0.06) for a in angles for _ in range(2)]
    m = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=3, measure=Script(far + right))
    assert faces(m, list(angles) * 2)[-1] == [] and not m.summary()["refusing"]


def test_a_failing_check_is_a_pipeline_error_not_a_silent_monitor():
    m = RegistrationMonitor(measure=Script([ValueError("bug")]))
    assert feed(m, 1) == [["pipeline_error"]]


def test_it_reads_once_per_interval_of_camera_time_around_the_grown_face_box():
    script = Script([Reading((0.0, 0.0))] * 10)
    m = RegistrationMonitor(interval_s=0.5, measure=script)
    feed(m, 30, step_ms=1000 / 30)  # one second of frames at 30 fps
    assert len(script.boxes) == 2
    assert script.boxes[0] == pytest.approx((70, 64, 230, 256))  # 30% of the box's size on each side
    feed(m, 1, start_ms=0.0)  # a timestamp that goes back (a new recording) starts the interval again
    assert len(script.boxes) == 3


def test_config_bounds_and_switch():
    with pytest.raises(ConfigError, match="monitor_min_faces"):
        load_config(overrides={"calibration.monitor_faces": 3, "calibration.monitor_min_faces": 4})
    assert RegistrationMonitor.from_config(load_config(overrides={"calibration.monitor": False}).calibration) is None
    m = RegistrationMonitor.from_config(load_config().calibration)
    assert (m.limit_px, m.faces, m.min_faces, m.interval_ms, m.blind_refuses) == (6.0, 5, 2, 500.0, False)
    assert RegistrationMonitor.from_config(load_config(overrides={"calibration.monitor_blind": "refuse"})
                                           .calibration).blind_refuses
    with pytest.raises(ConfigError, match="monitor_blind"):
        load_config(overrides={"calibration.monitor_blind": "deny"})


# -- the state kept across restarts (calibration.monitor_state_file) ----------------------------------------------

def _refusing_monitor(state_file):
    m = RegistrationMonitor(limit_px=5.0, faces=3, min_faces=2, measure=Script([Reading((8.0, 0.0))] * 4),
                            state_file=state_file)
    assert faces(m, range(2))[-1] == ["registration_drift"]
    return m


def test_a_restart_resumes_the_refusal_for_the_same_camera_until_faces_read_right(tmp_path):
    """Without the file a restart (a camera pulled out and put back, a crash) judged the next faces with the wrong
    calibration again."""
    state = tmp_path / "registration.json"
    _refusing_monitor(state)
    saved = json.loads(state.read_text())
    assert saved["refusing"] and saved["faces"] == [[8.0, 0.0], [8.0, 0.0]] and saved["drift_px"] == 8.0
    again = RegistrationMonitor(limit_px=5.0, faces=3, min_faces=2, state_file=state,
                                measure=Script([Reading((0.5, 0.0))] * 6))
    (fault,) = again.faults()  # before any frame
    assert fault.startswith("registration_drift: depth lies 8.0 px off the colour image around the last 2 faces")
    assert again.summary()["restored_faces"] == 2
    assert faces(again, range(3)) == [["registration_drift"], [], []]  # one right face of three: median still 8
    assert not json.loads(state.read_text())["refusing"]
    fresh = RegistrationMonitor(limit_px=5.0, faces=3, min_faces=2, state_file=tmp_path / "none.json",
                                measure=Script([]))
    assert fresh.faults() == [] and fresh.summary()["restored_faces"] == 0


def test_a_blind_check_is_still_blind_after_a_restart_and_sees_again_from_faces_read_since(tmp_path):
    """A service restarted every night would otherwise never see the BLIND_START faces it takes to say it is blind."""
    state = tmp_path / "registration.json"
    faint = Reading((9.0, 0.0), matched_pixels=120, matched=0.5)
    m = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=2, state_file=state,
                            measure=Script([faint] * 2 * BLIND_START))
    faces(m, range(BLIND_START))
    assert m.blind() is not None
    assert json.loads(state.read_text())["recent_read"] == [0] * BLIND_START
    again = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=2, state_file=state,
                                measure=Script([Reading((0.5, 0.0))] * 4))
    assert f"of the last {BLIND_START} faces it had time for, 0 gave" in again.blind()  # before any frame
    assert again.state() == "blind" and again.faults() == []
    faces(again, range(2))
    assert again.blind() is None and json.loads(state.read_text())["recent_read"] == [0] * BLIND_START + [1, 1]


def test_a_restart_keeps_how_far_apart_the_faces_read(tmp_path, monkeypatch):
    """A refusal for outlines far apart every way (no drift) resumes too, and its faces count on after the restart."""
    from edge_fas.pipeline import registration_monitor as M

    monkeypatch.setattr(M, "APART_MIN_FACES", 2)  # two faces' worth of far-apart readings, as the test was written
    state = tmp_path / "registration.json"
    far = [Reading((d * 25.0, 0.0), matched=0.06) for d in (1, -1) for _ in range(2)]
    m = RegistrationMonitor(limit_px=5.0, faces=3, min_faces=2, measure=Script(far), state_file=state)
    assert faces(m, range(2))[-1] == ["registration_drift"]
    saved = json.loads(state.read_text())
    assert saved["refusing"] and saved["faces"] == [] and saved["apart"] == [25.0, 25.0]
    again = RegistrationMonitor(limit_px=5.0, faces=3, min_faces=2, state_file=state,
                                measure=Script([Reading((0.5, 0.0))] * 4))
    assert [reason_code(f) for f in again.faults()] == ["registration_drift"]  # before any frame
    assert again.summary()["apart_px"] == 25.0
    assert faces(again, range(2)) == [["registration_drift"], []]  # 25, 25, 0.5: still; 25, 0.5, 0.5: released


def test_a_saved_state_of_another_calibration_or_camera_is_dropped_at_the_first_frame(tmp_path):
    from edge_fas.types import DeviceInfo
    state = tmp_path / "registration.json"
    _refusing_monitor(state)  # its frames: no calibration, no camera named, 640 wide
    other = RegistrationMonitor(limit_px=5.0, faces=3, min_faces=2, state_file=state,
                                measure=Script([Reading((0.5, 0.0))]))
    assert other.faults() != []  # a saved refusal stands until a frame says whose it was
    other.offer(Frames(0.0, device=DeviceInfo(model="D435", serial="8123")), (100, 100, 200, 220), synchronous=True)
    assert other.faults() == [] and other.summary()["faces"] == 0
    assert not json.loads(state.read_text())["refusing"]


def test_the_state_file_is_rewritten_when_something_moved_not_on_every_reading(tmp_path, monkeypatch):
    m = RegistrationMonitor(limit_px=5.0, faces=3, min_faces=2, state_file=tmp_path / "registration.json",
                            measure=Script([Reading((1.0, 0.0))] * 40))
    writes = []
    real = m._write_state
    monkeypatch.setattr(m, "_write_state", lambda st: writes.append(st) or real(st))
    feed(m, 40, new_face=True)  # one face, the same reading 40 times
    # twice: the frames' key at the first frame, the face once it counts; not the 38 readings after
    assert [w["faces"] for w in writes] == [[], [[1.0, 0.0]]]


def test_an_unreadable_state_file_is_kept_aside_and_an_unwritable_one_is_a_config_error(tmp_path):
    state = tmp_path / "registration.json"
    state.write_text("{not json")
    m = RegistrationMonitor(state_file=state, measure=Script([]))
    assert m.faults() == [] and (tmp_path / "registration.json.unreadable").read_text() == "{not json"
    state.write_text("[1, 2]")  # JSON, but not a state
    assert RegistrationMonitor(state_file=state, measure=Script([])).faults() == []
    assert json.loads(state.read_text())["faces"] == []
    with pytest.raises(ConfigError, match="calibration.monitor_state_file: cannot write .*writable"):
        RegistrationMonitor(state_file=tmp_path / "no such folder" / "registration.json", measure=Script([]))


# -- the real check on the synthetic rig ------------------------------------------------------------------------

class FixedRuntime:
    """Scores every face live: what is refused here, the monitor refused."""
    threshold = 0.5

    def __init__(self):
        from edge_fas.preprocess import PreprocessParams
        self.preprocess = PreprocessParams(size=32)

    def infer(self, batch):
        from edge_fas.types import ModelOutput
        return ModelOutput(score=np.array([0.1], np.float32))


def _shifted(cal, metres):
    """The calibration with depth and IR registered `metres` off along x: a knocked mount, another unit."""
    from dataclasses import replace

    from edge_fas.calibration import Extrinsics

    def move(e):
        return Extrinsics(np.asarray(e.R), np.asarray(e.t, float) + np.array([metres, 0.0, 0.0]))
    return replace(cal, depth_to_color=move(cal.depth_to_color), ir_to_color=move(cal.ir_to_color))


class Miscalibrated:
    """A camera whose frames carry a calibration `metres` off the rig's true one."""

    def __init__(self, camera, metres):
        self.camera, self.metres = camera, metres

    def __getattr__(self, name):
        return getattr(self.camera, name)

    def frames(self):
        for f in self.camera.frames():
            yield f.replace(calibration=_shifted(f.calibration, self.metres)) if self.metres else f


MONITOR_FAST = {"calibration.monitor_interval_s": 0.2, "decision.physics": "off"}


@pytest.fixture(scope="module")
def rig_frames():
    from edge_fas.drivers.synthetic import open_synthetic
    config = load_config(overrides=MONITOR_FAST)
    # a new person every 0.53 s (each lap of the one-take scenario plays a new subject)
    with open_synthetic("bona_fide,domain=wmca,seed=0,take=0.4", config, realtime=False, max_frames=90) as cam:
        return list(cam.frames())


@pytest.fixture(scope="module")
def detector():
    from edge_fas.face import FaceDetector
    d = FaceDetector()
    yield d
    d.close()


@pytest.mark.parametrize("metres", [0.0, 0.01, 0.06])  # 6 cm: outlines farther apart than the check's search
def test_the_pipeline_refuses_a_camera_registered_a_centimetre_off_and_only_that_one(rig_frames, detector, metres):
    from edge_fas.pipeline import Pipeline
    pipeline = Pipeline(None, FixedRuntime(), load_config(overrides=MONITOR_FAST), detector=detector, no_drop=True)
    verdicts = [pipeline.process(f.replace(calibration=_shifted(f.calibration, metres)))[1] for f in rig_frames]
    refused = [i for i, v in enumerate(verdicts) if "registration_drift" in map(reason_code, v.reasons)]
    summary = pipeline.registration.summary()
    if metres:
        assert refused and refused == list(range(refused[0], len(verdicts))), summary
        if metres < 0.05:  # within the search: the faces agree on the shift
            assert summary["faces"] >= 3 and summary["drift_px"] > 5.0, summary
        else:  # past it: the readings point every way, and the outlines read far apart
            assert summary["apart_px"] > 2 * 6.0, summary
        assert all(v.verdict != "live" for v in verdicts[refused[0]:])
    else:
        assert summary["faces"] >= 3, summary  # a reading every 0.2 s: two or three per person, most measurable
        assert summary["drift_px"] < 4.0 and summary["apart_px"] < 4.0 and not refused
        assert verdicts[-1].verdict == "live"


@pytest.mark.parametrize("unread", [True, False])
def test_the_pipeline_offers_the_face_with_the_physics_check_s_findings(detector, monkeypatch, unread):
    """The pipeline offers the face after the physics check, with its findings: told to leave faces found flat, it
    reads none of a print held up; as shipped it reads them (a sheet's outline is real in depth and colour)."""
    from edge_fas.drivers.synthetic import open_synthetic
    from edge_fas.pipeline import Pipeline
    from edge_fas.pipeline import registration_monitor as M
    if unread:
        monkeypatch.setattr(M, "UNREAD_FINDINGS", (frozenset({"flat_face"}),))
    config = load_config(overrides={"calibration.monitor_interval_s": 0.2, "decision.physics": "veto"})
    with open_synthetic("print,domain=wmca,seed=0,take=0.5", config, realtime=False, max_frames=45) as cam:
        frames = list(cam.frames())
    pipeline = Pipeline(None, FixedRuntime(), config, detector=detector, no_drop=True)
    verdicts = [pipeline.process(f)[1] for f in frames]
    flat = sum("flat_face" in map(reason_code, v.reasons) for v in verdicts)
    with_face = sum("no_face" not in map(reason_code, v.reasons) for v in verdicts)
    assert flat == with_face >= 30, f"the physics check found {flat} of the {with_face} print frames with a face flat"
    summary = pipeline.registration.summary()
    if unread:
        assert summary["taken"] == 0 and summary["faces_seen"] == 0, summary
    else:
        assert summary["taken"] >= 5, summary


def test_the_running_pipeline_measures_on_its_own_thread(rig_frames, detector):
    from edge_fas.pipeline import Pipeline

    class Replay:
        kind, status = "synthetic", "connected"

        def frames(self):
            yield from (f.replace(calibration=_shifted(f.calibration, 0.01)) for f in rig_frames)

        def open(self):
            pass

        def close(self):
            pass

    results = []
    pipeline = Pipeline(Replay(), FixedRuntime(), load_config(overrides=MONITOR_FAST), detector=detector)
    pipeline.on_result = results.append
    pipeline.start()  # live: frames judged as they come, the monitor on its own thread
    assert pipeline.wait(60)
    thread = pipeline.registration._thread
    pipeline.stop()
    assert thread is not None
    thread.join(30)  # stop() waits 2 s; a reading at the lowest priority on a loaded machine can take longer
    assert not thread.is_alive()
    assert pipeline.registration.summary()["taken"] >= 1


def test_a_restarted_pipeline_refuses_the_wrong_calibration_from_its_first_face_and_not_a_new_one(rig_frames, detector,
                                                                                                   tmp_path):
    from edge_fas.pipeline import Pipeline
    config = load_config(overrides={**MONITOR_FAST, "calibration.monitor_state_file": str(tmp_path / "reg.json")})
    wrong = [f.replace(calibration=_shifted(f.calibration, 0.01)) for f in rig_frames]
    first = Pipeline(None, FixedRuntime(), config, detector=detector, no_drop=True)
    assert any("registration_drift" in map(reason_code, first.process(f)[1].reasons) for f in wrong)
    restarted = Pipeline(None, FixedRuntime(), config, detector=detector, no_drop=True)
    verdicts = [restarted.process(f)[1] for f in wrong[:20]]
    judged = [v for v in verdicts if v.box is not None]  # frames with a face
    assert judged and all("registration_drift" in map(reason_code, v.reasons) for v in judged)
    recalibrated = Pipeline(None, FixedRuntime(), config, detector=detector, no_drop=True)  # the true calibration
    verdicts = [recalibrated.process(f)[1] for f in rig_frames[:20]]
    assert not any("registration_drift" in map(reason_code, v.reasons) for v in verdicts)
    assert verdicts[-1].verdict == "live"


def _idle(monitor, timeout_s=5.0):
    """Wait (wall time) until the monitor's thread has finished every reading handed to it."""
    import time
    deadline = time.monotonic() + timeout_s
    while monitor._busy_since is not None and time.monotonic() < deadline:
        time.sleep(0.001)
    return monitor._busy_since is None


def test_a_check_that_gets_no_cpu_refuses_frames_instead_of_falling_silent():
    """The monitor's thread runs at the lowest priority; on a saturated CPU its readings would come too late to count
    (a face needs two within its stay) and wrong calibrations would go on unseen."""
    import threading
    release = threading.Event()

    def slow(reg, box, overlay=True):
        release.wait(10)
        return Reading((0.0, 0.0))

    import time
    m = RegistrationMonitor(measure=slow)
    m.starved_s = 0.3  # (the shipped 2 s, shortened for the test)
    try:
        m.new_face()
        faults = []
        for t in np.arange(0.0, 600.0, 100.0):  # frames at 10 fps; the first reading does not end
            m.offer(Frames(float(t)), (100, 100, 200, 220))
            faults.append([reason_code(f) for f in m.faults()])
            time.sleep(0.1)
        assert faults[0] == [] and faults[-1] == ["pipeline_error"]  # waiting, then starved
        assert "starved" in m.faults()[0] and "CPU is saturated" in m.faults()[0]
        release.set()  # the CPU frees up: the readings catch up and the frames are judged again
        assert _idle(m)
        m.offer(Frames(4500.0), (100, 100, 200, 220))
        assert _idle(m) and m.faults() == []
    finally:
        release.set()
        m.close()


def test_a_check_that_keeps_up_is_never_starved():
    m = RegistrationMonitor(measure=Script([Reading((0.0, 0.0))] * 100))
    m.new_face()
    starts = list(np.arange(0.0, 5000.0, 250.0)) + list(np.arange(60_000.0, 65_000.0, 250.0))  # a minute with no face
    for t in starts:
        m.offer(Frames(float(t)), (100, 100, 200, 220))
        assert _idle(m) and m.faults() == []
    assert m.summary()["taken"] == 20
    m.close()


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread priorities are a Linux feature")
def test_readings_run_at_the_lowest_priority_and_the_pipeline_keeps_its_own():
    seen = []

    def measure(reg, box, overlay=True):
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return Reading((0.0, 0.0))

    base = os.getpriority(os.PRIO_PROCESS, 0)
    m = RegistrationMonitor(measure=measure)
    m.offer(Frames(0.0), (100, 100, 200, 220))
    assert _idle(m)
    m.close()
    assert seen == [min(19, base + 19)] and os.getpriority(os.PRIO_PROCESS, 0) == base


def test_a_face_whose_own_readings_point_every_way_reads_far_apart():
    """Fresh rig seeds 46-47, a camera turned 5 degrees (`rand_test` 46): the tracker kept one face over several
    takes, that face's readings pointed every way, and the length of their per-axis median stayed near 6 px, so the
    knock was never refused. How far apart a face's outlines read is the median of its readings' lengths."""
    angles = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    scattered = [Reading((25.0 * np.cos(a), 25.0 * np.sin(a)), matched=0.06) for a in angles]
    m = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=3, measure=Script(scattered * 3))
    assert faces(m, [None] * 3, readings=6)[-1] == ["registration_drift"]
    assert m.summary()["apart_px"] == pytest.approx(25.0)
    # a right face whose few readings scatter a little stays within the limit
    small = [Reading((2.0 * np.cos(a), 2.0 * np.sin(a)), matched=0.06) for a in angles]
    m = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=3, measure=Script(small * 3))
    assert faces(m, [None] * 3, readings=6)[-1] == [] and m.summary()["apart_px"] == pytest.approx(2.0)


def test_the_far_apart_rule_can_keep_a_floor_of_faces_of_its_own(monkeypatch):
    """APART_MIN_FACES: the far-apart rule waits for that many faces even when min_faces (the drift rule's) is lower:
    one odd face in two (a right camera, `padisi` 46, one face 30 px apart) was a false alarm from two faces."""
    from edge_fas.pipeline import registration_monitor as M

    far = [Reading((25.0 * s, 0.0), matched=0.06) for s in (1, -1, 1) for _ in range(2)]  # every way: no drift
    monkeypatch.setattr(M, "APART_MIN_FACES", 3)
    m = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=2, measure=Script(far))
    assert faces(m, range(3)) == [[], [], ["registration_drift"]]
    shifted = [Reading((9.0, 0.0))] * 4  # the drift rule still refuses from min_faces
    m = RegistrationMonitor(limit_px=5.0, faces=5, min_faces=2, measure=Script(shifted))
    assert faces(m, range(2)) == [[], ["registration_drift"]]
