"""Where compiled engines live: a per-user cache, never the artifact folder (engines are built on the target)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """EDGE_FAS_CACHE, else $XDG_CACHE_HOME/edge-fas, else ~/.cache/edge-fas."""
    if os.environ.get("EDGE_FAS_CACHE"):
        return Path(os.environ["EDGE_FAS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edge-fas"


def engine_cache_dir(key: str, flavour: str) -> Path:
    d = cache_root() / "engines" / flavour / key
    d.mkdir(parents=True, exist_ok=True)
    return d
