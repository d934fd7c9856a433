"""What a recording holds, without replaying it through the pipeline: `summarize(path)` for
`edge-fas inspect` (what librealsense's rosbag inspector tells about a .bag, for every format replay reads).

For a session folder it reads session.yaml and the frames.jsonl lines (images are not decoded: the first
whole frame's images give the stream sizes, and every frame's files are checked to exist); a .db3/.bag or .oni
recording is played once through its driver. The summary covers:

- the device, the calibration, the session's site/domain/operator, every take's label, subject, consent,
  frames, duration and frame rate;
- each stream's size and pixel type, dropped frames (gaps in the device's frame counters);
- each stream's sensor settings (FrameSet.meta["sensor"]: exposure, gain, auto-exposure, laser power, white
  balance) over all frames and per take;
- warnings a data collector acts on: incomplete takes, missing images, frames without sensor metadata,
  settings that moved during a take, and **a setting that separates bona fide takes from attack takes**
  (e.g. the emitter off for every attack): a model trained on such takes can learn the setting instead of
  the attack, as the synthetic rig's own shortcuts showed (docs/demo-model.md).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from edge_fas.errors import RecordingError

__all__ = ["summarize", "setting_ranges", "setting_confounds", "label_confounds", "sensor_values"]

MODALITIES = ("rgb", "depth", "ir")
# keys the camera sets itself under auto-exposure / auto white balance (drivers' SENSOR_METADATA names)
SCENE_DRIVEN = {"exposure_us", "exposure", "gain", "white_balance_k", "white_balance"}
VARIES = 0.10  # a setting "moved during a take" when its range exceeds 10% of its median (or any change of a flag)


class _Frames:
    """Per-take accumulation of what each frame reports."""

    def __init__(self):
        self.takes: dict[str, dict] = {}

    def add(self, take: str, timestamps: dict, counters: dict, meta: dict, depth_scale: float, problem: str | None):
        t = self.takes.setdefault(take, _empty())
        if problem:
            t["problems"].append(problem)
        ts = [float(v) for v in (timestamps or {}).values()]
        if ts:
            t["times"].append(min(ts))
        for stream, c in (counters or {}).items():
            t["counters"].setdefault(stream, []).append(int(c))
        t["scales"].add(round(float(depth_scale), 9))
        sensor = (meta or {}).get("sensor")
        if not isinstance(sensor, dict) or not sensor:
            t["no_sensor"] += 1
            return
        sensor_values(meta, t["sensor"])


def _empty() -> dict:
    return {"times": [], "counters": {}, "sensor": {}, "no_sensor": 0, "scales": set(), "problems": []}


def sensor_values(meta: dict, into: dict) -> None:
    """Append one frame's FrameSet.meta["sensor"] numbers to {stream: {key: [v, ...]}}."""
    sensor = (meta or {}).get("sensor")
    for stream, values in (sensor.items() if isinstance(sensor, dict) else ()):
        for key, v in (values or {}).items():
            if isinstance(v, (bool, int, float)) and np.isfinite(float(v)):
                into.setdefault(stream, {}).setdefault(key, []).append(float(v))


def setting_ranges(values: dict) -> dict:
    """{stream: {key: [v, ...]}} -> {stream: {key: {min, median, max, n}}}."""
    return {s: {k: {"min": float(np.min(v)), "median": float(np.median(v)), "max": float(np.max(v)), "n": len(v)}
                for k, v in sorted(keys.items())} for s, keys in sorted(values.items())}


def _merge(dicts) -> dict:
    out: dict = {}
    for d in dicts:
        for s, keys in d.items():
            for k, v in keys.items():
                out.setdefault(s, {}).setdefault(k, []).extend(v)
    return out


def _dropped(counters: dict) -> dict:
    """Frames missing by each stream's counters (a counter going backwards, as at a recording's loop, is not
    a drop)."""
    out = {}
    for stream, c in counters.items():
        steps = np.diff(np.asarray(c, np.int64))
        out[stream] = int(np.sum(np.where(steps > 1, steps - 1, 0)))
    return out


