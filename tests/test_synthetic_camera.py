"""The synthetic rig as a camera: open_camera("synthetic..."), pacing, counters, truth, emitter modes."""

import time

import pytest

from edge_fas.config import load_config
from edge_fas.drivers import open_camera
from edge_fas.drivers.synthetic import SyntheticCamera, open_synthetic
from edge_fas.errors import CameraError, ConfigError
from edge_fas.sim import ATTACK_SPECIES
from edge_fas.sim.scenario import parse_scenario


def test_open_camera_gives_a_streaming_synthetic_camera():
    config = load_config(overrides={"camera.width": 320, "camera.height": 240, "camera.fps": 50})
    cam = open_camera("synthetic:bona_fide,domain=wmca", config)
    assert isinstance(cam, SyntheticCamera) and cam.realtime
    start = time.monotonic()
    with cam:
        frames = []
        for f in cam.frames():
            frames.append(f)
            if len(frames) == 6:
                break
    elapsed = time.monotonic() - start
    assert elapsed >= 5 / 50 * 0.9  # paced in real time: 6 frames at 50 fps span >= 100 ms
    assert cam.status == "closed"
    assert [f.counters["depth"] for f in frames] == list(range(6))
    assert frames[1].timestamps["depth"] - frames[0].timestamps["depth"] == pytest.approx(20.0)
    f = frames[0]
    assert f.rgb.shape == (240, 320, 3) and f.depth.shape == (240, 320) and f.ir.shape == (240, 320)
    assert not f.registered and f.calibration is cam.calibration and f.device.driver == "synthetic"
    assert f.truth.label == 0 and f.truth.domain == "wmca"


def test_demo_scenario_plays_bona_fide_then_each_attack():
    config = load_config(overrides={"camera.width": 160, "camera.height": 120})
    cam = open_synthetic("demo,take=0.1", config, realtime=False, max_frames=40)
    seen = []
    with cam:
        for f in cam.frames():
            if not seen or seen[-1] != f.truth.species:
                seen.append(f.truth.species)
            assert f.truth.label == (0 if f.truth.species == "bona_fide" else 1)
    assert seen[:len(ATTACK_SPECIES) + 2] == ["bona_fide", *ATTACK_SPECIES, "bona_fide"]


def test_alternate_emitter_toggles_per_frame():
    config = load_config(overrides={"camera.emitter": "alternate", "camera.width": 160, "camera.height": 120})
    with open_synthetic("bona_fide", config, realtime=False, max_frames=4) as cam:
        assert [f.meta["emitter_on"] for f in cam.frames()] == [True, False, True, False]


def test_finite_scenario_ends_and_max_frames_is_respected():
    with open_synthetic("print,take=0.1,loop=no", None, realtime=False) as cam:
        assert len(list(cam.frames())) == 3  # 0.1 s at 30 fps
    with open_synthetic("demo", None, realtime=False, max_frames=2) as cam:
        assert len(list(cam.frames())) == 2


def test_bad_scenarios_fail_with_the_fix():
    with pytest.raises(ConfigError, match="scenario 'cardboard'"):
        parse_scenario("cardboard")
    with pytest.raises(ConfigError, match="option 'speed'"):
        parse_scenario("demo,speed=2")
    with pytest.raises(ConfigError, match="domain 'mars'"):
        parse_scenario("demo,domain=mars")
    cam = open_synthetic("demo", None, realtime=False)
    with pytest.raises(CameraError, match="not open"):
        next(cam.frames())
