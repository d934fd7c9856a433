"""The viewer on helper F's real Pipeline (synthetic camera, real detector, registration and decision
policy); only the network is a stand-in that reports a spoof trace."""

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pipeline_mod = pytest.importorskip("edge_fas.pipeline.pipeline", reason="helper F's Pipeline has not landed")

from edge_fas.apps.viewer import ViewerWindow  # noqa: E402
from edge_fas.config import Config  # noqa: E402
from edge_fas.preprocess import PreprocessParams  # noqa: E402
from edge_fas.types import ModelOutput  # noqa: E402


class TraceRuntime:
    """Calls every face an attack with a trace map (the GUI test needs maps, not a trained model)."""

    threshold = 0.5
    preprocess = PreprocessParams(size=64)
    kind, model_name, output_names = "stand-in", "stand-in", ["score", "trace"]

    def infer(self, batch):
        n = batch["rgb"].shape[0]
        return ModelOutput(score=np.full(n, 0.95, np.float32),
                           trace=np.abs(batch["rgb"][:, :, ::4, ::4]).astype(np.float32))


def test_viewer_on_the_real_pipeline(qtbot):
    from edge_fas.drivers import open_camera
    cfg = Config()
    cfg.camera.width, cfg.camera.height = 320, 240
    camera = open_camera("synthetic", cfg)
    pipeline = pipeline_mod.Pipeline(camera, TraceRuntime(), cfg)
    w = ViewerWindow(pipeline, cfg, poll_ms=5)
    qtbot.addWidget(w)
    with pipeline:
        qtbot.waitUntil(lambda: w.last_result is not None and w.last_result.verdict.box is not None
                        and w.last_result.verdict.score is not None, timeout=20000)
        qtbot.waitUntil(lambda: w.frames_shown >= 3, timeout=10000)
    result = w.last_result
    assert result.verdict.verdict != "live"  # the stand-in says attack: never live
    assert w.banner.text() in ("ATTACK", "UNKNOWN")
    assert w.legend_text.text().startswith("spoof trace")
    assert "camera" in w.status.text() and w.latency.text().endswith("ms")
    assert w.depth.image() is not None and w.ir.image() is not None
