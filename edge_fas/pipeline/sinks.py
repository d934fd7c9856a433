"""Headless output: one JSON line per verdict on a stream, and the run summary at exit.

A door controller or kiosk app reads the lines from stdout. The summary counts verdicts, dropped
frames, rates, latency percentiles and, when the source knows the truth (synthetic rig, labelled
recordings), the accuracy against it, and above all how many attack frames were judged `live`.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter

import numpy as np


def _plain(o):
    """json default: numpy scalars/arrays (e.g. in ground-truth extras) as plain values."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def dumps(d: dict) -> str:
    return json.dumps(d, separators=(",", ":"), default=_plain)


class HeadlessSink:
    """Call with each Result (use as Pipeline.on_result); `summary()` at the end."""

    def __init__(self, stream=None, verdicts=True, clock=time.monotonic):
        self.stream = stream if stream is not None else sys.stdout
        self.print_verdicts = verdicts
        self.clock = clock
        self.t0 = clock()
        self.verdicts: Counter = Counter()
        self.reasons: Counter = Counter()
        self.latency: list[float] = []
        self.truth: Counter = Counter()  # (label, verdict) pairs
        self.attack_live_species: Counter = Counter()
        self.last_counters: dict = {}

    def __call__(self, result) -> None:
        v = result.verdict
        self.verdicts[v.verdict] += 1
        for r in v.reasons:
            self.reasons[r.split(":", 1)[0]] += 1
        if "total" in v.latency_ms and result.frames is not None:
            self.latency.append(float(v.latency_ms["total"]))
        if v.truth is not None:
            self.truth[(int(v.truth.label), v.verdict)] += 1
            if v.truth.label == 1 and v.verdict == "live":
                self.attack_live_species[v.truth.species] += 1
        self.last_counters = dict(result.counters)
        if self.print_verdicts:
            d = v.to_dict()
            d["camera_status"] = result.camera_status
            self.stream.write(dumps(d) + "\n")
            self.stream.flush()

    def summary(self) -> dict:
        elapsed = max(self.clock() - self.t0, 1e-9)
        n = sum(self.verdicts.values())
        lat = np.asarray(self.latency) if self.latency else None
        s = {"summary": True,
             "frames": self.last_counters.get("frames"),
             "verdicts": n, "by_verdict": dict(self.verdicts),
             "dropped": self.last_counters.get("dropped"),
             "seconds": round(elapsed, 2),
             "decisions_per_s": round(n / elapsed, 2),
             "camera_fps": round(self.last_counters.get("frames", 0) / elapsed, 2),
             "latency_ms": None if lat is None else {p: round(float(np.percentile(lat, q)), 1)
                                                       for p, q in (("p50", 50), ("p95", 95), ("max", 100))},
             "reasons": dict(self.reasons)}
        if self.truth:
            t = self.truth
            bona, attack = sum(v for (lab, _), v in t.items() if lab == 0), sum(v for (lab, _), v in t.items() if lab == 1)
            decided = sum(v for (_, verdict), v in t.items() if verdict != "unknown")
            correct = t[(0, "live")] + t[(1, "attack")]
            s["truth"] = {
                "bona_fide_frames": bona, "attack_frames": attack,
                "accuracy_decided": round(correct / decided, 4) if decided else None,
                "bona_fide_live_rate": round(t[(0, "live")] / bona, 4) if bona else None,
                "attack_detected_rate": round(t[(1, "attack")] / attack, 4) if attack else None,
                "attack_judged_live": t[(1, "live")],
                "attack_judged_live_by_species": dict(self.attack_live_species),
                "unknown_rate": round(1 - decided / (bona + attack), 4) if bona + attack else None,
            }
        return s

    def write_summary(self, stream=None, extra: dict | None = None) -> dict:
        """Write the summary line; `extra` adds keys (e.g. mode, webhook delivery statistics)."""
        s = {**self.summary(), **(extra or {})}
        (stream or self.stream).write(dumps(s) + "\n")
        return s
