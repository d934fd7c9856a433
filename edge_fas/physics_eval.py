"""`edge-fas eval physics`: the model-free physics check (edge_fas.pipeline.physics) scored like a model,
on a site's recorded sessions or on synthetic domains.

With a model trained on synthetic data only (the bundled demo) on a real camera, the physics check decides
alone (decision.physics: auto), and its limits were set on the synthetic rig. This is how a site sees what
those limits do on its own camera before relying on them: the same ISO/IEC 30107-3 report as a model's
(APCER per species, BPCER, 95% intervals, scores.csv, plots) at the check's threshold 0.5, and what each
measurement spans per species beside its limit, so a limit that vetoes the site's own live faces shows.

Each frame goes through what the live pipeline does before the network: depth and IR registered to colour,
the face found by the same detector (colour, or registered IR when the colour image is too dark; the
config's detector.select when several), the working-distance and head-pose checks (decision.min/
max_distance_m, max_yaw_deg, max_pitch_deg), then PhysicsCheck with the config's decision.physics_* limits.
The ISO report is per frame. For recorded takes the report also gives the decisions: each take's scored
frames, in order, through the pipeline's decision window (decision.window, min_live_frames). Before the face
is looked for, each frame goes through the pipeline's stream checks, take by take in recorded order (the
required modalities present, stream skew within decision.max_skew_ms, timestamps and counters advancing, no
image identical to the previous frame's); a recording has no frame age and its serial is what it claims, so
those two are not checked. A frame the check cannot measure counts as not live (the pipeline says
`physics_unmeasured`). A frame a stream check refuses, with no face found, or one the distance or pose check
turns away, is left out of the per-frame figures and counted, and it breaks its take's window as it does
live. Writes the model report (metrics.json, metrics.md, scores.csv, plots) with the measurements' table
appended, and measurements.csv (every frame's measurements, findings and decision).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from edge_fas.errors import ConfigError

__all__ = ["MEASUREMENTS", "find_face", "gate_faults", "measurement_table", "take_table", "run"]

# measurement -> the PhysicsLimits field it is held against
MEASUREMENTS = {"plane_relief_mm": "min_plane_relief_mm", "quadric_relief_mm": "min_quadric_relief_mm",
                "nose_over_eyes_mm": "min_nose_over_eyes_mm", "face_ir": "min_face_ir",
                "pupil_contrast": "min_pupil_contrast"}
UNMEASURED_SCORE = 1.0  # a frame the check cannot measure is never live


def gate_faults(frames, chosen, decision_config, face=None) -> list[str]:
    """What the pipeline's working-distance and head-pose checks say of a registered frame's face before any
    score ([]: it goes on to be scored). A face without depth is left to the physics check (unmeasured).
    `face`: physics.face_depth(frames, chosen.box), shared with the physics check as the pipeline does."""
    from edge_fas.pipeline import decision as D
    from edge_fas.pipeline.pipeline import distance_faults
    from edge_fas.pipeline.pose import head_pose, pose_faults

    depth_m = frames.depth_m() if frames.depth is not None and frames.registered else None
    faults = [f for f in distance_faults(depth_m, chosen.box, decision_config) if D.reason_code(f) != D.NO_DEPTH]
    pose = head_pose(frames, chosen.box, chosen.keypoints, face)
    return faults + pose_faults(pose, decision_config.max_yaw_deg, decision_config.max_pitch_deg)


def find_face(frames, detector, detector_config):
    """The detection to judge in one registered frame set (None: no face), framed as the pipeline frames it:
    colour when bright enough, else registered IR; the detection near the truth box when the frame has one
    (synthetic data), else the one detector.select picks."""
    from edge_fas.face import detection_near
    from edge_fas.pipeline.pipeline import detection_image
    from edge_fas.pipeline.tracker import select

    image = detection_image(frames, detector_config.dark_rgb_mean)
    if image is None:
        return None
    found = detector.detect(image)
    truth = frames.truth.face_box if frames.truth is not None else None
    if truth is not None:
        return detection_near(found, truth)
    depth_m = frames.depth_m() if frames.depth is not None and frames.registered else None
    return select(found, detector_config.select, image_shape=image.shape, depth_m=depth_m)


def _percentiles(values) -> str:
    v = np.asarray([x for x in values if x is not None], np.float64)
    if v.size == 0:
        return "-"
    p = np.percentile(v, [1, 5, 50, 95, 99])
    return " / ".join(f"{x:.3g}" for x in p)


def measurement_table(rows: list[dict], limits) -> str:
    """Markdown: per measurement and species, how many frames had it, its 1st / 5th / 50th / 95th / 99th
    percentiles, and how many fell below the limit (for bona fide frames: vetoes the limit causes; for an
    attack: frames that measurement alone would have passed are the rest)."""
    species = sorted({r["species"] for r in rows}, key=lambda s: (s != "bona_fide", s))
    out = ["| measurement (limit) | species | frames measured | percentiles 1 / 5 / 50 / 95 / 99 | below the limit |",
           "|---|---|---|---|---|"]
    for name, field in MEASUREMENTS.items():
        limit = getattr(limits, field)
        for sp in species:
            values = [r["measurements"].get(name) for r in rows if r["species"] == sp]
            measured = [v for v in values if v is not None]
            if not measured:
                continue
            below = sum(v < limit for v in measured)
            out.append(f"| {name} ({limit:g}) | {sp} | {len(measured)}/{len(values)} | {_percentiles(measured)} | "
                       f"{below}/{len(measured)} ({100 * below / len(measured):.0f}%) |")
    return "\n".join(out)


def take_table(rows: list[dict]) -> str:
    """Markdown: per species, the takes (a session's take) with at least one frame judged live, the most
    frames judged live in one take, and the decisions the pipeline's window made live (rows' `decision`)."""
    by_take: dict = {}
    for r in rows:
        by_take.setdefault((r["species"], r["take"]), []).append(r)
    species = sorted({s for s, _ in by_take}, key=lambda s: (s != "bona_fide", s))
    out = ["| species | takes | takes with a frame judged live | most frames live in one take | "
           "takes with a live decision | live decisions |", "|---|---|---|---|---|---|"]
    for sp in species:
        takes = [v for (s, _), v in by_take.items() if s == sp]
        live = [[r["score"] < 0.5 for r in t] for t in takes]
        worst = max(live, key=lambda v: sum(v) / len(v))
        decided = [[r.get("decision") == "live" for r in t] for t in takes]
        out.append(f"| {sp} | {len(takes)} | {sum(any(v) for v in live)} | {sum(worst)}/{len(worst)} | "
                   f"{sum(any(v) for v in decided)} | {sum(map(sum, decided))}/{sum(map(len, decided))} |")
    return "\n".join(out)


def _take_of(path: str, index: int) -> str:
    """A session sample's take ('session/take'), or the sample itself (synthetic: one frame each)."""
    parts = path.split("/")
    return "/".join(parts[:2]) if len(parts) >= 3 else f"sample {index}"


