"""`edge-fas run --screenshot` end to end under Xvfb: helper F's command, the real pipeline on the
synthetic camera, a tiny exported model through ONNX Runtime, this GUI, a PNG at the end."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="xvfb-run (Xvfb) is not installed")
from toy_model import Tiny  # noqa: E402



def test_run_screenshot_under_xvfb(tmp_path):
    import cv2

    from edge_fas.export import export_model
    torch.manual_seed(0)
    export_model(Tiny(), tmp_path / "art", threshold=0.5, threshold_split="test", parity_count=4,
                 parity_source="random", overwrite=True)
    png = tmp_path / "run.png"
    env = dict(os.environ, QT_QPA_PLATFORM="xcb")
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", sys.executable, "-m", "edge_fas.cli", "run",
           "--camera", "synthetic", "--model", str(tmp_path / "art"), "--camera-width", "320",
           "--camera-height", "240", "--screenshot", str(png), "--screenshot-after", "3"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    image = cv2.imread(str(png))
    assert image is not None and image.shape[1] >= 600
    # the banner (top of the window) is in one of the verdict colours, not the grey of "waiting"
    from edge_fas.apps.overlay import VERDICT_COLOURS
    top = image[15:45, 50:300].reshape(-1, 3).astype(int)
    assert any(np.mean(np.all(np.abs(top - np.array(c[::-1])) <= 3, axis=1)) > 0.5
               for c in VERDICT_COLOURS.values()), "no verdict banner in the screenshot"
