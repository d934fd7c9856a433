"""Training for invariance: per-modality augmentation, the physics-first preprocessing modes, and the
training config's randomisation / preprocess / augmentation block."""

import numpy as np
import pytest

from edge_fas.data.augment import AugmentParams, augment
from edge_fas.errors import ConfigError
from edge_fas.preprocess import PreprocessParams, normalise_crop

S = 32


def crops(seed=0):
    rng = np.random.default_rng(seed)
    rgb = rng.standard_normal((3, S, S)).astype(np.float32)
    depth = rng.standard_normal((1, S, S)).astype(np.float32)
    depth[0, :4, :4] = 0.0  # a hole
    ir = rng.standard_normal((1, S, S)).astype(np.float32)
    return rgb, depth, ir, np.array([True, True, True])


def test_default_augmentation_draws_nothing_for_photometric_invariance():
    """photometric=0 (the default) consumes no random numbers: old training runs stay reproducible."""
    a = augment(*crops(), np.random.default_rng(5), AugmentParams())
    b = augment(*crops(), np.random.default_rng(5), AugmentParams(photometric=0.0, rgb_gray=0.9, noise=1.0))
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    c = augment(*crops(), np.random.default_rng(5), AugmentParams(photometric=1.0, flip=0.0, cutout=0.0))
    assert not np.allclose(c[2], augment(*crops(), np.random.default_rng(5), AugmentParams(flip=0.0, cutout=0.0))[2])


def test_photometric_invariance_keeps_holes_and_absent_modalities():
    rgb, depth, ir, present = crops()
    present = np.array([True, True, False])
    ir[:] = 0.0
    p = AugmentParams(photometric=1.0, flip=0.0, zoom=(1.0, 1.0), shift=0.0, cutout=0.0, depth_holes=1.0)
    for seed in range(5):
        r, d, i, pr = augment(rgb, depth, ir, present, np.random.default_rng(seed), p)
        assert np.all(d[0, :4, :4] == 0.0)  # a sensor hole stays a hole
        assert (d == 0).sum() >= 16
        assert np.all(i == 0.0) and not pr[2]  # an absent modality is not invented
        assert r.dtype == np.float32 and r.shape == rgb.shape


def test_modality_dropout_never_drops_the_last_modality():
    p = AugmentParams(drop={"rgb": 1.0, "depth": 1.0, "ir": 1.0}, cutout=0.0)
    for seed in range(10):
        *_, present = augment(*crops(seed), np.random.default_rng(seed), p)
        assert present.sum() == 1


def test_augment_params_from_config_fail_clearly():
    with pytest.raises(ConfigError, match="unknown key.*'gamma'"):
        AugmentParams.from_dict({"gamma": 2})
    with pytest.raises(ConfigError, match="photometric=1.5"):
        AugmentParams.from_dict({"photometric": 1.5})
    with pytest.raises(ConfigError, match="unknown modality"):
        AugmentParams.from_dict({"drop": {"thermal": 0.1}})
    assert AugmentParams.from_dict({"ir_contrast": [0.5, 2]}).ir_contrast == (0.5, 2.0)


def _plane(tilt_x=0.0, tilt_y=0.0, base=600.0):
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    return base + tilt_x * xx + tilt_y * yy


def test_plane_mm_depth_removes_tilt_and_keeps_relief_in_millimetres():
    p = PreprocessParams(size=S, depth_norm="plane_mm", depth_unit_mm=20.0)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    dome = 20.0 * np.exp(-((xx - 15.5) ** 2 + (yy - 15.5) ** 2) / (2 * 4.0 ** 2))  # a 20 mm nose
    faces = []
    for tilt in ((0.0, 0.0), (3.0, -2.0)):
        flat = normalise_crop(None, _plane(*tilt), None, p).depth[0]
        assert np.abs(flat).max() < 0.01  # a tilted sheet is flat
        faces.append(normalise_crop(None, _plane(*tilt) - dome, None, p).depth[0])
        assert 0.9 < np.ptp(faces[-1]) < 1.1  # 20 mm of relief = 1 unit
    assert np.abs(faces[0] - faces[1]).max() < 0.02  # whatever the tilt
    old = PreprocessParams(size=S)  # median/MAD: the tilt of a sheet becomes "relief"
    assert np.abs(normalise_crop(None, _plane(3.0, -2.0), None, old).depth[0]).max() > 1.0
    holes = _plane(3.0, 0.0)
    holes[:5] = 0
    out = normalise_crop(None, holes, None, p)
    assert np.all(out.depth[0, :5] == 0) and not out.depth_valid[:5].any()


