"""The running registration check's readings, logged once through the pipeline and replayed under other settings.

    .venv/bin/python benchmarks/bench_monitor_replay.py log --seeds 20,21 [--domains ...] [--hard] [--laps 1] \
        --out readings.json
    .venv/bin/python benchmarks/bench_monitor_replay.py replay readings.json... [--limit-px 6] [--faces 5] \
        [--min-faces 3] [--apart 2] [--min-share 0.03] [--seen-px 50] [--apart-min-faces 3] [--visitors 500] \
        [--unread flat_face+face_dark_in_ir]

Tuning the monitor (calibration.monitor) on bench_registration_monitor.py costs a pipeline run per camera, calibration
and setting: 12 cameras x 8 calibrations take 15-20 minutes on two cores. Its rules, though, see only the readings:
each RegistrationCheck (shift, outline pixels matched, their share) and which face it belongs to. So `log` judges the
same frames as bench_registration_monitor.py (bench_system.render's `mixed` scenario, bench_miscalibration's
calibrations, Pipeline.process on every frame) and writes every reading the pipeline's monitor took; `replay` feeds
them, at their own camera times and faces, to a RegistrationMonitor with the settings asked for (the module's
constants APART, MIN_SHARE and SEEN_PX set for the replay) and prints, per calibration, the runs refused, the take of
the first refusal, and for the true calibration each run's highest drift and far-apart median. With the shipped
settings the replay refuses the same runs from the same takes as the pipeline did (`log` keeps the pipeline's,
`replay` compares).

`log` reads every face (registration_monitor.UNREAD_FINDINGS is emptied for it) and logs each reading with the physics
check's findings on that frame; `replay --unread GROUPS` leaves out the readings of frames with every finding of one
group (`flat_face+face_dark_in_ir`), as the pipeline does with UNREAD_FINDINGS (it would read the next frame due
instead, which a replay cannot). Logs written before findings were logged read every face.

A stream wider than 640 pixels (`--size 1280x720`) is read at 640 pixels wide (registration_monitor.
read_at_reference_width), and its readings are logged as read: in pixels of that view, with its width. Logs written
before that (native readings of the wider stream, with its width) replay as they were read too.

The readings do not depend on the monitor's settings (it reads every `monitor_interval_s` of camera time whatever it
decided), so a replay stands for a pipeline run except for that interval and for the frames' verdicts: what a setting
lets through is bench_registration_monitor.py's to measure, on seeds the replay never saw. Synthetic rig only.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_miscalibration import calibrations  # noqa: E402  (benchmarks are scripts)
from bench_system import render  # noqa: E402


class Recorder:
    """The pipeline's monitor's measure, logging each reading with the face it belongs to."""

    def __init__(self, measure, log: list, where: dict):
        self.measure, self.log, self.where = measure, log, where
        self.face = 0

    def new_face(self, original):
        def counted():
            self.face += 1
            original()
        return counted

    def __call__(self, reg, box, overlay=False):
        from edge_fas.errors import CalibrationError

        row = dict(self.where, face=self.face, t_ms=float(reg.timestamp_ms), width=int(reg.rgb.shape[1]))
        try:
            r = self.measure(reg, box, overlay=overlay)
        except CalibrationError:
            self.log.append(dict(row, reading=None))
            raise
        self.log.append(dict(row, reading={"shift_px": list(r.shift_px), "matched_pixels": r.matched_pixels,
                                           "matched": r.matched, "at_search_edge": r.at_search_edge}))
        return r


def log_readings(args) -> int:
    from edge_fas.config import DetectorConfig
    from edge_fas.face import FaceDetector
    from edge_fas.runtime import load_runtime

    runtime = load_runtime(args.model, kind=args.runtime)
    d = DetectorConfig()
    detector = FaceDetector(min_score=d.min_score, zoom_search=d.zoom_search)
    rows: list[dict] = []
    pipeline_first: dict[str, int | None] = {}  # "calibration run" -> take of the pipeline's first refusal
    with _constants(UNREAD_FINDINGS=()):  # every face read; `replay --unread` leaves some out
        _log_runs(args, runtime, detector, rows, pipeline_first)
    print(f"{len(rows)} readings in {args.out}")
    return 0


def _log_runs(args, runtime, detector, rows: list, pipeline_first: dict) -> None:
    from edge_fas.config import load_config
    from edge_fas.pipeline import Pipeline
    from edge_fas.pipeline.decision import reason_code

    for domain in args.domains.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            run, t0 = f"{domain}/{seed}", time.monotonic()
            frames, camera = render(domain, seed, args.laps, args.take,
                                    size=tuple(int(v) for v in args.size.split("x")) if args.size else None)
            for name, calibration in calibrations(frames[0].calibration, seed, hard=args.hard).items():
                config = load_config(overrides={"decision.physics": args.mode})
                pipeline = Pipeline(camera, runtime, config, detector=detector, no_drop=True)
                monitor = pipeline.registration
                if monitor is None:
                    raise SystemExit("calibration.monitor is off in the default config; nothing to log")
                where = {"run": run, "calibration": name, "take": None, "species": None, "findings": []}
                recorder = Recorder(monitor._measure, rows, where)
                monitor._measure, monitor.new_face = recorder, recorder.new_face(monitor.new_face)
                monitor.offer = _noting_findings(monitor.offer, where)
                first = None
                for f in frames:
                    where.update(take=f.meta["take"], species=f.truth.species)
                    _, verdict = pipeline.process(f.replace(calibration=calibration, meta=dict(f.meta)))
                    if first is None and "registration_drift" in {reason_code(r) for r in verdict.reasons}:
                        first = f.meta["take"]
                pipeline_first[f"{name} {run}"] = first
            print(f"{run}: {time.monotonic() - t0:.0f} s", flush=True)
            Path(args.out).write_text(json.dumps({"settings": _shipped(), "readings": rows,
                                                  "pipeline_first_refusal": pipeline_first}))


def _noting_findings(offer, where: dict):
    """The monitor's offer, noting the physics check's findings on the frame for the reading it may take."""
    def noted(reg, box, synchronous=False, findings=()):
        where["findings"] = sorted(findings)
        return offer(reg, box, synchronous=synchronous, findings=findings)
    return noted


def _shipped() -> dict:
    from edge_fas.config import load_config
    from edge_fas.pipeline import registration_monitor as M

    c = load_config().calibration
    return {"limit_px": c.monitor_limit_px, "faces": c.monitor_faces, "min_faces": c.monitor_min_faces,
            "interval_s": c.monitor_interval_s, "apart": M.APART, "min_share": M.MIN_SHARE, "seen_px": M.SEEN_PX,
            "seen_share": M.SEEN_SHARE, "apart_min_faces": M.APART_MIN_FACES, "unread": []}


@contextmanager
def _constants(**values):
    """The monitor module's constants set for a replay, and put back after."""
    from edge_fas.pipeline import registration_monitor as M

    saved = {k: getattr(M, k) for k in values}
    for k, v in values.items():
        setattr(M, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(M, k, v)


def replay_run(readings: list[dict], settings: dict):
    """One run's readings through a RegistrationMonitor: (take of the first refusal or None, highest drift, highest
    far-apart median, and the faces seen and read, whether it was blind as each face left, the takes refused at the
    last reading taken in them)."""
    from edge_fas.calibration.check import RegistrationCheck
    from edge_fas.errors import CalibrationError
    from edge_fas.pipeline.registration_monitor import RegistrationMonitor

    queue = list(readings)

    def measure(reg, box, overlay=False):
        r = queue.pop(0)["reading"]
        if r is None:
            raise CalibrationError("no outline in view (logged)")
        shift = tuple(r["shift_px"])
        return RegistrationCheck(float(np.hypot(*shift)), shift, 0.0, 0, None, r["matched"], 0.0, r["matched_pixels"],
                                 r["at_search_edge"])

    with _constants(APART=settings["apart"], MIN_SHARE=settings["min_share"], SEEN_PX=settings["seen_px"],
                    SEEN_SHARE=settings.get("seen_share", 0.0),
                    APART_MIN_FACES=settings.get("apart_min_faces", 1)):
        # the logged readings are what the check read, at the logged width (a wider stream's are logged at its
        # reference width already): replayed as they are
        m = RegistrationMonitor(settings["limit_px"], settings["faces"], settings["min_faces"],
                                settings["interval_s"], measure=measure, reference_view=False)
        face, first, drift, apart, blind, refused = None, None, 0.0, 0.0, [], {}
        for row in readings:
            if row["face"] != face:
                face = row["face"]
                m.new_face()
                blind.append(m.blind() is not None)  # as the last face left
            frame = SimpleNamespace(registered=True, rgb=np.empty((1, row["width"], 3), np.uint8), depth=1,
                                    timestamp_ms=row["t_ms"], device=None)
            m.offer(frame, (0, 0, 10, 10), synchronous=True)
            s = m.summary()
            drift = max(drift, s["drift_px"] or 0.0)
            apart = max(apart, s["apart_px"] or 0.0)
            refused[row["take"]] = bool(m.faults())  # (the last reading of a take decides)
            if first is None and refused[row["take"]]:
                first = row["take"]
        blind.append(m.blind() is not None)
        s = m.summary()
    if queue:
        raise SystemExit(f"{len(queue)} readings were not taken in replay: the interval differs from the log's")
    return first, drift, apart, SimpleNamespace(seen=s["faces_seen"], read=s["faces_read"], blind=blind[1:],
                                                refused=sorted(t for t, r in refused.items() if r), takes=len(refused),
                                                judged_after=[t for t, r in refused.items()
                                                              if first is not None and t > first and not r],
                                                after=sum(1 for t in refused if first is not None and t > first))


def visitors(readings: list[dict], n: int, rng) -> list[dict]:
    """A long stream of `n` faces drawn with replacement from one run's faces, each face with all its readings in
    order (a minute apart from the last face, each reading an interval apart): how the check would fare on that camera
    over a kiosk's day of the same visitors, for the blindness rule that needs BLIND_FACES faces."""
    by_face = defaultdict(list)
    for row in readings:
        by_face[row["face"]].append(row)
    faces = list(by_face.values())
    out, t = [], 0.0
    for i, k in enumerate(rng.integers(len(faces), size=n)):
        t += 60_000.0
        for j, row in enumerate(faces[k]):
            out.append(dict(row, face=i, t_ms=t + 1000.0 * j))
    return out


def _load(files: list[str]) -> dict:
    """One log, or several (of the same settings) as one."""
    data = {"settings": None, "readings": [], "pipeline_first_refusal": {}}
    for path in files:
        part = json.loads(Path(path).read_text())
        part["settings"].setdefault("apart_min_faces", 1)  # logs written before the setting: it was 1 (no floor)
        part["settings"].setdefault("seen_share", 0.0)  # ... and before this one: no floor either
        part["settings"].setdefault("unread", [])  # ... and before findings were logged: every face read
        if data["settings"] not in (None, part["settings"]):
            raise SystemExit(f"{path} was logged with other monitor settings ({part['settings']}) than "
                             f"{files[0]} ({data['settings']}); replay them apart")
        data["settings"] = part["settings"]
        data["readings"] += part["readings"]
        data["pipeline_first_refusal"].update(part.get("pipeline_first_refusal", {}))
    return data


def replay(args) -> int:
    # the monitor's own warning (the check is blind) would print once per replayed camera; the tables say it
    logging.getLogger("edge_fas.pipeline.registration_monitor").setLevel(logging.ERROR)
    data = _load(args.files)
    settings = dict(data["settings"])
    for key in ("limit_px", "faces", "min_faces", "apart", "min_share", "seen_px", "seen_share", "apart_min_faces"):
        if getattr(args, key) is not None:
            settings[key] = type(settings[key])(getattr(args, key))
    if args.unread is not None:
        settings["unread"] = sorted(g for g in args.unread.split(",") if g)
        if settings["unread"] and any("findings" not in row for row in data["readings"]):
            raise SystemExit("--unread: these logs were written before the physics check's findings were logged; "
                             "log the seeds again")
    print(f"replay of {', '.join(args.files)} ({len(data['readings'])} readings) with {settings}")
    unread = [set(group.split("+")) for group in settings["unread"]]
    runs = defaultdict(list)
    for row in data["readings"]:
        if any(group <= set(row.get("findings", ())) for group in unread):
            continue  # not read: the pipeline would read the next frame due, which was not logged
        runs[(row["calibration"], row["run"])].append(row)
    logged = data.get("pipeline_first_refusal", {})
    same, compared = 0, 0
    for name in dict.fromkeys(c for c, _ in runs):
        names = [r for c, r in runs if c == name]
        out = {r: replay_run(runs[(name, r)], settings) for r in names}
        for r in names:
            if f"{name} {r}" in logged:
                compared += 1
                same += out[r][0] == logged[f"{name} {r}"]
        refused = [r for r in names if out[r][0] is not None]
        takes = [out[r][0] for r in refused]
        line = (f"{name:14s} refused {len(refused):2d}/{len(names)}, first refusal at take "
                f"{np.median(takes) if takes else '-'} (median)")
        if name == "true":
            line += "; highest drift/apart per run: " + " ".join(
                f"{r} {out[r][1]:.1f}/{out[r][2]:.1f}" + (f" REFUSED on {len(out[r][3].refused)} of "
                                                         f"{out[r][3].takes} takes" if out[r][0] is not None else "")
                for r in names)
        else:
            line += "; never refused: " + (" ".join(r for r in names if out[r][0] is None) or "none")
            # released again: takes after the first refusal judged at their last reading (a wrong calibration let back)
            after = sum(out[r][3].after for r in names)
            line += (f"; judged again on {sum(len(out[r][3].judged_after) for r in names)} of {after} takes after a "
                     "first refusal: " + (" ".join(f"{r} {len(out[r][3].judged_after)}" for r in names
                                                   if out[r][3].judged_after) or "none"))
        blind = [r for r in names if any(out[r][3].blind)]
        line += (f"; faces read/seen per run: " + " ".join(f"{r} {out[r][3].read}/{out[r][3].seen}" for r in names)
                 + f"; blind at some face: {' '.join(blind) or 'none'}")
        print(line)
    if compared and settings == data["settings"]:  # the shipped settings: the replay must be the pipeline's
        print(f"first refusal as in the pipeline's own run: {same}/{compared} runs")
    if args.visitors:
        from edge_fas.pipeline.registration_monitor import BLIND_FACES, BLIND_START
        print(f"\n{args.visitors} visitors per camera, drawn with replacement from its run's faces (seed "
              f"{args.visitors_seed}): the faces at which the check was blind (BLIND_FACES {BLIND_FACES}, BLIND_START "
              f"{BLIND_START}), per run")
        for name in dict.fromkeys(c for c, _ in runs):
            rng = np.random.default_rng(args.visitors_seed)
            shares = {}
            for r in [r for c, r in runs if c == name]:
                long = replay_run(visitors(runs[(name, r)], args.visitors, rng), settings)[3]
                shares[r] = float(np.mean(long.blind))
            ever = sorted((r for r in shares if shares[r] > 0), key=lambda r: -shares[r])
            print(f"{name:14s} blind on {len(ever)}/{len(shares)} cameras: "
                  + (" ".join(f"{r} {100 * shares[r]:.1f}%" for r in ever) or "none"))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    lg = sub.add_parser("log", help="judge the frames through the pipeline and write every reading")
    lg.add_argument("--domains", default="surf,wmca,cefa,padisi,rand_heldout,rand_test")
    lg.add_argument("--seeds", required=True, help="rig seeds, one drawn camera each")
    lg.add_argument("--take", type=float, default=1.5, help="seconds per attack take; bona fide 4/3 of it")
    lg.add_argument("--hard", action="store_true", help="also bench_miscalibration's baseline+60mm and turned5deg")
    lg.add_argument("--size", help="the camera's width x height, e.g. 320x240 (default: the config's 640x480)")
    lg.add_argument("--laps", type=int, default=1, help="passes of the mixed scenario per camera (a longer day: more "
                                                        "faces, for the blindness rule)")
    lg.add_argument("--model", default="demo")
    lg.add_argument("--runtime", default="onnxruntime")
    lg.add_argument("--mode", default="detector", help="decision.physics (default detector)")
    lg.add_argument("--out", required=True)
    rp = sub.add_parser("replay", help="the logged readings through the monitor's rules with other settings")
    rp.add_argument("files", nargs="+", help="logs written by `log`")
    rp.add_argument("--limit-px", dest="limit_px", type=float)
    rp.add_argument("--faces", type=int)
    rp.add_argument("--min-faces", dest="min_faces", type=int)
    rp.add_argument("--apart", type=float, help="the far-apart rule's factor on the limit (APART)")
    rp.add_argument("--min-share", dest="min_share", type=float, help="share of outline a reading explains (MIN_SHARE)")
    rp.add_argument("--seen-px", dest="seen_px", type=int, help="matched pixels a far-apart reading needs (SEEN_PX)")
    rp.add_argument("--seen-share", dest="seen_share", type=float,
                    help="share of its outline a far-apart reading explains at least (SEEN_SHARE)")
    rp.add_argument("--apart-min-faces", dest="apart_min_faces", type=int,
                    help="faces the far-apart rule needs at least, whatever --min-faces (APART_MIN_FACES)")
    rp.add_argument("--unread", help="leave out readings of frames with these physics findings: comma-separated "
                                     "groups of codes joined by +, a frame left out when it has every code of a "
                                     "group (flat_face+face_dark_in_ir: a screen; '' for none): registration_monitor."
                                     "UNREAD_FINDINGS")
    rp.add_argument("--visitors", type=int, default=0,
                    help="also replay, per camera, this many faces drawn with replacement from its run (blindness)")
    rp.add_argument("--visitors-seed", dest="visitors_seed", type=int, default=0)
    args = ap.parse_args(argv)
    return log_readings(args) if args.command == "log" else replay(args)


if __name__ == "__main__":
    sys.exit(main())
