"""A loopback HTTP receiver for webhook tests whose replies follow a script, and the example door
controller (examples/webhook_receiver.py) judging what it accepts.

Script entries, one per request in order (then "ok" forever):
  "ok"      the example DoorState checks the event (signature, order) and its status is the reply
  500       a well-formed HTTP 500 reply
  "garbage" bytes that are not HTTP, then the connection closes (http.client: BadStatusLine)
  "slow"    a valid status line trickled one byte every `trickle_s` until the client hangs up
"""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "webhook_receiver", Path(__file__).resolve().parents[1] / "examples" / "webhook_receiver.py")
webhook_receiver = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(webhook_receiver)
DoorState = webhook_receiver.DoorState


def _read_request(conn: socket.socket) -> tuple[dict, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("client closed before the headers ended")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("client closed mid-body")
        body += chunk
    return headers, body


class ScriptedReceiver:
    def __init__(self, key: bytes | None, script=(), trickle_s: float = 0.2):
        self.script = list(script)
        self.trickle_s = trickle_s
        # development runs (the tests) send development events: let their live count here
        self.door = DoorState(key, require_production=False) if key is not None else None
        self.requests: list[tuple[object, bytes]] = []  # (behaviour, body) of every request
        self.accepted: list[bytes] = []  # bodies answered 2xx
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/door"
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(5)
                headers, body = _read_request(conn)
                with self._lock:
                    n = len(self.requests)
                    behaviour = self.script[n] if n < len(self.script) else "ok"
                    self.requests.append((behaviour, body))
                if behaviour == "ok":
                    status, reason = (204, "no key to check") if self.door is None else \
                        self.door.accept(body, headers.get("x-edge-fas-signature"))
                    if 200 <= status < 300:
                        with self._lock:
                            self.accepted.append(body)
                    conn.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                                 .encode())
                elif behaviour == "garbage":
                    conn.sendall(b"this is not an HTTP reply\r\n\r\n")
                elif behaviour == "slow":
                    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" * 20:
                        if self._stop.is_set():
                            return
                        conn.sendall(bytes([byte]))
                        time.sleep(self.trickle_s)
                else:
                    conn.sendall(f"HTTP/1.1 {int(behaviour)} Refused\r\nContent-Length: 0\r\n\r\n".encode())
            except OSError:
                pass  # the client hung up (a deadline) or the test ended

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


def wait_for(cond, timeout: float = 5.0) -> bool:
    t0 = time.monotonic()
    while not cond() and time.monotonic() - t0 < timeout:
        time.sleep(0.01)
    return cond()
