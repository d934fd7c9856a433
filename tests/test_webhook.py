import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from edge_fas.config import load_config
from edge_fas.pipeline.webhook import Webhook


class Receiver:
    """A real local HTTP server that records POST bodies; fail_first makes the first N requests 500."""

    def __init__(self, fail_first=0, delay_s=0.0):
        self.bodies, self.calls = [], 0
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.calls += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(delay_s)
                if outer.calls <= fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                outer.bodies.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_port}/verdict"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def wait_for(cond, timeout=5.0):
    t0 = time.monotonic()
    while not cond() and time.monotonic() - t0 < timeout:
        time.sleep(0.01)
    return cond()


def test_posts_only_changes():
    rx = Receiver()
    hook = Webhook(rx.url, timeout_s=1, retries=0, only_changes=True)
    for v in ["unknown", "unknown", "live", "live", "attack"]:
        hook.send({"verdict": v})
    assert wait_for(lambda: len(rx.bodies) == 3)
    assert [b["verdict"] for b in rx.bodies] == ["unknown", "live", "attack"]
    assert hook.stats["skipped"] == 2
    hook.close()
    rx.close()


def test_retries_after_server_error():
    rx = Receiver(fail_first=2)
    hook = Webhook(rx.url, timeout_s=1, retries=2, only_changes=False, backoff_s=0.01)
    hook.send({"verdict": "live"})
    assert wait_for(lambda: hook.stats["sent"] == 1)
    assert hook.stats["retried"] == 2 and rx.bodies == [{"verdict": "live"}]
    hook.close()
    rx.close()


def test_send_never_blocks_on_slow_or_dead_receiver():
    rx = Receiver(delay_s=0.5)
    hook = Webhook(rx.url, timeout_s=0.1, retries=0, only_changes=False, queue_size=2)
    t0 = time.monotonic()
    for i in range(50):
        hook.send({"verdict": "live", "i": i})
    assert time.monotonic() - t0 < 0.2
    assert hook.stats["dropped"] >= 40
    assert wait_for(lambda: hook.stats["failed"] >= 1)  # timed out, counted, not raised
    hook.close(wait_s=0.1)
    rx.close()


def test_config_and_bad_url():
    assert Webhook.from_config(load_config().webhook) is None
    with pytest.raises(ValueError, match="webhook.url"):
        Webhook("ftp://door")
