"""Fail-closed decision policy: per-frame evidence -> a windowed verdict with hysteresis.

Each processed frame gives either a score (P(attack) from the runtime) or one or more fault reasons
(no face, stale frame, missing modality, runtime error, ...). The policy turns that stream into a
Verdict:

- any fault on the current frame -> `unknown` with the reasons (or `attack` when a reason is itself
  evidence of an attack, e.g. a replayed stream), and the live evidence gathered so far is thrown
  away: after a fault, `live` needs `min_live_frames` fresh live frames again;
- a frame counts as live only when its score is below the threshold; to flip a standing `attack`
  it must also clear the hysteresis margin (score < threshold - margin), so a score wavering at
  the threshold does not flicker attack/live. The margin never delays the safe direction: one frame
  at or above the threshold ends `live` at once;
- `live` needs at least `min_live_frames` live frames among the last `window` AND a live current
  frame (a single attack frame ends `live` at once: never live on an attack-looking frame);
  The margin is `hysteresis`, but at most half the threshold: on calibrated scores a strict operating
  point can sit near 0 (APCER 5% at P(attack) 0.036), where a fixed 0.05 would make a standing attack
  permanent;
- `attack` when attack frames are at least as many as live frames in the window;
- otherwise `unknown` (still gathering evidence).

Abstention: a frame that would count as live (score below the threshold) whose uncertainty statistic
(edge_fas.uncertainty: MMDG's uncertainty or the spoof-trace dispersion at the face) is above the
artifact's calibrated level is a fault `uncertain` -> `unknown`. A frame scored as an attack stays
attack evidence whatever its uncertainty.
"""

from __future__ import annotations

from collections import deque

from edge_fas.types import Verdict

# Fault codes (the text before ':' in a reason). Codes in ATTACK_EVIDENCE make the verdict `attack`.
NO_FACE = "no_face"
TOO_NEAR = "face_too_near"
TOO_FAR = "face_too_far"
FACE_TURNED = "face_turned"  # head turned or tilted past the validated pose range (edge_fas.pipeline.pose)
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
# depth and colour no longer line up around the faces judged (edge_fas.pipeline.registration_monitor)
REGISTRATION_DRIFT = "registration_drift"
REGISTRATION_UNCHECKED = "registration_unchecked"  # the running check is blind and calibration.monitor_blind refuses
WARMING_UP = "gathering_evidence"
ATTACK_SCORE = "attack_score"
UNCERTAIN = "uncertain"  # the model's uncertainty / trace dispersion at the face is above its calibrated level
# the physics check's findings (edge_fas.pipeline.physics)
FLAT_FACE = "flat_face"
NO_FACIAL_RELIEF = "no_facial_relief"
FACE_DARK_IN_IR = "face_dark_in_ir"
NO_PUPILS_IN_IR = "no_pupils_in_ir"
NO_NOSE_IN_DEPTH = "no_nose_in_depth"  # unknown, not attack: on cameras it was not tuned on a few live faces read low
PHYSICS_UNMEASURED = "physics_unmeasured"

# an identical frame twice is a replay of the stream; a flat, curved or IR-dark face is a presentation
ATTACK_EVIDENCE = frozenset({REPEATED_FRAME, FLAT_FACE, NO_FACIAL_RELIEF, FACE_DARK_IN_IR})


def reason(code: str, detail: str = "") -> str:
    return f"{code}: {detail}" if detail else code


def reason_code(text: str) -> str:
    return text.split(":", 1)[0].strip()


class DecisionPolicy:
    """Stateful per-face verdict. Call `decide(score, faults)` once per processed frame; `reset()`
    when the tracked face changes."""

    def __init__(self, threshold: float, window: int = 5, min_live_frames: int = 4, hysteresis: float = 0.05,
                 abstain_level: float | None = None):
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
        self.margin = min(self.hysteresis, self.threshold / 2.0)  # see the module docstring
        self.abstain_level = None if abstain_level is None else float(abstain_level)
        self.history: deque[str] = deque(maxlen=self.window)  # "live" / "attack" per frame
        self.standing = "unknown"

    @classmethod
    def from_config(cls, decision_config, artifact_threshold: float, abstention: dict | None = None) -> "DecisionPolicy":
        """The site config's threshold wins over the artifact's operating threshold; the abstention level is
        the artifact's (its `abstention` section) unless the config sets one or turns abstention off."""
        d = decision_config
        thr = d.threshold if d.threshold is not None else artifact_threshold
        level = None
        if getattr(d, "abstain", False):
            level = d.abstain_level if d.abstain_level is not None else (abstention or {}).get("level")
        return cls(float(thr), d.window, d.min_live_frames, d.hysteresis, abstain_level=level)

    def reset(self) -> None:
        self.history.clear()
        self.standing = "unknown"

    def _frame_label(self, score: float) -> str:
        if score >= self.threshold:
            return "attack"
        if self.standing == "attack" and score >= self.threshold - self.margin:
            return "attack_margin"  # below threshold but inside the margin: not yet live evidence
        return "live"

    def decide(self, score: float | None, faults: list[str] | None = None, uncertainty: tuple | None = None,
               **verdict_fields) -> Verdict:
        """uncertainty: (statistic name, value) of this frame, for abstention (None: the model has none)."""
        faults = list(faults or [])
        if score is None and not faults:
            faults = [reason(PIPELINE_ERROR, "no score and no fault reason")]
        if score is not None and not (0.0 <= float(score) <= 1.0):  # NaN fails this too
            faults.append(reason(RUNTIME_ERROR, f"score {score!r} outside [0, 1]"))
        elif score is not None and self.abstain_level is not None and uncertainty is not None \
                and float(score) < self.threshold:
            name, value = uncertainty
            if not value <= self.abstain_level:  # NaN abstains too
                faults.append(reason(UNCERTAIN, f"{name} {value:.4g} > calibrated level {self.abstain_level:.4g}"))
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
                                                f"({self.threshold - self.margin:.3f}-{self.threshold:.3f})"))
        else:
            verdict = "unknown"
            reasons.append(reason(WARMING_UP, f"{n_live}/{self.min_live_frames} live frames"))
        self.standing = verdict
        return Verdict(verdict, score=score, threshold=self.threshold, reasons=reasons, **verdict_fields)
