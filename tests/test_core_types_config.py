import numpy as np
import pytest

from edge_fas.calibration import Extrinsics, Intrinsics, RigCalibration
from edge_fas.config import Config, config_from_dict, load_config
from edge_fas.errors import CalibrationError, ConfigError
from edge_fas.types import FrameSet, GroundTruth, ModelOutput, Verdict


def _rig():
    a = np.deg2rad(1.5)
    R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    return RigCalibration(
        color=Intrinsics(640, 480, 615.2, 615.9, 321.4, 238.7, "inverse_brown_conrady", (0.01, -0.02, 0.001, 0, 0)),
        depth=Intrinsics(640, 480, 386.1, 386.1, 318.0, 241.5),
        ir=Intrinsics(640, 480, 386.1, 386.1, 318.0, 241.5),
        depth_to_color=Extrinsics(R, [0.0151, 0.0002, -0.0004]),
        depth_scale=0.001, source="device")


def test_rig_calibration_yaml_round_trip(tmp_path):
    rig = _rig()
    path = tmp_path / "rig.yaml"
    rig.save(path)
    back = RigCalibration.load(path)
    assert back.color == rig.color and back.depth == rig.depth and back.ir == rig.ir
    np.testing.assert_allclose(back.depth_to_color.R, rig.depth_to_color.R)
    np.testing.assert_allclose(back.depth_to_color.t, rig.depth_to_color.t)
    assert back.source == "device" and back.depth_scale == 0.001


def test_extrinsics_inverse_undoes_transform():
    e = _rig().depth_to_color
    pts = np.random.default_rng(0).normal(size=(20, 3))
    np.testing.assert_allclose(e.inverse().apply(e.apply(pts)), pts, atol=1e-12)


def test_calibration_errors_name_the_problem(tmp_path):
    with pytest.raises(CalibrationError, match="does not exist"):
        RigCalibration.load(tmp_path / "missing.yaml")
    d = _rig().to_dict()
    d["color"]["focal"] = 3
    with pytest.raises(CalibrationError, match=r"color.*unknown key.*focal"):
        RigCalibration.from_dict(d)
    d = _rig().to_dict()
    d["depth_to_color"]["R"] = [[2, 0, 0], [0, 1, 0], [0, 0, 1]]
    with pytest.raises(CalibrationError, match="not a rotation"):
        RigCalibration.from_dict(d)
    d = _rig().to_dict()
    del d["depth"]["fx"]
    with pytest.raises(CalibrationError, match="depth"):
        RigCalibration.from_dict(d)


def test_intrinsics_scaled_keeps_field_of_view():
    k = Intrinsics(640, 480, 600, 600, 319.5, 239.5)
    s = k.scaled(320, 240)
    assert (s.fx, s.fy) == (300, 300)
    assert (s.cx, s.cy) == (159.5, 119.5)


def test_frameset_helpers():
    fs = FrameSet(rgb=np.zeros((4, 4, 3), np.uint8), depth=np.full((4, 4), 500, np.uint16), depth_scale=0.001,
                  timestamps={"rgb": 10.0, "depth": 11.0}, counters={"rgb": 3})
    assert fs.present() == {"rgb": True, "depth": True, "ir": False}
    assert fs.depth_m()[0, 0] == pytest.approx(0.5)
    assert fs.timestamp_ms == 10.0 and fs.counter == 3
    assert fs.replace(registered=True).registered and not fs.registered


def test_model_output_indexing_and_verdict_json():
    out = ModelOutput(score=np.array([0.1, 0.9]), logits=np.array([-2.0, 2.0]), uncertainty=np.zeros((2, 3, 4, 4)))
    assert len(out) == 2 and out[1].score[0] == 0.9 and out[1].uncertainty.shape == (1, 3, 4, 4)
    v = Verdict("unknown", score=None, threshold=0.5, reasons=["no-face"], latency_ms={"detect": 1.23456},
                truth=GroundTruth(1, "print", "d0"))
    d = v.to_dict()
    assert d["reasons"] == ["no-face"] and d["truth"]["species"] == "print" and d["latency_ms"]["detect"] == 1.235
    with pytest.raises(ValueError):
        Verdict("maybe")


def test_config_defaults_and_overrides(tmp_path):
    cfg = load_config(None)
    assert isinstance(cfg, Config) and cfg.camera.fps == 30
    p = tmp_path / "site.yaml"
    p.write_text("camera:\n  spec: realsense:123\n  emitter: off\ndecision:\n  window: 9\n  threshold: 0.3\n")
    cfg = load_config(p, {"decision.window": "7"})
    assert cfg.camera.spec == "realsense:123"
    assert cfg.camera.emitter == "off"  # YAML 1.1 reads bare `off` as False; mapped back
    assert cfg.decision.window == 7 and cfg.decision.threshold == 0.3
    assert config_from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("data, fragment", [
    ({"camra": {}}, r"unknown section.*did you mean 'camera'"),
    ({"decision": {"windw": 3}}, r"decision.windw.*did you mean 'window'"),
    ({"decision": {"xyz": 3}}, r"unknown key 'decision.xyz' \(value 3\); keys"),  # nothing close: no guess
    ({"decision": {"window": "abc"}}, r"decision.window.*'abc'.*expected int"),
    ({"decision": {"window": 0}}, r"decision.window.*at least 1"),
    ({"decision": {"threshold": 1.5}}, r"decision.threshold.*at most 1"),
    ({"camera": {"emitter": "blink"}}, r"camera.emitter.*one of on, off, alternate"),
    ({"decision": {"window": 3, "min_live_frames": 5}}, "min_live_frames"),
    ({"decision": {"required_modalities": ["rgb", "thermal"]}}, "thermal"),
])
def test_config_errors_name_key_value_and_expectation(data, fragment):
    with pytest.raises(ConfigError, match=fragment):
        config_from_dict(data)


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("camera: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
