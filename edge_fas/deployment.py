"""Start-up checks of a deployment: what production mode refuses, and settings that weaken a check.

`check_start(config, camera_kind, artifact)` runs before the model and the camera load:

- production (deployment.mode: production) refuses a simulated or recorded source (synthetic, replay),
  an empty camera.allowed_serials, the bundled demo model or any model trained on synthetic data only, a
  calibration.file that does not name an allow-listed camera as the one it was measured on, a running
  registration check that forgets its faces on a restart (no calibration.monitor_state_file), an unsigned
  webhook, a window that shows the checks' reasons and scores to the person presenting (gui.details: show)
  and any weakening;
- in any mode a *weakening* (a setting below what the artifact was validated with, see `weakenings`)
  is refused unless deployment.accept_risks names its risk; development then runs, warns once and
  marks every event with the risk (`event_context`).

Each refusal is a ConfigError naming the key and the fix. `event_context` is what every verdict and
webhook event carries: the mode, the camera kind and serial, the artifact's digest, the risks taken.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from edge_fas.config import RISKS, CalibrationConfig, Config, DecisionConfig
from edge_fas.errors import ConfigError

SIMULATED_KINDS = ("synthetic", "replay")  # sources production never takes decisions from
# The working distance is "bounded" while faces nearer than NEAREST_M (a print held against the lens)
# and farther than FARTHEST_M (depth on a face too coarse to tell a flat print from a face) are refused.
NEAREST_M = 0.1
FARTHEST_M = 3.0
# The pose is "bounded" while heads turned or tilted past this are refused: beyond it the far eye and the
# nose's side are out of the depth camera's view, and no model or limit here was validated there.
WIDEST_POSE_DEG = 45.0
# The stream checks are "on" while a frame older than STALEST_MS, or a frame set whose streams were captured
# more than WIDEST_SKEW_MS apart, is refused: a head moving 0.3 m/s moves 3 cm in 100 ms, so colour and depth
# further apart no longer show the same face (and an injected or frozen stream hides behind a long age).
STALEST_MS = 1000.0
WIDEST_SKEW_MS = 100.0


@dataclass(frozen=True)
class Weakening:
    risk: str  # a key of edge_fas.config.RISKS
    key: str  # the config key that weakens the check
    detail: str  # what it is set to and what the artifact was validated with


def effective_threshold(config: Config, artifact) -> float:
    t = config.decision.threshold
    return float(t) if t is not None else float(artifact.threshold)


def training_source(artifact) -> str | None:
    """What the network was trained on, as its manifest says (training.source: synthetic, datasets, sessions)."""
    return (artifact.manifest.get("training") or {}).get("source")


def trained_on_synthetic_only(artifact) -> bool:
    """The network saw synthetic data only: its scores mean nothing on a real camera's faces."""
    return training_source(artifact) == "synthetic"


def _physics_limit_defaults() -> dict:
    """decision.physics_min_* -> its shipped value (the limits bench_physics validated)."""
    return {f.name: f.default for f in fields(DecisionConfig) if f.name.startswith("physics_min_")}


def weakenings(config: Config, artifact, camera_kind: str | None = None) -> list[Weakening]:
    """Settings below what `artifact` was validated with (empty: none). `camera_kind` (realsense, replay,
    synthetic, ...; None: not known) decides whether the physics check decides alone; anything but the
    synthetic rig counts as a real camera (a replay may hold a real camera's takes)."""
    d = config.decision
    out = []
    trained = tuple(artifact.trained_modalities)
    missing = [m for m in trained if m not in d.required_modalities]
    if missing:
        out.append(Weakening("fewer_modalities", "decision.required_modalities",
                             f"{list(d.required_modalities)} does not require {', '.join(missing)}; the artifact was "
                             f"trained and calibrated on {', '.join(trained)}"))
    t = effective_threshold(config, artifact)
    lo, hi = artifact.validated_threshold_range
    if t <= 0.0 or t >= 1.0:
        out.append(Weakening("threshold_outside_validated_range", "decision.threshold",
                             f"{t:g} makes every frame {'an attack' if t <= 0 else 'live'} (a threshold of 0 or 1 "
                             "switches the model off)"))
    elif not lo <= t <= hi:
        where = (f"the validated range [{lo:g}, {hi:g}] (manifest operating_point.validated_range)"
                 if artifact.has_validated_range else
                 f"what the artifact validated: its manifest has no operating_point.validated_range, so only its "
                 f"own threshold {artifact.threshold:g} counts as validated")
        out.append(Weakening("threshold_outside_validated_range", "decision.threshold",
                             f"{t:g} is outside {where}"))
    if d.min_distance_m < NEAREST_M or d.max_distance_m > FARTHEST_M:
        out.append(Weakening("distance_checks_off", "decision.min_distance_m/max_distance_m",
                             f"{d.min_distance_m:g}-{d.max_distance_m:g} m does not bound the working distance to "
                             f"[{NEAREST_M:g}, {FARTHEST_M:g}] m"))
    if d.max_yaw_deg > WIDEST_POSE_DEG or d.max_pitch_deg > WIDEST_POSE_DEG:
        out.append(Weakening("pose_check_off", "decision.max_yaw_deg/max_pitch_deg",
                             f"{d.max_yaw_deg:g}/{d.max_pitch_deg:g} degrees does not bound the head's pose to "
                             f"{WIDEST_POSE_DEG:g} degrees (the rig validated 30 yaw, 18 pitch)"))
    if d.max_frame_age_ms > STALEST_MS or d.max_skew_ms > WIDEST_SKEW_MS:
        out.append(Weakening("stream_checks_off", "decision.max_frame_age_ms/max_skew_ms",
                             f"{d.max_frame_age_ms:g}/{d.max_skew_ms:g} ms lets frames older than {STALEST_MS:g} ms "
                             f"or streams more than {WIDEST_SKEW_MS:g} ms apart be judged (defaults 500/40 ms)"))
    out += _monitor_weakenings(config.calibration)
    out += _physics_weakenings(d, artifact, camera_kind)
    return out


