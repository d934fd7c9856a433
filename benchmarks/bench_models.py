"""Per model x preset: parameters, GFLOPs per frame set, CPU eager latency at batch 1.

    .venv/bin/python benchmarks/bench_models.py [--models mmfas vit] [--presets edge] [--reps 10]

GFLOPs come from torch's FlopCounterMode (multiply-add = 2 FLOPs; convs, linears, matmuls).
Latency: eval mode, no_grad, batch 1, median of --reps runs after 2 warm-ups, with
torch.set_num_threads(1) and (2). Untrained weights: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from torch.utils.flop_counter import FlopCounterMode

from edge_fas.models import MODEL_NAMES, build


def inputs(size: int):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(1, 3, size, size, generator=g), torch.randn(1, 1, size, size, generator=g),
            torch.randn(1, 1, size, size, generator=g), torch.ones(1, 3, dtype=torch.bool))


def latency_ms(model, x, threads: int, reps: int) -> float:
    torch.set_num_threads(threads)
    with torch.no_grad():
        for _ in range(2):
            model(*x)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            model(*x)
            times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODEL_NAMES))
    ap.add_argument("--presets", nargs="+", default=["edge", "paper"])
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args(argv)
    print(f"{'model':<12}{'preset':<7}{'input':>6}{'params M':>10}{'GFLOPs':>9}{'ms 1 thr':>10}{'ms 2 thr':>10}")
    for name in args.models:
        for preset in args.presets:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    torch.manual_seed(0)
                    model = build(name, preset).eval()
            except Exception as e:  # a model another helper has not landed yet
                print(f"{name:<12}{preset:<7}  not available: {type(e).__name__}: {e}")
                continue
            x = inputs(model.input_size)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            with torch.no_grad(), FlopCounterMode(display=False) as fc:
                model(*x)
            gflops = fc.get_total_flops() / 1e9
            l1, l2 = (latency_ms(model, x, t, args.reps) for t in (1, 2))
            print(f"{name:<12}{preset:<7}{model.input_size:>6}{params:>10.2f}{gflops:>9.2f}{l1:>10.1f}{l2:>10.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
