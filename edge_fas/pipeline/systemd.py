"""systemd notify protocol for `edge-fas run --headless` as a Type=notify service (jetson/edge-fas.service).

READY=1 once the camera delivers and the model is loaded (the first processed frame), then WATCHDOG=1
after each fresh frame set that went through the pipeline without a stream or runtime fault, at most
once per `min_interval_s`. A stalled camera, a frozen or replayed stream, or a hung or failing
inference therefore stops the pings and systemd restarts the service (WatchdogSec). A frame with no
face still pings: an empty kiosk is healthy. Without $NOTIFY_SOCKET everything here is a no-op.
"""

from __future__ import annotations

import os
import socket
import time

from edge_fas.pipeline import decision as D

UNHEALTHY = frozenset({D.STALE_FRAME, D.REPEATED_FRAME, D.CAMERA_STALLED, D.CAMERA_DISCONNECTED,
                       D.RUNTIME_ERROR, D.PIPELINE_ERROR, D.MISSING_MODALITY, D.STREAM_SKEW})


def notify(message: str, address: str | None = None) -> bool:
    """Send one sd_notify datagram; False when not running under systemd or the send failed."""
    address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract socket namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(address)
            s.sendall(message.encode())
        return True
    except OSError:
        return False


class Watchdog:
    """Use as (part of) Pipeline.on_result."""

    def __init__(self, address: str | None = None, min_interval_s: float = 1.0, clock=time.monotonic):
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self.min_interval_s = min_interval_s
        self.clock = clock
        self.ready = False
        self.pings = 0
        self._last = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def healthy(self, result) -> bool:
        if result.frames is None:
            return False
        return not any(D.reason_code(r) in UNHEALTHY for r in result.verdict.reasons)

    def __call__(self, result) -> None:
        if not self.enabled or not self.healthy(result):
            return
        if not self.ready:
            self.ready = notify("READY=1\nSTATUS=camera delivering, model loaded", self.address)
        now = self.clock()
        if self._last is None or now - self._last >= self.min_interval_s:
            if notify("WATCHDOG=1", self.address):
                self.pings += 1
                self._last = now

    def stopping(self) -> None:
        if self.enabled:
            notify("STOPPING=1", self.address)