def _check_arguments(args) -> None:
    not_here = [flag for flag, given in (("--protocol", args.protocol), ("--data-root", args.data_root),
                                         ("--lists", args.lists), ("--synthetic", args.synthetic),
                                         ("--missing", args.missing), ("--threshold", args.threshold is not None),
                                         ("--target", args.target), ("--val-sessions", args.val_sessions)) if given]
    if not_here:
        raise ConfigError(f"edge-fas eval physics: {', '.join(not_here)} do not apply. The physics check needs metric "
                          "depth and the rig's calibration (recorded sessions or synthetic domains; public datasets "
                          "ship crops), and is judged at its own threshold 0.5: its limits are the config's "
                          "decision.physics_* keys (--config FILE, or --decision-physics-min-relief-mm V, ...)")
    if not args.sessions and not args.domains:
        raise ConfigError("edge-fas eval physics needs data: --sessions DIR[,DIR] (recorded with `edge-fas record` or "
                          "`collect`) or --domains (synthetic, e.g. --domains rand_heldout)")


def run(args) -> int:
    """`edge-fas eval physics --sessions DIR | --domains D --out REPORT`."""
    from edge_fas.commands.eval import data_config
    from edge_fas.config import config_from_args
    from edge_fas.data.build import test_indices
    from edge_fas.face import FaceDetector
    from edge_fas.pipeline import decision as D
    from edge_fas.pipeline.decision import DecisionPolicy
    from edge_fas.pipeline.integrity import IntegrityChecker
    from edge_fas.pipeline.physics import THRESHOLD, PhysicsCheck, face_depth
    from edge_fas.progress import Progress

    _check_arguments(args)
    if not args.out:
        raise ConfigError("edge-fas eval physics needs --out REPORT_FOLDER")
    config = config_from_args(args)
    try:
        check = PhysicsCheck.from_config(config.decision)
    except ValueError as e:  # an unknown check name
        raise ConfigError(str(e)) from None
    d = data_config(args, {})
    sets = test_indices(d, split=args.split)
    out = Path(args.out)
    with FaceDetector(config.detector.min_score, config.detector.zoom_search) as detector:
        for name, ix in sets.items():
            rows, no_face, turned_away, stream_faults, policies, streams = [], {}, {}, {}, {}, {}
            dc = config.decision
            with Progress(f"physics check on {name}", len(ix)) as bar:
                for i, sample in enumerate(ix.samples()):
                    frames = sample.registered_frames()
                    bar.callback(i + 1, len(ix))
                    take = _take_of(str(ix.path[i]), i)
                    if take not in policies:  # each take is one person or instrument: its own window and stream
                        policies[take] = DecisionPolicy(THRESHOLD, dc.window, dc.min_live_frames, dc.hysteresis)
                        streams[take] = IntegrityChecker(dc.required_modalities, (), dc.max_skew_ms,
                                                         dc.max_frame_age_ms)
                    faults = streams[take].check(frames)
                    if faults:  # as live: refused before any face is looked for, and the window starts again
                        _count(stream_faults, sample.species, faults)
                        policies[take].decide(None, faults)
                        continue
                    chosen = find_face(frames, detector, config.detector)
                    if chosen is None:
                        no_face[sample.species] = no_face.get(sample.species, 0) + 1
                        policies[take].decide(None, [D.reason(D.NO_FACE)])
                        continue
                    face = face_depth(frames, chosen.box)  # read once for the pose and the physics check
                    gates = gate_faults(frames, chosen, config.decision, face)
                    if gates:  # the pipeline says unknown before any score: counted, and it breaks the window
                        _count(turned_away, sample.species, gates)
                        policies[take].decide(None, gates)
                        continue
                    res = check.check(frames, chosen.box, chosen.keypoints, face)
                    faults = list(res.findings) + ([D.reason(D.PHYSICS_UNMEASURED)] if res.score is None else [])
                    decision = policies[take].decide(res.score, faults).verdict
                    rows.append(dict(index=i, path=str(ix.path[i]), take=take, decision=decision,
                                     species=sample.species, label=int(sample.label), domain=str(ix.domain[i]),
                                     score=UNMEASURED_SCORE if res.score is None else float(res.score),
                                     unmeasured=res.score is None, measurements=dict(res.measurements),
                                     findings=[str(f) for f in res.findings]))
            if not rows and stream_faults:
                raise ConfigError(f"{name}: the stream checks refused every frame ("
                                  f"{', '.join(sorted({c for _, c in stream_faults}))}): check the recording "
                                  "(`edge-fas inspect`) and decision.required_modalities, decision.max_skew_ms")
            if not rows and turned_away:
                raise ConfigError(f"{name}: every face found was turned away before the physics check ("
                                  f"{', '.join(sorted({c for _, c in turned_away}))}): check decision.min_distance_m/"
                                  f"max_distance_m ({dc.min_distance_m:g}-{dc.max_distance_m:g} m) and "
                                  f"decision.max_yaw_deg/max_pitch_deg ({dc.max_yaw_deg:g}/{dc.max_pitch_deg:g}) "
                                  "against where people stand at this camera")
            if not rows:
                raise ConfigError(f"{name}: no face was found on any of its {len(ix)} frames; check the recording "
                                  "(`edge-fas inspect`) and that the face is in view")
            folder = out if len(sets) == 1 else out / name
            _write(folder, name, ix, rows, no_face, turned_away, stream_faults, check, THRESHOLD, d, args,
                   config.decision)
    return 0


