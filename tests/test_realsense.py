"""RealSense driver on real librealsense recordings (.db3) made from the synthetic rig via rs.software_device."""

import numpy as np
import pytest

rs = pytest.importorskip("pyrealsense2")

from edge_fas.calibration import register_to_color  # noqa: E402
from edge_fas.drivers import open_camera  # noqa: E402
from edge_fas.drivers.realsense import RealSenseCamera, list_devices, write_db3  # noqa: E402
from edge_fas.errors import CameraError, RecordingError  # noqa: E402
from edge_fas.sim.rig import Rig  # noqa: E402

W, H = 320, 240


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    rig = Rig("cefa", seed=3, width=W, height=H)
    frames = []
    for n, species in enumerate(["bona_fide", "print", "rigid_mask"]):
        f = rig.render(species, n, 0.0)
        f.timestamps = {"rgb": 33.3 * n + 0.4, "depth": 33.3 * n, "ir": 33.3 * n}
        f.counters = {"rgb": n, "depth": n, "ir": n}
        # what a D435 reports per frame: auto-exposure on colour, manual exposure and laser power on depth/IR
        stereo = {"exposure_us": 8500 + 100 * n, "gain": 16, "auto_exposure": 0, "laser_power": 150}
        f.meta["sensor"] = {"rgb": {"exposure_us": 156 + n, "gain": 64, "auto_exposure": 1, "white_balance_k": 4600},
                            "depth": {**stereo, "temperature_c": 41}, "ir": dict(stereo)}  # no .db3 field for the last
        frames.append(f)
    path = tmp_path_factory.mktemp("rs") / "synthetic.db3"
    assert write_db3(path, frames) == 3
    return path, frames, rig


def test_playback_round_trips_frames_and_calibration(recording):
    path, written, rig = recording
    with open_camera(f"replay:{path}") as cam:
        got = list(cam.frames())
        cal = cam.calibration
        assert cam.device.serial == rig.device.serial and cam.device.driver == "replay"
    assert len(got) == len(written)
    for a, b in zip(written, got):
        for m in ("rgb", "depth", "ir"):
            np.testing.assert_array_equal(getattr(a, m), getattr(b, m))
        assert b.counters == a.counters
        assert b.timestamps["depth"] == pytest.approx(a.timestamps["depth"], abs=1e-3)
        assert b.depth_scale == pytest.approx(a.depth_scale)
        assert b.meta["skew_ms"] == pytest.approx(0.4, abs=1e-3)  # the colour exposure trails by 0.4 ms
        # each stream's exposure, gain and laser power, through librealsense's own frame metadata
        storable = {k: v for k, v in a.meta["sensor"]["depth"].items() if k != "temperature_c"}
        assert b.meta["sensor"] == {"rgb": a.meta["sensor"]["rgb"], "depth": storable, "ir": a.meta["sensor"]["ir"]}
    ref = rig.calibration
    assert cal.color.fx == pytest.approx(ref.color.fx, rel=1e-6) and cal.depth.cy == pytest.approx(ref.depth.cy, rel=1e-6)
    np.testing.assert_allclose(cal.depth_to_color.R, ref.depth_to_color.R, atol=1e-6)
    np.testing.assert_allclose(cal.depth_to_color.t, ref.depth_to_color.t, atol=1e-6)  # float32 in the file


def test_sensor_metadata_reaches_a_recorded_session(tmp_path, recording):
    """A site's exposure, gain and laser power land in every frame of a field session (`edge-fas record`)."""
    from edge_fas.cli import main

    out = tmp_path / "session"
    assert main(["record", "--camera", f"replay:{recording[0]}", "--out", str(out), "--frames", "3", "--consent",
                 "--species", "bona_fide", "--subject", "S001"]) == 0
    with open_camera(f"replay:{out}") as cam:
        got = list(cam.frames())
    assert [f.meta["sensor"]["depth"]["exposure_us"] for f in got] == [8500, 8600, 8700]
    assert got[0].meta["sensor"]["rgb"] == {"exposure_us": 156, "gain": 64, "auto_exposure": 1, "white_balance_k": 4600}


