"""Registration benchmark: register_to_color side by side with librealsense's rs.align, one core.

    .venv/bin/python benchmarks/bench_registration.py [--frames 200] [--no-align] [--device cuda]
        [--depth-size 848x480 --color-size 1280x720]

Frames come from the synthetic rig (edge_fas.sim; 640x480 depth, IR and colour unless sizes are given).
For each colour camera - the rig's pinhole ("undistorted") and the same camera with Brown-Conrady
coefficients ("distorted", as `edge-fas calibrate` fits them) - the frames are written to a real .db3
through rs.software_device and played back, once by librealsense (rs.align keeps the frame sets) and once
by the RealSense driver (our FrameSets, with the calibration librealsense stored). Then, interleaved frame
by frame in one process so both see the same machine load: rs.align(color).process, register_to_color on
the full frame, and register_to_color on a 200x200 face region (roi, as the live pipeline passes it).
Medians of wall and CPU time per frame; the first frame (ours builds its per-calibration tables there,
rs.align its own); and agreement with rs.align: the share of pixels valid in both whose depth agrees
within one depth unit.

Everything runs on one thread (OMP_NUM_THREADS=1, cv2.setNumThreads(1), torch.set_num_threads(1)).
--device cuda adds the torch path on the GPU (register_to_color(..., device="cuda")), where torch has CUDA.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_fas.calibration import Intrinsics, register_to_color  # noqa: E402
from edge_fas.calibration import registration  # noqa: E402
from edge_fas.sim.rig import Rig  # noqa: E402

ROI = (220, 140, 420, 340)  # a face crop plus margin, as the live pipeline passes
# a colour lens as `edge-fas calibrate` fits one (k1, k2, p1, p2, k3); the time does not depend on the values
DISTORTION = (0.11, -0.22, 0.0012, -0.0009, 0.09)


def rig_frames(n: int = 8, depth_size: tuple[int, int] = (640, 480), color_size: tuple[int, int] | None = None) -> list:
    """Rig frames at depth_size; a different color_size resizes the colour image and scales its intrinsics
    (same field of view), e.g. a D435's 848x480 depth with 1280x720 colour."""
    rig = Rig("cefa", seed=0, width=depth_size[0], height=depth_size[1])
    species = ["bona_fide", "print", "replay", "rigid_mask", "paper_mask"]
    frames = []
    for i in range(n):
        f = rig.render(species[i % len(species)], i + 10, 0.0)
        if color_size and tuple(color_size) != tuple(depth_size):
            cal = dataclasses.replace(f.calibration, color=f.calibration.color.scaled(*color_size))
            f = f.replace(rgb=cv2.resize(f.rgb, tuple(color_size)), calibration=cal)
        f.timestamps = {"rgb": 33.3 * i, "depth": 33.3 * i, "ir": 33.3 * i}
        f.counters = {"rgb": i, "depth": i, "ir": i}
        frames.append(f)
    return frames


def distorted(cal):
    c = cal.color
    return dataclasses.replace(cal, color=Intrinsics(c.width, c.height, c.fx, c.fy, c.cx, c.cy,
                                                     "brown_conrady", DISTORTION))


def played_back(frames, cal, tmp: str):
    """(rs frame sets kept for rs.align, our FrameSets, the running rs.pipeline) of the frames written to a
    .db3 with calibration cal. The pipeline stays open while the kept sets are used: its device owns the
    stream profiles (and intrinsics) rs.align reads; stop it afterwards."""
    import pyrealsense2 as rs

    from edge_fas.drivers.realsense import RealSenseCamera, write_db3
    path = os.path.join(tmp, f"bench-{cal.color.model}.db3")
    write_db3(path, frames, calibration=cal)
    with RealSenseCamera(playback=path) as cam:
        ours = {f.counters["depth"]: f for f in cam.frames()}
    pipe, cfg = rs.pipeline(), rs.config()
    cfg.enable_device_from_file(path, repeat_playback=False)
    profile = pipe.start(cfg)
    profile.get_device().as_playback().set_real_time(False)
    kept = {}
    while True:
        ok, fs = pipe.try_wait_for_frames(1000)
        if not ok:
            break
        fs.keep()
        kept[fs.get_depth_frame().get_frame_number()] = fs
    both = sorted(set(kept) & set(ours))
    return [kept[n] for n in both], [ours[n] for n in both], pipe


def timed(fn) -> tuple[float, float]:
    t, c = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000


def agreement(mine: np.ndarray, ref: np.ndarray) -> float:
    both = (mine > 0) & (ref > 0)
    return float((np.abs(mine[both].astype(int) - ref[both]) <= 1).mean()) if both.any() else float("nan")


