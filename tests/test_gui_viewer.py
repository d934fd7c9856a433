"""The viewer window under pytest-qt (offscreen), driven by a stand-in pipeline with Result fields."""

import threading
from dataclasses import dataclass, field

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from edge_fas.apps import overlay  # noqa: E402
from edge_fas.apps.viewer import ViewerWindow, run_gui  # noqa: E402
from edge_fas.apps.widgets import score_text, to_qimage  # noqa: E402
from edge_fas.config import Config  # noqa: E402
from edge_fas.types import FrameSet, ModelOutput, Verdict  # noqa: E402


@dataclass
class Result:
    frames: FrameSet
    verdict: Verdict | None
    camera_status: str = "connected"
    counters: dict = field(default_factory=lambda: {"fps_decisions": 12.5, "dropped": 3})


def _frames(n, w=96, h=72):
    rgb = np.full((h, w, 3), 90, np.uint8)
    return FrameSet(rgb=rgb, depth=np.full((h, w), 600, np.uint16), ir=np.full((h, w), 70, np.uint8),
                    counters={"rgb": n}, timestamps={"rgb": 33.3 * n})


class StubPipeline:
    """latest() returns whatever the test put there, like the pipeline's one-slot result mailbox."""

    def __init__(self, result=None):
        self.result = result
        self.lock = threading.Lock()

    def latest(self):
        with self.lock:
            return self.result

    def put(self, result):
        with self.lock:
            self.result = result


def _pixel(window, x, y):
    c = window.colour.image().pixelColor(x, y)
    return c.red(), c.green(), c.blue()


def test_attack_verdict_banner_box_score_reasons(qtbot):
    trace = np.ones((1, 3, 4, 4), np.float32)
    v = Verdict("attack", score=0.93, threshold=0.4, box=(20, 10, 60, 50), reasons=["model: attack"],
                latency_ms={"detection": 4.0, "inference": 20.0},
                output=ModelOutput(score=np.array([0.93]), trace=trace))
    pipe = StubPipeline(Result(_frames(1), v))
    w = ViewerWindow(pipe, Config(), poll_ms=5)
    qtbot.addWidget(w)
    qtbot.waitUntil(lambda: w.frames_shown == 1, timeout=2000)
    assert w.banner.text() == "ATTACK"
    assert _pixel(w, 40, 10) == overlay.VERDICT_COLOURS["attack"]
    assert w.score_bar.score == pytest.approx(0.93) and w.score_bar.threshold == pytest.approx(0.4)
    assert "model: attack" in w.reasons.text()
    assert "camera connected" in w.status.text() and "dropped 3" in w.status.text()
    assert "12.5" in w.status.text() and "c62828" not in w.status.styleSheet()
    pipe.put(Result(_frames(2), v, camera_status="stalled"))
    qtbot.waitUntil(lambda: w.frames_shown == 2, timeout=2000)
    assert "camera stalled" in w.status.text() and "c62828" in w.status.styleSheet()
    assert "inference 20.0" in w.latency.text()
    assert w.legend_text.text().startswith("spoof trace")
    assert w.depth.image() is not None and w.ir.image() is not None
    blended = _pixel(w, 40, 30)
    assert blended != (90, 90, 90)
    w.map_toggle.setChecked(False)  # toggle off: the face shows through, no legend
    assert _pixel(w, 40, 30) == (90, 90, 90) and w.legend_text.text() == ""


def test_redraws_only_new_frames_and_keeps_last_verdict(qtbot):
    pipe = StubPipeline(None)
    w = ViewerWindow(pipe, poll_ms=5)
    qtbot.addWidget(w)
    qtbot.wait(30)
    assert w.frames_shown == 0 and w.banner.text() == "WAITING"
    v = Verdict("unknown", reasons=["no face"])
    pipe.put(Result(_frames(1), v))
    qtbot.waitUntil(lambda: w.frames_shown == 1, timeout=2000)
    qtbot.wait(40)
    assert w.frames_shown == 1, "the same frame must not be redrawn"
    assert w.banner.text() == "UNKNOWN" and "no face" in w.reasons.text()
    for n in range(2, 6):  # new frames, same (slower) verdict: each is shown
        pipe.put(Result(_frames(n), v))
        qtbot.waitUntil(lambda n=n: w.frames_shown == n, timeout=2000)
    assert w.display_fps() > 0