def _take_record(info: dict, acc: dict) -> dict:
    times = np.sort(np.asarray(acc["times"], np.float64)) if acc["times"] else np.zeros(0)
    span = float(times[-1] - times[0]) / 1000.0 if times.size > 1 else 0.0
    return {**info, "frames": info.get("frames", len(acc["times"])), "duration_s": round(span, 3),
            "fps": round((times.size - 1) / span, 2) if span > 0 else None,
            "dropped": _dropped(acc["counters"]), "frames_without_sensor": acc["no_sensor"],
            "depth_scale": sorted(acc["scales"]), "problems": acc["problems"][:5],
            "problem_count": len(acc["problems"]), "sensor": setting_ranges(acc["sensor"])}


def _image_kind(img) -> dict:
    h, w = img.shape[:2]
    channels = 1 if img.ndim == 2 else img.shape[2]
    return {"size": [int(w), int(h)], "dtype": str(img.dtype), "channels": int(channels)}


def _session(path: Path) -> tuple[dict, list[dict], dict, _Frames]:
    import cv2

    from edge_fas.drivers.session import SessionReader

    reader = SessionReader(path)
    acc, streams = _Frames(), {}
    takes = []
    for info in reader.takes:
        lines = reader.frame_lines(info.id)
        for line in lines:
            files = line.get("files") if isinstance(line.get("files"), dict) else {}
            paths = {m: reader.image_path(info.id, rel) for m, rel in files.items()}  # None: outside the session
            missing = [m for m, p in paths.items() if p is None or not p.is_file()]
            problem = f"frame {line.get('index')}: no {', '.join(missing)} image" if missing else None
            acc.add(info.id, line.get("timestamps"), line.get("counters"), line.get("meta"),
                    line.get("depth_scale", 0.001), problem)
            for m, p in paths.items():
                if m in MODALITIES and m not in streams and not missing:
                    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
                    if img is not None:
                        streams[m] = {**_image_kind(img), "format": p.suffix.lstrip(".")}
        takes.append({"id": info.id, "species": info.species, "label": int(info.label),
                      "subject_id": info.subject_id, "consent": bool(info.consent), "complete": bool(info.complete),
                      "frames": len(lines)})
    head = {"format": "edge-fas session", "device": asdict(reader.device),
            "calibration": reader.calibration is not None,
            "calibration_source": reader.calibration.source if reader.calibration is not None else None,
            # what `edge-fas calibrate --apply` put in after the recording, oldest first
            "calibration_applied": [{"when": h.get("replaced"), "from": h.get("by")}
                                    for h in reader.metadata.get("calibration_history") or []],
            **{k: reader.metadata.get(k) for k in ("site", "domain", "operator", "created", "reopened",
                                                   "retention_days", "notes")
               if reader.metadata.get(k) not in (None, "", [])}}
    return head, takes, streams, acc


def _native(path: Path, max_frames: int | None) -> tuple[dict, list[dict], dict, _Frames]:
    from edge_fas.drivers import open_camera
    from edge_fas.errors import CameraError

    acc, streams, n = _Frames(), {}, 0
    try:
        with open_camera(f"replay:{path}") as cam:
            head = {"format": path.suffix.lstrip(".") + " recording", "device": asdict(cam.device),
                    "calibration": cam.calibration is not None}
            for frames in cam.frames():
                acc.add("recording", frames.timestamps, frames.counters, frames.meta, frames.depth_scale,
                        frames.meta.get("corrupt"))
                for m in MODALITIES:
                    img = getattr(frames, m)
                    if img is not None and m not in streams:
                        streams[m] = _image_kind(img)
                n += 1
                if max_frames and n >= max_frames:
                    break
    except CameraError as e:
        raise RecordingError(str(e)) from e
    take = {"id": "recording", "species": "", "label": None, "subject_id": "", "consent": None, "complete": True,
            "frames": n}
    return head, [take], streams, acc


def summarize(path, max_frames: int | None = None) -> dict:
    """The summary of a session folder, .db3/.bag or .oni recording (module docstring); RecordingError when it
    is none of them or cannot be read. max_frames: stop a native recording after this many frames."""
    from edge_fas.drivers.session import is_session

    path = Path(path)
    if not path.exists():
        raise RecordingError(f"{path} does not exist; give a session folder or a .db3/.bag/.oni recording")
    if is_session(path):
        head, takes, streams, acc = _session(path)
    elif path.is_file() and path.suffix.lower() in (".db3", ".bag", ".oni"):
        head, takes, streams, acc = _native(path, max_frames)
    else:
        raise RecordingError(f"{path} is not a recording edge-fas reads: give a session folder (with session.yaml) "
                             "or a .db3/.bag/.oni file")
    records = [_take_record(t, acc.takes.get(t["id"]) or _empty()) for t in takes]
    summary = {"path": str(path), **head, "frames": sum(t["frames"] for t in records), "streams": streams,
               "takes": records, "sensor": setting_ranges(_merge(a["sensor"] for a in acc.takes.values()))}
    summary["warnings"] = _warnings(summary)
    return summary


