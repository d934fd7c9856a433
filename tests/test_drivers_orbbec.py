"""Orbbec driver: what can be tested without a device (and without a loadable SDK)."""

from types import SimpleNamespace as NS

import numpy as np
import pytest

from edge_fas.drivers import open_camera
from edge_fas.drivers.orbbec import calibration_from_param, list_devices, load_sdk
from edge_fas.errors import CameraError


def _param():
    intr = dict(fx=600.0, fy=601.0, cx=320.0, cy=240.0, width=640, height=480)
    dist = NS(k1=0.1, k2=-0.02, k3=0.0, k4=0.0, k5=0.0, k6=0.0, p1=0.001, p2=0.0)
    return NS(rgb_intrinsic=NS(**intr), depth_intrinsic=NS(**{**intr, "fx": 500.0, "fy": 500.0}),
              rgb_distortion=dist, depth_distortion=NS(k1=0, k2=0, k3=0, k4=0, k5=0, k6=0, p1=0, p2=0),
              transform=NS(rot=np.eye(3, dtype=np.float32).ravel(), transform=np.array([-25.0, 0.5, 1.0], np.float32)))


def test_calibration_from_sdk_param():
    cal = calibration_from_param(_param(), 0.001, registered=False)
    assert cal.color.model == "brown_conrady" and cal.color.coeffs[:3] == (0.1, -0.02, 0.001)
    assert cal.depth.fx == 500.0 and cal.depth.model == "none"
    np.testing.assert_allclose(cal.depth_to_color.t, [-0.025, 0.0005, 0.001], atol=1e-7)  # mm -> m
    assert cal.ir_to_color.t[0] == pytest.approx(-0.025)
    reg = calibration_from_param(_param(), 0.001, registered=True)
    assert reg.depth.fx == 600.0 and np.allclose(reg.depth_to_color.t, 0)


def test_sdk_or_device_absence_is_clear():
    try:
        load_sdk()
    except CameraError as e:
        assert "Orbbec SDK cannot load" in str(e)
        assert list_devices() == []
        with pytest.raises(CameraError, match="Orbbec SDK cannot load"):
            with open_camera("orbbec"):
                pass
        pytest.skip(f"pyorbbecsdk cannot load on this machine: {e}")
    if list_devices():
        pytest.skip("an Orbbec camera is connected")
    with pytest.raises(CameraError, match="no Orbbec camera found"):
        with open_camera("orbbec"):
            pass


def test_sensor_metadata_takes_what_the_frame_carries():
    """The SDK's per-frame metadata calls (Frame.has_metadata / get_metadata_value) on a stand-in frame: the SDK
    cannot load here, and no device is attached."""
    from edge_fas.drivers.orbbec import SENSOR_METADATA, sensor_metadata

    kinds = NS(**{name: f"OB_{name}" for name in SENSOR_METADATA})  # OBFrameMetadataType's member names
    ob = NS(OBFrameMetadataType=kinds)
    carried = {"OB_EXPOSURE": 3300, "OB_GAIN": 16, "OB_LASER_STATUS": 1}

    class Frame:
        def has_metadata(self, kind):
            return kind in carried or kind == "OB_WHITE_BALANCE"

        def get_metadata_value(self, kind):
            if kind not in carried:
                raise RuntimeError("OBError: metadata not supported")  # what a device without it raises
            return carried[kind]

    assert sensor_metadata(ob, Frame()) == {"exposure": 3300, "gain": 16, "laser_on": 1}
    assert sensor_metadata(ob, None) == {}


def test_a_camera_that_goes_silent_is_lost_so_the_pipeline_reconnects_it():
    """pyorbbecsdk's Pipeline.wait_for_frames(ms) returns None while nothing comes; the driver looped on it for
    ever, so a device that stopped sending stayed `unknown` and was never reopened. A stand-in pipeline: the SDK
    cannot load here."""
    import time

    from edge_fas.drivers.orbbec import OrbbecCamera

    cam = OrbbecCamera(serial="AY123", stall_timeout_s=0.2, start_timeout_s=0.8)
    cam.status = "connected"
    cam._pipe = NS(wait_for_frames=lambda ms: time.sleep(ms / 1000.0))  # a timeout: no frame set
    start = time.monotonic()
    # no first frame: the camera had camera.start_timeout_s to start, not the stall timeout
    with pytest.raises(CameraError, match=r"AY123: no colour and depth frame for 0.8 s \(camera.start_timeout_s\)"):
        next(cam.frames())
    assert 0.7 < time.monotonic() - start < 3 and cam.status == "stalled"
