import numpy as np
import pytest

from edge_fas.errors import CalibrationError, ConfigError
from edge_fas.preprocess import PreprocessParams, crop_face, framed_box, normalise_crop, square_box
from edge_fas.types import FrameSet, Intrinsics, RigCalibration


def test_square_box_is_centred_and_scaled():
    x0, y0, x1, y1 = square_box((100, 50, 200, 250), 1.5)
    assert (x0 + x1) / 2 == 150 and (y0 + y1) / 2 == 150
    assert x1 - x0 == pytest.approx(300) and y1 - y0 == pytest.approx(300)


def _scene():
    h, w = 240, 320
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = xx % 256
    rgb[..., 1] = yy % 256
    # a dome 60 mm high in front of a wall at 600 mm, centred at (160, 120)
    r2 = ((xx - 160) ** 2 + (yy - 120) ** 2) / 50.0 ** 2
    depth = np.where(r2 < 1, 600 - 60 * np.sqrt(np.clip(1 - r2, 0, 1)), 900).astype(np.uint16)
    depth[0:10, :] = 0  # a hole band
    ir = (100 + 50 * (r2 < 1)).astype(np.uint8)
    return FrameSet(rgb=rgb, depth=depth, ir=ir, depth_scale=0.001, registered=True)


def test_crop_face_geometry_and_normalisation():
    p = PreprocessParams(size=64, crop_scale=1.0)
    crop = crop_face(_scene(), (110, 70, 210, 170), p)
    assert crop.rgb.shape == (3, 64, 64) and crop.depth.shape == (1, 64, 64) and crop.ir.shape == (1, 64, 64)
    assert crop.present.tolist() == [True, True, True]
    # the red channel encodes x: the crop starts near x=110 and ends near x=210
    red = crop.rgb[0] * p.rgb_std[0] + p.rgb_mean[0]
    assert red[32, 0] * 255 == pytest.approx(110.5, abs=2) and red[32, -1] * 255 == pytest.approx(208.5, abs=2)
    # depth: nearer is positive; the apex is in front of the face's median, the wall far behind (clipped)
    d = crop.depth[0]
    assert d[32, 32] > 0.2 and d[32, 32] == d.max()
    assert d[1, 1] == -p.depth_clip


def test_flat_surface_noise_is_not_inflated_into_relief():
    rng = np.random.default_rng(0)
    depth_mm = (500 + rng.normal(0, 1.0, (64, 64))).astype(np.float32)  # a print: flat, 1 mm noise
    crop = normalise_crop(None, depth_mm, None, PreprocessParams(size=64))
    assert np.abs(crop.depth).max() < 0.6  # floored scale: 1 mm noise stays well under one unit
    assert crop.present.tolist() == [False, True, False] and not crop.rgb.any() and not crop.ir.any()


def test_holes_stay_zero_and_masked():
    depth_mm = np.full((32, 32), 700, np.float32)
    depth_mm[5:9, 5:9] = 0
    crop = normalise_crop(None, depth_mm, None, PreprocessParams(size=32))
    assert not crop.depth_valid[5:9, 5:9].any() and (crop.depth[0, 5:9, 5:9] == 0).all()


def test_unregistered_frames_are_refused():
    fs = _scene().replace(registered=False)
    with pytest.raises(CalibrationError, match="register_to_color"):
        crop_face(fs, (110, 70, 210, 170), PreprocessParams(size=32))


def test_params_round_trip_and_unknown_keys():
    p = PreprocessParams(size=112, crop_scale=1.3)
    assert PreprocessParams.from_dict(p.to_dict()) == p
    with pytest.raises(Exception, match="unknown key"):
        PreprocessParams.from_dict({"size": 3, "blur": 1})


def test_face_colour_norm_removes_lightness_and_cast_but_keeps_texture():
    rng = np.random.default_rng(0)
    face = rng.integers(60, 180, (64, 64, 3)).astype(np.uint8)
    brighter_warmer = (face.astype(np.int16) + np.array([30, 12, -20])).astype(np.uint8)  # no clipping: 40..210
    imagenet, normed = PreprocessParams(size=64), PreprocessParams(size=64, rgb_norm="face")
    a, b = normalise_crop(face, None, None, normed).rgb, normalise_crop(brighter_warmer, None, None, normed).rgb
    assert np.abs(a - b).max() < 1e-5  # overall lightness and cast are gone
    assert np.abs(a[:, 16:48, 16:48].mean(axis=(1, 2))).max() < 1e-5  # the face centre averages 0 per channel
    plain = normalise_crop(face, None, None, imagenet).rgb
    assert np.abs(plain - normalise_crop(brighter_warmer, None, None, imagenet).rgb).max() > 0.3  # the default keeps them
    # texture keeps its scale: the same image differs from the default normalisation by one offset per channel
    offset = (plain - a).reshape(3, -1)
    assert np.ptp(offset, axis=1).max() < 1e-5 and np.abs(offset).max() > 0.01


