"""Pure drawing helpers of the GUI (no Qt)."""

import numpy as np
import pytest

from edge_fas.apps import overlay
from edge_fas.types import FrameSet, ModelOutput, Verdict


def _frames(w=64, h=48):
    rgb = np.full((h, w, 3), 100, np.uint8)
    depth = np.full((h, w), 500, np.uint16)
    depth[:, :8] = 0  # a hole
    ir = np.full((h, w), 80, np.uint8)
    return FrameSet(rgb=rgb, depth=depth, ir=ir)


def test_box_is_drawn_in_the_verdict_colour():
    f = _frames()
    for name, colour in overlay.VERDICT_COLOURS.items():
        img, kind = overlay.render_overlay(f, Verdict(name, box=(10, 10, 40, 40)))
        assert kind is None
        assert tuple(img[10, 20]) == colour  # top edge of the box
        assert tuple(img[25, 25]) == (100, 100, 100)  # inside untouched without a map
    assert (f.rgb == 100).all(), "the input frame must not be modified"


def test_no_verdict_or_no_box_shows_plain_frame():
    f = _frames()
    img, _ = overlay.render_overlay(f, None)
    assert (img == f.rgb).all()
    img, _ = overlay.render_overlay(f, Verdict("unknown", reasons=["no face"]))
    assert (img == f.rgb).all()


def test_trace_map_blended_inside_box_only_and_toggle():
    f = _frames()
    trace = np.zeros((1, 3, 8, 8), np.float32)
    trace[0, :, :4] = 1.0  # strong trace in the top half
    v = Verdict("attack", box=(10, 10, 42, 42), output=ModelOutput(score=np.array([0.9]), trace=trace))
    img, kind = overlay.render_overlay(f, v, alpha=0.5)
    assert kind == "trace"
    assert not (img[15, 25] == 100).all()  # blended inside
    assert (img[45, 50] == 100).all()  # outside the box untouched
    assert not (img[15, 25] == img[38, 25]).all()  # strong vs no trace differ
    off, kind = overlay.render_overlay(f, v, show_map=False)
    assert kind is None and (off[25, 25] == 100).all()


def test_pick_map_prefers_trace_and_reduces_uncertainty():
    unc = np.random.default_rng(0).random((1, 3, 4, 4)).astype(np.float32)
    out = ModelOutput(score=np.array([0.2]), uncertainty=unc)
    kind, m = overlay.pick_map(out)
    assert kind == "uncertainty" and m.shape == (4, 4)
    np.testing.assert_allclose(m, unc[0].mean(0), rtol=1e-6)
    out.trace = np.ones((1, 3, 4, 4), np.float32)
    assert overlay.pick_map(out)[0] == "trace"
    assert overlay.pick_map(out, "uncertainty")[0] == "uncertainty"
    assert overlay.pick_map(ModelOutput(score=np.array([0.1]))) is None
    with pytest.raises(ValueError, match="map kind"):
        overlay.pick_map(out, "heat")


def test_box_partly_outside_image_is_clipped():
    f = _frames()
    v = Verdict("live", box=(-20, -20, 30, 30),
                output=ModelOutput(score=np.array([0.1]), trace=np.ones((1, 1, 4, 4), np.float32)))
    img, _ = overlay.render_overlay(f, v)
    assert img.shape == f.rgb.shape
    img, _ = overlay.render_overlay(f, Verdict("live", box=(100, 100, 200, 200)))
    assert (img == f.rgb).all()


def test_depth_and_ir_views():
    f = _frames()
    d = overlay.depth_view(f)
    assert d.shape == (48, 64, 3) and d.dtype == np.uint8
    assert (d[:, :8] == 0).all() and d[:, 20:].any()  # holes black, measurements coloured
    near = overlay.depth_view(f.replace(depth=np.full((48, 64), 300, np.uint16)))
    assert not (near[5, 20] == d[5, 20]).all()
    ir16 = overlay.ir_view(f.replace(ir=np.full((48, 64), 4000, np.uint16)))
    assert ir16.dtype == np.uint8 and ir16.shape == (48, 64, 3) and ir16.max() == 255
    assert overlay.depth_view(FrameSet(rgb=f.rgb)) is None and overlay.ir_view(FrameSet()) is None


def test_frame_without_colour_falls_back_to_ir_and_errors_when_nothing():
    f = _frames().replace(rgb=None)
    img, _ = overlay.render_overlay(f, None)
    assert img.shape == (48, 64, 3) and (img == 80).all()
    with pytest.raises(ValueError, match="neither colour nor IR"):
        overlay.render_overlay(FrameSet(depth=np.zeros((4, 4), np.uint16)), None)


def test_legend_and_latency_text():
    bar = overlay.legend(100, 10)
    assert bar.shape == (10, 100, 3) and not (bar[:, 0] == bar[:, -1]).all()
    assert "trace" in overlay.legend_caption("trace")
    t = overlay.latency_text({"inference": 12.34, "detection": 5.0, "zzz": 1.0})
    assert t.index("detection") < t.index("inference") < t.index("zzz") and t.endswith("ms")
    assert "12.3" in t and overlay.latency_text({}) == ""


def test_the_pose_readout_and_the_stage_order():
    from edge_fas.pipeline.pose import HeadPose

    assert overlay.pose_text(Verdict("live", pose=HeadPose(-12.4, 5.2, True))) == \
        "head yaw -12\u00b0, pitch +5\u00b0 (+: right, down)"
    assert overlay.pose_text(Verdict("unknown")) == "" and overlay.pose_text(None) == ""
    t = overlay.latency_text({"inference": 9.0, "physics": 2.0, "pose": 1.0, "detection": 4.0, "crop": 0.5})
    assert t == "detection 4.0 \u00b7 pose 1.0 \u00b7 crop 0.5 \u00b7 physics 2.0 \u00b7 inference 9.0 ms"