def _warnings(summary: dict) -> list[str]:
    out = []
    takes = summary["takes"]
    if not summary["calibration"]:
        out.append("no calibration: registration falls back to the identity; record with the camera's calibration "
                   "or run `edge-fas calibrate`")
    for t in takes:
        name = f"take {t['id']}" if t["id"] != "recording" else "the recording"
        if t.get("complete") is False:
            out.append(f"{name} has no end in session.yaml (interrupted): {t['frames']} whole frames are read")
        if t["frames"] == 0:
            out.append(f"{name} has no frames")
        if t["problem_count"]:
            out.append(f"{name}: {t['problem_count']} unreadable frames, e.g. {t['problems'][0]}")
        drops = {s: d for s, d in t["dropped"].items() if d}
        if drops:
            out.append(f"{name}: frames dropped by the device counters: "
                       + ", ".join(f"{s} {d}" for s, d in sorted(drops.items())))
        if t["frames_without_sensor"]:
            out.append(f"{name}: {t['frames_without_sensor']} of {t['frames']} frames carry no sensor settings "
                       "(exposure, gain, laser power): the camera or the recorder did not report them")
        for stream, keys in t["sensor"].items():
            for key, r in keys.items():
                if key in SCENE_DRIVEN and _auto(t, stream):
                    continue  # auto-exposure at work, not a setting changed mid-take
                if r["max"] - r["min"] > VARIES * max(abs(r["median"]), 1.0):
                    out.append(f"{name}: {stream} {key} moved during the take ({_num(r['min'])} to {_num(r['max'])})")
    out.extend(label_confounds(takes))
    return out


def _auto(t: dict, stream: str) -> bool:
    """Did the camera choose this stream's exposure itself somewhere in the take?"""
    return t["sensor"].get(stream, {}).get("auto_exposure", {}).get("max", 0.0) > 0


def label_confounds(takes: list[dict]) -> list[str]:
    """Settings whose ranges over bona fide takes and over attack takes do not overlap (takes: dicts with
    label, frames and sensor as setting_ranges gives it). Exposure, gain and
    white balance count only where the operator fixed them (auto-exposure off in every take compared):
    under auto-exposure they follow the scene, as they will at the site, so they are not a recording
    choice; the laser and auto-exposure itself always count."""
    groups = {0: [t for t in takes if t.get("label") == 0 and t["frames"]],
              1: [t for t in takes if t.get("label") == 1 and t["frames"]]}
    if not groups[0] or not groups[1]:
        return []
    out = []
    keys = {(s, k) for t in takes for s, ks in t["sensor"].items() for k in ks}
    for stream, key in sorted(keys):
        if key in SCENE_DRIVEN and any(_auto(t, stream) for t in groups[0] + groups[1]):
            continue
        span, count = {}, {}
        for label, ts in groups.items():  # over the takes that report the setting (others are unknown)
            vals = [t["sensor"][stream][key] for t in ts if key in t["sensor"].get(stream, {})]
            if vals:
                span[label], count[label] = (min(v["min"] for v in vals), max(v["max"] for v in vals)), len(vals)
        if len(span) == 2:
            (b0, b1), (a0, a1) = span[0], span[1]
            if b1 < a0 or a1 < b0:
                out.append(f"{stream} {key} separates the labels: bona fide takes {_span(b0, b1)}, attack takes "
                           f"{_span(a0, a1)} (over the {count[0]} bona fide and {count[1]} attack takes that "
                           "report it); a model trained on these takes can learn the setting instead of the "
                           "attack: record both with the same settings")
    return out


def _num(v: float) -> str:
    return f"{v:g}"


def _span(a: float, b: float) -> str:
    return _num(a) if a == b else f"{_num(a)} to {_num(b)}"


def setting_confounds(paths) -> list[str]:
    """The label-separating settings of several session folders' takes pooled (what `edge-fas adapt` checks
    before it trains on them): one warning per setting."""
    takes = []
    for p in paths:
        takes.extend(summarize(p)["takes"])
    return label_confounds(takes)