def test_unknown_colour_norm_names_the_choices():
    with pytest.raises(Exception, match="rgb_norm 'grey' is unknown.*imagenet.*face"):
        PreprocessParams(size=64, rgb_norm="grey")
    p = PreprocessParams(size=64, rgb_norm="face")
    assert PreprocessParams.from_dict(p.to_dict()) == p


def _calibrated_scene(fx=300.0):
    k = Intrinsics(320, 240, fx, fx, 160.0, 120.0)
    return FrameSet(**{**vars(_scene()), "calibration": RigCalibration(color=k, depth=k, ir=k)})


def test_detector_framing_cuts_the_detectors_box_and_keeps_earlier_manifests_and_caches():
    box = (110, 70, 210, 170)
    assert framed_box(_scene(), box, PreprocessParams(size=64)) == box  # needs no calibration
    d = PreprocessParams(size=64).to_dict()
    assert "framing" not in d and "framing_face_m" not in d  # manifests and cache keys as before framing existed
    m = PreprocessParams(size=64, framing="metric", framing_face_m=0.14)
    assert PreprocessParams.from_dict(m.to_dict()) == m and m.to_dict()["framing"] == "metric"
    with pytest.raises(ConfigError, match="framing 'truth' is unknown"):
        PreprocessParams(framing="truth")
    with pytest.raises(ConfigError, match="framing_face_m 150.0 is not a face's width in metres"):
        PreprocessParams(framing="metric", framing_face_m=150.0)


def test_metric_framing_sizes_the_face_by_its_measured_distance():
    p = PreprocessParams(size=64, framing="metric", framing_face_m=0.15)
    frames = _calibrated_scene(fx=300.0)
    box = (120, 60, 220, 190)  # off-square, off the dome's centre: metric keeps the detector's centre, not its size
    x0, y0, x1, y1 = framed_box(frames, box, p)
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == (170.0, 125.0)
    # the box's middle half: the dome's front, median depth z; side = 0.15 m * 300 px / z
    mid = frames.depth[int(60 + 0.25 * 130):int(190 - 0.25 * 130), int(120 + 25):int(220 - 25)]
    z = float(np.median(mid[mid > 0])) / 1000.0
    assert x1 - x0 == pytest.approx(0.15 * 300.0 / z) and y1 - y0 == pytest.approx(x1 - x0)
    farther = FrameSet(**{**vars(frames), "depth": frames.depth * 2})  # twice as far: half the side
    fx0, _, fx1, _ = framed_box(farther, box, p)
    assert fx1 - fx0 == pytest.approx((x1 - x0) / 2)
    # no depth at the face, or no depth stream: framed as the detector boxed it
    holed = FrameSet(**{**vars(frames), "depth": np.zeros_like(frames.depth)})
    assert framed_box(holed, box, p) == box
    assert framed_box(FrameSet(**{**vars(frames), "depth": None}), box, p) == box
    # a source without the colour camera's focal length, or unregistered depth, is refused by name
    with pytest.raises(CalibrationError, match="framing: metric.*no calibration"):
        framed_box(_scene(), box, p)
    with pytest.raises(CalibrationError, match="register depth to colour"):
        framed_box(FrameSet(**{**vars(frames), "registered": False}), box, p)


@pytest.mark.parametrize("framing", ["metric", "silhouette"])
def test_training_crops_and_the_live_pipeline_cut_the_same_metric_frame(framing):
    """face_source (training, the crop cache, edge-fas eval) and the pipeline's crop both frame by the parameters."""
    from types import SimpleNamespace

    from edge_fas.data.cache import crop_key
    from edge_fas.data.source import face_source, finish
    from edge_fas.pipeline.pipeline import Pipeline

    p = PreprocessParams(size=64, framing=framing)
    frames, box = _calibrated_scene(), (120, 60, 220, 190)
    framed = framed_box(frames, box, p)
    assert framed != box
    src = face_source(frames, box, p)
    assert src.box == pytest.approx(framed)
    np.testing.assert_array_equal(finish(src, p).depth, crop_face(frames, framed, p).depth)
    live = Pipeline._crop(SimpleNamespace(runtime=SimpleNamespace(preprocess=p)), frames, box)
    np.testing.assert_array_equal(live.depth, crop_face(frames, framed, p).depth)
    assert live.box == crop_face(frames, framed, p).box != crop_face(frames, box, p).box
    # a crop cached at one framing is never read for another
    ident = {"sample": "x"}
    assert crop_key(ident, p, True) != crop_key(ident, PreprocessParams(size=64), True)


