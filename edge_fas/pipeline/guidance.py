"""What the person in front of a kiosk is told: a short prompt for what they can fix, never why a
presentation was refused.

A verdict's reasons name the check that fired and by how much ("depth relief 2.1 mm < 12 mm: a plane"),
and its score sits beside the threshold. Shown to the person presenting, that is an oracle: an attacker
adjusts a print, a screen or a mask until each check stops firing and the score crosses the threshold.
Commercial liveness checks show only guidance the user can act on, and the same "not verified" for
every refusal. `prompt` does that: it turns a verdict's reasons into one prompt. An attack is always "Not
verified"; any other refusal the person cannot fix (a physics finding, abstention, the score) is "Not
verified" too, or "Face the camera" on a head turned past TURNED_HINT_DEG, never naming the check. The
reasons stay in the verdict's JSON, the events and the operator's log.
"""

from __future__ import annotations

from edge_fas.pipeline import decision as D

__all__ = ["prompt", "PROMPTS", "VERIFIED", "NOT_VERIFIED", "PLEASE_WAIT", "OUT_OF_SERVICE"]

VERIFIED = "Verified"
NOT_VERIFIED = "Not verified"
PLEASE_WAIT = "Please wait"
OUT_OF_SERVICE = "Out of service"
FACE_THE_CAMERA = "Face the camera"

# reasons the person can act on, most pressing first, and what to ask of them
CORRECTABLE = (
    (D.NO_FACE, "Look at the camera"),
    (D.TOO_NEAR, "Step back"),
    (D.TOO_FAR, "Step closer"),
    (D.FACE_TURNED, FACE_THE_CAMERA),
    (D.NO_DEPTH, "Look at the camera"),
    (D.WARMING_UP, "Hold still"),
)
# every prompt there is (gui.prompts translates them for a site)
PROMPTS = tuple(dict.fromkeys([VERIFIED, NOT_VERIFIED, PLEASE_WAIT, OUT_OF_SERVICE, *(t for _, t in CORRECTABLE)]))
# faults of the camera or the software: nothing for the person to do
OUT_OF_ORDER = frozenset({D.CAMERA_DISCONNECTED, D.CAMERA_STALLED, D.MISSING_MODALITY, D.RUNTIME_ERROR,
                          D.PIPELINE_ERROR, D.SERIAL_NOT_ALLOWED, D.RECORDING_CORRUPT,
                          D.REGISTRATION_DRIFT, D.REGISTRATION_UNCHECKED})
# a frame that came late or out of step: the next one usually does not
TRANSIENT = frozenset({D.STALE_FRAME, D.STREAM_SKEW})


TURNED_HINT_DEG = 20.0  # a head turned this far, inside the pose limits, is asked to face the camera when refused


def prompt(verdict: str | None, reasons=(), pose=None) -> str:
    """The one line for the person in front of the camera, from a verdict name, its reasons and the measured
    head pose (edge_fas.pipeline.pose.HeadPose or None).

    An `unknown` that nothing correctable explains, on a head turned or tilted more than TURNED_HINT_DEG, asks
    the person to face the camera: inside the pose limits the nose test still misreads some turned live faces
    (docs/demo-model.md). Whatever withheld `live` is not named, and an `attack` stays "not verified"."""
    if verdict == "live":
        return VERIFIED
    codes = {D.reason_code(r) for r in reasons}
    if verdict == "attack":
        return NOT_VERIFIED  # whatever fired: no hint which check, or how close it came
    if codes & OUT_OF_ORDER:
        return OUT_OF_SERVICE
    for code, text in CORRECTABLE:
        if code in codes:
            return text
    if verdict is None or codes <= TRANSIENT:
        return PLEASE_WAIT
    if pose is not None and not (abs(pose.yaw_deg) <= TURNED_HINT_DEG and abs(pose.pitch_deg) <= TURNED_HINT_DEG):
        return FACE_THE_CAMERA
    return NOT_VERIFIED  # a physics finding, abstention or anything else that withheld `live`