def test_live_verdict_hides_reasons_and_kiosk_has_no_controls(qtbot):
    v = Verdict("live", score=0.05, threshold=0.5, box=(10, 10, 50, 50), reasons=["window 5/5 live"])
    pipe = StubPipeline(Result(_frames(1), v, camera_status="recording"))
    cfg = Config()
    cfg.gui.fullscreen = True
    w = ViewerWindow(pipe, cfg, poll_ms=5)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.frames_shown == 1, timeout=2000)
    assert w.kiosk and w.banner.text() == "LIVE" and w.reasons.text() == ""
    assert not w.map_toggle.isVisible() and not w.side_panel.isVisible()
    assert w.banner.font().pointSize() > 30


def test_to_qimage_rejects_wrong_arrays():
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        to_qimage(np.zeros((4, 4), np.uint8))


def test_run_gui_screenshot_after_frames(qtbot, tmp_path):
    pipe = StubPipeline(Result(_frames(1), Verdict("live", score=0.1, threshold=0.5, box=(10, 10, 50, 50))))
    counter = {"n": 1}

    def latest():  # a fresh frame on each poll, like a camera
        counter["n"] += 1
        return Result(_frames(counter["n"]), pipe.result.verdict)

    pipe.latest = latest
    out = tmp_path / "shot.png"
    assert run_gui(pipe, Config(), screenshot=out, screenshot_after=5, timeout_s=10) == 0
    assert out.exists() and out.stat().st_size > 1000
    assert run_gui(StubPipeline(None), Config(), screenshot=tmp_path / "no.png", timeout_s=0.2) == 1
    assert not (tmp_path / "no.png").exists()


def test_score_text_never_reads_a_threshold_near_one_as_one():
    assert score_text(0.42, 0.5) == "P(attack) 0.42   threshold 0.50"
    assert score_text(0.9962, 0.9951) == "P(attack) 0.996   threshold 0.995"  # not "1.00 ... 1.00"
    assert score_text(0.9953, 0.9951) == "P(attack) 0.9953   threshold 0.9951"
    assert score_text(None, 0.003) == "score —   threshold 0.003"
    assert score_text(0.3, None) == "P(attack) 0.30"


def test_kiosk_says_no_camera_when_the_source_goes_quiet_or_ends(qtbot):
    """Finding 4: the kiosk froze on a green LIVE when the source ended, and hid the camera status."""
    import time
    v = Verdict("live", score=0.05, threshold=0.5, box=(10, 10, 50, 50))
    pipe = StubPipeline(Result(_frames(1), v))
    pipe.running = True
    cfg = Config()
    cfg.gui.fullscreen = True
    cfg.decision.max_frame_age_ms = 400
    w = ViewerWindow(pipe, cfg, poll_ms=5)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.banner.text() == "LIVE", timeout=2000)
    assert w.kiosk and w.status.isVisible() and "camera connected" in w.status.text()
    t0 = time.monotonic()  # no new frame from here on: the source went quiet
    qtbot.waitUntil(lambda: w.banner.text() == "NO CAMERA", timeout=3000)
    assert time.monotonic() - t0 < 1.5 and w.banner.verdict == "unknown" and "no new frame" in w.reasons.text()
    assert w.score_bar.score is None
    pipe.put(Result(_frames(2), v))  # frames again: the verdict is shown again
    qtbot.waitUntil(lambda: w.banner.text() == "LIVE", timeout=2000)
    pipe.put(Result(_frames(3), v, camera_status="closed"))
    pipe.running = False  # the source ended (recording over, camera failed)
    qtbot.waitUntil(lambda: w.banner.text() == "NO CAMERA", timeout=2000)
    assert "source ended" in w.reasons.text() and "closed" in w.status.text()


def test_screenshot_run_exits_nonzero_at_once_when_the_source_ends_first(qtbot, tmp_path):
    """Finding 4: a --screenshot run hung forever when the source ended before enough frames."""
    import time
    v = Verdict("unknown", reasons=["no_face"])
    pipe = StubPipeline(None)
    pipe.running = True
    shown = {"n": 0}

    def latest():  # two frames, then the source ends
        shown["n"] += 1
        if shown["n"] > 2:
            pipe.running = False
        return Result(_frames(min(shown["n"], 2)), v)

    pipe.latest = latest
    t0 = time.monotonic()
    assert run_gui(pipe, Config(), screenshot=tmp_path / "s.png", screenshot_after=50, timeout_s=8) == 1
    assert time.monotonic() - t0 < 4 and not (tmp_path / "s.png").exists()


def _window(qtbot, verdict, **gui):
    cfg = Config()
    for key, value in gui.items():
        section, name = key.split("__")
        setattr(getattr(cfg, section), name, value)
    w = ViewerWindow(StubPipeline(Result(_frames(1), verdict)), cfg, poll_ms=5)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.frames_shown == 1, timeout=2000)
    return w