def _monitor_weakenings(c) -> list[Weakening]:
    """The running registration check off, or set to refuse later than validated: a higher limit, more faces before
    it can refuse, a longer memory of right faces, or readings further apart (a face read fewer than twice counts
    for nothing, so a long interval switches it off in all but name)."""
    if not c.monitor:
        return [Weakening("registration_monitor_off", "calibration.monitor", "the running registration check is off")]
    shipped = {f.name: f.default for f in fields(CalibrationConfig)}
    looser = [f"{k} {getattr(c, k):g} > {shipped[k]:g}" for k in ("monitor_limit_px", "monitor_min_faces",
                                                                  "monitor_faces", "monitor_interval_s")
              if getattr(c, k) > shipped[k]]
    if not looser:
        return []
    return [Weakening("registration_monitor_off", "calibration.monitor_*",
                      f"the running registration check refuses later than validated: {', '.join(looser)}")]


def _physics_weakenings(d, artifact, camera_kind: str | None) -> list[Weakening]:
    """Who decides: the network (the physics check a veto or off) or the model-free physics check alone, by the
    pipeline's own rule (physics.choose_mode; an unknown camera kind counts as a real camera)."""
    from edge_fas.pipeline.physics import CHECKS, choose_mode  # here: the pipeline package imports this module

    out = []
    synthetic = trained_on_synthetic_only(artifact)
    real_camera = camera_kind != "synthetic"
    detector = choose_mode(d.physics, camera_kind or "unknown", artifact.manifest)[0] == "detector"
    if d.physics == "detector" and not synthetic:
        out.append(Weakening("network_bypassed", "decision.physics",
                             f"detector lets the physics check decide alone and ignores the network the artifact was "
                             f"validated with (training source: {training_source(artifact) or 'unrecorded'}); auto "
                             "or veto keeps the network deciding"))
    if d.physics in ("veto", "off") and synthetic and real_camera:
        out.append(Weakening("synthetic_model_decides", "decision.physics",
                             f"{d.physics} lets a network trained on synthetic data only (manifest training.source) "
                             f"decide on a {camera_kind or 'real'} camera; auto lets the physics check decide there"))
    if detector:
        removed = [c for c in CHECKS if c not in d.physics_checks]
        lowered = [f"decision.{name} {getattr(d, name):g} < {default:g}"
                   for name, default in _physics_limit_defaults().items() if getattr(d, name) < default]
        if removed or lowered:
            what = ([f"decision.physics_checks lacks {', '.join(removed)}"] if removed else []) + lowered
            out.append(Weakening("physics_detector_weakened", "decision.physics_checks/physics_min_*",
                                 "the physics check decides alone here and " + "; ".join(what)
                                 + " (the validated limits; score a change with `edge-fas eval physics` first)"))
    elif (artifact.manifest.get("abstention") or {}).get("level") is not None:
        level = float(artifact.manifest["abstention"]["level"])
        if not d.abstain:
            out.append(Weakening("abstention_off", "decision.abstain",
                                 f"false switches off the artifact's calibrated abstention (level {level:.4g})"))
        elif d.abstain_level is not None and d.abstain_level > level:
            out.append(Weakening("abstention_off", "decision.abstain_level",
                                 f"{d.abstain_level:.4g} is above the artifact's calibrated level {level:.4g}"))
    return out


def calibration_camera_problem(calibration, config: Config, camera_kind: str, camera_arg: str | None = None) -> str | None:
    """Why the rig calibration file `calibration` (calibration.file, loaded) was not measured on the camera the
    config lets decide: the serial in camera.spec (realsense and orbbec specs name one) or camera.allowed_serials.
    None when it was, or when the file or the config names no serial (the stream's first frame checks it then)."""
    serial = calibration.camera_serial
    named = camera_arg if camera_kind in ("realsense", "orbbec") else None  # their spec's argument is a serial
    allowed = [str(s) for s in config.camera.allowed_serials]
    if not serial or not (named or allowed):
        return None
    if named and named != serial:
        return (f"calibration.file {config.calibration.file} was measured on the camera with serial {serial}, and "
                f"camera.spec {config.camera.spec} names another")
    if allowed and serial not in allowed:
        return (f"calibration.file {config.calibration.file} was measured on the camera with serial {serial}, which "
                f"camera.allowed_serials {allowed} does not list")
    return None