def test_the_live_crop_registers_again_where_a_metric_frame_outgrows_the_registered_region():
    """The pipeline registers only around the detector's box; a depth-sized frame wider than that region is
    registered again around itself, so its crop has depth wherever the fully registered training crop has."""
    from types import SimpleNamespace

    from edge_fas.calibration import register_to_color
    from edge_fas.data.synthetic import _rig, detected_face_box
    from edge_fas.pipeline.pipeline import ROI_MARGIN, Pipeline

    frames = _rig("rand", 0, 640, 480).render("bona_fide", 0)
    box = detected_face_box(frames.rgb, frames.truth.face_box)
    p = PreprocessParams(size=64, framing="metric", framing_face_m=0.30)  # twice the usual frame: past the region
    roi = tuple(int(round(v)) for v in square_box(box, p.crop_scale * ROI_MARGIN))
    calls = []

    def register(f, roi=None):
        calls.append(roi)
        return register_to_color(f, roi=roi)

    live = SimpleNamespace(runtime=SimpleNamespace(preprocess=p), register=register)
    near = register(frames, roi=roi)
    framed = framed_box(near, box, p)
    whole = register_to_color(frames)
    assert framed == framed_box(whole, box, p)  # the face's depth, read inside the region, is the same
    cut_short = crop_face(near, framed, p)
    crop = Pipeline._crop(live, near, box, frames)
    assert len(calls) == 2 and calls[1] != roi  # registered again, around the metric frame
    expected = crop_face(whole, framed, p)
    assert cut_short.depth_valid.sum() < expected.depth_valid.sum()  # the first region leaves edges without depth
    np.testing.assert_array_equal(crop.depth, expected.depth)
    # a frame inside the region is not registered again
    calls.clear()
    small = PreprocessParams(size=64, framing="metric", framing_face_m=0.10)
    Pipeline._crop(SimpleNamespace(runtime=SimpleNamespace(preprocess=small), register=register), near, box, frames)
    assert calls == []


def test_silhouette_framing_moves_the_metric_square_sideways_onto_the_heads_outline_in_depth():
    frames = _calibrated_scene(fx=300.0)  # the dome (the head) is centred at x = 160 on a wall 300 mm behind it
    box = (120, 60, 220, 190)  # the detector's box, 10 px right of the head and 5 px below its centre
    metric = framed_box(frames, box, PreprocessParams(size=64, framing="metric"))
    s = PreprocessParams(size=64, framing="silhouette")
    x0, y0, x1, y1 = framed_box(frames, box, s)
    assert (x1 - x0, y1 - y0) == pytest.approx((metric[2] - metric[0], metric[3] - metric[1]))  # metric's size
    assert (x0 + x1) / 2 == pytest.approx(160.0, abs=1.0)  # across: the head's outline, not the detector's 170
    assert (y0 + y1) / 2 == pytest.approx(125.0)  # down: the detector's centre
    assert s.to_dict()["framing"] == "silhouette" and PreprocessParams.from_dict(s.to_dict()) == s
    # the outline is searched no farther than the crop square: a wall as near as the face gives the square's middle
    flat = FrameSet(**{**vars(frames), "depth": np.full_like(frames.depth, 600)})
    fx0, _, fx1, _ = framed_box(flat, box, s)
    assert (fx0 + fx1) / 2 == pytest.approx(170.0, abs=1.0)
    # no depth near the face's distance at the centre column on any row searched: metric's square
    ringed = frames.depth.copy()
    ringed[110:140, 165:175] = 0  # a hole at the centre column (the median over the box's middle half survives)
    holed = FrameSet(**{**vars(frames), "depth": ringed})
    assert framed_box(holed, box, s) == framed_box(holed, box, PreprocessParams(size=64, framing="metric"))
    # no depth stream: the detector's box, as metric framing; no calibration: refused by name
    assert framed_box(FrameSet(**{**vars(frames), "depth": None}), box, s) == box
    with pytest.raises(CalibrationError, match="framing: silhouette.*no calibration"):
        framed_box(_scene(), box, s)


def test_the_live_silhouette_crop_reads_the_outline_over_the_same_region_as_training():
    """The pipeline registers only around the detector's box; the silhouette framing reads the head's outline over
    the metric square's crop region, so the live crop registers that first and cuts what fully registered training
    frames give."""
    from types import SimpleNamespace

    from edge_fas.calibration import register_to_color
    from edge_fas.data.synthetic import _rig, detected_face_box
    from edge_fas.pipeline.pipeline import Pipeline

    frames = _rig("rand", 0, 640, 480).render("bona_fide", 0)
    box = detected_face_box(frames.rgb, frames.truth.face_box)
    s = PreprocessParams(size=64, framing="silhouette")
    x0, y0, x1, y1 = box
    roi = (int(x0 + 0.2 * (x1 - x0)), int(y0), int(x1), int(y1))  # a first region that cuts off the head's left side
    calls = []

    def register(f, roi=None):
        calls.append(roi)
        return register_to_color(f, roi=roi)

    whole = register_to_color(frames)
    expected = crop_face(whole, framed_box(whole, box, s), s)
    crop = Pipeline._crop(SimpleNamespace(runtime=SimpleNamespace(preprocess=s), register=register),
                          register(frames, roi=roi), box, frames)
    assert len(calls) >= 2  # registered again before the outline was read
    assert crop.box == expected.box
    np.testing.assert_array_equal(crop.depth, expected.depth)
