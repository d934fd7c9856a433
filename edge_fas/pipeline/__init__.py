"""The live pipeline (issue 7): camera -> registration -> face -> crop -> runtime -> fail-closed verdict.

API (used by `edge-fas run`, the GUI in edge_fas.apps.viewer, and benchmarks/bench_pipeline.py):

    pipeline = Pipeline(camera, runtime, config, detector=None)   # camera: drivers.base.Camera
    pipeline.on_result = callback          # optional: called with every Result from the worker thread
    pipeline.start(); ...; pipeline.stop() # or `with Pipeline(...) as pipeline:`
    pipeline.latest() -> Result | None     # newest frame with the latest verdict, never blocks

Result fields: `frames` (the newest FrameSet as the camera gave it; colour pixels are the same as after
registration, so the verdict's box and maps sit on its colour image), `verdict`
(edge_fas.types.Verdict: verdict, score, threshold, reasons, latency_ms per stage, frame ids, truth,
box, output ModelOutput with trace/uncertainty maps), `camera_status` (str, drivers.base.STATUSES),
`fps_display`, `fps_decisions`, `dropped` (also in the `counters` dict).

Modules: decision (fail-closed policy), integrity (stream checks), mailbox (one-slot latest-frame
hand-off), tracker (face selection + box smoothing), webhook (non-blocking POST), sinks (headless
JSON lines + summary), pipeline (threads).
"""

from edge_fas.pipeline.decision import DecisionPolicy

__all__ = ["DecisionPolicy", "Pipeline", "Result"]


def __getattr__(name):  # Pipeline pulls in the detector and drivers: import it only when asked for
    if name in ("Pipeline", "Result"):
        from edge_fas.pipeline import pipeline as _p
        return getattr(_p, name)
    raise AttributeError(name)
