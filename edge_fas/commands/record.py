"""`edge-fas record`: record a camera to a session folder (portable, labelled) or a librealsense .db3.

    edge-fas record --camera SPEC --out PATH [--format session|native] [--frames N | --seconds S]
                    [--species NAME --subject ID --consent] [--site ... --domain ... --operator ...]

Session recordings carry labels per take. With --species auto (the default when the source knows the
truth, as the synthetic camera does) a new take starts whenever the source's take changes and is
labelled from its truth; otherwise --species names the one take's bona fide / attack species.
Native recordings (.db3) hold the raw streams with the device calibration and replay through the
RealSense driver.
"""

from __future__ import annotations

import time

from edge_fas.config import add_config_arguments, config_from_args
from edge_fas.errors import EdgeFasError

HELP = "record a camera to a labelled session folder or a librealsense .db3 file"


def add_arguments(parser):
    parser.add_argument("--camera", default=None, help="camera spec (default: the config's camera.spec)")
    parser.add_argument("--out", required=True, help="new session folder, or FILE.db3 with --format native")
    parser.add_argument("--format", choices=["session", "native"], default="session",
                        help="session: portable labelled folder (default); native: librealsense .db3")
    parser.add_argument("--frames", type=int, default=None, help="stop after this many frame sets")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--species", default="auto",
                        help="bona_fide or an attack species for the take; auto: from the source's truth")
    parser.add_argument("--subject", default="", help="pseudonymous subject id (no names)")
    parser.add_argument("--consent", action="store_true", help="the subject's consent is on file")
    parser.add_argument("--notes", default="", help="operator notes for the take")
    parser.add_argument("--site", default="", help="site name stored in session.yaml")
    parser.add_argument("--domain", default="", help="domain (environment) name stored in session.yaml")
    parser.add_argument("--operator", default="", help="operator id stored in session.yaml")
    parser.add_argument("--retention-days", type=int, default=None, help="delete-by date for the data, in days")
    parser.add_argument("--color-codec", choices=["png", "jpeg"], default="png", help="colour frames: lossless png or jpeg")
    add_config_arguments(parser, sections=["camera", "record"])


def _take_for(frames, args) -> dict:
    truth = frames.truth
    if args.species == "auto":
        if truth is None:
            raise EdgeFasError("--species auto needs a source that knows the truth (synthetic or a session); "
                               "say what is recorded: --species bona_fide --consent, or --species print, ...")
        species = truth.species
        synthetic = frames.device.driver == "synthetic"
        return {"species": species, "subject_id": args.subject, "notes": args.notes,
                "consent": args.consent or synthetic}
    return {"species": args.species, "subject_id": args.subject, "consent": args.consent, "notes": args.notes}


def run(args) -> int:
    from edge_fas.drivers import open_camera
    from edge_fas.drivers.recorder import Recorder

    if args.frames is None and args.seconds is None:
        raise EdgeFasError("say when to stop: --frames N or --seconds S")
    if args.format == "native" and not str(args.out).endswith((".db3", ".bag")):
        raise EdgeFasError(f"--format native writes a librealsense recording; --out must end in .db3 (got {args.out})")
    config = config_from_args(args)
    spec = args.camera or config.camera.spec
    rec = None
    n, start, take_key = 0, time.monotonic(), None
    with open_camera(spec, config) as cam:
        for frames in cam.frames():
            if rec is None:
                session = {"site": args.site, "domain": args.domain or (frames.truth.domain if frames.truth else ""),
                           "operator": args.operator, "retention_days": args.retention_days,
                           "color_codec": args.color_codec,
                           "require_consent": frames.device.driver != "synthetic"}
                take = _take_for(frames, args) if args.format == "session" else None
                rec = Recorder(args.out, args.format, calibration=frames.calibration or cam.calibration,
                               device=frames.device, queue_frames=config.record.queue_frames, take=take,
                               session=session, fps=config.camera.fps)
                take_key = frames.meta.get("take")
            elif args.format == "session" and args.species == "auto" and frames.meta.get("take") != take_key:
                take_key = frames.meta.get("take")
                rec.new_take(**_take_for(frames, args))
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
    print(f"recorded {stats['written']} frame sets to {args.out} ({args.format}); replay with --camera replay:{args.out}")
    return 0
