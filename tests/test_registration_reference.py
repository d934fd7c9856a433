"""The fast registration against a slow, independent one (registration_reference: OpenCV per point, float64),
for every distortion model, a distorted depth camera, a roi and a separate IR imager; the torch path against
the numpy one; no per-frame cv2 projection; threads; device errors."""

import threading

import cv2
import numpy as np
import pytest
import registration_reference as ref

from edge_fas.calibration import Extrinsics, Intrinsics, RigCalibration, register_to_color
from edge_fas.calibration import registration
from edge_fas.errors import CalibrationError
from edge_fas.types import FrameSet

DW, DH = 160, 120  # depth / IR
CW, CH = 200, 150  # colour: finer than depth, so rectangles are 2 or 3 pixels a side, as on a D4xx
BROWN_CONRADY = (0.11, -0.22, 0.0012, -0.0009, 0.09)
COLOR_MODELS = {
    "pinhole": ("none", (0.0,) * 5),
    "brown_conrady": ("brown_conrady", BROWN_CONRADY),  # closed form
    "brown_conrady_rational": ("brown_conrady", BROWN_CONRADY + (0.02, -0.01, 0.005)),  # table
    "kannala_brandt4": ("kannala_brandt4", (0.05, -0.02, 0.01, -0.003)),  # closed form
    "inverse_brown_conrady": ("inverse_brown_conrady", (0.08, -0.15, 0.001, -0.0007, 0.05)),  # table
}
# agreement with the float64 reference: float32 moves a rectangle edge only where p + 0.5 sits within
# ~1e-4 px of an integer, and a table's bilinear offsets are within ~1e-3 px
MIN_EQUAL = 0.998


def _rig(color_model="pinhole", depth_model=("none", (0.0,) * 5), ir=None, ir_to_color=None) -> RigCalibration:
    model, coeffs = COLOR_MODELS[color_model]
    color = Intrinsics(CW, CH, 190.0, 189.0, CW / 2 + 1.3, CH / 2 - 0.7, model, coeffs)
    depth = Intrinsics(DW, DH, 120.0, 121.0, DW / 2 - 0.4, DH / 2 + 0.9, *depth_model)
    R, _ = cv2.Rodrigues(np.array([0.012, -0.02, 0.006]))
    to_color = Extrinsics(R, np.array([-0.025, 0.0012, 0.002]))
    return RigCalibration(color=color, depth=depth, ir=ir if ir is not None else depth, depth_to_color=to_color,
                          ir_to_color=ir_to_color if ir_to_color is not None else to_color, depth_scale=0.001,
                          source="test")


