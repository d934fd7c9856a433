"""`edge-fas run`: the live pipeline on a camera, with the GUI or headless JSON lines.

    edge-fas run --camera SPEC [--config FILE] [--model ARTIFACT] [--runtime KIND] [--headless]
                 [--max-frames N] [--record PATH] [--fullscreen] [--screenshot PNG]

Headless, every verdict is one JSON line on stdout (verdict, score, threshold, reasons, latency_ms
per stage, frame ids, truth when the source knows it, camera_status, and where it comes from: mode,
camera kind and serial, artifact digest, wall-clock time) and the last line is the summary
(`"summary": true`, with the webhook's delivery statistics). With webhook.url set, verdicts also go
to a door controller as signed, sequenced events (never blocking; edge_fas.pipeline.webhook).

Before anything loads, the deployment is checked (edge_fas.deployment): production mode refuses
simulated sources, the demo model, a missing serial allow-list and weakened checks; any mode refuses
a weakened check that deployment.accept_risks does not name. The run exits non-zero when the camera
failed or a replayed frame could not be read, after printing the summary.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from edge_fas.config import add_config_arguments, config_from_args
from edge_fas.errors import EdgeFasError

HELP = "run the live anti-spoofing pipeline on a camera (GUI, or --headless JSON lines)"


def add_arguments(parser):
    parser.add_argument("--camera", default=None,
                        help="camera spec: realsense[:SERIAL], openni[:URI], orbbec[:SERIAL], synthetic[:SCENARIO], "
                             "replay:PATH (default: the config's camera.spec)")
    parser.add_argument("--model", default=None, help="exported artifact folder (default: model.artifact, else the "
                                                      "bundled demo)")
    parser.add_argument("--runtime", default=None, choices=["auto", "tensorrt", "onnxruntime", "torch"],
                        help="inference runtime (default: model.runtime)")
    parser.add_argument("--headless", action="store_true", help="no GUI: JSON lines on stdout, summary at exit")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many camera frames")
    parser.add_argument("--quiet", action="store_true", help="(headless) print only the summary")
    parser.add_argument("--record", default=None, metavar="PATH",
                        help="also record the camera stream to this new session folder")
    parser.add_argument("--fullscreen", action="store_true", help="kiosk mode: fullscreen, large banner, no controls")
    parser.add_argument("--screenshot", default=None, metavar="PNG",
                        help="save the window as PNG after --screenshot-after frames, then exit")
    parser.add_argument("--screenshot-after", type=int, default=60, metavar="N")
    parser.add_argument("--no-drop", action="store_true",
                        help="replay/synthetic: judge every frame, in order (the same recording gives the same "
                             "verdicts every run); the frame-age check is off")
    parser.add_argument("--paced", action="store_true",
                        help="replay of a session folder at its recorded speed (frames the pipeline cannot keep "
                             "up with are dropped, as with a live camera)")
    add_config_arguments(parser, ["camera", "calibration", "model", "decision", "detector", "gui", "record", "webhook",
                                  "deployment"])


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or os.environ.get("QT_QPA_PLATFORM") in ("offscreen", "minimal", "vnc", "eglfs", "linuxfb")
                or sys.platform in ("darwin", "win32"))


def _stop_on_sigterm():
    """systemd stops services with SIGTERM: finish like Ctrl-C (summary printed, camera closed).
    Returns a function that puts the previous handler back."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _warn(message: str) -> None:
    print(f"edge-fas run: warning: {message}", file=sys.stderr)


