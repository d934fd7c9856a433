"""A minimal door-controller receiver for edge-fas webhook events (the contract: docs/webhook.md).

    python examples/webhook_receiver.py --port 8080 --key-file site.key
    curl http://127.0.0.1:8080/state          # what the door should do now, and what needs a person

Standard library only. `DoorState` is the part to copy into a real controller: it verifies each
event's HMAC-SHA256 signature (constant-time), keeps only the newest event (by `seq` within a run,
by `time` across runs, so an old or replayed event never wins), and answers `current()`: `live` only
while the newest event is a live from a production run whose `valid_until` has not passed and the link
is not silent; every other case is `attack` or `unknown` (keep the door shut). `display()` is what the
door's own screen may show the person: the event's `prompt`, never its reasons or score. `attention()` is for
the site's maintenance, not the door: what needs a person at the camera (the registration check blind or
refusing, a development run, no word from edge-fas).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SIGNATURE_HEADER = "X-Edge-Fas-Signature"
MAX_BODY_BYTES = 1 << 20


class DoorState:
    """The newest verified event and what it means now. Thread-safe."""

    def __init__(self, key: bytes, silent_after_s: float = 5.0, require_production: bool = True, clock=time.time):
        self.key = key
        self.silent_after_s = silent_after_s  # no event (heartbeats come every ~1 s) for this long: unknown
        self.require_production = require_production  # a development run's live never opens the door
        self.clock = clock
        self.event: dict | None = None
        self.received_at: float | None = None
        self._lock = threading.Lock()

    def accept(self, body: bytes, signature: str | None) -> tuple[int, str]:
        """Check one POST; returns (HTTP status, reason). 2xx tells edge-fas to stop re-sending it."""
        expected = "sha256=" + hmac.new(self.key, body, hashlib.sha256).hexdigest()
        if not signature or not hmac.compare_digest(expected, signature.strip()):
            return 401, "bad or missing signature"
        try:
            event = json.loads(body)
            run_id, seq, at = str(event["run_id"]), int(event["seq"]), float(event["time"])
            verdict = event["verdict"]
        except (ValueError, KeyError, TypeError):
            return 400, "not an edge-fas event"
        if verdict not in ("live", "attack", "unknown"):
            return 400, f"unknown verdict {verdict!r}"
        with self._lock:
            old = self.event
            if old is not None:
                same_run = old["run_id"] == run_id
                if (same_run and seq <= old["seq"]) or (not same_run and at < old["time"]):
                    return 200, "older than the event held; ignored"  # a re-send or a replay: never wins
            self.event, self.received_at = event, self.clock()
        return 200, "ok"

    def current(self) -> str:
        """live | attack | unknown, as a door should act on it now."""
        with self._lock:
            event, received = self.event, self.received_at
        now = self.clock()
        if event is None or now - received > self.silent_after_s:
            return "unknown"
        if event["verdict"] == "live":
            if self.require_production and event.get("mode") != "production":
                return "unknown"
            valid_until = event.get("valid_until")
            return "live" if valid_until is not None and now <= float(valid_until) else "unknown"
        return event["verdict"]


    def display(self) -> str:
        """The one line the door's own screen may show the person in front of it: the event's `prompt`, which
        names only what they can fix (never `reasons` or `score`: those tell an attacker what to adjust)."""
        with self._lock:
            event, received = self.event, self.received_at
        if event is None or self.clock() - received > self.silent_after_s:
            return "Out of service"  # no word from edge-fas: nothing the person can do about it
        if event["verdict"] == "live" and self.current() != "live":
            return "Please wait"  # a live that expired, or one from a development run
        return str(event.get("prompt") or ("Verified" if event["verdict"] == "live" else "Not verified"))


    def attention(self) -> list[str]:
        """What the site's maintenance should look at (for a dashboard or an alert, never the door's screen): the
        running registration check blind or refusing (`health`, docs/webhook.md), a development run, silence."""
        with self._lock:
            event, received = self.event, self.received_at
        if event is None or self.clock() - received > self.silent_after_s:
            return ["no event from edge-fas: the service, the camera host or the link is down"]
        out = []
        check = (event.get("health") or {}).get("registration_check")
        if check == "blind":
            out.append("registration check blind: it reads too few faces to notice a camera moved on its mount; "
                       "look at the camera and what stands behind the visitors, run edge-fas doctor")
        elif check == "refusing":
            out.append("registration check refusing: depth no longer lines up with colour (a knocked camera or "
                       "another camera's calibration); the door stays shut until edge-fas calibrate --check passes")
        elif check == "off":
            out.append("registration check off on the edge device")
        if event.get("mode") != "production":
            out.append("a development run: its live never opens the door")
        return out


def make_handler(state: DoorState):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY_BYTES:
                self.send_error(411 if length == 0 else 413)
                return
            status, reason = state.accept(self.rfile.read(length), self.headers.get(SIGNATURE_HEADER))
            self.send_response(status, reason)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):  # noqa: N802
            body = json.dumps({"door": state.current(), "display": state.display(), "attention": state.attention(),
                               "event": state.event}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):  # one line per request, never the body or the signature
            print(f"{self.address_string()} {fmt % args} -> door {state.current()}")

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--key-file", required=True, help="the site key edge-fas signs with (webhook.key_file)")
    parser.add_argument("--accept-development", action="store_true",
                        help="let a development run's live count (trying edge-fas out; never at a real door)")
    args = parser.parse_args()
    with open(args.key_file) as f:
        key = f.read().strip().encode()
    state = DoorState(key, require_production=not args.accept_development)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(state))
    print(f"listening on http://{args.host}:{args.port}/ (POST events, GET the door state)")
    server.serve_forever()


if __name__ == "__main__":
    main()
