"""Training throughput (samples/s through each model's own train_step) and batch-1 inference latency.

    python benchmarks/bench_training.py --models mmfas,mmdg,spoof_trace --threads 1 [--device cuda]
    python benchmarks/bench_training.py --models spoof_trace --set input_size=96
    python benchmarks/bench_training.py --models spoof_trace,resnet50 --memory-format contiguous,channels_last
    python benchmarks/bench_training.py --models spoof_trace --memory-format channels_last --amp false,bf16 --threads 2

Random inputs at the model's input size; labels half attack. Numbers depend on the machine and on
what else runs on it: quote them with the command.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
import yaml


def bench(name, preset, overrides, device, batch, steps, memory_format="contiguous", amp=False):
    from edge_fas.models import build
    from edge_fas.training.loop import autocast_dtype
    from edge_fas.training.loop import memory_format as resolve

    m = build(name, preset, **overrides).to(device).to(memory_format=resolve(memory_format, device))
    s = int(m.input_size)
    b = {"rgb": torch.randn(batch, 3, s, s, device=device), "depth": torch.randn(batch, 1, s, s, device=device),
         "ir": torch.randn(batch, 1, s, s, device=device), "present": torch.ones(batch, 3, dtype=torch.bool, device=device),
         "label": torch.arange(batch, device=device) % 2, "domain": torch.zeros(batch, dtype=torch.long, device=device)}
    opt = m.make_optimisers()
    dtype = autocast_dtype(amp, device)  # what train.amp makes the training loop do (its float16 scaler aside)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None

    def step():
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            m.train_step(b, opt, scaler=scaler)

    step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    train_rate = batch * steps / (time.perf_counter() - t)
    m.eval()
    x = {k: v[:1] for k, v in b.items()}
    with torch.no_grad():
        for _ in range(3):
            m(x["rgb"], x["depth"], x["ir"], x["present"])
        sync()
        t = time.perf_counter()
        n = 20
        for _ in range(n):
            m(x["rgb"], x["depth"], x["ir"], x["present"])
        sync()
    return s, train_rate, (time.perf_counter() - t) / n * 1000, sum(p.numel() for p in m.parameters()) / 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mmfas,mmdg,spoof_trace")
    ap.add_argument("--preset", default="edge")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--set", action="append", default=[], help="model override KEY=VALUE")
    ap.add_argument("--memory-format", default="contiguous",
                    help="comma-separated train.memory_format values to compare (auto, channels_last, contiguous)")
    ap.add_argument("--amp", default="false", help="comma-separated train.amp values to compare (auto, true, false, "
                                                   "bf16); inference latency is float32 in every row")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    overrides = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in a.set)}
    dev = torch.device(a.device)
    print(f"device {a.device}, {a.threads} thread(s), batch {a.batch}, preset {a.preset}, overrides {overrides}")
    print("| model | memory format | train.amp | input | params (M) | train samples/s | infer batch-1 ms |")
    print("|---|---|---|---|---|---|---|")
    for name in a.models.split(","):
        for fmt in a.memory_format.split(","):
            for amp in a.amp.split(","):
                s, rate, ms, mp = bench(name, a.preset, overrides, dev, a.batch, a.steps, fmt, yaml.safe_load(amp))
                print(f"| {name} | {fmt} | {amp} | {s} | {mp:.2f} | {rate:.1f} | {ms:.1f} |", flush=True)


if __name__ == "__main__":
    main()