def build_pipeline(args, config):
    """Deployment checks, then runtime, camera and Pipeline (shared with benchmarks/bench_pipeline.py)."""
    from edge_fas.artifact import load_artifact
    from edge_fas.deployment import check_start
    from edge_fas.drivers import open_camera, parse_spec
    from edge_fas.pipeline import Pipeline
    from edge_fas.runtime import load_runtime, precision_options

    if args.max_frames is not None and args.max_frames < 1:
        raise EdgeFasError(f"--max-frames {args.max_frames}: expected a positive number of frames")
    spec = args.camera or config.camera.spec
    kind, _ = parse_spec(spec)
    no_drop, paced = getattr(args, "no_drop", False), getattr(args, "paced", False)
    if no_drop and kind not in ("replay", "synthetic"):
        raise EdgeFasError(f"--no-drop is for recordings and the synthetic rig; a live {kind} camera must never "
                           "queue frames (its verdicts would fall behind the scene)")
    if no_drop and paced:
        raise EdgeFasError("--no-drop and --paced exclude each other: choose every frame in order, or recorded speed")
    artifact = load_artifact(args.model or config.model.artifact or "demo")
    check_start(config, kind, artifact, warn=_warn)
    runtime = load_runtime(artifact, kind=args.runtime or config.model.runtime, device=config.model.device,
                           threads=config.model.threads, **precision_options(config.model))
    camera = open_camera(spec, config)
    if paced:
        if not hasattr(camera, "realtime") or kind != "replay":
            raise EdgeFasError(f"--paced plays session folders at their recorded speed; {spec} is not one "
                               "(.db3 and .oni recordings play as fast as they are read)")
        camera.realtime = True
    pipeline = Pipeline(camera, runtime, config, max_frames=args.max_frames, no_drop=no_drop)
    _warn_if_it_refuses_most_people(artifact, pipeline.policy.threshold)
    return pipeline, runtime, spec


def _warn_if_it_refuses_most_people(artifact, threshold: float) -> None:
    """The artifact's operating point, when it is the one in use, refused most people on its own validation."""
    import math

    from edge_fas.operating_point import refusal_warning

    op = artifact.manifest.get("operating_point") or {}
    if op.get("threshold") is not None and math.isclose(float(op["threshold"]), float(threshold), abs_tol=1e-9):
        warning = refusal_warning(op)
        if warning:
            _warn(warning)


def _human(s: dict) -> str:
    """The summary in one or two readable lines (stderr), e.g. for `make demo`."""
    lat = s.get("latency_ms") or {}
    text = (f"edge-fas run: {s['frames']} frames, {s['verdicts']} verdicts {s['by_verdict']}, {s['dropped']} dropped, "
            f"{s['decisions_per_s']} decisions/s, latency p50 {lat.get('p50')} ms p95 {lat.get('p95')} ms")
    t = s.get("truth")
    if t:
        text += (f"\n  against truth: bona fide judged live {t['bona_fide_live_rate']}, attacks detected "
                 f"{t['attack_detected_rate']}, attack frames judged LIVE: {t['attack_judged_live']} "
                 f"{t['attack_judged_live_by_species'] or ''}")
    w = s.get("webhook")
    if w:
        text += (f"\n  webhook {w['url']}: {w['delivered']} events delivered ({w['heartbeats']} heartbeats), "
                 f"{w['failed_attempts']} failed attempts {w['errors'] or ''}, latest state "
                 f"{'NOT delivered' if w['pending'] else 'delivered'}{'' if w['signed'] else ', unsigned'}")
    r = s.get("registration")
    if r:
        drift = "not judged" if r.get("drift_px") is None else f"depth {r['drift_px']:g} px off colour"
        text += (f"\n  registration check: {r.get('faces_read', 0)} of {r.get('faces_seen', 0)} faces read, {drift}"
                 + (", REFUSING" if r.get("refusing") else "") + (f"; BLIND: {r['blind_detail']}" if r.get("blind")
                                                                  else ""))
    if s.get("mode") != "production":
        text += f"\n  mode {s.get('mode')}: not a production run" + (f"; accepted risks {s['risks']}" if s.get("risks")
                                                                     else "")
    return text


class _StatusFile:
    """deployment.status_file: the run's state as JSON, rewritten atomically at most once a second."""

    def __init__(self, path, webhook, interval_s: float = 1.0):
        self.path, self.webhook, self.interval_s, self._last = Path(path), webhook, interval_s, None
        self._warned = False

    def __call__(self, result, force: bool = False) -> None:
        now = time.monotonic()
        if not force and self._last is not None and now - self._last < self.interval_s:
            return
        self._last = now
        doc = {"time": round(time.time(), 3), "pid": os.getpid(), "camera_status": result.camera_status,
               "verdict": result.verdict.verdict, "counters": dict(result.counters),
               "mode": result.verdict.context.get("mode"),
               "webhook": None if self.webhook is None else self.webhook.snapshot()}
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, self.path)
        except OSError as e:  # a full disk must not stop the pipeline; said once
            if not self._warned:
                print(f"edge-fas run: warning: cannot write status file {self.path}: {e}", file=sys.stderr)
                self._warned = True