def _count(counts: dict, species: str, faults: list[str]) -> None:
    """Count one refused frame under (species, its reason codes)."""
    from edge_fas.pipeline.decision import reason_code

    key = (species, ", ".join(dict.fromkeys(reason_code(f) for f in faults)))
    counts[key] = counts.get(key, 0) + 1


def _counted(counts: dict) -> str:
    """'N (species n codes, ...)' of a {(species, reason codes): frames} count."""
    return f"{sum(counts.values())}" + (
        f" ({', '.join(f'{sp} {n} {codes}' for (sp, codes), n in sorted(counts.items()))})" if counts else "")


def _write(folder: Path, name, ix, rows, no_face, turned_away, stream_faults, check, threshold, d, args,
           decision) -> None:
    from edge_fas.report import write_report

    data = ix.meta.get("data") or name
    unmeasured = sum(r["unmeasured"] for r in rows)
    limits = {f: getattr(check.limits, f) for f in MEASUREMENTS.values()}
    window, min_live = decision.window, decision.min_live_frames
    missed = f"{sum(no_face.values())}" + (f" ({', '.join(f'{k} {v}' for k, v in sorted(no_face.items()))})"
                                           if no_face else "")
    extra = ("\n\n## The physics check's measurements\n\n"
             f"Limits (decision.physics_*): {', '.join(f'{k} {v:g}' for k, v in limits.items())}; checks: "
             f"{', '.join(check.checks)}. Frames the check could not measure (no depth or IR on the face; counted "
             f"as not live): {unmeasured} of {len(rows)}. Frames the stream checks refused (left out; required "
             f"modalities, skew above decision.max_skew_ms {decision.max_skew_ms:g} ms, time or counter not "
             f"advancing, a repeated image): {_counted(stream_faults)}. Frames with no face found (left out): "
             f"{missed}. Frames "
             f"the working-distance or head-pose check turned away before the physics check (left out; decision."
             f"min/max_distance_m {decision.min_distance_m:g}-{decision.max_distance_m:g} m, max_yaw_deg "
             f"{decision.max_yaw_deg:g}, max_pitch_deg {decision.max_pitch_deg:g}): {_counted(turned_away)}."
             "\n\n" + measurement_table(rows, check.limits) +
             ("\n\nPer take. A frame judged live is where an attack gets a chance. A live decision is what the "
              f"pipeline's window (decision.window {window}, min_live_frames {min_live}) makes of the take's scored "
              "frames in order. Fewer frames than the take holds (--frames-per-take) space them out, so the window "
              "then spans more time than it does live.\n\n" + take_table(rows) if d["source"] == "sessions" else "") +
             "\n\nA limit moved to fit these takes must be checked on other takes before it is reported: these "
             "numbers then describe the takes it was fitted on.\n")
    r = write_report(folder, [x["score"] for x in rows], [x["label"] for x in rows], [x["species"] for x in rows],
                     [x["domain"] for x in rows], threshold=threshold, all_species=ix.meta.get("all_species"),
                     paths=[x["path"] for x in rows], plots=not args.no_plots, extra_markdown=extra,
                     title=f"physics check (model-free) on {name}: {data}",
                     meta={"model": "physics", "scored_by": "physics check (edge_fas.pipeline.physics)",
                           "test_set": name, "data": data, "source": d["source"], "split": args.split,
                           "samples": len(rows), "skipped_no_face": sum(no_face.values()),
                           "skipped_no_face_by_species": no_face, "unmeasured": unmeasured, "limits": limits,
                           "stream_faults": sum(stream_faults.values()),
                           "stream_faults_by_species_and_reason": {f"{sp}: {codes}": n
                                                                   for (sp, codes), n in sorted(stream_faults.items())},
                           "turned_away": sum(turned_away.values()),
                           "turned_away_by_species_and_reason": {f"{sp}: {codes}": n
                                                                 for (sp, codes), n in sorted(turned_away.items())},
                           "checks": list(check.checks), "threshold_split": "the physics check's own threshold"})
    with open(folder / "measurements.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "path", "species", "score", "decision", *MEASUREMENTS, "findings"])
        for x in rows:
            values = [x["measurements"].get(m) for m in MEASUREMENTS]
            w.writerow([x["index"], x["path"], x["species"], f"{x['score']:.6f}", x["decision"],
                        *("" if v is None else f"{v:.6g}" for v in values), "; ".join(x["findings"])])
    print(f"wrote {folder}: APCER max {r['apcer_max']:.4f}, BPCER {r['bpcer']:.4f}, AUC {r['auc']:.4f} at the physics "
          f"check's threshold {threshold:g}; {unmeasured} unmeasured, {sum(stream_faults.values())} refused by the "
          f"stream checks, {sum(no_face.values())} without a face, "
          f"{sum(turned_away.values())} turned away by the distance or pose check; "
          f"data: {data}")
