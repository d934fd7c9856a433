"""`edge-fas doctor`: what is usable on this machine, and for what is not, why.

Each check returns a Check(name, ok, detail, core). The core checks (the package's own imports, the
bundled face model, ONNX Runtime, torch) decide the exit code; the rest (cameras, GPUs, TensorRT, GUI)
are optional: a kiosk without a RealSense is not broken, it just cannot use one.
"""

from __future__ import annotations

import ctypes.util
import functools
import importlib
import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    core: bool = False
    info: dict = field(default_factory=dict)


def _version(module_name: str) -> tuple[object | None, str]:
    try:
        m = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - any import failure is a reason to report
        return None, f"{type(e).__name__}: {e}"
    return m, str(getattr(m, "__version__", "") or "")


def check_face_model() -> Check:
    try:
        from edge_fas.face import FACE_MODEL_SHA256, FaceDetector, face_model_bytes
        face_model_bytes()
        import numpy as np
        with FaceDetector() as det:
            det.detect(np.zeros((128, 128, 3), np.uint8))
        return Check("face-model", True, f"mediapipe BlazeFace short-range, sha256 {FACE_MODEL_SHA256[:12]}... verified",
                     core=True)
    except Exception as e:  # noqa: BLE001
        return Check("face-model", False, f"{type(e).__name__}: {e}", core=True)


def check_mediapipe() -> Check:
    m, v = _version("mediapipe")
    return Check("mediapipe", m is not None, f"mediapipe {v}" if m else f"not importable ({v}); pip install mediapipe",
                 core=True)


def check_onnxruntime() -> Check:
    m, v = _version("onnxruntime")
    if m is None:
        return Check("onnxruntime", False, f"not importable ({v}); pip install 'edge-fas[cpu]' (or 'edge-fas[gpu]' "
                                           "with an NVIDIA GPU)", core=True)
    providers = m.get_available_providers()
    detail = f"onnxruntime {v}, providers: {', '.join(providers)}"
    dists = _distributions("onnxruntime", "onnxruntime-gpu")
    if len(dists) > 1:
        detail += (f"; WARNING: {' and '.join(dists)} are both installed and share one folder (the last installed "
                   "wins, so the GPU providers may be gone): pip uninstall -y onnxruntime onnxruntime-gpu, then "
                   "pip install 'edge-fas[gpu]'")
    if "TensorrtExecutionProvider" in providers:
        detail += "; GPU providers are listed whenever compiled in: the one in use is read back at load"
    int8 = cpu_int8_kernels()
    if int8:
        detail += f"; int8 on this CPU: {int8}"
    return Check("onnxruntime", True, detail, core=True, info={"providers": providers, "distributions": dists,
                                                               "cpu_int8": int8})


