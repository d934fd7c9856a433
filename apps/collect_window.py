"""The operator app of `edge-fas collect` (PyQt6): take labels, consent gate, live preview with the
face check, Record / Stop.

A capture thread reads the camera; every frame goes to the take recorder while a take runs (so the
recording never depends on how fast the GUI draws) and the newest one to a one-slot slot the preview
polls. The face check runs on the previewed frame at most `CHECK_HZ` times a second.
"""

from __future__ import annotations

import threading
import time

from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtWidgets import (QApplication, QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QLabel,
                             QLineEdit, QMainWindow, QPlainTextEdit, QPushButton, QSpinBox, QVBoxLayout,
                             QWidget)

from edge_fas.apps import overlay
from edge_fas.apps.collect import (SPECIES, CollectError, FaceCheck, TakeRecorder, TakeSpec, face_check,
                                   new_subject_id, open_session_writer)
from edge_fas.apps.widgets import ImageView
from edge_fas.drivers.summary import label_confounds, summarize
from edge_fas.errors import EdgeFasError

CHECK_HZ = 5.0
OK_COLOUR, BAD_COLOUR = overlay.VERDICT_COLOURS["live"], overlay.VERDICT_COLOURS["unknown"]


class CaptureThread(threading.Thread):
    """Reads `camera.frames()`: the newest frame for the preview; every frame to the active recorder."""

    def __init__(self, camera):
        super().__init__(name="collect-capture", daemon=True)
        self.camera = camera
        self.lock = threading.Lock()
        self.latest = None
        self.count = 0
        self.recorder: TakeRecorder | None = None
        self.take_frames = 0  # frames wanted in the running take
        self.error: str | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            for frames in self.camera.frames():
                if self._halt.is_set():
                    return
                with self.lock:
                    self.latest, self.count = frames, self.count + 1
                    rec = self.recorder
                if rec is not None and rec.stopped_reason is None and rec.frames_queued < self.take_frames:
                    try:
                        rec.put(frames)
                    except CollectError:
                        pass  # the recorder keeps the reason; the GUI shows it and ends the take
        except Exception as exc:  # noqa: BLE001 - shown to the operator
            self.error = f"camera failed: {exc}"

    def stop(self) -> None:
        self._halt.set()


