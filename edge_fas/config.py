"""The one YAML configuration file, validated at start.

Each section is a dataclass; each field carries its help text and constraints in `metadata`. An
unknown key or a bad value fails with the key, the value and what was expected. Every option also
has a CLI flag, `--section-key` (e.g. `--decision-window 5`), generated from the same fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edge_fas.errors import ConfigError, did_you_mean


def opt(default, help: str, choices=None, min=None, max=None, cli: bool = True, secret: bool = False):
    """A config field with its help text and constraints. `secret`: never printed (dump, repr)."""
    md = {"help": help, "choices": choices, "min": min, "max": max, "cli": cli, "secret": secret}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=md)
    return field(default=default, metadata=md, repr=not secret)


MIN_KEY_CHARS = 16  # the webhook's HMAC site key

# Settings that weaken a check below what the model artifact was validated with. In development mode
# each runs only when deployment.accept_risks names it (and every event then says so); production
# refuses them all. edge_fas.deployment finds them.
RISKS = {  # name -> the risk taken
    "fewer_modalities": "an attack without a modality the model relies on (a print or a screen shows no face "
                        "depth) can be judged live",
    "threshold_outside_validated_range": "the model's error rates at this threshold were never measured",
    "distance_checks_off": "a print held at the lens, or a face too far for a depth cue, can be judged",
    "pose_check_off": "a head or a sheet turned past what the model and the physics check were validated on can "
                      "be judged (the nose test misreads a turned face)",
    "abstention_off": "a frame the model is unsure of (a presentation unlike what its abstention level was "
                      "calibrated on) can count as live",
    "stream_checks_off": "a frozen, delayed or stitched stream (colour and depth from different moments) can be judged",
    "network_bypassed": "the model-free physics check decides alone: it does not stop masks and was validated on "
                        "the synthetic rig only, and the artifact's measured error rates no longer apply",
    "synthetic_model_decides": "a network trained on synthetic data only decides on a real camera, where its scores "
                               "were never measured",
    "registration_monitor_off": "a camera knocked on its mount, or registered with another unit's calibration, goes "
                                "on being judged: misregistered depth lets more masks through the physics check",
    "physics_detector_weakened": "the model-free physics check decides with a check removed or a limit below its "
                                 "validated value: a print, screen or bent sheet it exists to stop can be judged live",
}


@dataclass
class CameraConfig:
    spec: str = opt("synthetic", "camera to open: realsense[:SERIAL], openni[:URI], orbbec[:SERIAL], "
                                 "synthetic[:SCENARIO], replay:PATH")
    width: int = opt(640, "stream width (pixels), all streams", min=64, max=4096)
    height: int = opt(480, "stream height (pixels), all streams", min=48, max=4096)
    fps: int = opt(30, "frames per second", min=1, max=300)
    emitter: str = opt("on", "IR projector: on, off, or alternate (speckle-free IR on every other frame)",
                       choices=["on", "off", "alternate"])
    allowed_serials: list = opt([], "serial numbers allowed to drive decisions (empty: any)")
    openni_prefer: str = opt("color", "OpenNI2 devices that cannot stream colour and IR together: which to take",
                             choices=["color", "ir"])
    reconnect_timeout_s: float = opt(30.0, "give up reconnecting a lost camera after this long (0: never)", min=0)
    stall_timeout_s: float = opt(2.0, "a stream with no frame for this long counts as stalled", min=0.1)
    start_timeout_s: float = opt(5.0, "a camera just opened or reconnected has this long to deliver its first frame "
                                      "(librealsense's wait_for_frames waits 5 s; auto-exposure and the emitter take "
                                      "time to start) before it counts as stalled", min=0.1)


@dataclass
class CalibrationConfig:
    file: str | None = opt(None, "rig calibration YAML (edge-fas calibrate) for a live camera's frames (a camera "
                                 "other than the one it names stops); empty: the camera's factory calibration")
    max_reprojection_px: float = opt(2.0, "registration misalignment above which `edge-fas calibrate --check` fails, "
                                          "in pixels of a 640-pixel-wide colour image (scaled with a wider stream's "
                                          "width)", min=0)
    # the running check (edge_fas.pipeline.registration_monitor): a knocked camera, another unit's calibration
    monitor: bool = opt(True, "while running, measure the registration around the faces judged and refuse to judge "
                              "(registration_drift) while it is off by more than monitor_limit_px")
    monitor_limit_px: float = opt(6.0, "median misalignment (pixels of a 640-pixel-wide image) of the faces the "
                                       "running check read above which frames are refused", min=0.5)
    monitor_faces: int = opt(5, "the running check's last faces the median is taken over", min=1, max=100)
    monitor_min_faces: int = opt(2, "faces the running check must have read before it can refuse (its far-apart "
                                    "rule, for knocks past its search, waits for 3 whatever this says)", min=1, max=100)
    monitor_blind: str = opt("report", "what the running check does while it is blind (it could read too few of the "
                                       "last faces to judge): report (doctor, the status file and every event say so; "
                                       "frames are judged by everything else) or refuse (also every frame is refused, "
                                       "registration_unchecked, until faces read again)", choices=["report", "refuse"])
    monitor_interval_s: float = opt(0.5, "camera time between two of the running check's readings (s)",
                                    min=0.05, max=60.0)
    monitor_state_file: str | None = opt(None, "keep the running check's faces and refusal in this file (JSON) so a "
                                               "restart resumes them for the same calibration and camera; production "
                                               "requires it (e.g. /var/lib/edge-fas/registration.json)")


@dataclass
class ModelConfig:
    artifact: str | None = opt(None, "model artifact folder; empty: the bundled demo model")
    runtime: str = opt("auto", "inference runtime", choices=["auto", "tensorrt", "onnxruntime", "torch"])
    device: str = opt("auto", "inference device: auto, cpu, cuda, cuda:N")
    threads: int = opt(0, "CPU threads for inference (0: runtime default)", min=0, max=256)
    # issue 18: GPU precision, gated against fp32 at export and at engine build (edge_fas.runtime.precision)
    precision: str = opt("auto", "inference precision: auto (fp16 on a GPU where its gate passed, else fp32), "
                                 "fp32, fp16, int8 (needs an int8 model that passed its gate)",
                         choices=["auto", "fp32", "fp16", "int8"])


@dataclass
class DecisionConfig:
    threshold: float | None = opt(None, "attack-score threshold; empty: the artifact's operating threshold",
                                  min=0.0, max=1.0)
    window: int = opt(5, "frames in the decision window", min=1, max=300)
    min_live_frames: int = opt(4, "consistent live frames in the window needed to say live", min=1, max=300)
    hysteresis: float = opt(0.05, "score margin needed to flip a standing verdict", min=0.0, max=0.5)
    required_modalities: list = opt(["rgb", "depth", "ir"], "modalities a live verdict needs")
    min_distance_m: float = opt(0.25, "nearest working distance (m)", min=0.0)
    max_distance_m: float = opt(1.5, "farthest working distance (m)", min=0.0)
    max_yaw_deg: float = opt(30.0, "a head turned further than this (degrees, left or right, measured in depth "
                                   "against the line of sight) is `unknown`: face the camera", min=0.0, max=90.0)
    max_pitch_deg: float = opt(25.0, "a head tilted further than this (degrees, up or down) is `unknown`",
                               min=0.0, max=90.0)
    max_skew_ms: float = opt(40.0, "largest timestamp skew between streams of one frame set (ms)", min=0.0)
    max_frame_age_ms: float = opt(500.0, "older frames are stale (ms)", min=0.0)
    # abstention and the physics check (issue 16: edge_fas.uncertainty, edge_fas.pipeline.physics)
    abstain: bool = opt(True, "say unknown when the model's uncertainty at the face is above the artifact's "
                              "calibrated level (frames scored as attacks stay attacks)")
    abstain_level: float | None = opt(None, "abstention level; empty: the artifact's calibrated level", min=0.0)
    physics: str = opt("auto", "physics check: auto (the model-free detector on a real camera when the model was "
                               "trained on synthetic data only, else veto), veto (can only veto the network), "
                               "detector (decides alone), off", choices=["auto", "veto", "detector", "off"])
    physics_checks: list = opt(["relief", "ir", "eyes"], "physics checks to run: relief (depth), ir (near-IR "
                                                         "level), eyes (dark pupils in IR)")
    physics_min_relief_mm: float = opt(12.0, "a face flatter than this (mm off a plane) is a print or screen", min=0.0)
    physics_min_nose_mm: float = opt(4.5, "a face whose nose stands less than this (mm) off a smooth curved "
                                          "surface is a bent sheet", min=0.0)
    physics_min_nose_over_eyes_mm: float = opt(8.0, "a face whose nose tip stands less than this (mm) nearer "
                                                    "than its eyes, off the face's plane, is a sheet", min=0.0)
    physics_min_face_ir: float = opt(0.10, "a face darker than this share of the IR sensor's full scale is a "
                                           "screen", min=0.0, max=1.0)
    physics_min_pupil_contrast: float = opt(0.03, "pupils fainter than this in IR: unknown (printed eyes)",
                                            min=0.0, max=1.0)


@dataclass
class DetectorConfig:
    min_score: float = opt(0.5, "face detector confidence threshold", min=0.0, max=1.0)
    dark_rgb_mean: float = opt(40.0, "mean colour brightness below which faces are searched in IR", min=0, max=255)
    select: str = opt("largest", "which face to judge when there are several", choices=["largest", "closest", "center"])
    zoom_search: bool = opt(True, "when the whole frame shows no face, search it again at 2x on overlapping "
                                  "tiles (BlazeFace short-range misses faces under ~1/8 of the frame's width: "
                                  "1.2-1.5 m on a wide lens)")
    zoom_interval: int = opt(3, "while no face is tracked, the zoom search runs on one frame in this many (it "
                                "costs ten detector calls: this bounds an idle kiosk's CPU; 1: every frame)", min=1)
    smoothing: float = opt(0.6, "tracker smoothing of the face box (0: none)", min=0.0, max=0.99)


@dataclass
class GuiConfig:
    fullscreen: bool = opt(False, "kiosk mode: fullscreen, large banner, no controls")
    details: str = opt("auto", "what the window shows beside the verdict: show (each check's reasons, the score "
                               "bar and the spoof-trace, uncertainty or relief map), hide (only a prompt the "
                               "person can act on: step closer, face the camera, not verified), auto (show in a "
                               "development window, hide in kiosk mode and in production, which refuses show)",
                       choices=["auto", "show", "hide"])
    prompts: dict = opt({}, "the kiosk's words for its prompts in the site's language, as a mapping from the English "
                            "prompt to the text shown, e.g. {Step closer: Bitte näher treten, Verified: Willkommen}; "
                            "prompts not listed are shown in English", cli=False)
    show_maps: bool = opt(True, "blend spoof-trace / uncertainty maps over the face")
    map_alpha: float = opt(0.5, "opacity of the blended maps", min=0.0, max=1.0)


@dataclass
class RecordConfig:
    path: str | None = opt(None, "record the session to this path (.db3, .oni, or a session folder)")
    queue_frames: int = opt(120, "writer queue length; a take stops cleanly if the disk cannot keep up", min=1)


@dataclass
class WebhookConfig:
    url: str | None = opt(None, "POST verdict events as JSON to this http(s) URL (a door controller; see "
                                "docs/webhook.md)")
    timeout_s: float = opt(1.0, "deadline for one POST attempt: connect, send and the whole reply", min=0.05, max=60)
    backoff_max_s: float = opt(3.0, "longest wait between attempts while the receiver fails (waits start at "
                                    "0.1 s and double)", min=0.1, max=60)
    heartbeat_s: float = opt(1.0, "re-send the standing state this often", min=0.1, max=3600)
    live_valid_s: float = opt(2.0, "a live event is valid this long after its verdict; the receiver treats an "
                                   "older live as unknown", min=0.1, max=60)
    only_changes: bool = opt(True, "send a new event only when the verdict changes (the heartbeat re-sends it)")
    key: str | None = opt(None, "HMAC-SHA256 site key that signs every event (prefer key_file; never printed)",
                          cli=False, secret=True)
    key_file: str | None = opt(None, "file holding the HMAC-SHA256 site key (at least 16 characters)")


@dataclass
class DeploymentConfig:
    mode: str = opt("development", "development: any camera and model run and every event says it is not "
                                   "production; production: only real allow-listed cameras, a model trained on real "
                                   "data (not the demo), no weakened checks, signed webhook events",
                    choices=["development", "production"])
    accept_risks: list = opt([], "development only: run although a setting weakens a check the artifact was "
                                 "validated with; name each risk: " + ", ".join(RISKS))
    status_file: str | None = opt(None, "write the run's status (camera, counters, webhook delivery) as JSON to "
                                        "this file about once a second; `edge-fas doctor --config` reads it")


@dataclass
class Config:
    camera: CameraConfig = field(default_factory=CameraConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    gui: GuiConfig = field(default_factory=GuiConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    deployment: DeploymentConfig = field(default_factory=DeploymentConfig)

    def to_dict(self) -> dict:
        """Every setting; secrets (webhook.key) are replaced by '<set>' so nothing prints them."""
        d = dataclasses.asdict(self)
        for name, cls in _sections().items():
            for f in dataclasses.fields(cls):
                if f.metadata.get("secret") and d[name][f.name] is not None:
                    d[name][f.name] = "<set>"
        return d

    def dump(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def _check_value(key: str, value: Any, f: dataclasses.Field, hint) -> Any:
    """Coerce and check one value against its field; raise ConfigError naming key, value and expectation."""
    md = f.metadata
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if args and typing.get_origin(hint) is not list else hint
    if isinstance(value, str) and optional and value.strip().lower() in ("", "null", "none", "~"):
        value = None
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config key {key!r}: got null, expected a {getattr(base, '__name__', base)}")
    origin = typing.get_origin(base) or base
    try:
        if origin is bool:
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
                value = value.lower() in ("true", "yes", "1", "on")
            elif not isinstance(value, bool):
                raise TypeError
        elif origin is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            value = int(value)
        elif origin is float:
            if isinstance(value, bool):
                raise TypeError
            value = float(value)
            if not math.isfinite(value):  # NaN compares false with every limit and would switch a check off
                raise ConfigError(f"config key {key!r}: got {value!r}, expected a finite number — "
                                  f"{md.get('help', '')}")
        elif origin is str:
            if isinstance(value, bool) and md.get("choices") and "on" in md["choices"]:
                value = "on" if value else "off"  # YAML 1.1 reads a bare on/off as a boolean
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise TypeError
            value = str(value)
        elif origin is list:
            if isinstance(value, str):
                value = [v for v in value.split(",") if v]
            if not isinstance(value, list):
                raise TypeError
        elif origin is dict:
            if not isinstance(value, dict):
                raise TypeError
    except (TypeError, ValueError):
        shown = "(hidden)" if md.get("secret") else repr(value)
        raise ConfigError(f"config key {key!r}: got {shown} ({type(value).__name__}), "
                          f"expected {getattr(origin, '__name__', origin)} — {md.get('help', '')}") from None
    if md.get("choices") and value not in md["choices"]:
        raise ConfigError(f"config key {key!r}: got {value!r}, expected one of {', '.join(map(str, md['choices']))}")
    if md.get("min") is not None and value < md["min"]:
        raise ConfigError(f"config key {key!r}: got {value!r}, expected at least {md['min']}")
    if md.get("max") is not None and value > md["max"]:
        raise ConfigError(f"config key {key!r}: got {value!r}, expected at most {md['max']}")
    return value


def config_from_dict(data: dict | None, where: str = "config") -> Config:
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of sections, got {type(data).__name__}")
    sections = _sections()
    unknown = set(data) - set(sections)
    if unknown:
        first = sorted(unknown)[0]
        raise ConfigError(f"{where}: unknown section(s) {sorted(unknown)}{did_you_mean(first, sections)}; "
                          f"expected sections: {', '.join(sections)}")
    built = {}
    for name, cls in sections.items():
        raw = data.get(name) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: section {name!r} must be a mapping, got {raw!r}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        bad = set(raw) - set(fields)
        if bad:
            key = sorted(bad)[0]
            raise ConfigError(f"{where}: unknown key '{name}.{key}' (value {raw[key]!r}){did_you_mean(key, fields)}; "
                              f"keys of section {name!r}: {', '.join(fields)}")
        kwargs = {k: _check_value(f"{name}.{k}", v, fields[k], hints[k]) for k, v in raw.items()}
        built[name] = cls(**kwargs)
    cfg = Config(**built)
    _check_cross(cfg)
    return cfg


def _check_cross(cfg: Config) -> None:
    d = cfg.decision
    if d.min_live_frames > d.window:
        raise ConfigError(f"config key 'decision.min_live_frames': got {d.min_live_frames}, expected at most "
                          f"decision.window ({d.window})")
    c = cfg.calibration
    if c.monitor_min_faces > c.monitor_faces:
        raise ConfigError(f"config key 'calibration.monitor_min_faces': got {c.monitor_min_faces}, expected at most "
                          f"calibration.monitor_faces ({c.monitor_faces})")
    if d.min_distance_m >= d.max_distance_m:
        raise ConfigError(f"config keys 'decision.min_distance_m' ({d.min_distance_m}) and 'decision.max_distance_m' "
                          f"({d.max_distance_m}): expected min < max")
    bad = [m for m in d.required_modalities if m not in ("rgb", "depth", "ir")]
    if bad:
        raise ConfigError(f"config key 'decision.required_modalities': got {bad}, expected a subset of rgb, depth, ir")
    unknown = [r for r in cfg.deployment.accept_risks if r not in RISKS]
    if unknown:
        raise ConfigError(f"config key 'deployment.accept_risks': got {unknown}, expected risk names among "
                          f"{', '.join(RISKS)}")
    if cfg.gui.prompts:
        _check_prompts(cfg.gui.prompts)
    w = cfg.webhook
    if w.url is not None:
        check_url(w.url, "webhook.url")
    if w.key is not None and w.key_file is not None:
        raise ConfigError("config keys 'webhook.key' and 'webhook.key_file' are both set; keep one (key_file is "
                          "preferred: the key then stays out of the config file)")
    if w.key is not None and len(w.key) < MIN_KEY_CHARS:
        raise ConfigError(f"config key 'webhook.key': the key has {len(w.key)} characters, expected at least "
                          f"{MIN_KEY_CHARS} (e.g. `openssl rand -hex 32`)")
    if w.live_valid_s <= w.heartbeat_s:
        raise ConfigError(f"config keys 'webhook.live_valid_s' ({w.live_valid_s:g}) and 'webhook.heartbeat_s' "
                          f"({w.heartbeat_s:g}): a live must stay valid longer than the heartbeat interval, or a "
                          "standing live expires at the receiver between heartbeats")


def _check_prompts(prompts: dict) -> None:
    """gui.prompts: every key one of the kiosk's prompts, every text non-empty."""
    from edge_fas.pipeline.guidance import PROMPTS  # here: the pipeline package imports this module

    unknown = [k for k in prompts if k not in PROMPTS]
    if unknown:
        raise ConfigError(f"config key 'gui.prompts': {unknown} are not prompts; the prompts are: {', '.join(PROMPTS)}")
    empty = [k for k, v in prompts.items() if not isinstance(v, str) or not v.strip()]
    if empty:
        raise ConfigError(f"config key 'gui.prompts': {empty} need a text to show, got {[prompts[k] for k in empty]}")


