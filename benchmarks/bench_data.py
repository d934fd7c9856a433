"""Data at dataset scale: memory of a streamed training epoch, crop-cache build and read rates.

    python benchmarks/bench_data.py                       # MMDG Protocol 1 (cps-w) sizes, 1x and 4x
    python benchmarks/bench_data.py --scales 1 --steps 20 --cache-samples 600 --keep /tmp/fas-tree

The data is GENERATED, in a temporary folder (or --root DIR), never in the repository: an MMDG-Benchmark
tree in the releases' layouts (tests/fas_tree.py's naming) whose lists have the real MMDG Protocol 1
line counts (github.com/OMGGGGG/mmdg, MMDG-Benchmark/*.txt: C-train 4800 lines, S-test 12564, ...), with
640x480 JPEG colour/depth/IR triplets (a face-like ellipse over textured noise, quality 90) and PADISI
npz files of the release's shape (1, 22, 320, 256). A pool of --pool distinct files is hard-linked
under every listed name, so the tree costs little disk; the files therefore read from the page cache.
--scales 4 repeats every list four times under new names (4x the samples, the same pixels).

Per scale, in a fresh process (its peak memory is its own):
- indexing: every train, val and test sample of the protocol (train C+P+S 12,187, val 4,773, test W 1,671
  at 1x), time and the index's bytes;
- a training epoch at 224 px, streamed as `edge-fas train` streams it (edge_fas.training.training_loader:
  augmented class-balanced batches of --batch decoded from the JPEGs by --workers processes, no crop
  cache), cut short at --steps optimiser steps of the mmFAS edge model at 224 px (--threads torch
  threads), then --val-batches
  batches of the streamed validation set. Peak memory is sampled every 0.2 s over the whole process
  tree (the training process, the forkserver and its workers): RSS summed (counts shared pages once
  per process) and PSS summed (shared pages split between their users: the honest total).
  Nothing in the loop is kept per sample except the index and an 8-byte score per validation sample, so
  a full epoch's peak is this one's plus those bytes.
And at 1x, on --cache-samples training samples spread over the list (every dataset of the mix):
- the first pass into an empty crop cache with --workers processes (decode, cut, write): samples/s;
- reading them back through the training loader (augmented, batches of 32, --workers processes,
  --read-epochs passes), and without augmentation, and decoding the JPEGs without the cache (one pass):
  samples/s after the first batch;
- bytes per cache entry.
Prints the load average with every number: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# MMDG-Benchmark list lines per split and how many are label 1 (bona fide in those lists), counted in
# github.com/OMGGGGG/mmdg at the commit the search tool holds
SIZES = {"C": {"train": (4800, 1200), "val": (2401, 601), "test": (6739, 1200)},
         "P": {"train": (1090, 597), "val": (272, 145), "test": (667, 363)},
         "S": {"train": (6297, 900), "val": (2100, 300), "test": (12564, 1800)},
         "W": {"train": (1695, 372), "val": (1671, 324), "test": (1671, 345)}}
MODEL = {"name": "mmfas", "preset": "edge", "overrides": {"input_size": 224}}


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


# ---- the generated tree -------------------------------------------------------------------------

def _pool(folder: Path, n: int) -> list[tuple[Path, Path, Path]]:
    """n distinct 640x480 JPEG triplets: colour, 8-bit depth (brighter = nearer), IR."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    yy, xx = np.mgrid[0:480, 0:640]
    for k in range(n):
        cx, cy, ax, ay = 320 + rng.integers(-60, 60), 240 + rng.integers(-40, 40), rng.integers(110, 150), rng.integers(150, 190)
        face = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1.0
        tex = cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), np.uint8), (0, 0), 2.0)
        rgb = np.where(face[..., None], (0.6 * np.array([200, 160, 140]) + 0.4 * tex).astype(np.uint8), tex)
        depth = np.where(face, 200 - ((xx - cx) ** 2 + (yy - cy) ** 2) // 900, 40).clip(1, 255).astype(np.uint8)
        ir = np.where(face, 170, 60).astype(np.uint8) + rng.integers(0, 20, (480, 640), np.uint8)
        files = []
        for name, img in (("rgb", rgb[..., ::-1]), ("depth", depth), ("ir", ir)):
            p = folder / f"{k:03d}-{name}.jpg"
            cv2.imwrite(str(p), np.ascontiguousarray(img), [cv2.IMWRITE_JPEG_QUALITY, 90])
            files.append(p)
        out.append(tuple(files))
    return out


def _npz_pool(folder: Path, n: int) -> list[Path]:
    import numpy as np

    rng = np.random.default_rng(1)
    out = []
    for k in range(n):
        p = folder / f"padisi-{k:03d}.npz"
        np.savez(p, data=rng.uniform(0.05, 0.95, (1, 22, 320, 256)).astype(np.float32))
        out.append(p)
    return out


def _line_paths(letter: str, split: str, bona: bool, k: int) -> list[str]:
    """The listed colour, depth and IR paths of sample k (tests/fas_tree.py's naming)."""
    i = {"train": 0, "val": 1, "test": 2}[split]
    if letter == "C":
        video = f"1_{i:03d}_1_1_1" if bona else f"1_{i:03d}_3_1_2"
        return [f"CeFA/CeFA-Race/AF/AF-{i:03d}/{video}/{m}/{k:06d}.jpg" for m in ("profile", "depth", "ir")]
    if letter == "S":
        part = f"real_part/real_{split}_part/CLKJ_AS{i:04d}/real.rssdk" if bona else \
            f"fake_part/fake_{split}_part/CLKJ_AS{i:04d}/01_e_s.rssdk"
        return [f"CASIA-SURF-CROP/{part}/{m}/{k:06d}.jpg" for m in ("color", "depth", "ir")]
    name = f"{i + 1:03d}_01_000_0_00" if bona else f"{i + 1:03d}_01_000_3_01"
    return [f"WMCA-Image/R_CDIT/{name}/{m}/{k:06d}.jpg" for m in ("color", "depth", "ir")]


def generate(root: Path, scale: int, protocol: str, pool: int) -> Path:
    """The protocol's lists at `scale` x the real sizes, every listed file a hard link into the pool."""
    from edge_fas.data.protocols import get_protocol

    pr = get_protocol(protocol)
    t0 = time.perf_counter()
    images, arrays = _pool(root / "pool", pool), _npz_pool(root / "pool", max(2, pool // 8))
    tree = root / f"x{scale}"
    lists = tree / "MMDG-Benchmark"
    lists.mkdir(parents=True, exist_ok=True)
    need = [(x, s) for x in pr.train for s in ("train", "val")] + [(x, "test") for x in pr.test]
    links = 0
    for letter, split in need:
        n, n_bona = SIZES[letter][split]
        lines = []
        for k in range(n * scale):
            bona = (k % n) < n_bona
            if letter == "P":
                name = f"z{split[:2]}{k:07d}.npz"
                target = tree / "PADISI" / name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(arrays[k % len(arrays)], target)
                links += 1
                lines.append(f"{name}\t{1 if bona else 0}")
                continue
            listed = _line_paths(letter, split, bona, k)
            for src, rel in zip(images[k % len(images)], listed):
                target = tree / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(src, target)
                links += 1
            lines.append(" ".join(listed) + f" {1 if bona else 0}")
        (lists / f"{letter}-{split}.txt").write_bytes("\r\n".join(lines).encode())  # the official CRLF lists
    print(f"generated {tree}: {links} hard links to {len(images)} JPEG triplets and {len(arrays)} npz files in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    return tree


# ---- memory of the process tree -------------------------------------------------------------------

def _tree_pids(pid: int) -> list[int]:
    parents = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parents.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += parents.get(p, [])
    return out


def _kib(path: str, field: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakMemory:
    """Peak RSS and PSS summed over this process and its descendants, sampled on a thread."""

    def __init__(self, every_s: float = 0.2):
        self.rss = self.pss = 0
        self.every_s, self.stop = every_s, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            pids = _tree_pids(os.getpid())
            self.rss = max(self.rss, sum(_kib(f"/proc/{p}/status", "VmRSS:") for p in pids))
            self.pss = max(self.pss, sum(_kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids))
            self.stop.wait(self.every_s)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


# ---- phases (each in its own process) -------------------------------------------------------------

def _make_config(tree: Path, protocol: str, workers: int, batch: int, cache_dir=None) -> dict:
    from edge_fas.training import apply_overrides, load_train_config, protocol_config

    base = load_train_config(None)
    cfg = protocol_config(protocol, MODEL["name"], MODEL["preset"], base, synthetic=False, root=str(tree))
    return apply_overrides(cfg, {"model.overrides": MODEL["overrides"], "train.workers": workers,
                                 "train.batch_size": batch, "train.device": "cpu", "train.progress": False,
                                 "data.crop_cache": cache_dir is not None,
                                 "data.cache_dir": str(cache_dir or tree / "unused-cache")})


def phase_epoch(args) -> dict:
    import numpy as np
    import torch

    from edge_fas.data.build import split_index, test_indices
    from edge_fas.data.stream import StreamDataset, make_loader
    from edge_fas.models import build
    from edge_fas.preprocess import PreprocessParams
    from edge_fas.training import train_domain_names, training_loader

    cfg = _make_config(Path(args.tree), args.protocol, args.workers, args.batch)
    torch.set_num_threads(args.threads)  # train.threads
    out = {"scale": args.scale, "load_start": load()}
    with PeakMemory() as peak:
        t = time.perf_counter()
        train_set, val_set = split_index(cfg["data"], "train"), split_index(cfg["data"], "val")
        tests = test_indices(cfg["data"])
        out["index_s"] = time.perf_counter() - t
        out["samples"] = {"train": len(train_set), "val": len(val_set), **{f"test {k}": len(v) for k, v in tests.items()}}
        out["index_mib"] = sum(ix.nbytes for ix in (train_set, val_set, *tests.values())) / 2**20
        torch.manual_seed(0)
        model = build(MODEL["name"], MODEL["preset"], **MODEL["overrides"])
        params = PreprocessParams(size=int(model.input_size))
        opt = model.make_optimisers()
        domain_ids = {d: k for k, d in enumerate(train_domain_names(cfg))}
        _, _, loader = training_loader(cfg, train_set, params, None, domain_ids)
        t, seen = time.perf_counter(), 0
        for step, batch in enumerate(loader):
            if step >= args.steps:
                break
            model.train_step(batch, opt)
            seen += int(batch["label"].shape[0])
        out["train_samples_per_s"] = seen / (time.perf_counter() - t)
        del loader
        model.eval()
        val_loader = make_loader(StreamDataset(val_set, params, None, domain_ids=domain_ids), 64,
                                 workers=args.workers, persistent=False)
        scores = np.full(len(val_set), np.nan)  # what a full validation pass keeps per sample
        with torch.no_grad():
            for k, b in enumerate(val_loader):
                if k >= args.val_batches:
                    break
                scores[b["index"].numpy()] = model(b["rgb"], b["depth"], b["ir"], b["present"])["score"].numpy()
        del val_loader
    out.update(peak_tree_rss_mib=peak.rss / 1024, peak_tree_pss_mib=peak.pss / 1024,
               peak_main_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               model_mib=sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20, load_end=load())
    return out


def _rate(loader, epochs: int = 1) -> float:
    """samples/s over `epochs` passes of a loader, from the end of its first batch (worker start-up
    excluded)."""
    n, t = 0, None
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        for b in loader:
            if t is None:
                t = time.perf_counter()
                continue
            n += int(b["label"].shape[0]) if b is not None else 0
    return n / (time.perf_counter() - t)


def phase_cache(args) -> dict:
    import numpy as np

    from edge_fas.data.build import split_index
    from edge_fas.data.cache import CropCache
    from edge_fas.data.stream import BalancedSampler, StreamDataset, fill_cache, make_loader
    from edge_fas.preprocess import PreprocessParams
    from edge_fas.training import training_loader

    cache_dir = Path(args.cache_dir)
    cfg = _make_config(Path(args.tree), args.protocol, args.workers, 32, cache_dir)
    train_set = split_index(cfg["data"], "train")
    pick = np.unique(np.linspace(0, len(train_set) - 1, args.cache_samples).round().astype(int))
    sub = train_set.subset(pick)
    params = PreprocessParams(size=MODEL["overrides"]["input_size"])
    cache = CropCache(cache_dir / "crops")
    out = {"cache_samples": len(sub), "mix": {d: int((sub.domain == d).sum()) for d in sorted(set(sub.domain))},
           "load_start": load()}
    t = time.perf_counter()
    statuses = list(fill_cache(StreamDataset(sub, params, cache), args.workers))
    out["build_samples_per_s"] = len(statuses) / (time.perf_counter() - t)
    out["built"] = sum(s.startswith("built") for s in statuses)
    out["load_after_build"] = load()
    entries = list(cache.root.glob("*/*.npz"))
    out["entry_kib"] = sum(p.stat().st_size for p in entries) / max(len(entries), 1) / 1024
    _, _, loader = training_loader(cfg, sub, params, cache, None)  # what `edge-fas train` reads, augmented
    out["read_augmented_samples_per_s"] = _rate(loader, args.read_epochs)
    del loader
    plain = make_loader(StreamDataset(sub, params, cache), 32, sampler=BalancedSampler(sub.label, 32, seed=1),
                        workers=args.workers)
    out["read_plain_samples_per_s"] = _rate(plain, args.read_epochs)
    del plain
    out["load_after_reads"] = load()
    nocache = make_loader(StreamDataset(sub, params, None, augment=True), 32, sampler=BalancedSampler(sub.label, 32),
                          workers=args.workers)
    out["decode_jpeg_augmented_samples_per_s"] = _rate(nocache, 1)
    out["load_end"] = load()
    return out


def _run_phase(name: str, args, **extra) -> dict:
    cmd = [sys.executable, __file__, "--phase", name, "--protocol", args.protocol, "--workers", str(args.workers),
           "--batch", str(args.batch), "--steps", str(args.steps), "--val-batches", str(args.val_batches),
           "--cache-samples", str(args.cache_samples), "--read-epochs", str(args.read_epochs),
           "--threads", str(args.threads)]
    for k, v in extra.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--protocol", default="mmdg-p1-cps-w", help="an MMDG protocol (its lists are generated)")
    ap.add_argument("--scales", default="1,4", help="dataset sizes, multiples of the real list sizes")
    ap.add_argument("--root", default=None, help="folder for the generated tree (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the generated tree and cache")
    ap.add_argument("--pool", type=int, default=24, help="distinct JPEG triplets hard-linked under the listed names")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16, help="training batch")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads of the training process (train.threads; on 2 busy cores 2 threads made a step "
                         "10x slower than 1 here)")
    ap.add_argument("--steps", type=int, default=40, help="training steps of the measured epoch")
    ap.add_argument("--val-batches", type=int, default=10, help="validation batches (of 64) of the measured epoch")
    ap.add_argument("--cache-samples", type=int, default=1200, help="training samples put in the crop cache")
    ap.add_argument("--read-epochs", type=int, default=2, help="passes over them for the cache read rates")
    ap.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--tree", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--scale", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--cache-dir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        print(json.dumps({"epoch": phase_epoch, "cache": phase_cache}[args.phase](args)), flush=True)
        return
    print(f"bench_data: {args.protocol}, generated data, {os.cpu_count()} cores, {load()}", flush=True)
    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="edge-fas-bench-data-"))
    try:
        scales = [int(s) for s in args.scales.split(",")]
        trees = {s: generate(root, s, args.protocol, args.pool) for s in scales}
        for s in scales:
            r = _run_phase("epoch", args, tree=trees[s], scale=s)
            print(f"{s}x: {r['samples']}; index {r['index_s']:.1f} s, {r['index_mib']:.1f} MiB; epoch at 224 px "
                  f"({args.steps} steps of {args.batch}, {args.val_batches} val batches of 64, {args.workers} workers, "
                  f"{args.threads} torch thread(s), "
                  f"JPEG decoding): peak PSS {r['peak_tree_pss_mib']:.0f} MiB over the process tree (RSS summed "
                  f"{r['peak_tree_rss_mib']:.0f} MiB, training process {r['peak_main_rss_mib']:.0f} MiB, model "
                  f"{r['model_mib']:.0f} MiB); {r['train_samples_per_s']:.1f} training samples/s; {r['load_start']} "
                  f"-> {r['load_end']}", flush=True)
        c = _run_phase("cache", args, tree=trees[min(scales)], cache_dir=root / "cache")
        print(f"crop cache, {c['cache_samples']} training samples {c['mix']}: first pass {c['build_samples_per_s']:.1f} "
              f"samples/s with {args.workers} workers ({c['load_start']} -> {c['load_after_build']}); "
              f"{c['entry_kib']:.0f} KiB per entry; read back {c['read_augmented_samples_per_s']:.1f} samples/s "
              f"augmented, {c['read_plain_samples_per_s']:.1f} plain ({c['load_after_reads']}); decoding the JPEGs "
              f"instead {c['decode_jpeg_augmented_samples_per_s']:.1f} samples/s ({c['load_end']})", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")


if __name__ == "__main__":
    main()
