"""OpenNI2 driver on the Dummy device of Debian's libopenni2-0, .oni record and replay, errors."""

import numpy as np
import pytest

pytest.importorskip("openni")

from edge_fas.drivers import open_camera  # noqa: E402
from edge_fas.drivers.openni import OpenNICamera, find_redist, list_devices  # noqa: E402
from edge_fas.errors import CameraError  # noqa: E402

try:
    find_redist()
except CameraError as e:  # pragma: no cover - depends on the machine
    pytest.skip(f"libOpenNI2 is not installed: {e}", allow_module_level=True)


def _take(cam, n):
    out = []
    for f in cam.frames():
        out.append(f)
        if len(out) == n:
            break
    return out


def test_dummy_device_streams_depth_and_colour(tmp_path):
    with open_camera("openni:Dummy") as cam:
        frames = _take(cam, 3)
        assert cam.device.driver == "openni" and cam.device.serial == "Dummy"
        assert cam.calibration.source == "nominal" and cam.calibration.depth.width == frames[0].depth.shape[1]
    f = frames[0]
    assert f.depth.dtype == np.uint16 and f.depth.ndim == 2
    assert f.rgb.dtype == np.uint8 and f.rgb.shape[2] == 3 and f.ir is None  # the Dummy has no IR sensor
    assert f.depth_scale == pytest.approx(0.001)
    assert [g.counters["depth"] for g in frames] == sorted({g.counters["depth"] for g in frames})
    assert frames[1].timestamps["depth"] > frames[0].timestamps["depth"]


def test_oni_recording_is_written(tmp_path):
    path = tmp_path / "dummy.oni"
    with OpenNICamera(uri="Dummy", record_to=path) as cam:
        assert len(_take(cam, 4)) == 4
    assert path.is_file() and path.stat().st_size > 100_000  # 4 frames of 320x240 depth + colour


@pytest.mark.skip(reason="Debian's libOniFile (OpenNI 2.2) segfaults in oniStreamReadFrame on recordings of the "
                         "Dummy device, killing the test process; .oni playback needs a recording from real hardware")
def test_oni_replay():  # pragma: no cover
    pass


def test_bad_input(tmp_path):
    with pytest.raises(CameraError, match="would not open"):
        with open_camera("openni:NoSuchDevice"):
            pass
    with pytest.raises(CameraError, match="does not exist"):
        with open_camera(f"replay:{tmp_path / 'x.oni'}"):
            pass
    with pytest.raises(CameraError, match="cannot stream depth at 1280x720@90"):
        with OpenNICamera(uri="Dummy", width=1280, height=720, fps=90):
            pass
    assert isinstance(list_devices(), list)


_OPEN_READ_CLOSE = """
from edge_fas.drivers import open_camera
with open_camera("openni:Dummy") as cam:
    frames = cam.frames()
    for _ in range(3):
        next(frames)
print("closed", flush=True)
"""


def test_a_process_that_used_the_dummy_device_exits_cleanly():
    """Issue 17, finding 7: `edge-fas run --camera openni:Dummy` ended with a segfault (exit code 139) in
    oniShutdown at interpreter exit, every time."""
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-c", _OPEN_READ_CLOSE], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "closed" in p.stdout, (p.returncode, p.stderr[-2000:])
