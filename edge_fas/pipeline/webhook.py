"""HTTP webhook to a door controller: signed, sequenced events, delivered at least once for the latest state.

`send(verdict_dict)` never blocks the pipeline: it records the newest verdict as the standing state
under a lock and wakes a delivery thread. That thread POSTs one JSON event at a time:

- a *change* event whenever the state changes (each verdict when only_changes is off); a change that
  fails is retried, waiting 0.1 s, 0.2 s, 0.4 s ... up to backoff_max_s between attempts, until it is
  delivered or a newer state supersedes it (then the newer one is what the next attempt carries);
- a *heartbeat* event re-sending the standing state every heartbeat_s once the last one is delivered;
- a *stopping* event (verdict unknown) when the run ends, within close()'s time limit.

Every event is built fresh at its attempt and carries `seq` (strictly increasing within the run),
`run_id` (random per run), `time` (wall clock, Unix seconds, of the last verdict behind the state),
`sent` (when this attempt was made) and, for `live`, `valid_until` = time + live_valid_s: a receiver
treats a live past that moment as unknown, so a live cannot go stale at the door when the pipeline
or the network stops. With a site key the body is signed: header `X-Edge-Fas-Signature:
sha256=<hex HMAC-SHA256 of the exact body bytes>`. The key is never logged or printed. The receiver's
side of this contract, with an example receiver, is docs/webhook.md.

Each attempt has a total deadline (timeout_s for connect, request and the whole reply, enforced by
closing the socket when it passes, so a receiver that trickles bytes cannot hold delivery); every
exception of an attempt is caught and counted in `stats["errors"]` by kind. The thread never dies.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import secrets
import socket
import threading
import time
from collections import Counter
from pathlib import Path

from edge_fas.config import MIN_KEY_CHARS, check_url
from edge_fas.errors import ConfigError
from edge_fas.pipeline.sinks import dumps

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Edge-Fas-Signature"
FIRST_BACKOFF_S = 0.1
MAX_REPLY_BYTES = 64 * 1024  # a controller's reply is read (and bounded) but not interpreted


class DeadlineExceeded(Exception):
    """The receiver did not complete its reply within the attempt's deadline."""


def sign(key: bytes, body: bytes) -> str:
    """The signature header's value for `body`."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(key: bytes, body: bytes, header: str | None) -> bool:
    """What a receiver does: constant-time comparison of the header with the body's HMAC."""
    return bool(header) and hmac.compare_digest(sign(key, body), header.strip())


def load_key(webhook_config) -> bytes | None:
    """The site key from webhook.key or the file webhook.key_file (ConfigError naming the key on failure)."""
    w = webhook_config
    if w.key is not None:
        return w.key.encode()
    if w.key_file is None:
        return None
    try:
        key = Path(w.key_file).expanduser().read_text().strip()
    except OSError as e:
        raise ConfigError(f"config key 'webhook.key_file': cannot read {w.key_file} ({e.strerror or e}); "
                          "check the path and that this user may read it") from None
    if len(key) < MIN_KEY_CHARS:
        raise ConfigError(f"config key 'webhook.key_file': the key in {w.key_file} has {len(key)} characters, "
                          f"expected at least {MIN_KEY_CHARS} (e.g. `openssl rand -hex 32 > {w.key_file}`)")
    return key.encode()


def _error_kind(e: BaseException) -> str:
    if isinstance(e, _HTTPStatus):
        return f"http_{e.status}"
    if isinstance(e, DeadlineExceeded):
        return "deadline"
    return type(e).__name__


class _HTTPStatus(Exception):
    def __init__(self, status: int):
        super().__init__(f"HTTP {status}")
        self.status = status


