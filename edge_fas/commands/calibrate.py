"""`edge-fas calibrate`: checkerboard calibration of a colour + IR/depth rig, written as rig YAML.

    edge-fas calibrate --out rig.yaml --images DIR          # DIR/color_*.png with DIR/ir_*.png, paired by name
    edge-fas calibrate --out rig.yaml --camera SPEC         # grab views live (IR emitter off), move the board
    edge-fas calibrate --out rig.yaml --synthetic           # synthetic views of the simulated rig (try-out)
    edge-fas calibrate --check --camera SPEC [--calibration-file rig.yaml]   # registration check only
    edge-fas calibrate --apply SESSION... --calibration-file rig.yaml      # re-register recorded sessions

The written YAML is what calibration.file expects. It names the camera it was measured on (model and serial:
the camera's own with --camera, --model/--serial with --images), and a live camera with another serial
refuses it. `--check` measures how far registered-depth edges sit from colour edges (pixels) and saves an
overlay image to look at, from --frames frames of a still scene (their median depth: the depth noise's false
borders drop out); a view without enough outline in both depth and colour is an error, not a reading.
`--apply` puts a calibration made after a session was recorded into that session (session.yaml keeps the one
it replaces), so replay, eval, adapt and train register its raw frames with it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from edge_fas.config import add_config_arguments, config_from_args
from edge_fas.errors import CalibrationError, EdgeFasError, RecordingError

HELP = "calibrate a custom rig with a checkerboard, check a registration, or apply a calibration to recorded sessions"


def add_arguments(parser):
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--images", help="folder of color_NN.png and ir_NN.png pairs")
    src.add_argument("--synthetic", action="store_true", help="use synthetic board views of the simulated rig")
    parser.add_argument("--camera", default=None, help="grab views from this camera (default: the config's)")
    parser.add_argument("--out", help="rig YAML to write")
    parser.add_argument("--pattern", default="9x6", help="inner corners, COLSxROWS (default 9x6)")
    parser.add_argument("--square", type=float, default=0.025, help="square size in metres (default 0.025)")
    parser.add_argument("--views", type=int, default=15, help="views to grab from a camera (default 15)")
    parser.add_argument("--seconds", type=float, default=120.0, help="give up grabbing views after this long")
    parser.add_argument("--max-rms", type=float, default=1.0, help="refuse a result above this reprojection error (px)")
    parser.add_argument("--model", default="", help="--images: the model of the camera the images came from")
    parser.add_argument("--serial", default="", help="--images: the serial of the camera the images came from "
                        "(recorded in the YAML: another camera refuses the file)")
    parser.add_argument("--check", action="store_true", help="registration check: edge misalignment on the camera")
    parser.add_argument("--apply", nargs="+", metavar="SESSION", help="put --calibration-file into these recorded "
                        "sessions (made after they were recorded; the old calibration is kept in session.yaml)")
    parser.add_argument("--overlay", default="registration_check.png", help="--check: overlay image to write")
    parser.add_argument("--frames", type=int, default=10, help="--check: still frames to combine (median depth)")
    add_config_arguments(parser, sections=["camera", "calibration"])


def _pattern(text: str) -> tuple[int, int]:
    try:
        cols, rows = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise EdgeFasError(f"--pattern {text!r}: expected inner corners as COLSxROWS, e.g. 9x6") from None
    if cols < 3 or rows < 3:
        raise EdgeFasError(f"--pattern {text!r}: a board needs at least 3x3 inner corners")
    return cols, rows


def _from_images(folder: Path):
    colors = sorted(folder.glob("color_*.png"))
    if not colors:
        raise EdgeFasError(f"--images {folder}: no color_*.png files (expected color_NN.png with ir_NN.png)")
    cs, irs = [], []
    for c in colors:
        ir = c.with_name("ir_" + c.name[len("color_"):])
        if not ir.is_file():
            raise EdgeFasError(f"--images: {c.name} has no matching {ir.name}")
        cs.append(cv2.cvtColor(cv2.imread(str(c), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
        irs.append(cv2.imread(str(ir), cv2.IMREAD_UNCHANGED))
    return cs, irs


def _without_calibration_file(config):
    return replace(config, calibration=replace(config.calibration, file=None))


def _from_camera(spec, config, pattern, views, seconds):
    from edge_fas.calibration.checkerboard import find_corners
    from edge_fas.drivers import open_camera
    cs, irs, last = [], [], None
    start = time.monotonic()
    # raw views of the camera as it is: a calibration file from before (perhaps another camera's) plays no part
    with open_camera(spec, _without_calibration_file(config)) as cam:
        device = cam.device
        for frames in cam.frames():
            if time.monotonic() - start > seconds or len(cs) >= views:
                break
            if frames.rgb is None or frames.ir is None:
                raise EdgeFasError(f"camera {spec} does not deliver colour and IR together; calibration needs both")
            cc = find_corners(frames.rgb, pattern)
            if cc is None or find_corners(frames.ir, pattern) is None:
                continue
            if last is not None and np.abs(cc - last).mean() < 20:
                continue  # the board has not moved enough to be a new view
            last = cc
            cs.append(frames.rgb)
            irs.append(frames.ir)
            print(f"view {len(cs)}/{views}")
    return cs, irs, device


def _check(args, config) -> int:
    from edge_fas.calibration.check import WIDE_SHIFT_PX, limit_px, registration_check, steady_frames
    from edge_fas.calibration.rig import RigCalibration
    from edge_fas.drivers import open_camera
    spec = args.camera or config.camera.spec
    cal = RigCalibration.load(config.calibration.file) if config.calibration.file else None
    grabbed = []
    # the file is applied here, to any source (a replay too: checking a calibration on recorded frames before
    # `--apply`), so the camera opens with its own
    with open_camera(spec, _without_calibration_file(config)) as cam:
        for frames in cam.frames():
            if frames.rgb is not None and frames.depth is not None:
                grabbed.append(frames)
            if len(grabbed) >= args.frames:
                break
    if not grabbed:
        raise EdgeFasError(f"camera {spec} delivered no frame set with colour and depth")
    problem = cal.camera_problem(grabbed[0].device) if cal is not None else None
    if problem:
        raise EdgeFasError(f"calibration.file {config.calibration.file} belongs to another camera: {problem}")
    result = registration_check(steady_frames(grabbed), cal)
    cv2.imwrite(args.overlay, cv2.cvtColor(result.overlay, cv2.COLOR_RGB2BGR))
    if not result.measurable:
        far = (f"; the best match lay at the edge of the check's {WIDE_SHIFT_PX} px search, so the registration may be off by "
               "more than it can read (a camera knocked on its mount, another unit's calibration): if the overlay's red "
               "outlines sit visibly off the green edges, calibrate again (edge-fas calibrate --camera SPEC --out "
               "FILE); otherwise" if result.at_search_edge else ";")
        raise EdgeFasError(f"registration check: the view shows too little of an object's outline in both depth and "
                           f"colour ({result.matched_pixels} of {result.edge_pixels} depth-outline pixels matched a "
                           f"colour edge; overlay: {args.overlay}){far} put an object with clear edges (a box, a "
                           "person) in light, in front of a background at least 10% farther away, keep it still, and "
                           "run it again")
    print(f"registration misalignment: {result.misalignment_px:.2f} px over {len(grabbed)} still frames (depth would "
          f"move by ({result.shift_px[0]:+.1f}, {result.shift_px[1]:+.1f}) px to fit the colour edges; the depth "
          f"camera grows outlines by {result.growth_px:+.1f} px; {result.matched_pixels} of {result.edge_pixels} "
          f"outline pixels matched)"
          + (f"; AT LEAST that: the best match lay at the edge of the check's {WIDE_SHIFT_PX} px search, and the outlines may "
             "lie farther apart" if result.at_search_edge else "")
          + f". Overlay: {args.overlay} (colour edges green, registered-depth outlines red)")
    # the limit is in pixels of a 640-wide image; a wider stream is read on such a view (calibration.check)
    limit = limit_px(config.calibration.max_reprojection_px, grabbed[0].rgb.shape[1])
    verdict = "within" if result.misalignment_px <= limit else "ABOVE"
    print(f"{verdict} the limit of {limit:g} px (calibration.max_reprojection_px "
          f"{config.calibration.max_reprojection_px:g} px of a 640-pixel-wide image)")
    return 0 if result.misalignment_px <= limit else 1


def _apply(sessions, config) -> int:
    from edge_fas.calibration.rig import RigCalibration
    from edge_fas.drivers.session import recalibrate
    if not config.calibration.file:
        raise EdgeFasError("--apply needs the calibration to put into the sessions: --calibration-file rig.yaml")
    calibration = RigCalibration.load(config.calibration.file)
    refused = []
    for session in sessions:  # a refused session is left unchanged; the others still take the calibration
        try:
            print(recalibrate(session, calibration, origin=config.calibration.file))
        except RecordingError as e:
            refused.append(str(e))
    if refused:
        raise EdgeFasError(f"{len(refused)} of {len(sessions)} sessions refused, left unchanged:\n  - "
                           + "\n  - ".join(refused))
    return 0


def run(args) -> int:
    from edge_fas.calibration.checkerboard import calibrate_rig, render_views
    from edge_fas.types import DeviceInfo
    config = config_from_args(args)
    if args.check:
        return _check(args, config)
    if args.apply:
        return _apply(args.apply, config)
    if not args.out:
        raise EdgeFasError("--out rig.yaml is required (where to write the calibration)")
    pattern = _pattern(args.pattern)
    truth = None
    device = DeviceInfo(model=args.model, serial=args.serial)
    if args.images:
        cs, irs = _from_images(Path(args.images))
    elif args.synthetic:
        from edge_fas.sim.rig import Rig
        rig = Rig(seed=0, width=config.camera.width, height=config.camera.height)
        truth, device = rig.calibration, rig.device
        cs, irs = render_views(truth.color, truth.ir, truth.ir_to_color, n=args.views, pattern=pattern,
                               square_m=args.square)
    else:
        cs, irs, device = _from_camera(args.camera or config.camera.spec, config, pattern, args.views, args.seconds)
    try:
        cal, report = calibrate_rig(cs, irs, pattern, args.square, max_rms_px=args.max_rms)
    except CalibrationError as e:
        raise EdgeFasError(str(e)) from e
    model = "" if device.model == "unknown" else device.model
    cal = replace(cal, camera_model=model, camera_serial=device.serial)
    cal.save(args.out)
    if not device.serial:
        print(f"note: {args.out} does not name the camera it was measured on, so any camera will take it; "
              "give --serial (and --model) with --images")
    print(f"wrote {args.out}: {report.views_used} views, reprojection error colour {report.rms_color_px:.3f} px, "
          f"IR {report.rms_ir_px:.3f} px, stereo {report.rms_stereo_px:.3f} px")
    print(f"colour f = {cal.color.fx:.2f}/{cal.color.fy:.2f}, IR f = {cal.ir.fx:.2f}/{cal.ir.fy:.2f}, "
          f"baseline {np.linalg.norm(cal.ir_to_color.t) * 1000:.2f} mm")
    if truth is not None:
        print(f"vs. the simulated rig: colour fx {100 * (cal.color.fx / truth.color.fx - 1):+.3f}%, IR fx "
              f"{100 * (cal.ir.fx / truth.ir.fx - 1):+.3f}%, translation error "
              f"{np.linalg.norm(cal.ir_to_color.t - truth.ir_to_color.t) * 1000:.3f} mm")
    return 0
