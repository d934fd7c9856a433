"""Camera drivers behind one function: `open_camera(spec, config=None)`.

spec: realsense[:SERIAL], openni[:URI], orbbec[:SERIAL], synthetic[:SCENARIO], replay:PATH.
Driver modules import their SDK lazily, so a missing SDK only matters for the camera that needs it.
"""

from __future__ import annotations

import importlib

from edge_fas.drivers.base import Camera
from edge_fas.errors import CameraError

# kind -> (module, factory function name); each factory is factory(arg: str | None, config) -> Camera
DRIVERS = {
    "synthetic": ("edge_fas.drivers.synthetic", "open_synthetic"),
    "realsense": ("edge_fas.drivers.realsense", "open_realsense"),
    "openni": ("edge_fas.drivers.openni", "open_openni"),
    "orbbec": ("edge_fas.drivers.orbbec", "open_orbbec"),
    "replay": ("edge_fas.drivers.replay", "open_replay"),
}


def parse_spec(spec: str) -> tuple[str, str | None]:
    kind, sep, arg = str(spec).partition(":")
    kind = kind.strip().lower()
    if kind not in DRIVERS:
        raise CameraError(f"camera spec {spec!r}: unknown camera kind {kind!r}; expected one of "
                          "realsense[:SERIAL], openni[:URI], orbbec[:SERIAL], synthetic[:SCENARIO], replay:PATH")
    if kind == "replay" and not arg:
        raise CameraError(f"camera spec {spec!r}: replay needs a path, e.g. replay:session.db3")
    return kind, (arg or None)


def open_camera(spec: str, config=None) -> Camera:
    """Create the camera for `spec` (not yet streaming; use it as a context manager).

    config: an edge_fas.config.Config (its `camera` section sets resolution, fps, emitter, ...).
    """
    kind, arg = parse_spec(spec)
    module_name, factory = DRIVERS[kind]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("edge_fas"):
            raise CameraError(f"camera kind {kind!r} is not available in this build of edge-fas ({e.name})") from e
        raise
    camera = getattr(module, factory)(arg, config)
    # what opened it, whatever the recording claims about its device: production refuses synthetic
    # and replay, and every verdict says which kind of source it judged
    camera.kind = kind
    return camera


__all__ = ["Camera", "open_camera", "parse_spec", "DRIVERS"]
