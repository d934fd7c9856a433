"""How much of a frame period the viewer's drawing takes (offscreen Qt): per-frame redraw time at the
camera's resolution with the trace map blended, and the display rate it allows.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_gui.py [--width 640 --height 480 --frames 300]
"""

import argparse
import os
import time

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--frames", type=int, default=300)
    args = ap.parse_args()

    from PyQt6.QtWidgets import QApplication

    from edge_fas.apps.viewer import ViewerWindow
    from edge_fas.types import FrameSet, ModelOutput, Verdict

    app = QApplication.instance() or QApplication([])
    rng = np.random.default_rng(0)
    h, w = args.height, args.width
    base = rng.integers(0, 255, (h, w, 3), np.uint8)
    depth = rng.integers(300, 1200, (h, w)).astype(np.uint16)
    ir = rng.integers(0, 255, (h, w), np.uint8)
    rolled = [np.roll(base, 7 * k, axis=1) for k in range(8)]  # distinct images, made before timing
    s = min(h, w) // 2
    verdict = Verdict("attack", score=0.8, threshold=0.5, box=(w // 4, h // 4, w // 4 + s, h // 4 + s),
                      reasons=["model"], latency_ms={"inference": 20.0},
                      output=ModelOutput(score=np.array([0.8]), trace=rng.random((1, 3, 64, 64)).astype(np.float32)))

    class Result:
        def __init__(self, n):
            self.frames = FrameSet(rgb=rolled[n % len(rolled)], depth=depth, ir=ir, counters={"rgb": n})
            self.verdict, self.camera_status = verdict, "connected"

    window = ViewerWindow(pipeline=None, poll_ms=1000)
    window.timer.stop()  # drive it by hand: only the drawing is timed
    window.show()
    results = [Result(n) for n in range(args.frames)]
    times = []
    for r in results:
        t0 = time.perf_counter()
        window.show_result(r)
        app.processEvents()
        times.append((time.perf_counter() - t0) * 1000)
    t = np.array(times[10:])
    print(f"viewer redraw {w}x{h} with trace map: mean {t.mean():.1f} ms, p50 {np.percentile(t, 50):.1f} ms, "
          f"p95 {np.percentile(t, 95):.1f} ms -> up to {1000 / t.mean():.0f} fps on this machine")


if __name__ == "__main__":
    main()