def test_registration_agrees_with_rs_align(recording):
    path, _, _ = recording
    # librealsense's own alignment of the same file, keyed by depth frame number (its pipeline may skip sets)
    pipe, cfg = rs.pipeline(), rs.config()
    cfg.enable_device_from_file(str(path), repeat_playback=False)
    profile = pipe.start(cfg)
    profile.get_device().as_playback().set_real_time(False)
    align, theirs = rs.align(rs.stream.color), {}
    try:
        while True:
            ok, fs = pipe.try_wait_for_frames(1000)
            if not ok:
                break
            d = align.process(fs).get_depth_frame()
            theirs[d.get_frame_number()] = np.asanyarray(d.get_data()).copy()
    finally:
        pipe.stop()
    agreements = []
    with RealSenseCamera(playback=path) as cam:
        for ours in cam.frames():
            if ours.counters["depth"] not in theirs:
                continue
            ref = theirs[ours.counters["depth"]]
            mine = register_to_color(ours).depth
            both = (mine > 0) & (ref > 0)
            assert both.mean() > 0.5
            agreements.append((np.abs(mine[both].astype(int) - ref[both]) <= 1).mean())
            # holes agree too: what rs.align leaves empty we leave empty
            assert ((mine > 0) != (ref > 0)).mean() < 0.01
    assert agreements and min(agreements) >= 0.99, agreements


def test_bad_input_names_the_file(tmp_path, recording):
    cut = tmp_path / "cut.db3"
    cut.write_bytes(recording[0].read_bytes()[:60000])  # a recording cut short (copy interrupted, disk full)
    with pytest.raises(CameraError, match="cut.db3.*truncated"):
        with open_camera(f"replay:{cut}") as cam:
            list(cam.frames())
    with pytest.raises(CameraError, match="does not exist"):
        with open_camera(f"replay:{tmp_path / 'missing.db3'}"):
            pass
    bad = tmp_path / "trunc.db3"
    bad.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    with pytest.raises(CameraError, match="trunc.db3"):
        with open_camera(f"replay:{bad}") as cam:
            list(cam.frames())
    with pytest.raises(RecordingError, match="no frames"):
        write_db3(tmp_path / "x.db3", [])


def test_no_device_here_is_a_clear_error():
    if list_devices():
        pytest.skip("a RealSense is connected")
    with pytest.raises(CameraError, match="no RealSense camera found"):
        with open_camera("realsense:123456"):
            pass


def test_profile_the_device_lacks_names_what_it_offers(recording):
    """The live path's profile check, run against the sensors of a real (playback) device."""
    ctx = rs.context()
    dev = ctx.load_device(str(recording[0]))
    try:
        offered = RealSenseCamera(width=W, height=H, fps=30)
        offered.serial = "SIM"
        offered._check_profile(rs, dev)  # the recorded profile is accepted
        cam = RealSenseCamera(width=1280, height=720, fps=30)
        cam.serial = "SIM"
        with pytest.raises(CameraError, match=rf"cannot stream .*1280x720.*offers for depth: {W}x{H}@30"):
            cam._check_profile(rs, dev)
    finally:
        ctx.unload_device(str(recording[0]))


def test_a_live_camera_gets_the_start_timeout_for_its_first_frame_and_the_stall_timeout_after():
    """A first frame after opening (or a reconnect) may be slow (librealsense's wait_for_frames waits 5 s); with the
    stall timeout alone a slow start was taken for a stall and the camera reset, again and again. Stand-ins for the
    device: none is plugged in here."""
    import time

    cam = RealSenseCamera(serial="8123", stall_timeout_s=0.2, start_timeout_s=0.8)
    cam._pipe = object()
    script = [None] * 6 + ["frameset"] + [None] * 100  # six empty polls (about 1.2 s), a frame, then silence
    resets, delivered = [], []

    def poll(rs_module, timeout_s):
        time.sleep(timeout_s)
        fs = script.pop(0)
        if fs is not None:
            delivered.append(time.monotonic())
        return fs

    def reconnect(rs_module):
        resets.append(time.monotonic())
        cam._closed = len(resets) == 2  # stop after the second reset

    cam._next, cam._reconnect, cam._convert = poll, reconnect, lambda rs_module, fs: fs
    start = time.monotonic()
    got = list(cam.frames())
    # the first reset after the start timeout (0.8 s, not 0.2); after the reset a frame, and then one stall timeout
    assert 0.75 < resets[0] - start < 1.6
    assert got == ["frameset"] and 0.15 < resets[1] - delivered[0] < 0.75