def _scene(seed=0) -> tuple[np.ndarray, np.ndarray]:
    """A slanted wall at 1-1.4 m, a near head-like bump at ~0.5 m, a box at 0.3 m, holes; random IR."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:DH, 0:DW]
    z = 1.0 + 0.4 * xx / DW + 0.05 * np.sin(yy / 9.0)
    bump = ((xx - 70) / 28.0) ** 2 + ((yy - 60) / 36.0) ** 2
    z = np.where(bump < 1, 0.5 + 0.08 * bump, z)
    z[20:40, 110:135] = 0.3
    depth = np.round(z * 1000).astype(np.uint16)
    depth[rng.random(depth.shape) < 0.03] = 0  # dropouts
    depth[90:105, 20:45] = 0  # a hole
    return depth, rng.integers(1, 255, depth.shape).astype(np.uint8)


def _frames(depth, cal, ir=None):
    return FrameSet(rgb=np.zeros((CH, CW, 3), np.uint8), depth=depth, ir=ir, calibration=cal)


def _agree(fast, slow):
    return float((fast == slow).mean()), float(((fast > 0) != (slow > 0)).mean())


@pytest.mark.parametrize("color_model", list(COLOR_MODELS))
def test_matches_the_slow_reference(color_model):
    cal = _rig(color_model)
    depth, ir = _scene()
    fast = register_to_color(_frames(depth, cal, ir))
    slow_depth, slow_ir = ref.register(depth, cal, ir)
    equal, holes = _agree(fast.depth, slow_depth)
    assert (slow_depth > 0).mean() > 0.6  # the scene really lands
    assert equal >= MIN_EQUAL and holes <= 1 - MIN_EQUAL, (equal, holes)
    assert _agree(fast.ir, slow_ir)[0] >= MIN_EQUAL
    if color_model != "pinhole":  # the distortion really matters: dropping it moves the depth
        plain = register_to_color(_frames(depth, _rig("pinhole"), ir))
        assert (plain.depth == fast.depth).mean() < 0.9


@pytest.mark.parametrize("color_model", ["pinhole", "brown_conrady"])
def test_distorted_depth_camera_matches_the_reference(color_model):
    cal = _rig(color_model, depth_model=("brown_conrady", (0.03, -0.02, 0.0005, 0.0002, 0.0)))
    depth, ir = _scene(1)
    fast = register_to_color(_frames(depth, cal, ir))
    slow_depth, _ = ref.register(depth, cal, ir)
    equal, holes = _agree(fast.depth, slow_depth)
    assert equal >= MIN_EQUAL and holes <= 1 - MIN_EQUAL, (equal, holes)


@pytest.mark.parametrize("turn, t", [((0.0, 1.2, 0.05), (-0.8, 0.0, 0.6)), ((0.0, 1.4, 0.05), (-1.0, 0.0, 0.9))])
@pytest.mark.parametrize("color_model", ["pinhole", "brown_conrady"])
def test_strongly_turned_rig_matches_the_reference(color_model, turn, t):
    # cameras 70-80 degrees apart: some depth rays turn away from the colour camera (their far end is behind
    # it) although their near points are in front of it; points behind it must not land
    R, _ = cv2.Rodrigues(np.array(turn))
    to_color = Extrinsics(R, np.array(t))
    cal = _rig(color_model)
    cal.depth_to_color = cal.ir_to_color = to_color
    depth, ir = _scene(6)
    fast = register_to_color(_frames(depth, cal, ir))
    slow_depth, slow_ir = ref.register(depth, cal, ir)
    assert 0.2 < (slow_depth > 0).mean() < 0.5
    equal, holes = _agree(fast.depth, slow_depth)
    assert equal >= MIN_EQUAL and holes <= 1 - MIN_EQUAL, (equal, holes)
    assert _agree(fast.ir, slow_ir)[0] >= MIN_EQUAL
    pytest.importorskip("torch")
    np.testing.assert_array_equal(register_to_color(_frames(depth, cal, ir), device="cpu").depth, fast.depth)


@pytest.mark.parametrize("color_model", ["pinhole", "brown_conrady", "inverse_brown_conrady"])
def test_roi_matches_the_reference(color_model):
    cal = _rig(color_model)
    depth, ir = _scene(2)
    roi = (60, 30, 140, 120)
    fast = register_to_color(_frames(depth, cal, ir), roi=roi)
    slow_depth, slow_ir = ref.register(depth, cal, ir, roi=roi)
    assert (slow_depth > 0).sum() > 3000
    equal, holes = _agree(fast.depth, slow_depth)
    assert equal >= MIN_EQUAL and holes <= 1 - MIN_EQUAL, (equal, holes)
    assert fast.depth[:, :roi[0]].max() == 0 and fast.depth[roi[3]:].max() == 0


def test_separate_distorted_ir_imager_matches_the_reference():
    ir_intr = Intrinsics(DW, DH, 118.0, 118.5, DW / 2 + 0.6, DH / 2 - 0.3, "brown_conrady", (0.05, -0.03, 0, 0, 0))
    R, _ = cv2.Rodrigues(np.array([0.01, -0.018, 0.004]))
    cal = _rig("brown_conrady", ir=ir_intr, ir_to_color=Extrinsics(R, np.array([0.025, 0.001, 0.002])))
    depth, _ = _scene(3)
    ir = np.tile(np.arange(DW, dtype=np.uint16) * 300, (DH, 1))  # IR value tells the IR column
    fast = register_to_color(_frames(depth, cal, ir))
    slow_depth, slow_ir = ref.register(depth, cal, ir, colocated=False)
    assert fast.ir.dtype == np.uint16 and (slow_ir > 0).mean() > 0.5
    assert _agree(fast.depth, slow_depth)[0] >= MIN_EQUAL
    assert _agree(fast.ir, slow_ir)[0] >= MIN_EQUAL


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("color_model", list(COLOR_MODELS))
def test_torch_path_matches_numpy(device, color_model):
    torch = pytest.importorskip("torch")
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA here: the GPU path runs where torch has CUDA")
    cal = _rig(color_model)
    depth, ir = _scene(4)
    for roi in (None, (50, 20, 150, 130)):
        a = register_to_color(_frames(depth, cal, ir), roi=roi)
        b = register_to_color(_frames(depth, cal, ir), roi=roi, device=device)
        # the same float32 arithmetic: identical on the CPU, a GPU may round a division differently
        need = 1.0 if device == "cpu" else MIN_EQUAL
        assert (a.depth == b.depth).mean() >= need and (a.ir == b.ir).mean() >= need
        assert b.depth.dtype == np.uint16 and b.ir.dtype == ir.dtype


def test_frames_do_not_go_through_cv2_point_projection(monkeypatch):
    # the old path called cv2.projectPoints on every depth pixel of every frame (0.1-0.2 s): tables are built
    # once per calibration, a frame uses the closed forms / table only
    for model in ("brown_conrady", "kannala_brandt4", "inverse_brown_conrady"):
        cal = _rig(model)
        depth, ir = _scene(5)
        first = register_to_color(_frames(depth, cal, ir))

        def forbidden(*a, **k):
            raise AssertionError("cv2 point projection during a frame")

        with monkeypatch.context() as m:
            for mod, name in ((cv2, "projectPoints"), (cv2, "undistortPoints"), (cv2.fisheye, "projectPoints"),
                              (cv2.fisheye, "undistortPoints")):
                m.setattr(mod, name, forbidden)
            again = register_to_color(_frames(depth, cal, ir))
            register_to_color(_frames(depth, cal, ir), roi=(40, 30, 120, 100))
        np.testing.assert_array_equal(again.depth, first.depth)


def test_threads_register_concurrently():
    cal = _rig("brown_conrady")
    scenes = [_scene(s) for s in range(4)]
    expected = [register_to_color(_frames(d, cal, i)).depth for d, i in scenes]
    got, errors = {}, []

    def work(k):
        try:
            for _ in range(5):
                for j, (d, i) in enumerate(scenes):
                    out = register_to_color(_frames(d, cal, i), roi=None if (j + k) % 2 else (30, 20, 170, 140))
                    got.setdefault((k, j), []).append(out.depth)
        except Exception as e:  # noqa: BLE001 - surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for (k, j), outs in got.items():
        if (j + k) % 2:
            for out in outs:
                np.testing.assert_array_equal(out, expected[j])


def test_device_errors_name_the_fix():
    torch = pytest.importorskip("torch")
    depth, ir = _scene()
    frames = _frames(depth, _rig(), ir)
    with pytest.raises(CalibrationError, match="not a torch device"):
        register_to_color(frames, device="gpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(CalibrationError, match="no CUDA device.*device=None"):
            register_to_color(frames, device="cuda")
        auto = register_to_color(frames, device="auto")  # falls back to the CPU path
        np.testing.assert_array_equal(auto.depth, register_to_color(frames).depth)


def test_tables_are_cached_per_calibration():
    registration._cached.cache_clear()
    depth, ir = _scene()
    register_to_color(_frames(depth, _rig("brown_conrady"), ir))
    register_to_color(_frames(depth, _rig("brown_conrady"), ir), roi=(10, 10, 90, 90))
    assert registration._cached.cache_info().misses == 1
    register_to_color(_frames(depth, _rig("kannala_brandt4"), ir))
    assert registration._cached.cache_info().misses == 2
