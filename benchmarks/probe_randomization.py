"""Does training on the randomised rig make a model rely less on the renderer's look? A short probe.

Trains spoof_trace (edge preset, 64 px) from scratch in up to three arms, each through the product's
own training (edge_fas.training.train), then scores every arm on the same held-out test sets:

  arms        current      the four named domains (surf, cefa, wmca, padisi), default preprocessing and
                           augmentation, validated on their own val split (how the demo model was made)
              randomised   the randomised family's training ranges (`rand`), validated on the held-out
                           ranges (`rand_heldout`), plane_mm depth, face_log IR, photometric augmentation
              rand_data    `rand` data with the current preprocessing and augmentation (separates the
                           data's effect from the training changes)
  test sets   rand_heldout (split test), named (the four named domains, split test), rand (split test)

Each arm's threshold is its own validation EER threshold, fixed before any test score is seen. The
table gives AUC with a 95% bootstrap interval, EER, BPCER and the worst species' APCER at that
threshold. The swap rows take bona fide crops of the named domains and replace one modality with a
bona fide crop of the same modality from the randomised family's held-out ranges: a model that keys on
physics keeps calling them bona fide; one that keys on a renderer's look calls them attacks.

    .venv/bin/python benchmarks/probe_randomization.py --train 600 --val 160 --test 200 --epochs 6
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "2")

from edge_fas import metrics  # noqa: E402
from edge_fas.training import evaluate_crops, load_model, load_train_config, predict, train  # noqa: E402

NAMED = ["surf", "cefa", "wmca", "padisi"]
ARMS = {
    "current": {"data.train_domains": NAMED, "data.val_domains": None},
    "randomised": {"data.train_domains": ["rand"], "data.val_domains": ["rand_heldout"],
                   "data.preprocess": {"depth_norm": "plane_mm", "ir_norm": "face_log"},
                   "data.augment_params": {"photometric": 0.8}},
    "rand_data": {"data.train_domains": ["rand"], "data.val_domains": ["rand_heldout"]},
}
TEST_SETS = {"rand_heldout": ["rand_heldout"], "named": NAMED, "rand": ["rand"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=600, help="training samples per arm (split over its domains)")
    ap.add_argument("--val", type=int, default=160)
    ap.add_argument("--test", type=int, default=200, help="samples per test set (split over its domains)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--arms", default="current,randomised,rand_data")
    ap.add_argument("--out", default="runs/probe-randomization")
    ap.add_argument("--rig-size", default="320x240")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default); 1 on a shared machine")
    args = ap.parse_args()
    w, h = (int(v) for v in args.rig_size.split("x"))
    out = Path(args.out)
    results = {}
    for arm in args.arms.split(","):
        over = dict(ARMS[arm])
        n_dom = len(over["data.train_domains"])
        val_doms = over["data.val_domains"] or over["data.train_domains"]
        over.update({"model.overrides": {"input_size": 64}, "data.rig_size": [w, h], "data.attack_mix": "uniform",
                     "data.per_domain": {"train": args.train // n_dom, "val": args.val // len(val_doms),
                                         "test": args.test},
                     "data.cache_dir": str(out / "cache"), "data.render_workers": args.workers,
                     "train.workers": args.workers,
                     "data.seed": args.seed, "train.epochs": args.epochs, "train.batch_size": 16, "train.lr": 3e-4,
                     "train.schedule": "cosine", "train.keep": "best", "train.seed": args.seed, "train.log_every": 20,
                     "train.device": args.device, "train.threads": args.threads, "out": str(out / arm)})
        cfg = load_train_config(None, over)
        ckpt = out / arm / "checkpoint.pt"
        t0 = time.perf_counter()
        if not ckpt.exists():
            print(f"== training arm {arm!r}", flush=True)
            train(cfg)
        model, info = load_model(ckpt)
        meta = info["meta"]
        thr = float(meta.get("threshold"))
        print(f"== arm {arm!r}: trained in {time.perf_counter() - t0:.0f} s, validation threshold {thr:.4f} "
              f"({meta.get('validation', {}).get('domains')})", flush=True)
        from edge_fas.training import build_data, data_params

        params, _ = data_params(cfg, 64)
        arm_res = {}
        sets = {}
        for name, doms in TEST_SETS.items():
            cfg_t = load_train_config(None, {**over, "data.per_domain": {"train": 1, "val": 1,
                                                                         "test": args.test // len(doms)}})
            crops = build_data(cfg_t, "test", params, domains=doms)
            sets[name] = crops
            res, scores = evaluate_crops(model, crops, threshold=thr)
            lo, hi = metrics.auc_interval(scores, crops.label)
            arm_res[name] = {"n": len(crops), "auc": res["auc"], "auc_95": [lo, hi], "eer": res["eer"],
                             "bpcer": res["bpcer"], "apcer_max": res["apcer_max"],
                             "apcer": {k: v for k, v in res["apcer"].items()}}
        # modality swap: named-domain bona fide with one modality from a held-out randomised bona fide
        named, held = sets["named"], sets["rand_heldout"]
        bn, bh = np.flatnonzero(named.label == 0), np.flatnonzero(held.label == 0)
        k = min(bn.size, bh.size)
        base = named.subset(bn[:k])
        base_scores = predict(model, base)
        swap = {"none": float(np.mean(base_scores >= thr))}
        for mod in ("rgb", "depth", "ir"):
            mixed = named.subset(bn[:k])
            getattr(mixed, mod)[:] = getattr(held, mod)[bh[:k]]
            swap[mod] = float(np.mean(predict(model, mixed) >= thr))
        arm_res["swap_attack_rate"] = swap
        arm_res["threshold"] = thr
        results[arm] = arm_res
    (out / "probe.json").write_text(json.dumps(results, indent=1, default=float))
    print("\nAUC [95% bootstrap], EER, and at each arm's own validation threshold BPCER / worst-species APCER")
    print(f"{'arm':12s} " + " ".join(f"{n:>38s}" for n in TEST_SETS))
    for arm, r in results.items():
        cells = [f"{r[n]['auc']:.3f} [{r[n]['auc_95'][0]:.2f},{r[n]['auc_95'][1]:.2f}] {r[n]['eer']:.2f} "
                 f"{r[n]['bpcer']:.2f}/{r[n]['apcer_max']:.2f}" for n in TEST_SETS]
        print(f"{arm:12s} " + " ".join(f"{c:>38s}" for c in cells))
    print("\nnamed-domain bona fide judged attack, with one modality swapped in from rand_heldout bona fide")
    print(f"{'arm':12s} {'none':>6s} {'rgb':>6s} {'depth':>6s} {'ir':>6s}")
    for arm, r in results.items():
        s = r["swap_attack_rate"]
        print(f"{arm:12s} " + " ".join(f"{s[m]:6.2f}" for m in ("none", "rgb", "depth", "ir")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