def test_face_log_ir_is_blind_to_gain_and_keeps_contrast():
    rng = np.random.default_rng(0)
    ir = (rng.uniform(0.3, 0.6, (S, S)) * 40000).astype(np.uint16)
    ir[:3] = 0  # no IR (a hole in the registered stream)
    p = PreprocessParams(size=S, ir_norm="face_log")
    a = normalise_crop(None, None, ir, p).ir[0]
    b = normalise_crop(None, None, (ir // 2).astype(np.uint16), p).ir[0]
    assert np.abs(a - b).max() < 0.01
    assert np.all(a[:3] == 0)
    flat = normalise_crop(None, None, np.full((S, S), 30000, np.uint16), p).ir[0]
    assert np.abs(flat).max() < 1e-6 and a.std() > 0.3  # contrast stays at its real scale


def test_preprocess_modes_round_trip_and_reject_unknown_values():
    p = PreprocessParams(size=64, depth_norm="plane_mm", ir_norm="face_log")
    assert PreprocessParams.from_dict(p.to_dict()) == p
    old = {k: v for k, v in PreprocessParams(size=64).to_dict().items()
           if k not in ("depth_norm", "depth_unit_mm", "ir_norm", "ir_log_unit")}
    assert PreprocessParams.from_dict(old) == PreprocessParams(size=64)  # an old manifest keeps its behaviour
    with pytest.raises(ConfigError, match="depth_norm 'plane'"):
        PreprocessParams(depth_norm="plane")


def test_training_config_data_block_is_checked_and_names_heldout_factors():
    from edge_fas.training import data_params, heldout_summary, load_train_config

    cfg = load_train_config(None, {"data.train_domains": ["rand"], "data.val_domains": ["rand_heldout"],
                                   "data.preprocess": {"depth_norm": "plane_mm"},
                                   "data.augment_params": {"photometric": 0.5}, "data.drop": {"ir": 0.2}})
    params, aug = data_params(cfg, 64)
    assert params.size == 64 and params.depth_norm == "plane_mm"
    assert aug.photometric == 0.5 and aug.drop == {"ir": 0.2}
    held = heldout_summary(cfg, "val")["factors_outside_training_ranges"]["rand_heldout"]
    assert "camera.color_hfov_deg" in held and "pose.distance_m" not in held
    bad = load_train_config(None, {"data.preprocess": {"depth_mode": "x"}})
    with pytest.raises(ConfigError, match="depth_mode"):
        data_params(bad, 64)
    with pytest.raises(ConfigError, match="input size"):
        data_params(load_train_config(None, {"data.preprocess": {"size": 32}}), 64)


def test_training_runs_on_randomised_ranges_with_the_new_preprocessing(tmp_path):
    """One short run: trains on `rand`, validates on a custom held-out set, records the preprocessing."""
    from edge_fas.training import load_model, load_train_config, train

    cfg = load_train_config(None, {
        "model.name": "spoof_trace", "model.overrides": {"input_size": 32},
        "data.train_domains": ["rand"], "data.val_domains": ["rand_far"],
        "data.randomization": {"rand_far": {"base": "rand_heldout", "pose.distance_m": [0.9, 1.0]}},
        "data.per_domain": {"train": 16, "val": 8, "test": 4}, "data.rig_size": [160, 120],
        "data.cache_dir": str(tmp_path / "cache"), "data.preprocess": {"depth_norm": "plane_mm", "ir_norm": "face_log"},
        "data.augment_params": {"photometric": 1.0}, "data.attack_mix": "uniform",
        "train.epochs": 1, "train.batch_size": 8, "train.max_steps_per_epoch": 1, "train.progress": False,
        "out": str(tmp_path / "run")})
    result = train(cfg)
    assert np.isfinite(result["val"]["auc"] if result["val"]["auc"] is not None else 0.5)
    _, info = load_model(tmp_path / "run" / "checkpoint.pt")
    meta = info["meta"]
    assert meta["preprocess"]["depth_norm"] == "plane_mm" and meta["preprocess"]["ir_norm"] == "face_log"
    assert "pose.distance_m" not in meta["validation"]["factors_outside_training_ranges"]["rand_far"]
    assert "camera.color_hfov_deg" in meta["validation"]["factors_outside_training_ranges"]["rand_far"]


def test_eval_finds_a_checkpoints_custom_range_set_by_name():
    """edge-fas eval defaults to the training domains; a custom range set among them stays known."""
    import argparse

    from edge_fas.commands import eval as eval_command
    from edge_fas.data.build import test_indices

    parser = argparse.ArgumentParser()
    eval_command.add_arguments(parser)
    meta = {"training": {"source": "synthetic", "domains": ["rand_far"]},
            "train_config": {"data": {"randomization": {"rand_far": {"pose.distance_m": [0.9, 1.0]}}}}}
    sets = test_indices(eval_command.data_config(parser.parse_args(["model.pt", "--per-domain", "4"]), meta))
    sample = sets["rand_far"].sample(0)
    assert sample.ranges.name == "rand_far" and sample.ranges.values["pose.distance_m"] == (0.9, 1.0)


def test_ir_surround_offsets_the_surround_against_the_face_only():
    from edge_fas.data.augment import face_ellipse

    rgb, depth, ir, present = crops()
    ir[0, -3:, -3:] = 0.0  # a registration hole in the surround
    quiet = dict(photometric=1.0, flip=0.0, zoom=(1.0, 1.0), shift=0.0, cutout=0.0, ir_contrast=(1.0, 1.0),
                 ir_shading=0.0, blur=0.0, noise=0.0)
    offsets = []
    for seed in range(6):
        out = augment(rgb, depth, ir, present, np.random.default_rng(seed), AugmentParams(ir_surround=1.0, **quiet))[2]
        c = S // 2
        assert np.allclose(out[0, c - 3:c + 3, c - 3:c + 3], ir[0, c - 3:c + 3, c - 3:c + 3])  # the face is untouched
        shift = out[0, :3, :3] - ir[0, :3, :3]  # a corner: all surround
        assert np.allclose(shift, shift.flat[0], atol=1e-6) and abs(shift.flat[0]) <= 1.0
        assert np.all(out[0, -3:, -3:] == 0.0)  # holes stay holes
        offsets.append(float(shift.flat[0]))
    assert np.ptp(offsets) > 0.5  # a fresh offset per sample, both ways
    mask = face_ellipse(S)
    assert mask[S // 2, S // 2] == 1.0 and mask[0, 0] == 0.0 and 0.0 < mask[S // 2, int(0.19 * S)] < 1.0
    off = augment(rgb, depth, ir, present, np.random.default_rng(0), AugmentParams(**quiet))[2]
    assert np.array_equal(off, ir)  # off by default: nothing drawn, nothing changed


def test_rgb_surround_offsets_the_colour_surround_in_lightness_only():
    rgb, depth, ir, present = crops()
    quiet = dict(photometric=1.0, flip=0.0, zoom=(1.0, 1.0), shift=0.0, cutout=0.0, rgb_gain=(1.0, 1.0),
                 rgb_offset=0.0, rgb_cast=0.0, rgb_gamma=(1.0, 1.0), rgb_gray=0.0, blur=0.0, noise=0.0)
    offsets = []
    c = S // 2
    for seed in range(6):
        out = augment(rgb, depth, ir, present, np.random.default_rng(seed), AugmentParams(rgb_surround=0.8, **quiet))[0]
        assert np.allclose(out[:, c - 3:c + 3, c - 3:c + 3], rgb[:, c - 3:c + 3, c - 3:c + 3])  # the face is untouched
        shift = out[:, :3, :3] - rgb[:, :3, :3]  # a corner: all surround
        assert np.allclose(shift, shift.flat[0], atol=1e-6) and abs(shift.flat[0]) <= 0.8  # one offset, every channel
        offsets.append(float(shift.flat[0]))
    assert np.ptp(offsets) > 0.4 and min(offsets) < 0 < max(offsets)  # a fresh offset per sample, both ways
    off = augment(rgb, depth, ir, present, np.random.default_rng(0), AugmentParams(**quiet))[0]
    assert np.allclose(off, rgb)  # off by default: nothing drawn, nothing changed


def test_ir_sensor_reimages_face_relative_ir_through_a_drawn_imager():
    """ir_sensor: a clean imager gives the crop back; a dim, low-gain one adds noise that grows where the IR is
    dark; a bright one clips what is brighter than the face; holes stay holes."""
    from edge_fas.data.augment import _reimage_ir

    rng = np.random.default_rng(0)
    ir = np.clip(rng.standard_normal((1, S, S)), -1.0, 1.0).astype(np.float32)  # levels within 1/e..e of the face
    ir[0, :3, :3] = 0.0  # a registration hole
    hole = ir == 0

    def seen(level, gain, read, seed=1):
        p = AugmentParams(ir_sensor=1.0, ir_sensor_level=(level, level), ir_sensor_gain=(gain, gain),
                          ir_sensor_read=(read, read))
        return _reimage_ir(ir, np.random.default_rng(seed), p)

    clean = seen(80.0, 1e9, 0.0)
    assert np.all(clean[hole] == 0.0)
    assert np.abs(clean - ir)[~hole].max() < 0.05  # only rounding to 8 bits (face at 80 of 255)
    dim = seen(12.0, 2.0, 4.0)
    err = (dim - ir)[~hole]
    assert np.std(err) > 0.3 and np.all(dim[hole] == 0.0)
    dark, light = ir[~hole] < -0.5, ir[~hole] > 0.5
    assert np.std(err[dark]) > 1.5 * np.std(err[light])  # noise is relatively larger where the IR is dark
    bright = seen(200.0, 1e9, 0.0)
    assert bright.max() <= np.log(255.0 / 200.0) / 0.5 + 0.05  # brighter than 255 clips
    assert np.abs(bright - ir)[(ir < 0.0) & ~hole].max() < 0.05  # darker than the face is untouched

    # off by default: no draws; on: only the IR changes; the config needs face-relative IR
    a = augment(*crops(), np.random.default_rng(5), AugmentParams())
    b = augment(*crops(), np.random.default_rng(5), AugmentParams(ir_sensor=0.0, ir_sensor_level=(20.0, 30.0)))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = augment(*crops(), np.random.default_rng(5), AugmentParams(ir_sensor=1.0))
    assert not np.allclose(a[2], c[2])
    with pytest.raises(ConfigError, match="ir_sensor_level"):
        AugmentParams.from_dict({"ir_sensor_level": [0.0, 10.0]})
    from edge_fas.training import data_params, load_train_config

    cfg = load_train_config(None, {"data.augment_params": {"ir_sensor": 0.5}, "data.preprocess": {"ir_norm": "crop"}})
    with pytest.raises(ConfigError, match="ir_norm: face_log"):
        data_params(cfg, 64)
    cfg = load_train_config(None, {"data.augment_params": {"ir_sensor": 0.5},
                                   "data.preprocess": {"ir_norm": "face_log", "ir_log_unit": 0.4}})
    assert data_params(cfg, 64)[1].ir_log_unit == 0.4  # the unit the crops were normalised with


def test_ir_log_unit_and_clip_follow_the_preprocessing_only():
    from edge_fas.training import data_params, load_train_config

    cfg = load_train_config(None, {"data.augment_params": {"ir_sensor": 0.5, "ir_log_unit": 0.3}})
    with pytest.raises(ConfigError, match="data.preprocess.ir_log_unit"):
        data_params(cfg, 64)


def test_resample_sees_the_crops_through_fewer_pixels_and_keeps_holes_where_they_were():
    from edge_fas.data.augment import _resample

    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    checker = (((yy + xx) % 2) * 2 - 1)[None]  # the finest detail a crop holds
    ramp = (xx / S)[None]  # a smooth one
    assert np.std(_resample(checker, 2.0)) < 0.1 * np.std(checker)  # 2x fewer pixels: the checkerboard is gone
    assert np.abs(_resample(ramp, 2.0) - ramp)[:, 2:-2, 2:-2].max() < 0.05  # the ramp is not
    assert np.array_equal(_resample(checker, 1.0), checker)  # as many pixels: unchanged
    depth = np.full((1, S, S), 5.0, np.float32)
    depth[0, 10:16, 10:16] = 0.0  # a hole
    seen = _resample(depth, 3.0, holes=True)
    assert np.all(seen[0, 10:16, 10:16] == 0.0) and np.allclose(seen[depth != 0], 5.0, atol=1e-4)  # no bleed, no fill
    # off by default: no draws; on: every modality changes, an absent one stays absent
    a = augment(*crops(), np.random.default_rng(5), AugmentParams())
    b = augment(*crops(), np.random.default_rng(5), AugmentParams(resample=0.0, resample_scale=(2.0, 2.5)))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    rgb, depth, ir, present = crops()
    ir[:] = 0.0
    p = AugmentParams(resample=1.0, resample_scale=(2.0, 2.0), flip=0.0, zoom=(1.0, 1.0), shift=0.0, cutout=0.0,
                      rgb_gain=(1.0, 1.0), rgb_offset=0.0)
    r, d, i, pr = augment(rgb, depth, ir, np.array([True, True, False]), np.random.default_rng(1), p)
    assert np.std(r) < 0.7 * np.std(rgb) and np.std(d) < 0.7 * np.std(depth) and np.all(d[0, :4, :4] == 0.0)
    assert np.all(i == 0.0) and not pr[2]
    with pytest.raises(ConfigError, match="resample_scale=\\[0.5, 2.0\\].*1 <= low <= high"):
        AugmentParams.from_dict({"resample_scale": [0.5, 2]})
    with pytest.raises(ConfigError, match="resample=1.5"):
        AugmentParams.from_dict({"resample": 1.5})
