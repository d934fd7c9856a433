"""Latency / throughput measurement of a runtime, and a description of the machine it ran on."""

from __future__ import annotations

import os
import platform
import time

import numpy as np


def describe_machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    d = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "os": platform.platform()}
    try:
        d["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    try:
        import onnxruntime
        d["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    try:
        import torch
        d["torch"] = str(torch.__version__)
    except ImportError:
        pass
    from edge_fas.runtime import cuda
    found = cuda.gpus()
    if found:
        d["gpu"] = ", ".join(f"{g.name} ({g.sm}, {g.sm_count} SMs)" for g in found)
    return d


def bench_runtime(rt, batch_size: int, iters: int = 50, warmup: int = 5, seed: int = 0,
                  max_seconds: float | None = None) -> dict:
    """Time rt.infer on a fixed random batch after warm-up: p50/p95/p99 ms per call, frame sets/s."""
    from edge_fas.export import random_batch
    b = random_batch(rt.input_size, batch_size, np.random.default_rng(seed), drop_modalities=False)
    for _ in range(warmup):
        rt.infer(b)
    times = []
    start = time.perf_counter()
    for _ in range(iters):
        t0 = time.perf_counter()
        rt.infer(b)
        times.append(time.perf_counter() - t0)
        if max_seconds and time.perf_counter() - start > max_seconds:
            break
    ms = np.array(times) * 1e3
    return {"runtime": rt.kind, "device": rt.device, "batch": batch_size, "iters": len(ms),
            "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)), "throughput_fps": float(batch_size * len(ms) / (ms.sum() / 1e3))}


def format_table(rows: list[dict]) -> str:
    head = (f"{'model':<22} {'runtime':<22} {'runs on (read back)':<26} {'batch':>5} {'p50 ms':>9} {'p95 ms':>9} "
            f"{'p99 ms':>9} {'frames/s':>9} {'max|dscore| vs fp32 CPU':>24}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.get('model', ''):<22} {r['label']:<22} {str(r.get('runs_on', r.get('device', ''))):<26} "
                     f"{r['batch']:>5} {r['p50_ms']:>9.2f} {r['p95_ms']:>9.2f} {r['p99_ms']:>9.2f} "
                     f"{r['throughput_fps']:>9.1f} {r.get('parity_vs_fp32_cpu', float('nan')):>24.2g}")
    return "\n".join(lines)
