"""The viewer's --screenshot path on a real X server (Xvfb), in a subprocess so it owns its display."""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from edge_fas.apps.viewer import run_gui
    from edge_fas.config import Config
    from edge_fas.types import FrameSet, ModelOutput, Verdict

    class Result:
        def __init__(self, n):
            rgb = np.full((240, 320, 3), 90, np.uint8)
            self.frames = FrameSet(rgb=rgb, depth=np.full((240, 320), 700, np.uint16),
                                   ir=np.full((240, 320), 60, np.uint8), counters={"rgb": n})
            trace = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 1, 8, 8)
            self.verdict = Verdict("attack", score=0.9, threshold=0.5, box=(100, 60, 220, 180),
                                   reasons=["model: attack"], latency_ms={"inference": 21.0},
                                   output=ModelOutput(score=np.array([0.9]), trace=trace))
            self.camera_status = "connected"

    class Pipe:
        n = 0
        def latest(self):
            self.n += 1
            return Result(self.n)

    from PyQt6.QtWidgets import QApplication
    app = QApplication(["test"])
    assert app.platformName() == "xcb", app.platformName()
    sys.exit(run_gui(Pipe(), Config(), screenshot=sys.argv[1], screenshot_after=10, timeout_s=20))
""")


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="xvfb-run (Xvfb) is not installed")
def test_screenshot_under_xvfb(tmp_path):
    import cv2
    script = tmp_path / "shot.py"
    script.write_text(SCRIPT)
    png = tmp_path / "viewer.png"
    env = dict(os.environ, QT_QPA_PLATFORM="xcb")
    proc = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", sys.executable, str(script), str(png)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    image = cv2.imread(str(png))
    assert image is not None and image.shape[0] >= 400 and image.shape[1] >= 600
    attack_bgr = np.array([40, 40, 230])  # the banner's attack red (RGB 230, 40, 40) in BGR
    red = np.all(np.abs(image.astype(int) - attack_bgr) <= 3, axis=2)
    assert red.mean() > 0.01, "the ATTACK banner should be visible in the screenshot"