def test_the_kiosk_tells_the_presenter_what_to_fix_and_never_which_check_fired(qtbot, monkeypatch):
    from edge_fas.apps.widgets import ImageView

    drawn = {}
    real_set_array = ImageView.set_array

    def recording_set_array(view, rgb):
        drawn[id(view)] = rgb
        real_set_array(view, rgb)
    monkeypatch.setattr(ImageView, "set_array", recording_set_array)
    trace = np.full((1, 3, 8, 8), 0.9, np.float32)
    attack = Verdict("attack", score=0.97, threshold=0.5, box=(10, 10, 50, 50),
                     reasons=["flat_face: depth relief 2.1 mm < 12 mm: a plane (print or screen)"],
                     output=ModelOutput(score=np.array([0.97], np.float32), trace=trace))
    w = _window(qtbot, attack, gui__fullscreen=True)
    assert w.banner.text() == "NOT VERIFIED" and w.banner.verdict == "unknown"  # attack looks like unknown
    assert w.reasons.text() == "" and not w.score_bar.isVisible() and not w.legend_text.isVisible()
    # the face box is drawn in the neutral colour and no map is blended over the face
    expected = overlay.render_overlay(_frames(1), Verdict("unknown", box=(10, 10, 50, 50)), show_map=False)[0]
    assert np.array_equal(drawn[id(w.colour)], expected)
    in_development = overlay.render_overlay(_frames(1), attack)[0]
    assert not np.array_equal(in_development, expected)  # there the map and the red box show
    far = _window(qtbot, Verdict("unknown", box=(10, 10, 50, 50), reasons=["face_too_far: 1.84 m > 1.5 m"]),
                  gui__fullscreen=True)
    assert far.banner.text() == "STEP CLOSER"
    live = _window(qtbot, Verdict("live", score=0.05, threshold=0.5, box=(10, 10, 50, 50)), gui__fullscreen=True)
    assert live.banner.text() == "LIVE" and live.banner.verdict == "live"
    # a site's own words (gui.prompts), as written; prompts it did not translate stay in English
    words = {"Step closer": "Bitte näher treten", "Verified": "Willkommen"}
    far_de = _window(qtbot, Verdict("unknown", box=(10, 10, 50, 50), reasons=["face_too_far: 1.84 m > 1.5 m"]),
                     gui__fullscreen=True, gui__prompts=words)
    assert far_de.banner.text() == "Bitte näher treten"
    assert _window(qtbot, attack, gui__fullscreen=True, gui__prompts=words).banner.text() == "NOT VERIFIED"
    live_de = _window(qtbot, Verdict("live", box=(10, 10, 50, 50)), gui__fullscreen=True, gui__prompts=words)
    assert live_de.banner.text() == "Willkommen" and live_de.banner.verdict == "live"


def test_a_development_window_shows_the_reasons_and_production_does_not(qtbot):
    v = Verdict("attack", score=0.97, threshold=0.5, box=(10, 10, 50, 50), reasons=["flat_face: relief 2.1 mm"])
    dev = _window(qtbot, v)
    assert dev.banner.text() == "ATTACK" and "flat_face" in dev.reasons.text() and dev.score_bar.isVisible()
    assert dev.score_bar.score == pytest.approx(0.97)
    shown_on_kiosk = _window(qtbot, v, gui__fullscreen=True, gui__details="show")
    assert "flat_face" in shown_on_kiosk.reasons.text()  # development may choose to, on purpose
    production = _window(qtbot, v, deployment__mode="production")
    assert production.banner.text() == "NOT VERIFIED" and production.reasons.text() == ""
    assert not production.score_bar.isVisible()


def test_a_blind_registration_check_is_told_to_the_operator_not_to_the_person_presenting(qtbot):
    v = Verdict("unknown", box=(10, 10, 50, 50), reasons=["face_too_far: 1.84 m > 1.5 m"])
    counters = {"fps_decisions": 12.5, "dropped": 0, "registration": {"blind": True, "faces_seen": 12}}
    dev = _window(qtbot, v)
    dev.show_result(Result(_frames(2), v, counters=counters))
    assert "registration check BLIND" in dev.status.text() and "c62828" in dev.status.styleSheet()
    kiosk = _window(qtbot, v, gui__fullscreen=True)
    kiosk.show_result(Result(_frames(2), v, counters=counters))
    assert "BLIND" not in kiosk.status.text() and kiosk.status.styleSheet() == ""
    seeing = dict(counters, registration={"blind": False, "faces_seen": 12})
    dev.show_result(Result(_frames(3), v, counters=seeing))
    assert "BLIND" not in dev.status.text() and dev.status.styleSheet() == ""
