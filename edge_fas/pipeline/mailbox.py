"""One-slot latest-value mailbox between the capture and the processing thread.

`put` never blocks: a newer item replaces one the consumer has not taken yet, and that stale item
is counted in `dropped`. So the processing latency never grows with load: the worker always gets
the newest frame, never a queue of old ones. (`wait_empty` lets a producer wait instead, for replays
that must judge every frame.)
"""

from __future__ import annotations

import threading
import time
from typing import Any


class Mailbox:
    def __init__(self):
        self._cond = threading.Condition()
        self._item: Any = None
        self._has = False
        self._closed = False
        self.put_count = 0
        self.dropped = 0

    def put(self, item: Any, carry=None) -> None:
        """Offer `item`. With `carry(old, new)`, an untaken item being replaced is first passed to it
        (e.g. to keep the fault reasons of a dropped frame on the frame that replaces it)."""
        with self._cond:
            if self._has:
                self.dropped += 1
                if carry is not None:
                    carry(self._item, item)
            self._item, self._has = item, True
            self.put_count += 1
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> Any:
        """The newest item (taking it out), or None after `timeout` seconds or when closed and empty."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._has and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if not self._has:
                return None
            item, self._item, self._has = self._item, None, False
            self._cond.notify_all()  # wakes a producer in wait_empty
            return item

    def wait_empty(self, timeout: float | None = None) -> bool:
        """Block until the slot is empty (True) or the mailbox is closed or `timeout` passes (False).

        A producer that calls this before each `put` never replaces an untaken item: nothing is
        dropped (the pipeline's no-drop mode for recordings)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._has and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return not self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