def cpu_int8_kernels(cpuinfo: str = "/proc/cpuinfo") -> str:
    """How ONNX Runtime computes int8 on this x86 CPU ("" where that is not known: not Linux x86, or no cpuinfo).
    Without VNNI its fast kernels saturate, and every edge-fas session asks for the exact ones instead
    (runtime.ort.EXACT_INT8), which cost about a tenth more time on the demo model."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in open(cpuinfo) if line.startswith("flags")), None)
    except OSError:
        return ""
    if not flags or "avx2" not in flags and "sse4_1" not in flags:
        return ""
    if {"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags):
        return "VNNI (fast int8 kernels are exact)"
    return "no VNNI: the exact, slower int8 kernels run (the fast ones saturate here)"


def _distributions(*names: str) -> list[str]:
    from importlib import metadata
    out = []
    for n in names:
        try:
            out.append(f"{n} {metadata.version(n)}")
        except metadata.PackageNotFoundError:
            pass
    return out


def check_torch() -> Check:
    m, v = _version("torch")
    if m is None:
        return Check("torch", False, f"not importable ({v}); pip install -c constraints.txt torch", core=True)
    return Check("torch", True, f"torch {v}", core=True, info={"version": v})


def check_cuda() -> Check:
    """The GPU as the NVIDIA driver reports it (torch's CUDA build is not needed for TensorRT or ORT)."""
    from edge_fas.runtime import cuda
    found, why = cuda.probe()
    if not found:
        return Check("cuda", False, f"no CUDA GPU: {why}")
    torch_line = ""
    m, _ = _version("torch")
    if m is not None and not m.cuda.is_available():
        torch_line = "; torch is a CPU build (the torch-cuda runtimes are off; TensorRT and ONNX Runtime do not need it)"
    gpus = [f"{g.name} ({g.sm}, {g.sm_count} SMs, {g.memory_bytes >> 20} MiB)" for g in found]
    return Check("cuda", True, "NVIDIA driver: " + ", ".join(gpus) + torch_line,
                 info={"devices": [g.name for g in found], "capability": [f"{g.capability[0]}.{g.capability[1]}" for g in found],
                       "sm_count": [g.sm_count for g in found]})


def check_tensorrt() -> Check:
    """Which TensorRT, from where, whether this edge-fas supports it, and what it means for precision."""
    import importlib.util

    from edge_fas.runtime.trt import SUPPORTED
    spec = importlib.util.find_spec("tensorrt")
    rng = f"{SUPPORTED[0][0]}.{SUPPORTED[0][1]} to {SUPPORTED[1][0]}.x"
    if spec is None:
        return Check("tensorrt", False, f"not installed: pip install 'edge-fas[tensorrt]' (tensorrt-cu12, the tested "
                                        f"range {rng}) on a machine with an NVIDIA GPU; on a Jetson it comes with "
                                        "JetPack 6 (TensorRT 10.3; jetson/setup.sh)")
    where = "JetPack / system package" if "dist-packages" in str(spec.origin) and "/usr/" in str(spec.origin) \
        else "pip wheel"
    from edge_fas.runtime import tensorrt_status
    ok, line = tensorrt_status()
    if not ok:
        return Check("tensorrt", False, f"installed ({where}, {spec.origin}) but unusable: {line}")
    major = int(line.split()[1].split(".")[0])
    mode = ("11.x: strongly typed only; fp16 from an fp16 ONNX model, int8 from explicit Q/DQ (both made by edge-fas)"
            if major >= 11 else "10.x: built strongly typed, the same recipe as on 11.x")
    ort_note = ""
    m, v = _version("onnxruntime")
    if m is not None and major >= 11 and "TensorrtExecutionProvider" in m.get_available_providers():
        try:
            if tuple(int(x) for x in v.split(".")[:2]) < (1, 27):
                ort_note = f"; onnxruntime {v} predates TensorRT 11 support (1.27): its TensorRT provider will fail"
        except ValueError:
            pass
    return Check("tensorrt", True, f"{line} ({where}), supported range {rng}; {mode}{ort_note}",
                 info={"origin": str(spec.origin)})


def check_realsense() -> Check:
    m, v = _version("pyrealsense2")
    if m is None:
        hint = " (Debian: apt install libusb-1.0-0)" if "libusb" in v else ""
        return Check("realsense", False, f"pyrealsense2 not importable: {v}{hint}; pip install 'edge-fas[realsense]'")
    try:
        devices = _list("edge_fas.drivers.realsense")
        if devices is None:
            ctx = m.context()
            devices = [{"model": d.get_info(m.camera_info.name), "serial": d.get_info(m.camera_info.serial_number)}
                       for d in ctx.query_devices()]
    except Exception as e:  # noqa: BLE001
        return Check("realsense", True, f"pyrealsense2 {v}; listing devices failed: {e}")
    return Check("realsense", True, f"pyrealsense2 {v}; {_devices_line(devices)}", info={"devices": devices})


def check_openni() -> Check:
    m, v = _version("openni.openni2")
    if m is None:
        return Check("openni2", False, f"openni not importable: {v}; pip install 'edge-fas[orbbec]'")
    lib = ctypes.util.find_library("OpenNI2")
    if lib is None and not any(os.path.exists(os.path.join(d, "libOpenNI2.so.0"))
                               for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib")):
        return Check("openni2", False, "the OpenNI2 runtime library is missing (Debian: apt install libopenni2-0)")
    try:
        devices = _list("edge_fas.drivers.openni")
    except Exception as e:  # noqa: BLE001
        return Check("openni2", False, f"OpenNI2 did not initialise: {e}")
    if devices is None:
        return Check("openni2", True, "openni importable and libOpenNI2 present (device listing arrives with the OpenNI2 driver)")
    dummy = _openni_dummy_driver()
    dummy_line = ("; Dummy test device available (--camera openni:Dummy)" if dummy else
                  "; no Dummy test device driver (libDummyDevice) in the OpenNI2 Drivers folder")
    return Check("openni2", True, f"OpenNI2 runtime; {_devices_line(devices)}{dummy_line}",
                 info={"devices": devices, "dummy_driver": dummy})


def _openni_dummy_driver() -> str | None:
    """Path of the Dummy device driver that Debian's libopenni2-0 ships (not opened: it crashes on close)."""
    import glob

    try:
        from edge_fas.drivers.openni import find_redist

        folder = find_redist()
    except Exception:  # noqa: BLE001
        return None
    found = sorted(glob.glob(os.path.join(folder, "OpenNI2", "Drivers", "libDummyDevice.so*")))
    return os.path.realpath(found[0]) if found else None


def check_runtimes() -> Check:
    """Which inference runtimes can run here, from the runtime module's own probe."""
    try:
        from edge_fas.runtime import available
    except ImportError as e:
        return Check("runtimes", False, f"runtime module not importable: {e}")
    kinds = available()
    usable = [k for k, v in kinds.items() if str(v).startswith("yes")]
    line = "; ".join(f"{k}: {v}" for k, v in kinds.items())
    return Check("runtimes", bool(usable), line, info={"runtimes": kinds})


def check_orbbec() -> Check:
    try:
        from edge_fas.drivers.orbbec import load_sdk

        load_sdk()  # the wheel may install yet not load (e.g. built against a newer glibc)
    except ImportError:
        pass
    except Exception as e:  # noqa: BLE001
        return Check("orbbec-sdk", False, _glibc_advice(str(e)))
    try:
        devices = _list("edge_fas.drivers.orbbec")
    except Exception as e:  # noqa: BLE001
        return Check("orbbec-sdk", False, f"pyorbbecsdk unusable: {e}")
    if devices is None:
        spec = importlib.util.find_spec("pyorbbecsdk")
        return Check("orbbec-sdk", spec is not None, "pyorbbecsdk installed" if spec else
                     "pyorbbecsdk not installed (pip install --no-deps pyorbbecsdk-community; Linux wheels only)")
    return Check("orbbec-sdk", True, f"pyorbbecsdk; {_devices_line(devices)}", info={"devices": devices})


def _glibc_advice(message: str) -> str:
    """A wheel built for a newer glibc cannot load here, and reinstalling it changes nothing: say so."""
    import re
    m = re.search(r"GLIBC_(\d+\.\d+)' not found", message)
    if not m:
        return message
    have = platform.libc_ver()[1] or "older"
    return (f"the installed pyorbbecsdk wheel needs glibc {m.group(1)} and this system has glibc {have}, so it "
            "cannot load here and reinstalling it will not help. Use a system with glibc "
            f"{m.group(1)} or newer (e.g. Ubuntu 24.04), or build the Orbbec SDK's Python wrapper from source on "
            "this one; meanwhile OpenNI2 (--camera openni) drives Astra-class Orbbec cameras")


def check_gui() -> Check:
    m, v = _version("PyQt6.QtWidgets")
    if m is None:
        return Check("gui", False, f"PyQt6 not importable: {v}; pip install 'edge-fas[gui]' (Debian: the xcb libraries, "
                                   "see the Makefile)")
    platform_name = os.environ.get("QT_QPA_PLATFORM", "")
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if display:
        return Check("gui", True, f"PyQt6 importable, display {display}")
    if platform_name == "offscreen":
        return Check("gui", True, "PyQt6 importable, offscreen rendering only (QT_QPA_PLATFORM=offscreen)")
    return Check("gui", False, "PyQt6 importable but no display (DISPLAY unset): use --headless, xvfb-run, or "
                               "QT_QPA_PLATFORM=offscreen for screenshots")


def check_demo_model() -> Check:
    try:
        from edge_fas.runtime import default_artifact
    except ImportError:
        return Check("demo-model", False, "the runtime module is not part of this build yet")
    try:
        path = default_artifact()
        from edge_fas.artifact import load_artifact
        art = load_artifact(path)
        manifest = getattr(art, "manifest", None)
        model = manifest.get("model", {}) if isinstance(manifest, dict) else {}
        name = f"{model.get('name', '?')} {model.get('preset', '')}".strip() if isinstance(model, dict) else str(model)
        return Check("demo-model", True, f"bundled demo artifact {path} ({name}), hashes verified")
    except Exception as e:  # noqa: BLE001
        return Check("demo-model", False, f"{type(e).__name__}: {e}")


def _list(module_name: str):
    """Devices from a driver module's list_devices(), or None when the driver has none yet."""
    try:
        mod = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("edge_fas"):
            return None
        raise
    fn = getattr(mod, "list_devices", None)
    return None if fn is None else fn()


def _devices_line(devices: list[dict]) -> str:
    if not devices:
        return "no devices connected"
    parts = []
    for d in devices:
        s = f"{d.get('model', '?')} serial {d.get('serial', '?')}"
        if d.get("firmware"):
            s += f" fw {d['firmware']}"
        if d.get("profiles"):
            s += f" ({len(d['profiles'])} profiles)"
        parts.append(s)
    return f"{len(devices)} device(s): " + "; ".join(parts)


CHECKS = [check_torch, check_onnxruntime, check_mediapipe, check_face_model, check_demo_model, check_runtimes, check_cuda,
          check_tensorrt, check_realsense, check_openni, check_orbbec, check_gui]


# -- webhook delivery (issue 17): with `doctor --config FILE` ------------------------------------------

STALE_S = 10.0  # a status file older than this is no running service's (`edge-fas run` writes it about once a second)


def check_webhook(config, status=None) -> Check:
    """Is the site's webhook usable from here (URL, key, TCP reachable), and how has delivery gone in the
    running service (deployment.status_file, written by `edge-fas run`; `status`: _service_status's answer, read
    once for every check)? Optional: never core."""
    import socket

    from edge_fas.config import check_url
    from edge_fas.pipeline.webhook import load_key
    w, info = config.webhook, {}
    if not w.url:
        return Check("webhook", True, "not configured (webhook.url is empty)")
    parts = check_url(w.url)
    try:
        signed = load_key(w) is not None
    except Exception as e:  # noqa: BLE001 - the key file problem is the finding
        return Check("webhook", False, str(e))
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=min(w.timeout_s, 2.0)):
            reach = f"{parts.hostname}:{port} accepts connections"
        ok = True
    except OSError as e:
        reach, ok = f"{parts.hostname}:{port} not reachable ({e.strerror or e})", False
    detail = f"{w.url}: {reach}; events {'signed' if signed else 'UNSIGNED (no webhook.key_file)'}"
    status, age, why = status or _service_status(config)
    if status is not None:
        stats = status.get("webhook") or {}
        info = {"status_age_s": round(age, 1), **stats}
        detail += (f"; running service ({age:.0f} s ago): {stats.get('delivered', 0)} delivered, "
                   f"{stats.get('failed_attempts', 0)} failed attempts {stats.get('errors') or ''}, latest state "
                   f"{'NOT delivered' if stats.get('pending') else 'delivered'}")
        ok = ok and not stats.get("pending") and age < STALE_S
    elif why:
        detail += f"; {why}"
    return Check("webhook", ok, detail, info=info)


def _service_status(config) -> tuple[dict | None, float, str]:
    """The running service's state (deployment.status_file, written by `edge-fas run`): (status, its age in seconds,
    ""), or (None, 0, why not; "" when no status file is configured)."""
    import time

    status_file = config.deployment.status_file
    if not status_file:
        return None, 0.0, ""
    try:
        with open(status_file) as f:
            status = json.load(f)
        return status, time.time() - float(status["time"]), ""
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, 0.0, f"no status from a running service in {status_file} ({e})"


def _saved_registration(config) -> tuple[dict | None, str]:
    """What the running registration check kept for the next start (calibration.monitor_state_file): (state, "") or
    (None, why not; "" when no file is configured)."""
    path = config.calibration.monitor_state_file
    if not path:
        return None, ""
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as e:
        return None, f"nothing kept in {path} ({e})"
    if not isinstance(saved, dict):
        return None, f"{path} holds no state the running check wrote (the service moves such a file aside at start)"
    return saved, ""


def check_registration(config, status=None) -> Check:
    """check_registration_state, failing too where the configured colour stream is narrower than the running check
    was validated on (registration_monitor.narrow_text)."""
    from edge_fas.pipeline.registration_monitor import narrow_text
    check = check_registration_state(config, status)
    narrow = config.calibration.monitor and narrow_text(config.camera.width)
    if not narrow:
        return check
    return Check(check.name, False, f"{check.detail}; camera.width {config.camera.width}: {narrow}", info=check.info)


def check_registration_state(config, status=None) -> Check:
    """Does the running service's registration check (calibration.monitor) find depth off colour around its faces?
    Read from deployment.status_file while the service runs, else from what the last run kept for its next start
    (calibration.monitor_state_file); fails while either says frames are refused with `registration_drift`, and
    while the running service's check is blind (it could read too few of its last faces to judge)."""
    c = config.calibration
    if not c.monitor:
        return Check("registration", True, "calibration.monitor is off: nothing checks the registration while running "
                                           "(the weakening registration_monitor_off)")
    from edge_fas.pipeline.registration_monitor import APART
    limits = (f"refuses beyond {c.monitor_limit_px:g} px over the last {c.monitor_faces} faces, or their outlines "
              f"{APART * c.monitor_limit_px:g} px apart every way")
    fix = ("the camera moved on its mount or calibration.file is another camera's; run edge-fas calibrate --check "
           "--camera SPEC. A new calibration starts the check afresh; with the same one it releases once faces read "
           "within half the limit")
    status, age, why = status or _service_status(config)
    state = None if status is None else (status.get("counters") or {}).get("registration")

    def judged(where: str, st: dict, faces: str, refusing: str) -> Check:
        drift = "not yet judged" if st.get("drift_px") is None else f"depth {st['drift_px']:g} px off colour"
        if st.get("apart_px") is not None:
            drift += f", outlines {st['apart_px']:g} px apart"
        if st.get("faces_seen") is not None:  # (a running service's; the state file keeps no such counts)
            faces += f" ({st.get('faces_read', 0)} of {st['faces_seen']} since the start)"
        detail = f"{where}: {faces}, {drift} ({limits})" + (f"; {refusing}: {fix}" if st.get("refusing") else "")
        if st.get("blind"):  # it cannot judge this camera: nothing would notice a wrong calibration
            detail += f"; BLIND: {st.get('blind_detail') or 'the check could read too few of the last faces'}"
        return Check("registration", not st.get("refusing") and not st.get("blind"), detail, info=dict(st))

    if state is not None and age < STALE_S:
        return judged(f"running service ({age:.0f} s ago)", state, f"{state.get('faces', 0)} faces read",
                      "REFUSING every frame (registration_drift)")
    saved, not_saved = _saved_registration(config)
    if state is not None:  # a status file no service writes any more
        running = f"the status file is {age:.0f} s old: no service is writing it"
        if saved is None:
            return judged(f"{running}; when it stopped", state, f"{state.get('faces', 0)} faces read",
                          "it was REFUSING every frame")
    else:
        running = why or "set deployment.status_file to see the running service's state here"
    if saved is None:
        return Check("registration", True, f"running check on ({limits}); {running}"
                                           + (f"; {not_saved}" if not_saved else ""))
    from edge_fas.pipeline.registration_monitor import blind_counts, blind_text
    blind = blind_counts(saved.get("recent_read") or [], c.monitor_min_faces)
    if blind is not None:  # (what the monitor says again at its next start)
        saved = dict(saved, blind=True, blind_detail=blind_text(*blind, c.monitor_min_faces,
                                                                  c.monitor_blind == "refuse"))
    return judged(f"{running}; the last run kept in {c.monitor_state_file}", saved,
                  f"{len(saved.get('faces') or [])} face(s)",
                  "it was REFUSING every frame and refuses again from the start")


def _calibration_file(calibration, config, kind: str, arg: str | None) -> str:
    """How `run` would take calibration.file, said for check_deployment; CalibrationError where the camera the
    file was measured on is not the one the config lets decide (the stream would stop at its first frame)."""
    from edge_fas.deployment import calibration_camera_problem
    from edge_fas.drivers import OWN_CALIBRATION
    from edge_fas.errors import CalibrationError

    path, serial = config.calibration.file, calibration.camera_serial
    if kind in OWN_CALIBRATION:
        return f", calibration {path} (not applied: a {kind} camera carries its own)"
    if not serial:
        return f", calibration {path} (names no camera: any camera takes it)"
    problem = calibration_camera_problem(calibration, config, kind, arg)
    if problem:
        raise CalibrationError(f"{problem}; calibrate the site's camera (edge-fas calibrate --camera SPEC --out FILE) "
                               "and point calibration.file at that file")
    return f", calibration {path} (of the camera with serial {serial})"


def check_deployment(config) -> Check:
    """Would `edge-fas run --config FILE` start: the model artifact (every file's hash), the rig calibration file,
    and its mode's start-up checks (production's refusals, weakened checks), without opening the camera or
    loading a runtime. Optional: never core (the machine may be fine and the config not)."""
    from edge_fas.artifact import load_artifact
    from edge_fas.calibration.rig import RigCalibration
    from edge_fas.deployment import check_start, training_source
    from edge_fas.drivers import parse_spec
    from edge_fas.errors import EdgeFasError

    mode = config.deployment.mode
    calibration = ""
    try:
        kind, arg = parse_spec(config.camera.spec)
        artifact = load_artifact(config.model.artifact or "demo")
        if config.calibration.file:
            calibration = _calibration_file(RigCalibration.load(config.calibration.file), config, kind, arg)
        risks = check_start(config, kind, artifact)
    except EdgeFasError as e:
        return Check("deployment", False, f"{mode}: `edge-fas run` would refuse to start: {e}", info={"mode": mode})
    source = training_source(artifact) or "unrecorded"
    detail = (f"{mode}: would start with a {kind} camera and model {artifact.model_name} "
              f"(manifest {artifact.digest[:12]}, trained on {source} data"
              f"{', the bundled demo' if artifact.is_demo else ''})"
              + calibration
              + (f"; faces framed by their depth (preprocessing framing: {artifact.preprocess.framing}): the crop's "
                 "size follows the calibration's focal length and depth scale"
                 if artifact.preprocess.framing in ("metric", "silhouette") else "")
              + (f"; accepted risks (development only): {', '.join(risks)}" if risks else ""))
    return Check("deployment", True, detail, info={"mode": mode, "camera": kind, "artifact": artifact.digest,
                                                   "risks": risks})


def run_checks(config=None) -> list[Check]:
    """Every check; with a site config also the ones that need it (the deployment, the webhook, the running
    registration check)."""
    checks = list(CHECKS)
    if config is not None:
        status = _service_status(config)  # one reading of the status file for every check that needs it
        checks += [functools.partial(check_deployment, config), functools.partial(check_webhook, config, status),
                   functools.partial(check_registration, config, status)]
    out = []
    for fn in checks:
        try:
            out.append(fn())
        except Exception as e:  # noqa: BLE001 - a broken check must not hide the others
            name = getattr(fn, "func", fn).__name__.removeprefix("check_")
            out.append(Check(name, False, f"check crashed: {type(e).__name__}: {e}"))
    return out


def main(as_json: bool = False, config=None) -> int:
    from edge_fas import __version__
    checks = run_checks(config)
    core_ok = all(c.ok for c in checks if c.core)
    if as_json:
        print(json.dumps({"edge_fas": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
                          "core_ok": core_ok, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        print(f"edge-fas {__version__} on Python {sys.version.split()[0]}, {platform.platform()}")
        for c in checks:
            mark = "ok  " if c.ok else ("FAIL" if c.core else "--  ")
            print(f"  [{mark}] {c.name:<12} {c.detail}")
        print("core: ok" if core_ok else "core: BROKEN (see FAIL lines)")
    return 0 if core_ok else 1