def bench_case(name: str, frames, rs_sets, repeats: int, device: str | None) -> list[tuple]:
    """Rows (case, what, ours wall, ours CPU, rs.align wall, rs.align CPU) for one colour camera."""
    rows = []
    registration._cached.cache_clear()
    first = timed(lambda: register_to_color(frames[0]))
    align = None
    if rs_sets:
        import pyrealsense2 as rs
        align = rs.align(rs.stream.color)
        first_rs = timed(lambda: align.process(rs_sets[0]).get_depth_frame().get_data())
    runs = {"full": [], "roi": [], "rs": []}
    for i in range(repeats):
        f = frames[i % len(frames)]
        runs["full"].append(timed(lambda: register_to_color(f)))
        runs["roi"].append(timed(lambda: register_to_color(f, roi=ROI)))
        if align is not None:
            fs = rs_sets[i % len(rs_sets)]
            runs["rs"].append(timed(lambda: np.asanyarray(align.process(fs).get_depth_frame().get_data())))
    med = {k: tuple(np.median(np.array(v), axis=0)) if v else (float("nan"),) * 2 for k, v in runs.items()}
    rows.append((name, "full frame", *med["full"], *med["rs"]))
    rows.append((name, f"face roi {ROI[2] - ROI[0]}x{ROI[3] - ROI[1]}", *med["roi"], *med["rs"]))
    rows.append((name, "first frame", *first, *(first_rs if align is not None else (float("nan"),) * 2)))
    if device:
        register_to_color(frames[0], device=device)  # uploads the tables
        gpu = [timed(lambda: register_to_color(frames[i % len(frames)], device=device)) for i in range(repeats)]
        gpu_roi = [timed(lambda: register_to_color(frames[i % len(frames)], roi=ROI, device=device))
                   for i in range(repeats)]
        rows.append((name, f"full frame, {device}", *np.median(np.array(gpu), axis=0), *med["rs"]))
        rows.append((name, f"face roi, {device}", *np.median(np.array(gpu_roi), axis=0), *med["rs"]))
    if align is not None:
        agree = [agreement(register_to_color(f).depth,
                           np.asanyarray(align.process(fs).get_depth_frame().get_data()).copy())
                 for f, fs in zip(frames, rs_sets)]
        print(f"{name}: agreement with rs.align on {len(agree)} frames: min {100 * min(agree):.2f}%, "
              f"mean {100 * np.mean(agree):.2f}% of pixels valid in both within 1 depth unit")
        cal = frames[0].calibration
        if cal.color.model != "none":  # rs.align's SSE path projects a Brown-Conrady colour camera as a pinhole
            c = cal.color
            plain = dataclasses.replace(cal, color=Intrinsics(c.width, c.height, c.fx, c.fy, c.cx, c.cy))
            agree = [agreement(register_to_color(f, plain).depth,
                               np.asanyarray(align.process(fs).get_depth_frame().get_data()).copy())
                     for f, fs in zip(frames, rs_sets)]
            print(f"{name}: ours with the colour distortion dropped agrees with rs.align on min "
                  f"{100 * min(agree):.2f}%, mean {100 * np.mean(agree):.2f}%: rs.align ignores that distortion")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200, help="timed frames per case (medians over these)")
    ap.add_argument("--no-align", action="store_true", help="skip librealsense (times ours only)")
    ap.add_argument("--device", default=None, help="also time register_to_color(device=...), e.g. cuda")
    ap.add_argument("--depth-size", default="640x480", help="depth and IR WxH (a D435: 848x480)")
    ap.add_argument("--color-size", default=None, help="colour WxH when it differs (a D435: 1280x720)")
    args = ap.parse_args()
    depth_size = tuple(int(v) for v in args.depth_size.split("x"))
    color_size = tuple(int(v) for v in args.color_size.split("x")) if args.color_size else depth_size
    cv2.setNumThreads(1)
    if args.device:
        import torch
        torch.set_num_threads(1)
        if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
            print(f"--device {args.device}: this torch ({torch.__version__}) has no CUDA; timing the CPU only")
            args.device = None
    frames = rig_frames(depth_size=depth_size, color_size=color_size)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, cal in (("undistorted", frames[0].calibration), ("distorted", distorted(frames[0].calibration))):
            if args.no_align:
                rows += bench_case(name, [f.replace(calibration=cal) for f in frames], [], args.frames, args.device)
                continue
            sets, ours, pipe = played_back(frames, cal, tmp)
            try:
                rows += bench_case(name, ours, sets, args.frames, args.device)
            finally:
                pipe.stop()
    print(f"\nregister_to_color vs rs.align, depth {args.depth_size} to colour {'x'.join(map(str, color_size))}, "
          f"one thread, medians over {args.frames} frames "
          "(wall / CPU ms; CPU is what one free core would need on a shared machine)")
    print(f"{'colour camera':13s} {'what':22s} {'ours':>15s} {'rs.align':>15s} {'ours / rs.align':>18s}")
    for name, what, w, c, rw, rc in rows:
        ratio = f"{w / rw:.2f}x / {c / rc:.2f}x" if np.isfinite(rw) else ""
        print(f"{name:13s} {what:22s} {w:7.2f} / {c:5.2f} {rw:7.2f} / {rc:5.2f} {ratio:>18s}")
    print("rs.align has no region option: the roi rows compare with its full frame. rs.align (librealsense's "
          "SSE path) does not apply a Brown-Conrady colour distortion, so in the distorted case it does less "
          "work than we do and its result differs from ours (see the agreement lines above).")


if __name__ == "__main__":
    main()
