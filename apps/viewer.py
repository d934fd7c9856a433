"""The live viewer (PyQt6): `edge-fas run` without --headless opens it through `run_gui`.

The window never waits for the pipeline: a QTimer polls `pipeline.latest()` and redraws only when a
newer frame arrived, so the display keeps the camera's rate while the verdict shown is the latest
one the (possibly slower) inference produced. Drawing is in edge_fas.apps.overlay (no Qt there).

What the viewer reads from a pipeline Result (helper F's edge_fas.pipeline): `frames` (FrameSet),
`verdict` (Verdict with box, score, threshold, reasons, latency_ms, output maps), `camera_status`
(str) and the counters `fps_display`, `fps_decisions`, `dropped` (attributes, or keys of a
`counters` dict). Missing pieces are shown as unknown rather than failing.

What it shows beside the verdict depends on who looks (gui.details): a development window shows each
check's reasons, the score bar and the maps; a kiosk (fullscreen) or a production run shows the person
presenting only LIVE or a prompt they can act on (edge_fas.pipeline.guidance: step closer, face the
camera, not verified), on one colour for attack and unknown, so the screen is no oracle to tune an
attack against.

The source is watched too: when the pipeline has stopped (`pipeline.running` false: the recording
ended, the camera failed) or no new frame came for decision.max_frame_age_ms, the banner says
NO CAMERA on the unknown colour, whatever the last verdict was: a kiosk never freezes on a LIVE.
The camera status line stays visible in kiosk mode.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque

from PyQt6.QtCore import QSize, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QKeySequence, QShortcut
from PyQt6.QtWidgets import (QApplication, QCheckBox, QHBoxLayout, QLabel, QMainWindow, QVBoxLayout,
                             QWidget)

from edge_fas.apps import overlay
from edge_fas.apps.widgets import Banner, ImageView, MapChooser, ScoreBar
from edge_fas.pipeline import guidance

SIDE_VIEW_WIDTH = 320  # depth and IR are drawn small: subsample them to about this width first
POLL_MS = 10  # poll faster than any camera so a new frame waits at most this long to be shown


def _field(result, name, default=None):
    """A Result field as attribute, or from its `counters` dict."""
    if hasattr(result, name):
        return getattr(result, name)
    counters = getattr(result, "counters", None)
    if isinstance(counters, dict):
        return counters.get(name, default)
    return default


def shows_details(config, kiosk: bool) -> bool:
    """Whether the window shows each check's reasons, the score and the maps (gui.details; auto: in a
    development window, not in kiosk mode or production)."""
    setting = getattr(getattr(config, "gui", None), "details", "auto")
    if setting in ("show", "hide"):
        return setting == "show"
    return not kiosk and getattr(getattr(config, "deployment", None), "mode", "development") != "production"


def _frame_key(result):
    """What identifies the displayed frame: its counter/timestamp, else the object itself."""
    frames = getattr(result, "frames", None)
    if frames is None:
        return id(result)
    return (frames.counter, frames.timestamp_ms, id(frames))


class ViewerWindow(QMainWindow):
    """Colour view with overlay, banner, score bar, map toggle + chooser + legend, depth and IR views, status.

    The maps are drawn on the artifact's calibrated absolute scale (its manifest's `maps.scales`), the
    relief in millimetres: the same colour means the same value in every frame."""

    frame_shown = pyqtSignal(int)  # number of frames displayed so far
    source_ended = pyqtSignal()  # the pipeline stopped and its last frame is shown

    def __init__(self, pipeline, config=None, kiosk: bool = False, poll_ms: int = POLL_MS, parent=None):
        super().__init__(parent)
        gui = getattr(config, "gui", None)
        self.pipeline = pipeline
        self.kiosk = bool(kiosk or getattr(gui, "fullscreen", False))
        self.details = shows_details(config, self.kiosk)
        self.prompts = dict(getattr(gui, "prompts", None) or {})  # the site's words for the prompts
        self.alpha = float(getattr(gui, "map_alpha", 0.5))
        self.frames_shown = 0
        self.last_result = None
        self._last_key = None
        self._last_verdict = None
        self.max_frame_age_s = float(getattr(getattr(config, "decision", None), "max_frame_age_ms", 500.0)) / 1000.0
        self._new_frame_at: float | None = None  # monotonic time the newest frame was first shown
        self.no_camera: str | None = None  # why the source is gone or quiet (None: it delivers)
        self._no_camera_state: str | None = None  # None, "ended" or "quiet"
        self._ended = False
        self._shown_at: deque[float] = deque(maxlen=60)
        self.setWindowTitle("edge-fas")

        self.colour = ImageView("waiting for the camera…", parent=self)
        self.banner = Banner(big=self.kiosk)
        self.score_bar = ScoreBar()
        self.map_toggle = QCheckBox("Show map")
        self.map_toggle.setChecked(bool(getattr(gui, "show_maps", True)))
        self.map_toggle.toggled.connect(self._redraw)
        self.map_kind = MapChooser()
        self.map_kind.currentIndexChanged.connect(self._redraw)
        runtime = getattr(pipeline, "runtime", None)
        manifest = getattr(runtime, "manifest", None)
        self.map_scales = ((manifest or {}).get("maps") or {}).get("scales") if isinstance(manifest, dict) else None
        self.legend_bar = ImageView("", min_size=QSize(160, 14))
        self.legend_bar.setFixedSize(160, 14)
        self.legend_bar.set_array(overlay.legend())
        self.legend_text = QLabel("")
        self.depth = ImageView("no depth", min_size=QSize(240, 180))
        self.ir = ImageView("no IR", min_size=QSize(240, 180))
        self.reasons = QLabel("")
        self.reasons.setWordWrap(True)
        self.status = QLabel("")
        self.latency = QLabel("")
        self.pose = QLabel("")
        for label in (self.status, self.latency, self.reasons):
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._build_layout()

        if not self.kiosk:
            QShortcut(QKeySequence("M"), self).activated.connect(self.map_toggle.toggle)
            QShortcut(QKeySequence("T"), self).activated.connect(self.map_kind.cycle)
        QShortcut(QKeySequence("Esc"), self).activated.connect(self.close)

        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self.poll)
        self.timer.start(poll_ms)

    def _build_layout(self) -> None:
        side = QVBoxLayout()
        side.addWidget(QLabel("depth"))
        side.addWidget(self.depth)
        side.addWidget(QLabel("IR"))
        side.addWidget(self.ir)
        if not self.kiosk:
            side.addWidget(self.status)
        side.addWidget(self.latency)
        side.addWidget(self.pose)
        side.addStretch(1)
        for label in (self.status, self.latency):
            label.setWordWrap(True)
        legend = QHBoxLayout()
        legend.addWidget(self.map_toggle)
        legend.addWidget(self.map_kind)
        legend.addWidget(self.legend_bar)
        legend.addWidget(self.legend_text, 1)
        main = QVBoxLayout()
        main.addWidget(self.banner)
        if self.kiosk:  # the operator of a kiosk still sees whether the camera delivers
            main.addWidget(self.status)
        main.addWidget(self.score_bar)
        main.addWidget(self.reasons)
        main.addWidget(self.colour, 1)
        main.addLayout(legend)
        self.side_panel = QWidget()
        self.side_panel.setLayout(side)
        self.side_panel.setFixedWidth(260)
        top = QHBoxLayout()
        top.addLayout(main, 1)
        top.addWidget(self.side_panel)
        central = QWidget()
        central.setLayout(top)
        self.setCentralWidget(central)
        if self.kiosk:  # kiosk: the banner and the view only; the operator cannot change anything
            self.side_panel.hide()
            self.map_toggle.hide()
            self.map_kind.hide()
        if not self.details:  # the person presenting sees a prompt, never a score, a reason or a map
            for widget in (self.score_bar, self.map_toggle, self.map_kind, self.legend_bar, self.legend_text):
                widget.hide()
        self.resize(1000, 660)

    # --- updates -----------------------------------------------------------------------------
    def poll(self) -> None:
        """Called by the timer: redraw when the pipeline has a newer frame or verdict than the one shown,
        and say NO CAMERA when the source ended or went quiet."""
        result = self.pipeline.latest()
        now = time.monotonic()
        if result is not None:
            key, verdict = _frame_key(result), getattr(result, "verdict", None)
            if key != self._last_key:
                self._last_key, self._last_verdict = key, verdict
                self._new_frame_at = now
                self.show_result(result)
            elif verdict is not self._last_verdict:  # e.g. a stall verdict on the same (last) frame
                self._last_verdict = verdict
                self.last_result = result
                self._redraw()
        running = getattr(self.pipeline, "running", True)
        camera = self.camera_status(result) if result is not None else "closed"
        if not running:
            self._set_no_camera("ended", f"the source ended (camera {camera})")
            if not self._ended:
                self._ended = True
                self.source_ended.emit()
        elif self._new_frame_at is not None and now - self._new_frame_at > self.max_frame_age_s:
            self._set_no_camera("quiet", f"no new frame for more than {self.max_frame_age_s * 1000:.0f} ms "
                                         f"(camera {camera})")
        else:
            self._set_no_camera(None, None)

    def _set_no_camera(self, state: str | None, why: str | None) -> None:
        """Enter or leave the NO CAMERA display; redraws only when the state changes."""
        if state == self._no_camera_state:
            return
        self._no_camera_state, self.no_camera = state, why
        if self.last_result is not None:
            self._redraw()
        elif why is not None:  # ended before the first frame
            self._show_no_camera()

    def _show_no_camera(self) -> None:
        self.banner.set_verdict("unknown", text="NO CAMERA")
        self.score_bar.set_values(None, None)
        self.reasons.setText(f"why: {self.no_camera}")
        self.status.setStyleSheet("color: #c62828; font-weight: bold;")

    def show_result(self, result) -> None:
        self.last_result = result
        self._redraw()
        self.frames_shown += 1
        self._shown_at.append(time.monotonic())
        self.frame_shown.emit(self.frames_shown)

    def display_fps(self) -> float:
        """Frames actually drawn per second over the last 60."""
        if len(self._shown_at) < 2:
            return 0.0
        span = self._shown_at[-1] - self._shown_at[0]
        return (len(self._shown_at) - 1) / span if span > 0 else 0.0

    def _redraw(self) -> None:
        result = self.last_result
        if result is None:
            return
        frames, verdict = getattr(result, "frames", None), getattr(result, "verdict", None)
        if not self.details:
            self._redraw_prompt(frames, verdict)
            return
        kind = None
        if frames is not None:
            image, kind = overlay.render_overlay(frames, verdict, show_map=self.map_toggle.isChecked(),
                                                 map_kind=self.map_kind.kind, alpha=self.alpha,
                                                 scales=self.map_scales)
            self.colour.set_array(image)
            if not self.kiosk:
                self.depth.set_array(overlay.depth_view(frames, max_width=SIDE_VIEW_WIDTH))
                self.ir.set_array(overlay.ir_view(frames, max_width=SIDE_VIEW_WIDTH))
        self.legend_bar.setVisible(kind is not None)
        self.legend_text.setText(overlay.legend_caption(kind, overlay.map_scale(kind, self.map_scales))
                                 if kind else "")
        name = None if verdict is None else verdict.verdict
        self.banner.set_verdict(name)
        self.score_bar.set_values(None if verdict is None else verdict.score,
                                  None if verdict is None else verdict.threshold,
                                  overlay.verdict_colour(verdict))
        reasons = [] if verdict is None else list(verdict.reasons)
        self.reasons.setText(("why: " + "; ".join(reasons)) if reasons and name != "live" else "")
        self._show_status(result)
        self.latency.setText(overlay.latency_text({} if verdict is None else verdict.latency_ms))
        self.pose.setText(overlay.pose_text(verdict))
        if self.no_camera is not None:  # no verdict stands without a camera behind it
            self._show_no_camera()

    def _redraw_prompt(self, frames, verdict) -> None:
        """The display for the person presenting: LIVE, or on the neutral colour what they can do about it
        (edge_fas.pipeline.guidance); the face box in the banner's colour, no map, no score, no reason."""
        live = verdict is not None and verdict.verdict == "live"
        shown = verdict if verdict is None or live else dataclasses.replace(verdict, verdict="unknown")
        if frames is not None:  # attack and unknown look the same: the colour must not tell them apart
            self.colour.set_array(overlay.render_overlay(frames, shown, show_map=False)[0])
        if verdict is None:
            self.banner.set_verdict(None)
        elif live:
            self.banner.set_verdict("live", text=self.prompts.get(guidance.VERIFIED))  # None: LIVE
        else:
            words = guidance.prompt(verdict.verdict, verdict.reasons, getattr(verdict, "pose", None))
            self.banner.set_verdict(shown.verdict, text=self.prompts.get(words) or words.upper())
        self.reasons.setText("")
        self._show_status(self.last_result)
        if self.no_camera is not None:
            self._show_no_camera()

    def _show_status(self, result) -> None:
        """The camera and rate line, red while the camera is not delivering (or, in a development window, while the
        running registration check is blind)."""
        self.status.setText(self.status_text(result))
        healthy = self.camera_status(result) in ("connected", "recording") and not self._blind_shown(result)
        style = "" if healthy else "color: #c62828; font-weight: bold;"
        if self.status.styleSheet() != style:
            self.status.setStyleSheet(style)

    def _blind_shown(self, result) -> bool:
        """Whether the status line says the running registration check is blind: the operator's to fix (what stands
        behind the visitors), so only in a development window, never to the person presenting."""
        return self.details and bool((_field(result, "registration") or {}).get("blind"))

    @staticmethod
    def camera_status(result) -> str:
        return _field(result, "camera_status") or _field(result, "status") or "unknown"

    def status_text(self, result) -> str:
        camera = self.camera_status(result)
        decisions = _field(result, "fps_decisions")
        dropped = _field(result, "dropped")
        parts = [f"camera {camera}", f"display {self.display_fps():.1f} fps"]
        mode = getattr(self.pipeline, "physics_mode", None)
        if mode == "detector":  # no network trained for this camera: say so where the operator looks
            parts.append("decided by the physics check (no model trained on real data)")
        if decisions is not None:
            parts.append(f"decisions {float(decisions):.1f}/s")
        if dropped is not None:
            parts.append(f"dropped {int(dropped)}")
        if self._blind_shown(result):
            parts.append("registration check BLIND: it reads too few faces to notice a wrong calibration")
        return " · ".join(parts)