def check_start(config: Config, camera_kind: str, artifact, warn=None) -> list[str]:
    """Refuse what this mode does not allow (ConfigError naming the key); returns the risks taken.

    `warn(str)` receives one line per accepted risk (development only)."""
    dep = config.deployment
    found = weakenings(config, artifact, camera_kind)
    if dep.mode == "production":
        problems = []
        if camera_kind in SIMULATED_KINDS:
            problems.append(f"camera.spec: a {camera_kind} camera is a simulated or recorded source; production "
                            "decides on real cameras only (realsense, openni, orbbec)")
        if not config.camera.allowed_serials:
            problems.append("camera.allowed_serials is empty; list the serial number(s) of this kiosk's camera "
                            "(`edge-fas doctor` shows them)")
        if artifact.is_demo:
            problems.append(f"model.artifact: {artifact.folder} is the bundled demo model, which its model card "
                            "calls unfit for deployment; export your own and set model.artifact to it")
        elif trained_on_synthetic_only(artifact):
            problems.append(f"model.artifact: {artifact.folder} was trained on synthetic data only (manifest "
                            "training.source): on a real camera its scores mean nothing and the physics check that "
                            "would decide instead does not stop masks; train on a dataset or adapt it to this "
                            "site's own takes (`edge-fas adapt`)")
        if config.webhook.url and not (config.webhook.key or config.webhook.key_file):
            problems.append("webhook.key_file: webhook events must be signed in production; write a site key "
                            "(e.g. `openssl rand -hex 32`) to a file readable only by the service and set "
                            "webhook.key_file")
        if config.gui.details == "show":
            problems.append("gui.details: show puts each check's reasons, the score and the spoof-trace map in front "
                            "of the person presenting, which tells an attacker what to adjust; production shows "
                            "only prompts (set it to auto; the reasons stay in the events and the log)")
        if dep.accept_risks:
            problems.append(f"deployment.accept_risks {list(dep.accept_risks)}: accepting a weakened check is for "
                            "development only; remove it")
        if config.calibration.monitor and not config.calibration.monitor_state_file:
            problems.append("calibration.monitor_state_file is empty: after a restart (a camera pulled out, a crash) "
                            "the running registration check would judge its first faces with a calibration it had "
                            "refused; set it to a file the service may write, e.g. "
                            "/var/lib/edge-fas/registration.json")
        if config.calibration.file:
            from edge_fas.calibration.rig import RigCalibration
            calibration = RigCalibration.load(config.calibration.file)
            other = calibration_camera_problem(calibration, config, camera_kind)
            if not calibration.camera_serial:
                problems.append(f"calibration.file {config.calibration.file} does not name the camera it was measured "
                                "on, and production registers only with an allow-listed camera's own calibration; "
                                "calibrate this camera (`edge-fas calibrate --camera SPEC --out FILE`, or --images "
                                "with --serial)")
            elif other:
                problems.append(f"{other}; calibrate this kiosk's camera (`edge-fas calibrate --camera SPEC --out FILE`)")
        problems += [f"{w.key}: {w.detail}; restore it (production never runs a weakened check)" for w in found]
        if problems:
            raise ConfigError("deployment.mode is production, which refuses this configuration:\n  - "
                              + "\n  - ".join(problems))
        return []
    refused = [w for w in found if w.risk not in dep.accept_risks]
    if refused:
        raise ConfigError("a setting weakens a check below what the model artifact was validated with:\n  - "
                          + "\n  - ".join(f"{w.key}: {w.detail}; risk: {RISKS[w.risk]}" for w in refused)
                          + "\nRestore it, or (development only) accept the risk by name: config "
                          + f"deployment.accept_risks: [{', '.join(sorted({w.risk for w in refused}))}] "
                          + f"(or --deployment-accept-risks {','.join(sorted({w.risk for w in refused}))}); "
                          + "every event then carries it")
    for w in found:
        if warn is not None:
            warn(f"development mode, accepted risk {w.risk}: {w.key}: {w.detail}")
    return sorted({w.risk for w in found})


def event_context(config: Config, camera_kind: str | None, artifact) -> dict:
    """The fields every verdict and event carries (the serial is added per frame)."""
    ctx = {"mode": config.deployment.mode, "camera": {"kind": camera_kind or "unknown"}}
    if artifact is not None:
        ctx["artifact"] = {"digest": artifact.digest, "model": artifact.model_name, "demo": artifact.is_demo}
        risks = sorted({w.risk for w in weakenings(config, artifact, camera_kind)})
        if risks:
            ctx["risks"] = risks
    return ctx
