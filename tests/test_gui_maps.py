"""Maps on an absolute, calibrated colour scale: a faint trace stays cold in every frame, the chooser
switches trace / uncertainty / physics relief, and the legend says the scale."""

import numpy as np
import pytest

from edge_fas.apps import overlay
from edge_fas.pipeline.physics import PhysicsResult
from edge_fas.types import FrameSet, ModelOutput, Verdict

SCALES = {"trace": {"lo": 0.0, "hi": 0.03}, "uncertainty": {"lo": 0.0, "hi": 1.0}}


def frames():
    return FrameSet(rgb=np.full((80, 80, 3), 90, np.uint8))


def verdict(trace_level, uncertainty=None, physics=None):
    out = ModelOutput(score=np.array([0.1]), trace=np.full((1, 3, 8, 8), trace_level, np.float32),
                      uncertainty=uncertainty)
    return Verdict("live", score=0.1, threshold=0.5, box=(20, 20, 60, 60), output=out, physics=physics)


def centre(img):
    return tuple(int(v) for v in img[40, 40])


def test_faint_trace_stays_cold_on_the_calibrated_scale_and_strong_one_is_hot():
    faint, _ = overlay.render_overlay(frames(), verdict(0.0005), alpha=1.0, scales=SCALES)
    strong, _ = overlay.render_overlay(frames(), verdict(0.03 / np.sqrt(3)), alpha=1.0, scales=SCALES)
    r, _, b = centre(faint)
    assert b > 100 and r < 50  # JET: blue at the bottom of the scale
    r2, _, b2 = centre(strong)
    assert r2 > 100 and b2 < 50  # red at the top
    # without a recorded scale the same faint trace is stretched to its own maximum: relative, and said so
    rel, kind = overlay.render_overlay(frames(), verdict(0.0005), alpha=1.0)
    assert centre(rel)[0] > 100 and overlay.legend_caption(kind, overlay.map_scale(kind, None)).endswith("high")


def test_chooser_kinds_and_legend():
    unc = np.full((1, 3, 4, 4), 0.5, np.float32)
    relief = np.full((10, 10), 10.0, np.float32)
    v = verdict(0.01, uncertainty=unc, physics=PhysicsResult(maps={"relief": relief}, map_box=(30, 30, 50, 50)))
    for kind in ("trace", "uncertainty", "relief"):
        _, shown = overlay.render_overlay(frames(), v, map_kind=kind, scales=SCALES)
        assert shown == kind
    assert overlay.legend_caption("uncertainty", overlay.map_scale("uncertainty", SCALES)) == \
        "uncertainty: 0 \u2192 1, validation scale"
    assert overlay.legend_caption("relief", overlay.map_scale("relief", None)) == "depth relief: 0 \u2192 20 mm"
    # detector mode: no network output, auto shows the relief
    bare = Verdict("live", score=0.1, box=(20, 20, 60, 60), physics=PhysicsResult(maps={"relief": relief},
                                                                                  map_box=(30, 30, 50, 50)))
    assert overlay.render_overlay(frames(), bare)[1] == "relief"
    with pytest.raises(ValueError, match="map kind"):
        overlay.pick_map(v.output, "heat")


def test_viewer_reads_the_artifacts_scales_and_cycles_the_map(qtbot):
    pytest.importorskip("pytestqt")
    from edge_fas.apps.viewer import ViewerWindow
    from edge_fas.config import Config
    from tests.test_gui_viewer import Result, StubPipeline

    pipe = StubPipeline(Result(frames(), verdict(0.0005, uncertainty=np.full((1, 3, 4, 4), 0.9, np.float32))))
    pipe.runtime = type("R", (), {"manifest": {"maps": {"scales": SCALES}}})()
    w = ViewerWindow(pipe, Config(), poll_ms=5)
    qtbot.addWidget(w)
    qtbot.waitUntil(lambda: w.frames_shown >= 1, timeout=3000)
    assert w.legend_text.text() == "spoof trace: 0 \u2192 0.03, validation scale"
    w.map_kind.setCurrentIndex(2)  # uncertainty
    assert w.legend_text.text().startswith("uncertainty: 0")
