"""Progress of long work (export parity, precision gates, engine builds, bench, rendering) on stderr.

On a terminal: one line redrawn in place with a bar, count, rate and time left. Elsewhere (logs,
systemd, CI): a plain line at most every `every_s` seconds and one at the end, so a journal is not
flooded. quiet=True (``--quiet``, headless JSON) prints nothing; stdout is never touched, so JSON on
stdout stays parseable.
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, total: int, quiet: bool = False, stream=None, every_s: float = 5.0):
        self.label, self.total, self.quiet = label, max(1, int(total)), quiet
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = 0.2 if self.tty else every_s
        self.done = 0
        self.t0 = self.last = time.monotonic()
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        now = time.monotonic()
        if self.done >= self.total:
            self.close()
        elif now - self.last >= self.every_s:
            self.last = now
            self._print(end="\r" if self.tty else "\n")

    def callback(self, done: int, total: int) -> None:
        """For APIs that report (done, total), e.g. data.synthetic.synthetic_crops(progress=...); a count
        that starts again (the next domain) starts a new line."""
        if done < self.done or self.closed:
            self.done, self.closed, self.t0 = 0, False, time.monotonic()
        self.total = max(1, int(total))
        self.update(done - self.done)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._print(end="\n")

    def _print(self, end: str) -> None:
        if self.quiet:
            return
        elapsed = time.monotonic() - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        frac = self.done / self.total
        bar = ("[" + "#" * int(frac * 24) + "." * (24 - int(frac * 24)) + "] ") if self.tty else ""
        tail = f"{elapsed:.0f} s" if self.done >= self.total else f"{rate:.1f}/s, ~{left:.0f} s left"
        print(f"{self.label}: {bar}{self.done}/{self.total} ({tail})", end=end, file=self.stream, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.close()
