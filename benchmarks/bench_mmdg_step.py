"""MMDG training step: seconds per step, host syncs per step (all of it, and inside ReGrad), batch-1
inference latency; then the step's parts, each timed in its previous form and its current one.

    .venv/bin/python benchmarks/bench_mmdg_step.py --preset paper --batch 2 --steps 2 --threads 2
    .venv/bin/python benchmarks/bench_mmdg_step.py --preset edge --batch 8 --steps 3 --device cuda

"Before" for the whole step: run this same script against an older checkout of the package
(e.g. PYTHONPATH pointing at an export of the base commit laid out as the installed package); the
script only uses the public model API for that part. The parts section compares frozen copies of the
previous implementations (below, `_before_*`) with the current ones in models/mmdg.py.

Host syncs are counted on any device by a dispatch mode that sees the operations which make the host
wait for the device on a GPU: reading a tensor's value (.item(), float(), bool(), int()), nonzero,
masked_select, unique, and indexing or assigning with a boolean mask. On CPU nothing waits, but the
same operations run, so the count is the count a CUDA run would have.
Random inputs, untrained weights (speed does not depend on them); labels half attack, three domains.
Timings on a shared machine vary: quote them with the command and the machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

SYNC_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique", "_unique2",
            "unique_consecutive", "unique_dim", "is_nonzero", "equal"}
MASK_OPS = {"index", "index_put", "index_put_", "_index_put_impl_"}


class SyncCounter(TorchDispatchMode):
    """Counts the dispatched operations that force a device-to-host synchronisation."""

    def __init__(self):
        super().__init__()
        self.count = 0
        self.by_op: dict[str, int] = {}
        self.paused = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.split("::")[-1]
        hit = name in SYNC_OPS
        if not hit and name in MASK_OPS and len(args) > 1:
            idx = args[1] if isinstance(args[1], (list, tuple)) else [args[1]]
            hit = any(torch.is_tensor(i) and i.dtype in (torch.bool, torch.uint8) for i in idx)
        if hit and not self.paused:
            self.count += 1
            self.by_op[name] = self.by_op.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


def make_batch(size: int, batch: int, device):
    g = torch.Generator().manual_seed(0)
    b = {"rgb": torch.randn(batch, 3, size, size, generator=g), "depth": torch.randn(batch, 1, size, size, generator=g),
         "ir": torch.randn(batch, 1, size, size, generator=g), "present": torch.ones(batch, 3, dtype=torch.bool),
         "label": torch.arange(batch) % 2, "domain": torch.arange(batch) % 3}
    return {k: v.to(device) for k, v in b.items()}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def whole_step(a, device):
    from edge_fas.models import build
    from edge_fas.models import mmdg

    torch.manual_seed(0)
    m = build("mmdg", a.preset).to(device)
    b = make_batch(m.input_size, a.batch, device)
    m.update_prototypes([b])
    opt = m.make_optimisers()
    m.train_step(b, opt)  # warm-up
    times = []
    for _ in range(a.steps):
        sync(device)
        t = time.perf_counter()
        m.train_step(b, opt)
        sync(device)
        times.append(time.perf_counter() - t)
    # syncs: the whole step, and the ReGrad part (whichever function this version of the code uses)
    part = "regrad_grads" if hasattr(mmdg, "regrad_grads") else "regrad"
    inner, in_regrad = getattr(mmdg, part), SyncCounter()

    def counted(*args, **kw):
        with in_regrad:
            return inner(*args, **kw)

    # Adam keeps its step counters on the CPU also when training on a GPU (torch's default), so its
    # reads of them are no device syncs: the optimiser step is left out of the count
    whole, adam_step = SyncCounter(), opt["model"].step

    def uncounted_step(*args, **kw):
        whole.paused = True
        try:
            return adam_step(*args, **kw)
        finally:
            whole.paused = False

    setattr(mmdg, part, counted)
    opt["model"].step = uncounted_step
    try:
        with whole:
            m.train_step(b, opt)
    finally:
        setattr(mmdg, part, inner)
        opt["model"].step = adam_step
    m.eval()
    x = {k: v[:1] for k, v in b.items()}
    lat = {}
    with torch.no_grad():
        for label, dtype in (("fp32", None), ("fp16", torch.float16)):
            if dtype is not None and device.type != "cuda":
                continue
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                for _ in range(3):
                    m(x["rgb"], x["depth"], x["ir"], x["present"])
                ts = []
                for _ in range(a.reps):
                    sync(device)
                    t = time.perf_counter()
                    m(x["rgb"], x["depth"], x["ir"], x["present"])
                    sync(device)
                    ts.append(time.perf_counter() - t)
            lat[label] = 1000 * statistics.median(ts)
    print(f"code: {mmdg.__file__}")
    print(f"MMDG {a.preset} ({m.input_size} px, {sum(p.numel() for p in m.parameters()) / 1e6:.1f} M params), batch {a.batch}, "
          f"{device}, {torch.get_num_threads()} thread(s)")
    print(f"  train_step: {statistics.median(times):.3f} s/step (median of {a.steps}; all: "
          f"{', '.join(f'{t:.3f}' for t in times)})")
    print(f"  host syncs per step: {whole.count} in the whole step without Adam's own step "
          f"{dict(sorted(whole.by_op.items()))}, {in_regrad.count} of them inside ReGrad ({part})")
    print("  inference batch 1: " + ", ".join(f"{k} {v:.2f} ms" for k, v in lat.items()) + f" (median of {a.reps})")


# ---- frozen copies of the previous implementations (commit b1db9b2) ------------------------------
def _before_project(g, onto):
    denom = (onto * onto).sum()
    if float(denom) <= 1e-12:
        return torch.zeros_like(g)
    return (g * onto).sum() / denom * onto


def _before_modulate(g, ref):
    proj = _before_project(g, ref)
    return proj if float((g * ref).sum()) > 0 else g - proj


def _before_regrad(grads, losses, certs, owner):
    losses = [float(x) for x in losses]
    fast = min(range(3), key=lambda i: losses[i])
    o = fast if owner is None else owner
    others = [j for j in range(3) if j != o]
    if o != fast:
        out = grads[o].clone()
        for j in others:
            out = out + float(certs[j]) * _before_modulate(grads[j], grads[o])
        return out
    s = grads[others[0]] + grads[others[1]]
    return float(certs[o]) * _before_modulate(grads[o], s) + s


def _before_mc(x, p, samples, rate):
    with torch.no_grad():
        total, squares = torch.zeros_like(x), torch.zeros_like(x)
        for _ in range(samples):
            d = F.dropout(x, p, training=True)
            total += d
            squares += d * d
        var = (squares - total * total / samples) / (samples - 1)
        return torch.exp(-rate * var.clamp(min=0).sqrt())


def _before_attention(q, k, v):
    scale = q.shape[-1] ** -0.5
    return torch.softmax((q * scale) @ k.transpose(-2, -1), dim=-1) @ v


def timed(fn, reps, device):
    fn()
    ts = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        ts.append(time.perf_counter() - t)
    return 1000 * statistics.median(ts)


def parts(a, device):
    from edge_fas.models import build, mmdg

    with torch.device("meta"):
        shape_model = build("mmdg", a.preset)
    cfg = shape_model.config
    owned = [(tuple(p.shape), o) for p, o in shape_model.trainable_owners()]
    g = torch.Generator().manual_seed(0)
    grads = [[torch.randn(s, generator=g).to(device) for s, _ in owned] for _ in range(3)]
    owners = [o for _, o in owned]
    losses, certs = torch.tensor([0.7, 0.4, 0.9], device=device), torch.tensor([0.5, 0.6, 0.3], device=device)
    print(f"\nparts ({a.preset}: {len(owned)} trainable tensors, batch {a.batch}; ms, median of {a.reps})")
    print("| part | before | now |")
    print("|---|---|---|")
    before = timed(lambda: [_before_regrad([grads[i][k] for i in range(3)], losses, certs, o)
                            for k, o in enumerate(owners)], a.reps, device)
    now = timed(lambda: mmdg.regrad_grads(grads, owners, losses, certs), a.reps, device) \
        if hasattr(mmdg, "regrad_grads") else float("nan")
    print(f"| ReGrad over every trainable tensor | {before:.1f} | {now:.1f} |")
    n, w = 1 + (cfg["input_size"] // cfg["patch_size"]) ** 2, cfg["width"]
    x = torch.randn(3 * a.batch, n, w, generator=g).to(device)
    before = timed(lambda: _before_mc(x, cfg["mc_p"], cfg["mc_samples"], cfg["exp_rate"]), a.reps, device)
    now = timed(lambda: mmdg.mc_certainty(x, cfg["mc_p"], cfg["mc_samples"], cfg["exp_rate"]), a.reps, device)
    print(f"| MC-dropout certainty of one block, 3 modalities | {before:.1f} | {now:.1f} |")
    h = cfg["heads"]
    q, k, v = (torch.randn(3 * a.batch, h, n, w // h, generator=g).to(device) for _ in range(3))
    before = timed(lambda: _before_attention(q, k, v), a.reps, device)
    now = timed(lambda: F.scaled_dot_product_attention(q, k, v), a.reps, device)
    print(f"| attention core of one block, 3 modalities | {before:.1f} | {now:.1f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="edge", choices=("edge", "paper"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--skip", choices=("step", "parts"), help="leave one section out")
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if a.skip != "step":
        whole_step(a, device)
    if a.skip != "parts":
        parts(a, device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
