"""Spoof-trace network: eval latency and the cost of one three-step train_step, per preset.

    .venv/bin/python benchmarks/bench_spoof_trace.py [--device cpu|cuda] [--threads 1] [--amp]

Prints, per preset: generator / discriminator parameters, eval forward latency at batch 1, and
the mean wall time of train_step (generator + discriminator + consistency) at the paper's batch 4.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from torch import nn

from edge_fas.models import build


def batch(n, s, device):
    g = torch.Generator().manual_seed(0)
    b = dict(rgb=torch.randn(n, 3, s, s, generator=g), depth=torch.randn(n, 1, s, s, generator=g),
             ir=torch.randn(n, 1, s, s, generator=g), present=torch.ones(n, 3, dtype=torch.bool),
             label=torch.arange(n) % 2)
    return {k: v.to(device) for k, v in b.items()}


def count_gmacs(model, x) -> float:
    """Multiply-accumulates of one eval forward at batch 1 (convs, deconvs, linears), in G."""
    total = [0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            total[0] += out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, nn.ConvTranspose2d):
            total[0] += inp[0].numel() * mod.out_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, nn.Linear):
            total[0] += out.numel() * mod.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    with torch.inference_mode():
        model(x["rgb"], x["depth"], x["ir"], x["present"])
    for h in hs:
        h.remove()
    return total[0] / 1e9


def timed(fn, n, device):
    for _ in range(2):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--amp", action="store_true", help="bf16 autocast + GradScaler-free steps (cuda)")
    ap.add_argument("--presets", default="edge,paper")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--eval-only", action="store_true", help="skip the train_step timing (slow on CPU at paper size)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    warnings.simplefilter("ignore")
    print(f"device={a.device} threads={a.threads} amp={a.amp} torch={torch.__version__}")
    print(f"{'preset':8} {'size':>4} {'G params':>9} {'D params':>9} {'GMACs':>6} {'eval b1 ms':>10} {'train_step b4 ms':>16}")
    for preset in a.presets.split(","):
        m = build("spoof_trace", preset).to(a.device)
        s = m.input_size
        g = sum(p.numel() for p in m.generator_parameters()) / 1e6
        d = sum(p.numel() for p in m.discriminator_parameters()) / 1e6
        x = batch(1, s, a.device)
        m.eval()
        gmacs = count_gmacs(m, x)
        with torch.inference_mode():
            ev = timed(lambda: m(x["rgb"], x["depth"], x["ir"], x["present"]), a.steps * 3, a.device)
        if a.eval_only:
            print(f"{preset:8} {s:4d} {g:8.2f}M {d:8.2f}M {gmacs:6.2f} {ev * 1e3:10.1f} {'-':>16}")
            continue
        b4 = batch(4, s, a.device)
        opts = m.make_optimisers()
        ctx = torch.autocast(a.device, dtype=torch.bfloat16) if a.amp else torch.autocast(a.device, enabled=False)

        def step():
            with ctx:
                return m.train_step(b4, opts)

        tr = timed(step, a.steps, a.device)
        print(f"{preset:8} {s:4d} {g:8.2f}M {d:8.2f}M {gmacs:6.2f} {ev * 1e3:10.1f} {tr * 1e3:16.1f}")


if __name__ == "__main__":
    main()