def check_url(url: str, key: str = "webhook.url") -> urllib.parse.SplitResult:
    """An http(s) URL with a host, a valid port and no credentials in it; ConfigError naming `key` otherwise."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in 0-65535
    except ValueError as e:
        raise ConfigError(f"config key {key!r}: {url!r} is not a valid URL ({e})") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"config key {key!r}: got {url!r}, expected an http:// or https:// URL, "
                          "e.g. http://door-controller.local:8080/edge-fas")
    if not parts.hostname or any(c.isspace() for c in url):
        raise ConfigError(f"config key {key!r}: got {url!r}, expected a URL with a host name and no spaces")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"config key {key!r}: the URL carries credentials; remove them (events are signed "
                          "with webhook.key_file instead) so they are never printed or logged")
    return parts


def read_yaml_sections(path: str | Path, what: str, hint: str) -> dict:
    """A YAML file whose top level maps section names to settings ({} when empty); a missing file, bad YAML
    or another top level is a ConfigError naming `what` and the file (`hint`: how to get a good one)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} {p} does not exist; {hint}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {p} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {p}: the top level must be a mapping of sections")
    return data


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> Config:
    """Load the YAML file (if any), apply dotted overrides {"decision.window": 5}, validate."""
    data: dict = {}
    if path is not None:
        data = read_yaml_sections(path, "config file", f"write one with `edge-fas run --print-config > {path}`")
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        data.setdefault(section, {})
        if data[section] is None:
            data[section] = {}
        data[section][key] = value
    return config_from_dict(data, where=str(path) if path else "config")


# ---- CLI flags ----------------------------------------------------------------------------------

def add_config_arguments(parser: argparse.ArgumentParser, sections: list[str] | None = None) -> None:
    """Add --config and one flag per option (`--section-key`) to a subcommand's parser."""
    parser.add_argument("--config", metavar="FILE", help="YAML config file (see `--print-config`)")
    parser.add_argument("--print-config", action="store_true", help="print the effective config as YAML and exit")
    for name, cls in _sections().items():
        if sections is not None and name not in sections:
            continue
        group = parser.add_argument_group(f"config section '{name}'")
        for f in dataclasses.fields(cls):
            if not f.metadata.get("cli", True):
                continue
            flag = f"--{name}-{f.name}".replace("_", "-")
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            group.add_argument(flag, dest=f"cfg__{name}__{f.name}", default=None, metavar="V",
                               help=f"{f.metadata.get('help', '')} (default: {default})")


def config_from_args(args: argparse.Namespace) -> Config:
    overrides = {}
    for k, v in vars(args).items():
        if k.startswith("cfg__") and v is not None:
            _, section, key = k.split("__", 2)
            overrides[f"{section}.{key}"] = v  # strings; _check_value coerces them by the field's type
    return load_config(getattr(args, "config", None), overrides)