def _application() -> QApplication:
    app = QApplication.instance()
    return app if app is not None else QApplication(["edge-fas"])


def save_screenshot(window: QWidget, path) -> None:
    """Save the window's contents as PNG (works offscreen and under Xvfb)."""
    from pathlib import Path

    from edge_fas.errors import EdgeFasError
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not window.grab().save(str(path), "PNG"):
        raise EdgeFasError(f"could not write the screenshot {path}; check the folder is writable")


def run_gui(pipeline, config=None, fullscreen: bool = False, screenshot=None, screenshot_after: int = 30,
            timeout_s: float | None = None) -> int:
    """Show the viewer on `pipeline` until the window closes; returns an exit code.

    The caller owns the pipeline (starts it before and stops it after). With `screenshot`, the window
    is saved as PNG after `screenshot_after` displayed frames and the GUI exits. `timeout_s` closes
    the window after that many seconds (tests and unattended demos); exit code 1 if a requested
    screenshot was not taken by then, or when the source ended before it could be.
    """
    app = _application()
    window = ViewerWindow(pipeline, config, kiosk=fullscreen)
    taken = {"done": screenshot is None}

    def on_frame(n: int) -> None:
        if screenshot is not None and not taken["done"] and n >= screenshot_after:
            save_screenshot(window, screenshot)
            taken["done"] = True
            window.close()

    def on_source_ended() -> None:  # a screenshot that can no longer be taken: exit 1, do not hang
        if not taken["done"]:
            window.close()

    window.frame_shown.connect(on_frame)
    window.source_ended.connect(on_source_ended)
    if window.kiosk:
        window.showFullScreen()
    else:
        window.show()
    if timeout_s is not None:
        QTimer.singleShot(int(timeout_s * 1000), window.close)
    window.destroyed.connect(app.quit)
    window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    app.exec()
    return 0 if taken["done"] else 1
