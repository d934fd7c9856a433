"""`edge-fas record`: record a camera to a session folder (portable, labelled) or a librealsense .db3.

    edge-fas record --camera SPEC --out PATH [--format session|native] [--frames N | --seconds S]
                    [--species NAME --subject ID --consent] [--site ... --domain ... --operator ...]

Session recordings carry labels per take. With --species auto (the default when the source knows the
truth, as the synthetic camera does) a new take starts whenever the source's take changes and is
labelled from its truth; otherwise --species names the one take's bona fide / attack species.
Labels follow edge_fas.labels, the same rules as `edge-fas collect`: a known species name, a
pseudonymous subject id (a fresh one by default), and --consent for every source but the synthetic
rig. They are checked before the camera opens, so a refused take writes nothing.
Native recordings (.db3) hold the raw streams with the device calibration and replay through the
RealSense driver.
"""

from __future__ import annotations

import time

from edge_fas.config import add_config_arguments, config_from_args
from edge_fas.errors import EdgeFasError
from edge_fas.labels import SPECIES, consent_problem, new_subject_id, species_problem, subject_problem

HELP = "record a camera to a labelled session folder or a librealsense .db3 file"


def add_arguments(parser):
    parser.add_argument("--camera", default=None, help="camera spec (default: the config's camera.spec)")
    parser.add_argument("--out", required=True, help="new session folder, or FILE.db3 with --format native")
    parser.add_argument("--format", choices=["session", "native"], default="session",
                        help="session: portable labelled folder (default); native: librealsense .db3")
    parser.add_argument("--frames", type=int, default=None, help="stop after this many frame sets")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--species", default="auto",
                        help=f"{', '.join(SPECIES)}; auto: from the source's truth (synthetic, replay)")
    parser.add_argument("--subject", default=None,
                        help="pseudonymous subject id (no names; default: a fresh random one, or the recording's)")
    parser.add_argument("--consent", action="store_true",
                        help="the consent of the person in view is on file; needed for every source but the "
                             "synthetic rig")
    parser.add_argument("--notes", default="", help="operator notes for the take")
    parser.add_argument("--site", default="", help="site name stored in session.yaml")
    parser.add_argument("--domain", default="", help="domain (environment) name stored in session.yaml")
    parser.add_argument("--operator", default="", help="operator id stored in session.yaml")
    parser.add_argument("--retention-days", type=int, default=None, help="delete-by date for the data, in days")
    parser.add_argument("--color-codec", choices=["png", "jpeg"], default=None,
                        help="colour frames: lossless png (a new session's default) or jpeg")
    parser.add_argument("--append", action="store_true",
                        help="(session) add the takes to the session at --out, recorded with this camera and "
                             "calibration; a new session where there is none")
    add_config_arguments(parser, sections=["camera", "calibration", "record"])


def _check_labels(args, synthetic: bool) -> None:
    """The take's labels by edge_fas.labels (the rules `collect` uses), before anything opens."""
    problems = [] if args.species == "auto" else [species_problem(args.species)]
    if args.subject is not None:
        problems.append(subject_problem(args.subject))
    problems.append(consent_problem(args.consent, synthetic))
    problems = [p for p in problems if p]
    if problems:
        raise EdgeFasError("cannot record this take: " + "; ".join(problems))


def _take_for(frames, args, synthetic: bool) -> dict:
    truth = frames.truth
    consent = args.consent or synthetic  # the synthetic rig shows nobody
    if args.species == "auto":
        if truth is None:
            raise EdgeFasError("--species auto needs a source that knows the truth (synthetic or a session); "
                               "say what is recorded: --species bona_fide --consent, or --species print, ...")
        subject = args.subject or str(truth.extra.get("subject_id") or "")  # a replayed session's pseudonym
        return {"species": truth.species, "subject_id": subject, "notes": args.notes, "consent": consent}
    return {"species": args.species, "subject_id": args.subject, "consent": consent, "notes": args.notes}


def run(args) -> int:
    from edge_fas.drivers import open_camera, parse_spec
    from edge_fas.drivers.recorder import Recorder

    if args.frames is None and args.seconds is None:
        raise EdgeFasError("say when to stop: --frames N or --seconds S")
    if args.append and args.format != "session":
        raise EdgeFasError("--append adds takes to a session folder; a native .db3 recording is written whole "
                           "(drop --append, or use --format session)")
    if args.format == "native" and not str(args.out).endswith((".db3", ".bag")):
        raise EdgeFasError(f"--format native writes a librealsense recording; --out must end in .db3 (got {args.out})")
    config = config_from_args(args)
    spec = args.camera or config.camera.spec
    synthetic = parse_spec(spec)[0] == "synthetic"  # by what is opened, not what a recording claims
    _check_labels(args, synthetic)
    if args.species != "auto" and args.subject is None:
        args.subject = new_subject_id()
    rec = None
    n, start, take_key = 0, time.monotonic(), None
    with open_camera(spec, config) as cam:
        for frames in cam.frames():
            if rec is None:
                session = {"site": args.site, "domain": args.domain or (frames.truth.domain if frames.truth else ""),
                           "operator": args.operator, "retention_days": args.retention_days,
                           "color_codec": args.color_codec,
                           "require_consent": not synthetic, "append": args.append}
                take = _take_for(frames, args, synthetic) if args.format == "session" else None
                rec = Recorder(args.out, args.format, calibration=frames.calibration or cam.calibration,
                               device=frames.device, queue_frames=config.record.queue_frames, take=take,
                               session=session, fps=config.camera.fps)
                take_key = frames.meta.get("take")
            elif args.format == "session" and args.species == "auto" and frames.meta.get("take") != take_key:
                take_key = frames.meta.get("take")
                rec.new_take(**_take_for(frames, args, synthetic))
            rec.put(frames)
            n += 1
            if (args.frames is not None and n >= args.frames) or (
                    args.seconds is not None and time.monotonic() - start >= args.seconds):
                break
    if rec is None:
        raise EdgeFasError(f"camera {spec} delivered no frames; nothing was recorded")
    stats = rec.close()
    if stats["error"]:
        raise EdgeFasError(stats["error"])
    subject = f", subject {args.subject}" if args.subject else ""
    print(f"recorded {stats['written']} frame sets to {args.out} ({args.format}{subject}); replay with "
          f"--camera replay:{args.out}")
    return 0
