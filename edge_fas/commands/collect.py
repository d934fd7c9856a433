"""`edge-fas collect`: record labelled takes at a new site into the portable session format.

The operator app (PyQt6) by default; `--no-gui` records one take from the command line with the same
consent gate, face check and loss-free writer (edge_fas.apps.collect). `--append` adds the takes to an existing
session of the same camera (one command per take from a script: bona fide, then each attack).
"""

from __future__ import annotations

import json
import sys

from edge_fas.config import add_config_arguments, config_from_args

HELP = "record labelled takes for training (operator GUI, or --no-gui)"


def add_arguments(parser):
    from edge_fas.apps.collect import SPECIES
    parser.add_argument("--out", required=True, help="new session folder (never overwritten; see --append)")
    parser.add_argument("--append", action="store_true",
                        help="add the takes to the session at --out (the same camera, calibration, site and domain; "
                             "a new session where there is none)")
    parser.add_argument("--camera", default=None, help="camera spec (default: the config's camera.spec)")
    parser.add_argument("--subject", default=None, help="pseudonymous subject id (default: a fresh random one)")
    parser.add_argument("--species", default="bona_fide", choices=SPECIES, help="bona fide or the attack species")
    parser.add_argument("--site", default="", help="site name")
    parser.add_argument("--domain", default="", help="capture domain (lighting, rig, ...)")
    parser.add_argument("--notes", default="", help="free notes for this take")
    parser.add_argument("--operator", default="", help="operator code recorded in the session")
    parser.add_argument("--consent", action="store_true",
                        help="the person in view (subject or presenter of the attack) has given consent; needed for "
                             "every source but the synthetic rig")
    parser.add_argument("--retention-days", type=int, default=None,
                        help="days after which the session must be deleted (recorded in the session; default 365, "
                             "an appended session keeps its own)")
    parser.add_argument("--frames", type=int, default=90, help="frames per take (--no-gui)")
    parser.add_argument("--no-gui", action="store_true", help="record one take from the command line")
    parser.add_argument("--no-face-check", action="store_true", help="(--no-gui) record without waiting for a face")
    parser.add_argument("--wait-frames", type=int, default=300,
                        help="(--no-gui) frames to wait for a passing face check before giving up")
    add_config_arguments(parser, ["camera", "calibration", "detector", "decision", "record"])


def run(args) -> int:
    from edge_fas.apps.collect import TakeSpec, new_subject_id
    from edge_fas.drivers import parse_spec
    config = config_from_args(args)
    if args.print_config:
        print(config.dump(), end="")
        return 0
    camera_spec = args.camera or config.camera.spec
    spec = TakeSpec(subject_id=args.subject or new_subject_id(), species=args.species, site=args.site,
                    domain=args.domain, notes=args.notes, consent=args.consent,
                    synthetic=parse_spec(camera_spec)[0] == "synthetic")
    if not args.no_gui:
        from edge_fas.apps.collect_window import run_collect_gui
        return run_collect_gui(camera_spec, args.out, config, spec, retention_days=args.retention_days,
                               operator=args.operator, append=args.append)
    return _run_cli(args, config, spec, camera_spec)


def _run_cli(args, config, spec, camera_spec) -> int:
    from edge_fas.apps.collect import open_session_writer, record_take
    from edge_fas.drivers import open_camera
    from edge_fas.drivers.summary import label_confounds, summarize
    from edge_fas.face import FaceDetector
    spec.check()  # refuse before opening anything

    def report(line):
        print(line, file=sys.stderr, flush=True)

    d = config.decision
    det = config.detector
    with open_camera(camera_spec, config) as camera, FaceDetector(det.min_score, det.zoom_search) as detector:
        writer = open_session_writer(args.out, camera, spec, args.retention_days, args.operator, append=args.append)
        try:
            written = record_take(camera.frames(), writer, spec, args.frames, detector,
                                  wait_frames=0 if args.no_face_check else args.wait_frames,
                                  min_distance_m=d.min_distance_m, max_distance_m=d.max_distance_m,
                                  queue_frames=config.record.queue_frames, report=report)
            take_id = writer.takes[-1].id
        finally:
            writer.close()
    # a camera setting that tells the session's bona fide takes from its attacks (over every take, those of earlier
    # commands included: a site scripts one take per command into one session), said while takes can still mix them
    warnings = label_confounds(summarize(args.out)["takes"])
    for w in warnings:
        report(f"warning: {w}")
    print(json.dumps({"session": str(args.out), "take": take_id, "subject_id": spec.subject_id,
                      "species": spec.species, "frames": written, "warnings": warnings}))
    return 0
