"""`edge-fas run`: the live pipeline on a camera, with the GUI or headless JSON lines.

    edge-fas run --camera SPEC [--config FILE] [--model ARTIFACT] [--runtime KIND] [--headless]
                 [--max-frames N] [--record PATH] [--fullscreen] [--screenshot PNG]

Headless, every verdict is one JSON line on stdout (verdict, score, threshold, reasons, latency_ms
per stage, frame ids, truth when the source knows it, camera_status) and the last line is the
summary (`"summary": true`). With webhook.url set, verdicts are also POSTed (never blocking).
"""

from __future__ import annotations

import os
import sys
import time

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
    add_config_arguments(parser, ["camera", "calibration", "model", "decision", "detector", "gui", "record", "webhook"])


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


def build_pipeline(args, config):
    """Camera, runtime and Pipeline from the arguments (shared with benchmarks/bench_pipeline.py)."""
    from edge_fas.drivers import open_camera
    from edge_fas.pipeline import Pipeline
    from edge_fas.runtime import load_runtime

    if args.max_frames is not None and args.max_frames < 1:
        raise EdgeFasError(f"--max-frames {args.max_frames}: expected a positive number of frames")
    spec = args.camera or config.camera.spec
    model = args.model or config.model.artifact or "demo"
    runtime = load_runtime(model, kind=args.runtime or config.model.runtime, device=config.model.device,
                           threads=config.model.threads)
    camera = open_camera(spec, config)
    return Pipeline(camera, runtime, config, max_frames=args.max_frames), runtime, spec


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
    return text


def run(args) -> int:
    config = config_from_args(args)
    if args.print_config:
        print(config.dump(), end="")
        return 0
    if not args.headless and not _has_display():
        raise EdgeFasError("no display for the GUI (DISPLAY is not set); add --headless for JSON lines on stdout, "
                           "or run under a desktop session / xvfb-run")
    from edge_fas.pipeline.sinks import HeadlessSink
    from edge_fas.pipeline.systemd import Watchdog
    from edge_fas.pipeline.webhook import Webhook

    pipeline, runtime, spec = build_pipeline(args, config)
    print(f"edge-fas run: camera {spec}, model {runtime.model_name}, runtime {runtime.kind} ({runtime.reason}), "
          f"threshold {pipeline.policy.threshold:.3f}", file=sys.stderr)
    sink = HeadlessSink(verdicts=args.headless and not args.quiet)
    webhook = Webhook.from_config(config.webhook)
    watchdog = Watchdog()  # systemd Type=notify (jetson/edge-fas.service); no-op elsewhere
    recorder = None
    if args.record or config.record.path:
        from edge_fas.pipeline.recorder import StreamRecorder
        recorder = StreamRecorder(args.record or config.record.path, pipeline.camera, config.record.queue_frames)
        pipeline.on_frame = recorder.put

    def on_result(result):
        sink(result)
        watchdog(result)
        if webhook is not None:
            webhook.send(result.verdict.to_dict())

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
    summary = sink.write_summary(sys.stdout if args.headless else sys.stderr)
    print(_human(summary), file=sys.stderr)
    if pipeline.error is not None and summary["verdicts"] == 0:
        raise EdgeFasError(f"camera {spec} failed: {pipeline.error}")
    if record_error is not None:
        raise record_error
    return rc
