"""`edge-fas inspect`: what a recording holds, before it goes into training or a site's evaluation.

    edge-fas inspect field/site1_day3              # a session folder: takes, labels, streams, sensor settings
    edge-fas inspect lobby.db3                     # a librealsense recording (.db3/.bag) or an OpenNI2 .oni
    edge-fas inspect field/site1_day3 --json       # the same as one JSON object

It lists the device and calibration, every take (species, subject, consent, frames, duration, frame
rate, dropped frames: the most any stream lost), each stream's size, and each stream's sensor settings
(exposure, gain, auto-exposure, laser power, white balance) as min / median / max, then warnings:
interrupted takes, unreadable frames, frames without sensor settings, settings that moved during a take,
and settings that separate bona fide from attack takes (record both with the same settings, or a model
learns the setting; `edge-fas adapt` refuses such sessions). Under auto-exposure, exposure, gain and white
balance follow the scene and are not held against the recording. Images of session folders are not
decoded (the first whole frame's images give the stream sizes); a native recording is played once. The exit
status is 0 when there are no warnings and 1 when there are (scripts can gate on it).
"""

from __future__ import annotations

import json

HELP = "summarise a recording: takes, labels, streams, dropped frames, sensor settings, warnings"


def add_arguments(parser):
    parser.add_argument("path", metavar="PATH", help="a session folder, or a .db3/.bag/.oni recording")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--frames", type=int, default=None, metavar="N",
                        help="read at most N frames of a native recording (default: all)")


def run(args) -> int:
    from edge_fas.drivers.summary import summarize
    from edge_fas.errors import ConfigError

    if args.frames is not None and args.frames < 1:
        raise ConfigError(f"--frames {args.frames}: give a positive number of frames, or leave it out for all")
    summary = summarize(args.path, max_frames=args.frames)
    print(json.dumps(summary, indent=1) if args.json else "\n".join(describe(summary)))
    return 1 if summary["warnings"] else 0


def describe(s: dict) -> list[str]:
    """The summary as text lines."""
    dev = s["device"]
    lines = [f"{s['path']}: {s['format']}, {s['frames']} frames in {len(s['takes'])} "
             f"{'take' if len(s['takes']) == 1 else 'takes'}",
             f"device: {dev.get('model') or '?'} serial {dev.get('serial') or '?'} "
             f"firmware {dev.get('firmware') or '?'}; calibration {'recorded' if s['calibration'] else 'MISSING'}"
             + (f" ({s['calibration_source']})" if s.get("calibration_source") else "")
             + "".join(f"; applied {a['when']} from {a['from']}" for a in s.get("calibration_applied") or [])]
    where = [f"{k} {s[k]}" for k in ("site", "domain", "operator", "created", "retention_days") if k in s]
    if s.get("reopened"):  # takes appended later (--append)
        where.append(f"takes appended {len(s['reopened'])} time{'s' * (len(s['reopened']) != 1)}, last "
                     f"{s['reopened'][-1]}")
    if where:
        lines.append(", ".join(where))
    lines.append("streams: " + (", ".join(f"{m} {v['size'][0]}x{v['size'][1]} {v['dtype']}"
                                          + (f" x{v['channels']}" if v["channels"] > 1 else "")
                                          + (f" {v['format']}" if v.get("format") else "")
                                          for m, v in s["streams"].items()) or "none read"))
    lines.append("")
    lines.append(f"{'take':<10} {'species':<14} {'subject':<10} {'consent':<7} {'frames':>6} {'seconds':>8} "
                 f"{'fps':>6} {'dropped':>7}")
    for t in s["takes"]:
        consent = {True: "yes", False: "NO", None: "-"}[t.get("consent")]
        fps = f"{t['fps']:.1f}" if t["fps"] else "-"
        lines.append(f"{t['id']:<10} {t['species'] or '-':<14} {t['subject_id'] or '-':<10} {consent:<7} "
                     f"{t['frames']:>6} {t['duration_s']:>8.2f} {fps:>6} {max(t['dropped'].values(), default=0):>7}")
    lines.append("")
    if s["sensor"]:
        lines.append("sensor settings over all frames (min / median / max):")
        for stream, keys in s["sensor"].items():
            lines.append(f"  {stream}: " + "; ".join(
                f"{k} {r['min']:g}" if r["min"] == r["max"] else f"{k} {r['min']:g} / {r['median']:g} / {r['max']:g}"
                for k, r in keys.items()))
    else:
        lines.append("sensor settings: none recorded")
    lines.append("")
    lines.append(f"{len(s['warnings'])} warnings" + (":" if s["warnings"] else ""))
    lines.extend(f"  - {w}" for w in s["warnings"])
    return lines
