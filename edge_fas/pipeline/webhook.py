"""Optional HTTP webhook: POST each verdict (or each change of verdict) as JSON to a door controller.

It never blocks the pipeline: `send` only puts the payload in a small bounded queue (the oldest is
dropped, and counted, when the receiver cannot keep up) and a daemon thread does the POSTs with a
timeout per attempt and `retries` retries after a failure. Outcomes are counted in `stats`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import urllib.error
import urllib.request

from edge_fas.pipeline.sinks import dumps

log = logging.getLogger(__name__)


class Webhook:
    def __init__(self, url: str, timeout_s: float = 1.0, retries: int = 2, only_changes: bool = True,
                 queue_size: int = 16, backoff_s: float = 0.1):
        if not url or not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url {url!r}: expected http:// or https:// (webhook.url)")
        self.url = url
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.only_changes = bool(only_changes)
        self.backoff_s = float(backoff_s)
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._last_verdict: str | None = None
        self.stats = {"sent": 0, "failed": 0, "retried": 0, "dropped": 0, "skipped": 0}
        self._thread = threading.Thread(target=self._run, name="edge-fas-webhook", daemon=True)
        self._stop = threading.Event()
        self._thread.start()

    @classmethod
    def from_config(cls, webhook_config) -> "Webhook | None":
        w = webhook_config
        return None if not w.url else cls(w.url, w.timeout_s, w.retries, w.only_changes)

    def send(self, payload: dict) -> None:
        verdict = payload.get("verdict")
        if self.only_changes and verdict == self._last_verdict:
            self.stats["skipped"] += 1
            return
        self._last_verdict = verdict
        while True:
            try:
                self._queue.put_nowait(payload)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.stats["dropped"] += 1
                except queue.Empty:
                    pass

    def _post(self, body: bytes) -> None:
        req = urllib.request.Request(self.url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            if not 200 <= resp.status < 300:
                raise urllib.error.HTTPError(self.url, resp.status, "webhook refused", resp.headers, None)

    def _run(self) -> None:
        while not self._stop.is_set() or not self._queue.empty():
            try:
                payload = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            body = dumps(payload).encode()
            for attempt in range(self.retries + 1):
                try:
                    self._post(body)
                    self.stats["sent"] += 1
                    break
                except (OSError, urllib.error.URLError) as e:  # HTTPError, timeouts, refused
                    if attempt < self.retries:
                        self.stats["retried"] += 1
                        time.sleep(self.backoff_s * (attempt + 1))
                    else:
                        self.stats["failed"] += 1
                        log.warning("webhook %s: giving up on a verdict after %d attempts: %s",
                                    self.url, attempt + 1, e)
            self._queue.task_done()

    def close(self, wait_s: float = 2.0) -> None:
        """Stop after delivering what is queued, waiting at most `wait_s`."""
        self._stop.set()
        self._thread.join(wait_s)