class Webhook:
    def __init__(self, url: str, timeout_s: float = 1.0, only_changes: bool = True, key: bytes | None = None,
                 heartbeat_s: float = 1.0, live_valid_s: float = 2.0, backoff_max_s: float = 3.0,
                 backoff_s: float = FIRST_BACKOFF_S, clock=time.time):
        parts = check_url(url, "webhook.url")
        self.url = url
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout_s = float(timeout_s)
        self.only_changes = bool(only_changes)
        self._key = key
        self.heartbeat_s = float(heartbeat_s)
        self.live_valid_s = float(live_valid_s)
        self.backoff_s, self.backoff_max_s = float(backoff_s), float(backoff_max_s)
        self.clock = clock
        self.run_id = secrets.token_hex(8)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._state: dict | None = None  # the newest verdict dict
        self._state_time = 0.0  # wall time of the newest verdict behind the state
        self._state_since = 0.0  # wall time the standing verdict began
        self._change = 0  # state changes so far
        self._delivered_change = 0
        self._seq = 0
        self._last_delivery = None  # monotonic time of the last delivered event
        self.stats = {"changes": 0, "delivered": 0, "heartbeats": 0, "superseded": 0, "skipped": 0,
                      "attempts": 0, "failed_attempts": 0, "errors": Counter(), "last_error": None,
                      "last_delivered_seq": None, "signed": key is not None}
        self._thread = threading.Thread(target=self._run, name="edge-fas-webhook", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:  # never the key
        return f"Webhook({self.url!r}, signed={self._key is not None})"

    @classmethod
    def from_config(cls, webhook_config) -> "Webhook | None":
        w = webhook_config
        if not w.url:
            return None
        return cls(w.url, timeout_s=w.timeout_s, only_changes=w.only_changes, key=load_key(w),
                   heartbeat_s=w.heartbeat_s, live_valid_s=w.live_valid_s, backoff_max_s=w.backoff_max_s)

    # -- pipeline side -----------------------------------------------------------------------------
    def send(self, payload: dict) -> None:
        """Make `payload` (a verdict dict) the standing state; never blocks."""
        now = self.clock()
        with self._lock:
            if self._stop.is_set():
                return
            changed = (self._state is None or not self.only_changes
                       or payload.get("verdict") != self._state.get("verdict"))
            if self._state is None or payload.get("verdict") != self._state.get("verdict"):
                self._state_since = float(payload.get("time") or now)
            self._state = payload
            self._state_time = float(payload.get("time") or now)
            if changed:
                self._change += 1
                self.stats["changes"] += 1
            else:
                self.stats["skipped"] += 1
        if changed:
            self._wake.set()

    def snapshot(self) -> dict:
        """The delivery statistics as plain values (run summary, status file, doctor)."""
        with self._lock:
            s = dict(self.stats)
            s["errors"] = dict(self.stats["errors"])
            s["pending"] = self._change > self._delivered_change
            s["last_delivered_age_s"] = (None if self._last_delivery is None
                                         else round(time.monotonic() - self._last_delivery, 2))
        s["url"] = self.url
        return s

    def close(self, wait_s: float = 2.0) -> None:
        """Send the `stopping` event (verdict unknown) and deliver it within `wait_s`, then stop."""
        with self._lock:
            self._state = {"verdict": "unknown", "reasons": ["stopping: edge-fas run is ending"],
                           **{k: v for k, v in (self._state or {}).items()
                              if k in ("mode", "camera", "artifact", "risks")}}
            self._state_time = self._state_since = self.clock()
            self._change += 1
            self._close_deadline = time.monotonic() + wait_s
            self._stop.set()
        self._wake.set()
        self._thread.join(wait_s + self.timeout_s + 0.5)

    # -- delivery thread ---------------------------------------------------------------------------
    def _event(self, kind: str) -> tuple[bytes, int, int]:
        """A fresh event of the standing state: (body, seq, the change it reports)."""
        with self._lock:
            self._seq += 1
            state = dict(self._state or {"verdict": "unknown"})
            time_ = self._state_time
            event = {**state, "event": kind, "seq": self._seq, "run_id": self.run_id, "time": round(time_, 3),
                     "since": round(self._state_since, 3), "sent": round(self.clock(), 3),
                     "valid_until": round(time_ + self.live_valid_s, 3) if state.get("verdict") == "live" else None}
            return dumps(event).encode(), self._seq, self._change

    def _run(self) -> None:
        backoff = self.backoff_s
        while True:
            try:
                with self._lock:
                    stopping = self._stop.is_set()
                    pending = self._change > self._delivered_change
                    has_state = self._state is not None
                    since_last = None if self._last_delivery is None else time.monotonic() - self._last_delivery
                if stopping and (not pending or time.monotonic() >= self._close_deadline):
                    return
                if not pending:
                    heartbeat_due = has_state and since_last is not None and since_last >= self.heartbeat_s
                    if not heartbeat_due:
                        wait = self.heartbeat_s if since_last is None else self.heartbeat_s - since_last
                        self._wake.wait(max(0.01, wait))
                        self._wake.clear()
                        continue
                kind = "stopping" if stopping else "change" if pending else "heartbeat"
                body, seq, change = self._event(kind)
                self.stats["attempts"] += 1
                try:
                    self._post(body)
                except Exception as e:  # noqa: BLE001 - every failure of an attempt is counted, never fatal
                    err, text = _error_kind(e), " ".join(str(e).split())[:160]  # one line, whatever the reply was
                    with self._lock:
                        self.stats["failed_attempts"] += 1
                        self.stats["errors"][err] += 1
                        self.stats["last_error"] = f"{err}: {text}"
                    log.warning("webhook %s: event %d not delivered (%s: %s); next attempt in %.1f s",
                                self.url, seq, err, text, backoff)
                    if stopping:  # the last attempts before close() gives up
                        time.sleep(min(backoff, max(0.0, self._close_deadline - time.monotonic())))
                    else:  # honoured even when a newer state arrives meanwhile; close() cuts it short
                        self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.backoff_max_s)
                    continue
                backoff = self.backoff_s
                with self._lock:
                    if change > self._delivered_change:
                        self.stats["superseded"] += max(0, change - self._delivered_change - 1)
                        self._delivered_change = change
                    self._last_delivery = time.monotonic()
                    self.stats["delivered"] += 1
                    self.stats["heartbeats"] += kind == "heartbeat"
                    self.stats["last_delivered_seq"] = seq
            except Exception:  # noqa: BLE001 - a bug here must not end delivery for the rest of the run
                log.exception("webhook delivery loop")
                time.sleep(self.backoff_max_s)

    def _post(self, body: bytes) -> None:
        """One POST with a total deadline; raises on anything but a complete 2xx reply."""
        headers = {"Content-Type": "application/json", "User-Agent": "edge-fas"}
        if self._key is not None:
            headers[SIGNATURE_HEADER] = sign(self._key, body)
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self.timeout_s)
        expired = threading.Event()

        def abort():  # the deadline passed: unblock whatever read or write is in progress
            expired.set()
            sock = conn.sock
            if sock is not None:
                try:
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass

        timer = threading.Timer(self.timeout_s, abort)
        timer.daemon = True
        start = time.monotonic()
        timer.start()
        try:
            conn.request("POST", self._path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read(MAX_REPLY_BYTES)
            status = resp.status
        except Exception as e:
            # the socket's own timeout (also timeout_s) can fire before a CPU-starved timer thread does: a
            # failure once the deadline has passed is the deadline, whichever of the two noticed it
            if expired.is_set() or time.monotonic() - start >= self.timeout_s:
                raise DeadlineExceeded(f"no complete reply within {self.timeout_s:g} s") from e
            raise
        finally:
            timer.cancel()
            conn.close()
        if expired.is_set():
            raise DeadlineExceeded(f"no complete reply within {self.timeout_s:g} s")
        if not 200 <= status < 300:
            raise _HTTPStatus(status)
