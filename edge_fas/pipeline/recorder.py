"""`edge-fas run --record PATH`: write the camera stream of a run to a session folder (helper C's format).

The live pipeline must never wait for the disk, so frames go through a bounded queue to a writer
thread and are dropped when it is full. A drop is never silent: it is counted, logged, reported at
exit, and the take is split there, so every take on disk holds consecutive frames only (training
and replay rely on that). `edge-fas collect` is the loss-free operator tool. A take is begun whenever the source's ground truth changes (species, subject), so a
recorded synthetic scenario or a replayed labelled session stays labelled and `edge-fas train` /
`run --camera replay:PATH` can read it. A stream that does not know its truth (a real camera) cannot
be labelled here: use `edge-fas collect`, which asks for labels and consent.
"""

from __future__ import annotations

import logging
import queue
import threading

from edge_fas.errors import RecordingError

log = logging.getLogger(__name__)

PIPELINE_KEYS = ("faults", "host_time")  # this run's bookkeeping, not part of the recorded stream


class StreamRecorder:
    def __init__(self, path, camera, queue_frames: int = 120):
        self.path = path
        self.camera = camera
        self.written = 0
        self.dropped = 0
        self.error: BaseException | None = None
        self._writer = None
        self._take_key = None
        self._unreported_drops = 0  # frames dropped since the last frame that made it into the queue
        self._queue: queue.Queue = queue.Queue(maxsize=queue_frames)
        self._thread = threading.Thread(target=self._run, name="edge-fas-record", daemon=True)
        self._thread.start()

    def put(self, frames) -> None:
        """Offer a frame (called from the capture thread; never blocks)."""
        if self.error is not None:
            return
        try:
            meta = {k: v for k, v in frames.meta.items() if k not in PIPELINE_KEYS}
            # each queued frame carries how many frames were lost just before it
            self._queue.put_nowait((frames.replace(meta=meta), self._unreported_drops))
            self._unreported_drops = 0
        except queue.Full:
            self.dropped += 1
            self._unreported_drops += 1

    @property
    def _synthetic(self) -> bool:
        """The synthetic rig (by what was opened; a recording's own device claim is not trusted)."""
        return getattr(self.camera, "kind", None) == "synthetic"

    def _open(self, frames):
        from edge_fas.drivers.session import SessionWriter
        synthetic = self._synthetic
        return SessionWriter(self.path, device=frames.device, calibration=frames.calibration or self.camera.calibration,
                             domain=frames.truth.domain if frames.truth else "",
                             notes="recorded by edge-fas run --record",
                             require_consent=not synthetic)

    def _write(self, frames, lost_before: int = 0) -> None:
        t = frames.truth
        if t is None:
            raise RecordingError(f"--record {self.path}: this camera's frames carry no labels; record labelled takes "
                                 "of real people with `edge-fas collect` (it asks for the label and consent)")
        if self._writer is None:
            self._writer = self._open(frames)
        key = (t.species, t.extra.get("subject"), t.extra.get("subject_id"), frames.meta.get("take"))
        if lost_before:  # frames were lost just before this one: start a new take here
            log.warning("recording: %d frame(s) not written (the disk is too slow); take split at frame %s",
                        lost_before, frames.counter)
            self._take_key = None
        if key != self._take_key:
            # a replayed session keeps its takes' pseudonym and consent; the rig's subjects are numbered
            subject = t.extra.get("subject_id") or (f"sim-{t.extra['subject']}" if "subject" in t.extra else "")
            self._writer.begin_take(species=t.species, label=int(t.label), subject_id=str(subject),
                                    consent=self._synthetic or bool(t.extra.get("consent")))
            self._take_key = key
        self._writer.write(frames)
        self.written += 1

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self.error is not None:
                continue
            try:
                self._write(*item)
            except Exception as e:  # reported at close; the run itself goes on
                self.error = e
                log.error("recording stopped: %s", e)

    def close(self) -> None:
        """Write what is queued and close the session."""
        self._queue.put(None)
        self._thread.join()
        if self._writer is not None:
            self._writer.close()
        if self.error is not None:
            raise RecordingError(f"recording to {self.path} stopped after {self.written} frames: {self.error}") \
                from self.error
