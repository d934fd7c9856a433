"""Fail-closed decision policy: per-frame evidence -> a windowed verdict with hysteresis.

Each processed frame gives either a score (P(attack) from the runtime) or one or more fault reasons
(no face, stale frame, missing modality, runtime error, ...). The policy turns that stream into a
Verdict:

- any fault on the current frame -> `unknown` with the reasons (or `attack` when a reason is itself
  evidence of an attack, e.g. a replayed stream), and the live evidence gathered so far is thrown
  away: after a fault, `live` needs `min_live_frames` fresh live frames again;
- a frame counts as live only when its score is below the threshold; to flip a standing `attack`
  it must also clear the hysteresis margin (score < threshold - hysteresis), so a score wavering at
  the threshold does not flicker attack/live. The margin never delays the safe direction: one frame
  at or above the threshold ends `live` at once;
- `live` needs at least `min_live_frames` live frames among the last `window` AND a live current
  frame (a single attack frame ends `live` at once: never live on an attack-looking frame);
- `attack` when attack frames are at least as many as live frames in the window;
- otherwise `unknown` (still gathering evidence).
"""

from __future__ import annotations

from collections import deque

from edge_fas.types import Verdict

# Fault codes (the text before ':' in a reason). Codes in ATTACK_EVIDENCE make the verdict `attack`.
NO_FACE = "no_face"
TOO_NEAR = "face_too_near"
TOO_FAR = "face_too_far"
NO_DEPTH = "no_depth_at_face"
MISSING_MODALITY = "missing_modality"
STALE_FRAME = "stale_frame"
REPEATED_FRAME = "repeated_frame"
STREAM_SKEW = "stream_skew"
SERIAL_NOT_ALLOWED = "serial_not_allowed"
CAMERA_STALLED = "camera_stalled"
CAMERA_DISCONNECTED = "camera_disconnected"
RUNTIME_ERROR = "runtime_error"
PIPELINE_ERROR = "pipeline_error"
RECORDING_CORRUPT = "recording_corrupt"  # a replayed frame that could not be read
WARMING_UP = "gathering_evidence"
ATTACK_SCORE = "attack_score"

ATTACK_EVIDENCE = frozenset({REPEATED_FRAME})  # an identical frame twice is a replay of the stream


def reason(code: str, detail: str = "") -> str:
    return f"{code}: {detail}" if detail else code


def reason_code(text: str) -> str:
    return text.split(":", 1)[0].strip()


class DecisionPolicy:
    """Stateful per-face verdict. Call `decide(score, faults)` once per processed frame; `reset()`
    when the tracked face changes."""

    def __init__(self, threshold: float, window: int = 5, min_live_frames: int = 4, hysteresis: float = 0.05):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"decision threshold {threshold} is outside [0, 1]; fix decision.threshold "
                             "in the site config or the artifact's manifest")
        if window < 1 or not 1 <= min_live_frames <= window:
            raise ValueError(f"decision window {window} / min_live_frames {min_live_frames}: expected "
                             "1 <= min_live_frames <= window")
        self.threshold = float(threshold)
        self.window = int(window)
        self.min_live_frames = int(min_live_frames)
        self.hysteresis = float(hysteresis)
        self.history: deque[str] = deque(maxlen=self.window)  # "live" / "attack" per frame
        self.standing = "unknown"

    @classmethod
    def from_config(cls, decision_config, artifact_threshold: float) -> "DecisionPolicy":
        """The site config's threshold wins over the artifact's operating threshold."""
        d = decision_config
        thr = d.threshold if d.threshold is not None else artifact_threshold
        return cls(float(thr), d.window, d.min_live_frames, d.hysteresis)

    def reset(self) -> None:
        self.history.clear()
        self.standing = "unknown"

    def _frame_label(self, score: float) -> str:
        if score >= self.threshold:
            return "attack"
        if self.standing == "attack" and score >= self.threshold - self.hysteresis:
            return "attack_margin"  # below threshold but inside the margin: not yet live evidence
        return "live"

    def decide(self, score: float | None, faults: list[str] | None = None, **verdict_fields) -> Verdict:
        faults = list(faults or [])
        if score is None and not faults:
            faults = [reason(PIPELINE_ERROR, "no score and no fault reason")]
        if score is not None and not (0.0 <= float(score) <= 1.0):  # NaN fails this too
            faults.append(reason(RUNTIME_ERROR, f"score {score!r} outside [0, 1]"))
        if faults:
            self.history.clear()
            attack = any(reason_code(f) in ATTACK_EVIDENCE for f in faults)
            self.standing = "attack" if attack else "unknown"
            return Verdict(self.standing, score=None if score is None else float(score),
                           threshold=self.threshold, reasons=faults, **verdict_fields)

        score = float(score)
        label = self._frame_label(score)
        self.history.append("live" if label == "live" else "attack" if label == "attack" else "margin")
        n_live = sum(1 for h in self.history if h == "live")
        n_attack = sum(1 for h in self.history if h == "attack")
        reasons: list[str] = []
        if label == "live" and n_live >= self.min_live_frames:
            verdict = "live"
        elif n_attack > 0 and n_attack >= n_live:
            verdict = "attack"
            reasons.append(reason(ATTACK_SCORE, f"{n_attack}/{len(self.history)} frames at or above the threshold"))
        elif label == "attack_margin":  # a standing attack holds while the score stays inside the margin
            verdict = "attack"
            reasons.append(reason(ATTACK_SCORE, f"{score:.3f} within the hysteresis margin "
                                                f"({self.threshold - self.hysteresis:.3f}-{self.threshold:.3f})"))
        else:
            verdict = "unknown"
            reasons.append(reason(WARMING_UP, f"{n_live}/{self.min_live_frames} live frames"))
        self.standing = verdict
        return Verdict(verdict, score=score, threshold=self.threshold, reasons=reasons, **verdict_fields)
