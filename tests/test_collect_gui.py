"""The collect operator window under pytest-qt (offscreen) with a stand-in camera and writer."""

import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from edge_fas.apps.collect import TakeSpec  # noqa: E402
from edge_fas.apps.collect_window import CollectWindow  # noqa: E402
from edge_fas.config import Config  # noqa: E402


class MemoryWriter:
    def __init__(self):
        self.takes, self.closed = [], False

    def begin_take(self, **labels):
        self.takes.append({"labels": labels, "frames": [], "ended": False})

    def write(self, frames):
        self.takes[-1]["frames"].append(frames.counter)

    def end_take(self):
        self.takes[-1]["ended"] = True

    def close(self):
        self.closed = True


class ReplayCamera:
    """Yields one rendered rig frame over and over with advancing counters, ~200 fps."""

    def __init__(self, frame):
        self.frame, self.device, self.calibration = frame, frame.device, frame.calibration
        self.sensor = {}  # what the camera reports as its settings (FrameSet.meta["sensor"]); tests change it

    def frames(self):
        n = 0
        while True:
            n += 1
            yield self.frame.replace(counters={"rgb": n, "depth": n, "ir": n}, timestamps={"rgb": 33.3 * n},
                                     meta={**self.frame.meta, "sensor": self.sensor})
            time.sleep(0.005)


@pytest.fixture(scope="module")
def rig_frame():
    from edge_fas.sim import Rig
    return Rig("surf", seed=1, width=320, height=240, emitter=True).render("bona_fide", 0, 0.0)


@pytest.fixture(scope="module")
def detector():
    from edge_fas.face import FaceDetector
    with FaceDetector() as d:
        yield d


@pytest.fixture
def window(qtbot, rig_frame, detector, tmp_path):
    made = []

    def factory(path, camera, spec, days):
        made.append((path, spec.site, spec.domain, days, MemoryWriter()))
        return made[-1][-1]

    w = CollectWindow(ReplayCamera(rig_frame), tmp_path / "s", Config(), TakeSpec("S-abc", "bona_fide", site="lab"),
                      retention_days=30, detector=detector, writer_factory=factory)
    qtbot.addWidget(w)
    w.made = made
    yield w
    w.close()


def test_consent_gate_blocks_record_until_confirmed(window, qtbot):
    assert not window.record_button.isEnabled() and "consent" in window.gate.text()
    window.consent.setChecked(True)
    assert window.record_button.isEnabled() and window.gate.text() == ""
    window.subject.setText("Jane Doe")
    assert not window.record_button.isEnabled() and "pseudonym" in window.gate.text()
    window.subject.setText("S-abc")
    window.consent.setChecked(False)
    window.species.setCurrentText("print")  # a real camera: an attack take shows a person too
    assert not window.record_button.isEnabled() and "consent" in window.gate.text()
    window.consent.setChecked(True)
    assert window.record_button.isEnabled()


def test_preview_shows_face_check(window, qtbot):
    qtbot.waitUntil(lambda: window.check is not None, timeout=5000)
    assert window.check.face_found and "face found" in window.check_label.text()
    assert window.preview.image() is not None


def test_take_records_every_frame_then_stops_and_asks_consent_again(window, qtbot):
    window.consent.setChecked(True)
    window.notes.setPlainText("glasses on")
    window.n_frames.setValue(12)
    window.record_button.click()
    assert window.recording() and not window.record_button.isEnabled() and window.site.isReadOnly()
    qtbot.waitUntil(lambda: len(window.takes) == 1, timeout=5000)
    path, site, domain, days, writer = window.made[0]
    take = writer.takes[0]
    assert take["ended"] and len(take["frames"]) == 12 == window.takes[0]["frames"]
    assert np.all(np.diff(take["frames"]) == 1), "frames of a take must be consecutive (none lost)"
    assert take["labels"] == {"label": 0, "species": "bona_fide", "subject_id": "S-abc", "consent": True,
                              "notes": "glasses on"}
    assert (site, days) == ("lab", 30)
    assert not window.consent.isChecked() and not window.record_button.isEnabled()
    window.species.setCurrentText("replay")  # a second take goes into the same session
    window.consent.setChecked(True)  # asked again for every take
    window.n_frames.setValue(5)
    window.record_button.click()
    qtbot.waitUntil(lambda: len(window.takes) == 2, timeout=5000)
    assert len(window.made) == 1 and len(writer.takes) == 2 and writer.takes[1]["labels"]["label"] == 1
    window.close()
    assert writer.closed


