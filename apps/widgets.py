"""Small PyQt6 widgets shared by the viewer and the collect app: an image view fed with numpy RGB
arrays, the score bar with the threshold marked, the verdict banner and the map chooser."""

from __future__ import annotations

import numpy as np
from PyQt6.QtCore import QRectF, QSize, Qt
from PyQt6.QtGui import QColor, QFont, QImage, QPainter, QPen, QPixmap
from PyQt6.QtWidgets import QComboBox, QLabel, QSizePolicy, QWidget

from edge_fas.apps.overlay import NO_VERDICT_COLOUR, VERDICT_COLOURS


def to_qimage(rgb: np.ndarray) -> QImage:
    """An H x W x 3 uint8 RGB array as a QImage that owns its pixels (safe after the array goes)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"to_qimage: expected H x W x 3 uint8 RGB, got {rgb.shape} {rgb.dtype}")
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class ImageView(QLabel):
    """Shows the latest numpy image scaled to the widget, aspect kept; a caption when there is none."""

    def __init__(self, empty_text: str = "no image", min_size: QSize = QSize(160, 120), parent=None):
        super().__init__(parent)
        self.empty_text = empty_text
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._min = min_size
        self.setMinimumSize(min_size)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setStyleSheet("background: #111; color: #aaa;")
        self._image: QImage | None = None
        self.setText(empty_text)

    def set_array(self, rgb: np.ndarray | None) -> None:
        if rgb is None:
            self._image = None
            self.clear()
            self.setText(self.empty_text)
            return
        self._image = to_qimage(rgb)
        self._rescale()

    # The pixmap must not drive the layout (it would grow the window frame by frame): hint the minimum.
    def sizeHint(self) -> QSize:  # noqa: N802
        return self._min

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return self._min

    def image(self) -> QImage | None:
        return self._image

    def resizeEvent(self, event):  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._image is not None:
            self.setPixmap(QPixmap.fromImage(self._image).scaled(
                self.size(), Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation))


def score_text(score: float | None, threshold: float | None) -> str:
    """'P(attack) 0.99   threshold 0.995': as many decimals (2 to 4) as it takes for a threshold near 0
    or 1 not to read as 0.00 / 1.00 and for a score not to print equal to a threshold it differs from."""
    for d in (2, 3, 4):
        fmt = lambda v: f"{v:.{d}f}"  # noqa: E731
        if threshold is None or (fmt(threshold) not in (fmt(0.0), fmt(1.0))
                                 and (score is None or score == threshold or fmt(score) != fmt(threshold))):
            break
    text = "score —" if score is None else f"P(attack) {fmt(score)}"
    return text if threshold is None else f"{text}   threshold {fmt(threshold)}"


class ScoreBar(QWidget):
    """P(attack) from 0 (left) to 1 (right), filled in the verdict colour, the threshold a white tick."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.score: float | None = None
        self.threshold: float | None = None
        self.colour = NO_VERDICT_COLOUR
        self.setMinimumHeight(22)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_values(self, score: float | None, threshold: float | None, colour=NO_VERDICT_COLOUR) -> None:
        self.score = None if score is None else float(np.clip(score, 0.0, 1.0))
        self.threshold = None if threshold is None else float(np.clip(threshold, 0.0, 1.0))
        self.colour = colour
        self.update()

    def paintEvent(self, event):  # noqa: N802
        p = QPainter(self)
        w, h = self.width(), self.height()
        p.fillRect(0, 0, w, h, QColor(40, 40, 40))
        if self.score is not None:
            p.fillRect(QRectF(0, 0, w * self.score, h), QColor(*self.colour))
        if self.threshold is not None:
            x = round(w * self.threshold)
            p.setPen(QPen(QColor(255, 255, 255), 3))
            p.drawLine(x, 0, x, h)
        p.setPen(QColor(255, 255, 255))
        text = score_text(self.score, self.threshold)
        p.drawText(QRectF(6, 0, w - 12, h), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, text)
        p.end()


class Banner(QLabel):
    """The verdict in large letters on its colour; `big` for kiosk mode."""

    TEXT = {"live": "LIVE", "attack": "ATTACK", "unknown": "UNKNOWN"}

    def __init__(self, big: bool = False, parent=None):
        super().__init__(parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        font = QFont()
        font.setPointSize(48 if big else 22)
        font.setBold(True)
        self.setFont(font)
        self.setMinimumHeight(140 if big else 50)
        self.set_verdict(None)

    def set_verdict(self, verdict: str | None, text: str | None = None) -> None:
        """Show `verdict` on its colour; `text` replaces the word (e.g. NO CAMERA on unknown)."""
        text = text or ("WAITING" if verdict is None else self.TEXT[verdict])
        if (getattr(self, "verdict", ""), self.text()) == (verdict, text):
            return  # restyling costs about a millisecond: only on a change
        colour = NO_VERDICT_COLOUR if verdict is None else VERDICT_COLOURS[verdict]
        self.setText(text)
        self.setStyleSheet(f"background: rgb{tuple(colour)}; color: white; border-radius: 6px;")
        self.verdict = verdict


class MapChooser(QComboBox):
    """Which map the viewer blends over the face: the model's spoof trace or uncertainty, or the physics
    check's depth relief ('auto': the trace, else the uncertainty, else the relief)."""

    KINDS = (("auto", "map: auto"), ("trace", "spoof trace"), ("uncertainty", "uncertainty"),
             ("relief", "depth relief (physics)"))

    def __init__(self, parent=None):
        super().__init__(parent)
        for kind, text in self.KINDS:
            self.addItem(text, kind)

    @property
    def kind(self) -> str:
        return str(self.currentData())

    def cycle(self) -> None:
        self.setCurrentIndex((self.currentIndex() + 1) % self.count())