class CollectWindow(QMainWindow):
    def __init__(self, camera, session_path, config=None, spec: TakeSpec | None = None,
                 retention_days: int | None = None, detector=None, writer_factory=open_session_writer, parent=None):
        super().__init__(parent)
        self.camera = camera
        self.synthetic = getattr(camera, "kind", None) == "synthetic"  # the rig shows nobody: no consent needed
        self.session_path = session_path
        self.retention_days = retention_days
        self.writer_factory = writer_factory
        self.writer = None
        self.detector = detector
        d = getattr(config, "decision", None)
        self.distance = (getattr(d, "min_distance_m", 0.25), getattr(d, "max_distance_m", 1.5))
        self.queue_frames = getattr(getattr(config, "record", None), "queue_frames", 120)
        self.takes: list[dict] = []  # this window's takes
        self.earlier_takes: list[dict] = []  # an appended session's takes from before (their labels and settings)
        self.check: FaceCheck | None = None
        self._last_check = 0.0
        self._shown = -1
        self.setWindowTitle("edge-fas collect")
        self._build(spec or TakeSpec(new_subject_id()))
        self.capture = CaptureThread(camera)
        self.capture.start()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.tick)
        self.timer.start(15)
        self.update_gate()

    # --- layout --------------------------------------------------------------------------------
    def _build(self, spec: TakeSpec) -> None:
        self.subject = QLineEdit(spec.subject_id)
        new_id = QPushButton("New id")
        new_id.clicked.connect(lambda: self.subject.setText(new_subject_id()))
        subject_row = QHBoxLayout()
        subject_row.addWidget(self.subject, 1)
        subject_row.addWidget(new_id)
        self.species = QComboBox()
        self.species.addItems(SPECIES)
        self.species.setCurrentText(spec.species)
        self.site, self.domain = QLineEdit(spec.site), QLineEdit(spec.domain)
        self.notes = QPlainTextEdit(spec.notes)
        self.notes.setMaximumHeight(70)
        self.consent = QCheckBox("The person in view has given informed consent (required for every real camera)")
        self.consent.setChecked(spec.consent)
        self.n_frames = QSpinBox()
        self.n_frames.setRange(1, 100000)
        self.n_frames.setValue(90)
        self.record_button, self.stop_button = QPushButton("Record take"), QPushButton("Stop")
        self.record_button.clicked.connect(self.start_take)
        self.stop_button.clicked.connect(self.stop_take)
        self.gate = QLabel("")
        self.gate.setWordWrap(True)
        self.take_status = QLabel("no take yet")
        self.take_status.setWordWrap(True)
        for w in (self.subject, self.site, self.domain):
            w.textChanged.connect(self.update_gate)
        self.species.currentTextChanged.connect(self.update_gate)
        self.consent.toggled.connect(self.update_gate)

        form = QFormLayout()
        form.addRow("Subject id", subject_row)
        form.addRow("Species", self.species)
        form.addRow("Site", self.site)
        form.addRow("Domain", self.domain)
        form.addRow("Notes", self.notes)
        form.addRow("", self.consent)
        form.addRow("Frames per take", self.n_frames)
        buttons = QHBoxLayout()
        buttons.addWidget(self.record_button)
        buttons.addWidget(self.stop_button)
        left = QVBoxLayout()
        left.addLayout(form)
        left.addLayout(buttons)
        left.addWidget(self.gate)
        left.addWidget(self.take_status)
        left.addStretch(1)
        self.preview = ImageView("waiting for the camera…")
        self.check_label = QLabel("")
        right = QVBoxLayout()
        right.addWidget(self.preview, 1)
        right.addWidget(self.check_label)
        top = QHBoxLayout()
        top.addLayout(left, 1)
        top.addLayout(right, 2)
        central = QWidget()
        central.setLayout(top)
        self.setCentralWidget(central)
        self.resize(1000, 600)

    # --- state ---------------------------------------------------------------------------------
    def spec(self) -> TakeSpec:
        return TakeSpec(self.subject.text().strip(), self.species.currentText(), self.site.text().strip(),
                        self.domain.text().strip(), self.notes.toPlainText().strip(), self.consent.isChecked(),
                        synthetic=self.synthetic)

    def recording(self) -> bool:
        return self.capture.recorder is not None

    def update_gate(self) -> None:
        """Record is enabled only for a take that may be recorded; the label says what is missing."""
        problems = self.spec().problems()
        if self.capture.error:
            problems.append(self.capture.error)
        self.record_button.setEnabled(not problems and not self.recording())
        self.stop_button.setEnabled(self.recording())
        self.gate.setText("" if not problems else "Cannot record: " + "; ".join(problems))
        self.gate.setStyleSheet("color: #b35c00;" if problems else "")

    def start_take(self) -> None:
        spec = self.spec()
        try:
            if self.writer is None:
                self.writer = self.writer_factory(self.session_path, self.camera, spec, self.retention_days)
                if self.writer.takes:  # appending: the session's earlier takes count for the label check too
                    self.earlier_takes = summarize(self.session_path)["takes"]
            recorder = TakeRecorder(self.writer, spec, queue_frames=self.queue_frames)
        except EdgeFasError as exc:  # bad labels, or the session folder cannot be made
            self.take_status.setText(str(exc))
            return
        self.capture.take_frames = self.n_frames.value()
        with self.capture.lock:
            self.capture.recorder = recorder
        for w in (self.site, self.domain):  # the session's site and domain are fixed by its first take
            w.setReadOnly(True)
        self.take_status.setText(f"recording {spec.species} take of {spec.subject_id}…")
        self.update_gate()

    def stop_take(self) -> dict | None:
        """End the running take (all frames accepted so far are written); returns its summary."""
        with self.capture.lock:
            recorder, self.capture.recorder = self.capture.recorder, None
        if recorder is None:
            return None
        summary = {"subject_id": recorder.spec.subject_id, "species": recorder.spec.species,
                   "label": recorder.spec.label, "frames": 0, "problem": recorder.stopped_reason}
        try:
            summary["frames"] = recorder.finish()
        except CollectError as exc:
            summary["problem"] = str(exc)
        summary["sensor"] = recorder.settings()
        self.takes.append(summary)
        # a camera setting that so far tells this session's bona fide takes from its attacks (the emitter
        # off for the attacks, say): said now, while the operator can still record takes that mix them
        summary["warnings"] = label_confounds(self.earlier_takes + self.takes)
        number = recorder.take_id or len(self.takes)  # the session's own number: an appended session has earlier takes
        text = f"take {number} written: {summary['frames']} frames ({summary['species']}, {summary['subject_id']})"
        if summary["problem"]:
            text += f" — stopped early: {summary['problem']}"
        if summary["warnings"]:
            text += "\nWarning: " + "\nWarning: ".join(summary["warnings"])
        self.take_status.setText(text)
        self.consent.setChecked(False)  # consent is per person: ask again for the next take
        self.update_gate()
        return summary

    # --- timer ---------------------------------------------------------------------------------
    def tick(self) -> None:
        rec = self.capture.recorder
        if rec is not None and (rec.frames_queued >= self.capture.take_frames or rec.stopped_reason):
            self.stop_take()
        elif rec is not None:
            self.take_status.setText(f"recording: {rec.frames_queued}/{self.capture.take_frames} frames")
        if self.capture.error and self.record_button.isEnabled():
            self.update_gate()
        with self.capture.lock:
            frames, count = self.capture.latest, self.capture.count
        if frames is None or count == self._shown:
            return
        self._shown = count
        now = time.monotonic()
        if self.detector is not None and now - self._last_check >= 1.0 / CHECK_HZ:
            self._last_check = now
            self.check = face_check(frames, self.detector, *self.distance)
            self.check_label.setText(self.check.text())
            self.check_label.setStyleSheet(f"color: rgb{OK_COLOUR if self.check.ok else BAD_COLOUR};")
        image, _ = overlay.render_overlay(frames, None)
        if self.check is not None and self.check.box is not None:
            image = overlay.draw_box(image, self.check.box, OK_COLOUR if self.check.ok else BAD_COLOUR)
        self.preview.set_array(image)

    def closeEvent(self, event):  # noqa: N802
        self.timer.stop()
        self.stop_take()
        self.capture.stop()
        # let the thread leave the camera's generator before the camera is closed by its owner (a
        # thread killed inside native capture code at exit aborts the process); a stalled camera
        # cannot hold the window up longer than this
        self.capture.join(timeout=2.0)
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        super().closeEvent(event)


def run_collect_gui(camera_spec: str, session_path, config, spec: TakeSpec, retention_days: int | None = None,
                    operator: str = "", append: bool = False) -> int:
    def writer_factory(path, camera, take, days):
        return open_session_writer(path, camera, take, days, operator, append=append)

    from edge_fas.drivers import open_camera
    from edge_fas.face import FaceDetector
    app = QApplication.instance() or QApplication(["edge-fas collect"])
    det = config.detector
    with open_camera(camera_spec, config) as camera, FaceDetector(det.min_score, det.zoom_search) as detector:
        window = CollectWindow(camera, session_path, config, spec, retention_days, detector, writer_factory)
        window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        window.show()
        app.exec()
    return 0