def record_take(window, qtbot, species, laser):
    """One 4-frame take with the camera reporting this laser power; returns the window's take summary."""
    window.capture.camera.sensor = {"depth": {"laser_power": laser, "auto_exposure": 1}}
    window.species.setCurrentText(species)
    window.consent.setChecked(True)
    window.n_frames.setValue(4)
    n = len(window.takes)
    window.record_button.click()
    qtbot.waitUntil(lambda: len(window.takes) == n + 1, timeout=5000)
    return window.takes[-1]


def test_takes_record_the_camera_settings_and_mixed_settings_raise_no_warning(window, qtbot):
    assert record_take(window, qtbot, "bona_fide", 150)["warnings"] == []
    assert record_take(window, qtbot, "print", 150)["warnings"] == []  # the same settings: nothing to say
    t = record_take(window, qtbot, "replay", 0)  # the emitter off for one attack: attacks were recorded both ways
    assert t["sensor"]["depth"]["laser_power"]["max"] == 0 and t["warnings"] == []
    assert "Warning" not in window.take_status.text()


def test_a_session_whose_attacks_all_had_the_emitter_off_is_flagged_on_screen(window, qtbot):
    record_take(window, qtbot, "bona_fide", 150)
    warnings = record_take(window, qtbot, "print", 0)["warnings"]
    assert "depth laser_power separates the labels: bona fide takes 150, attack takes 0" in warnings[0]
    assert "Warning: depth laser_power separates the labels" in window.take_status.text()


def test_stop_button_ends_take_early(window, qtbot):
    window.species.setCurrentText("print")
    window.consent.setChecked(True)
    window.n_frames.setValue(100000)
    window.record_button.click()
    qtbot.waitUntil(lambda: window.capture.recorder is not None and window.capture.recorder.frames_queued >= 3,
                    timeout=5000)
    window.stop_button.click()
    assert not window.recording() and window.takes[0]["frames"] >= 3
    assert window.made[0][-1].takes[0]["ended"]


def test_a_take_appended_to_a_session_is_numbered_after_its_takes(qtbot, rig_frame, detector, tmp_path):
    from edge_fas.apps.collect import open_session_writer
    from edge_fas.drivers.session import SessionReader, SessionWriter
    camera = ReplayCamera(rig_frame)
    with SessionWriter(tmp_path / "s", camera.device, camera.calibration, site="lab", retention_days=30) as w:
        w.begin_take(species="print", subject_id="S-xyz", consent=True)  # an attack with the emitter off
        w.write(rig_frame.replace(meta={**rig_frame.meta, "sensor": {"depth": {"laser_power": 0, "auto_exposure": 1}}}))
    camera.sensor = {"depth": {"laser_power": 150, "auto_exposure": 1}}  # ... and now a bona fide take with it on

    def factory(path, camera, spec, days):
        return open_session_writer(path, camera, spec, days, append=True)

    window = CollectWindow(camera, tmp_path / "s", Config(), TakeSpec("S-abc", "bona_fide", site="lab"),
                           detector=detector, writer_factory=factory)
    qtbot.addWidget(window)
    try:
        window.consent.setChecked(True)
        window.n_frames.setValue(3)
        window.record_button.click()
        qtbot.waitUntil(lambda: len(window.takes) == 1, timeout=5000)
        assert window.take_status.text().startswith("take 0002 written: 3 frames")
        # the session's earlier take counts for the label check: only this window's one could not tell
        assert "Warning: depth laser_power separates the labels" in window.take_status.text()
    finally:
        window.close()
    r = SessionReader(tmp_path / "s")
    assert [(t.id, t.species, t.frames) for t in r.takes] == [("0001", "print", 1), ("0002", "bona_fide", 3)]
    assert r.metadata["retention_days"] == 30