def run(args) -> int:
    config = config_from_args(args)
    if args.print_config:
        print(config.dump(), end="")
        return 0
    if not args.headless and not _has_display():
        raise EdgeFasError("no display for the GUI (DISPLAY is not set); add --headless for JSON lines on stdout, "
                           "or run under a desktop session / xvfb-run")
    from edge_fas.pipeline.decision import RECORDING_CORRUPT, reason_code
    from edge_fas.pipeline.sinks import HeadlessSink
    from edge_fas.pipeline.systemd import Watchdog
    from edge_fas.pipeline.webhook import Webhook, load_key

    load_key(config.webhook)  # an unreadable key file fails now, before the model and camera load
    pipeline, runtime, spec = build_pipeline(args, config)
    print(f"edge-fas run: camera {spec}, model {runtime.model_name}, runtime {runtime.kind} ({runtime.reason}), "
          f"threshold {pipeline.policy.threshold:.3f}, mode {config.deployment.mode}", file=sys.stderr)
    sink = HeadlessSink(verdicts=args.headless and not args.quiet)
    webhook = Webhook.from_config(config.webhook)
    status = _StatusFile(config.deployment.status_file, webhook) if config.deployment.status_file else None
    watchdog = Watchdog()  # systemd Type=notify (jetson/edge-fas.service); no-op elsewhere
    corrupt = []  # reasons of replayed frames that could not be read
    last = {}
    recorder = None
    if args.record or config.record.path:
        from edge_fas.pipeline.recorder import StreamRecorder
        recorder = StreamRecorder(args.record or config.record.path, pipeline.camera, config.record.queue_frames)
        pipeline.on_frame = recorder.put

    def on_result(result):
        sink(result)
        watchdog(result)
        last["result"] = result
        if webhook is not None:
            webhook.send(result.verdict.to_dict())
        if status is not None:
            status(result)
        corrupt.extend(r for r in result.verdict.reasons if reason_code(r) == RECORDING_CORRUPT)

    pipeline.on_result = on_result
    rc = 0
    restore_sigterm = lambda: None  # noqa: E731
    record_error = None
    try:
        pipeline.start()
        print(f"edge-fas run: physics check {pipeline.physics_mode} ({pipeline.physics_reason})", file=sys.stderr)
        if args.headless:
            restore_sigterm = _stop_on_sigterm()
            while pipeline.running:
                time.sleep(0.05)
        else:
            from edge_fas.apps.viewer import run_gui
            rc = run_gui(pipeline, config, fullscreen=args.fullscreen or config.gui.fullscreen,
                         screenshot=args.screenshot, screenshot_after=args.screenshot_after)
    except KeyboardInterrupt:
        pass
    finally:
        restore_sigterm()
        watchdog.stopping()
        pipeline.stop()
        if webhook is not None:
            webhook.close()
        if recorder is not None:
            try:
                recorder.close()
            except EdgeFasError as e:  # reported after the summary, which is still worth having
                record_error = e
            print(f"recorded {recorder.written} frames to {recorder.path} ({recorder.dropped} not written: "
                  "the disk could not keep up)", file=sys.stderr)
    extra = {"mode": config.deployment.mode, "risks": pipeline.context.get("risks", []),
             "webhook": None if webhook is None else webhook.snapshot(),
             "registration": None if pipeline.registration is None else pipeline.registration.summary()}
    if status is not None and "result" in last:
        status(last["result"], force=True)
    summary = sink.write_summary(sys.stdout if args.headless else sys.stderr, extra=extra)
    print(_human(summary), file=sys.stderr)
    if pipeline.error is not None:
        raise EdgeFasError(f"camera {spec} failed: {pipeline.error}")
    if corrupt:
        raise EdgeFasError(f"recording corrupt: {len(corrupt)} frame(s) of {spec} could not be read (judged unknown); "
                           f"first: {corrupt[0].split(':', 1)[1].strip()}")
    if record_error is not None:
        raise record_error
    if rc != 0 and args.screenshot:
        raise EdgeFasError(f"no screenshot: the source ended (camera {pipeline.camera_status}) after "
                           f"{summary['frames']} frames, before --screenshot-after {args.screenshot_after} were shown")
    return rc
