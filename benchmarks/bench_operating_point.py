"""The demo model's decisions at its operating point, per attack species, with 95% intervals, on
subjects and rig seeds never used for its training or selection (synthetic rig only).

    .venv/bin/python benchmarks/bench_operating_point.py [--model demo] [--seeds 5,6] [--per-domain 90]
        [--targets eer,apcer=0.01] [--refit-into FOLDER --target apcer=0.05]

Data (all rendered by edge_fas.sim, nothing real):
- validation: the validation split of the training config `--val-config` (default: the bundled
  model's last training stage, configs/demo-silicone-2.yaml: rig seed 0, split `val`, 80 per domain at
  640x480, silicone twice as often). Calibration and every threshold are chosen here, never on the
  test data.
- test: the four named domains at rig seeds `--seeds` (default 5 and 6: other subjects' relief,
  expression and print bend, other rig intrinsics and noise; the demo model trained and validated on
  seed 0 only), split `test`, every attack species equally often, at 640x480.
  `benchmarks/bench_demo.py` scores the randomised family's held-out ranges as well.

Prints the calibration's ECE/NLL before and after on the test scores, the per-species table at the
artifact's recorded operating point (threshold from its manifest), the same for each extra target
(threshold chosen on the validation scores), and how often abstention fires. With --refit-into it
first fits calibration, operating point (--target), abstention level and map scales on the
validation split and writes them into that artifact's manifest (how the bundled demo's were made).
Timings depend on the machine; this one was a shared 2-core box.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DOMAINS = ("surf", "cefa", "wmca", "padisi")
VAL_CONFIG = ROOT / "configs" / "demo-silicone-2.yaml"


def validation_crops(params, cache_dir: str, workers: int, config=VAL_CONFIG):
    """The validation split of a training config (default: the bundled demo's), as it defines it."""
    from edge_fas.data.synthetic import synthetic_crops
    from edge_fas.sim.ranges import parse_custom
    from edge_fas.training import load_train_config

    d = load_train_config(config)["data"]
    w, h = d["rig_size"]
    return synthetic_crops(d["val_domains"] or d["train_domains"], "val", int(d["per_domain"]["val"]),
                           seed=int(d["seed"]), params=params, width=int(w), height=int(h), cache_dir=cache_dir,
                           attack_mix=d["attack_mix"], workers=workers, ranges=parse_custom(d.get("randomization")))


def test_crops(params, seeds, per_domain: int, cache_dir: str, workers: int):
    from edge_fas.data import CropSet
    from edge_fas.data.synthetic import synthetic_crops

    sets = [synthetic_crops(list(DOMAINS), "test", per_domain, seed=s, params=params, width=640, height=480,
                            cache_dir=cache_dir, attack_mix="uniform", workers=workers) for s in seeds]
    out = CropSet.concat(sets)
    out.meta = dict(sets[0].meta, seed=",".join(map(str, seeds)))
    return out


def remeasure_int8(folder) -> dict | None:
    """Re-measure the artifact's recorded int8 accuracy change at its (new) calibrated operating threshold,
    through the runtime (float32 and int8 ONNX Runtime sessions), on the same held-out synthetic crops
    `edge-fas export --int8` uses (rig seed 1, 128 frame sets); the int8 file itself is kept."""
    from edge_fas import artifact as art
    from edge_fas.runtime import load_runtime
    from edge_fas.runtime.quantize import synthetic_crops

    a = art.load_artifact(folder)
    if not a.manifest.get("int8"):
        return None
    batch, labels = synthetic_crops(128, a.preprocess, seed=1)
    f32 = load_runtime(a, kind="onnxruntime", device="cpu").infer(batch).score
    i8 = load_runtime(a, kind="onnxruntime", device="cpu", int8=True).infer(batch).score
    thr = a.threshold
    diff = np.abs(f32 - i8)
    change = {"held_out_frame_sets": int(len(labels)), "data": "synthetic rig crops, held-out seed",
              "accuracy_float32": round(float(np.mean((f32 >= thr) == (labels == 1))), 4),
              "accuracy_int8": round(float(np.mean((i8 >= thr) == (labels == 1))), 4),
              "decision_agreement": round(float(np.mean((f32 >= thr) == (i8 >= thr))), 4),
              "score_abs_diff_mean": float(f"{diff.mean():.3g}"), "score_abs_diff_max": float(f"{diff.max():.3g}"),
              "scale": "calibrated P(attack) at the operating threshold"}
    manifest = art.manifest_body(a.manifest)
    manifest["int8"] = {**manifest["int8"], "accuracy_change": change}
    art.write_manifest(a.folder, manifest, list(a.manifest["files"]))
    return change


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="demo", help="artifact folder or 'demo'")
    ap.add_argument("--seeds", default="5,6", help="rig seeds of the test data (never the training seed 0)")
    ap.add_argument("--per-domain", type=int, default=90, help="test samples per domain and seed")
    ap.add_argument("--targets", default="eer,apcer=0.01", help="extra targets to report (chosen on validation)")
    ap.add_argument("--refit-into", default=None, metavar="FOLDER",
                    help="first fit calibration + operating point on validation and write them into this artifact")
    ap.add_argument("--target", default="apcer=0.05", help="operating point written by --refit-into "
                                                           "(default apcer=0.05, the bundled demo's)")
    ap.add_argument("--val-config", default=str(VAL_CONFIG), help="training config whose validation split "
                    "calibrates and chooses thresholds (default: the bundled demo's last stage)")
    ap.add_argument("--cache-dir", default="runs/cache")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    from edge_fas import metrics
    from edge_fas import operating_point as opmod
    from edge_fas.artifact import load_artifact
    from edge_fas.score_calibration import ece, nll
    from edge_fas.scoring import load_scorer
    from edge_fas.sim import ATTACK_SPECIES

    seeds = [int(s) for s in args.seeds.split(",")]
    if 0 in seeds:
        print("note: seed 0 is the demo model's training and validation seed; its numbers are not held out")
    scorer = load_scorer(args.model, threads=1)
    t0 = time.perf_counter()
    val_crops = validation_crops(scorer.preprocess, args.cache_dir, args.workers, args.val_config)
    tst_crops = test_crops(scorer.preprocess, seeds, args.per_domain, args.cache_dir, args.workers)
    t_render = time.perf_counter() - t0
    t0 = time.perf_counter()
    val, test = scorer.score(val_crops), scorer.score(tst_crops)
    t_score = time.perf_counter() - t0
    print(f"validation: {val.data}\ntest: {test.data}\n"
          f"(rendered/loaded in {t_render:.0f} s, scored {len(val) + len(test)} crops in {t_score:.1f} s "
          f"through {scorer.name})")

    if args.refit_into:
        record = opmod.fit_decision_record(val, args.target, test, all_species=ATTACK_SPECIES)
        art = opmod.attach_to_artifact(load_artifact(args.refit_into), record)
        print(f"\nwrote calibration ({record['calibration']['method']}), operating point {args.target} "
              f"and abstention into {art.folder}/manifest.yaml")
        change = remeasure_int8(art.folder)
        if change:
            print(f"int8 at the new operating point (held-out seed 1, 128 frame sets): {change}")
        scorer = load_scorer(args.refit_into, threads=1)
        val, test = scorer.score(val_crops), scorer.score(tst_crops)

    cal = scorer.calibration
    raw = 1.0 / (1.0 + np.exp(-np.clip(test.logits, -40, 40)))
    print(f"\n## Calibration: {cal.method} {cal.params if cal.method != 'isotonic' else '(%d knots)' % len(cal.params['x'])}, "
          f"fitted on {cal.split}")
    print("| on the test scores | raw model probability | calibrated P(attack) |\n|---|---|---|")
    print(f"| ECE (15 bins) | {ece(raw, test.label):.4f} | {ece(test.score, test.label):.4f} |")
    print(f"| NLL | {nll(raw, test.label):.4f} | {nll(test.score, test.label):.4f} |")

    op = scorer.operating_point
    if op is None:
        print("\nthe artifact records no operating point; its threshold:", scorer.threshold)
        thr = scorer.threshold
        ev = opmod.evidence(test.score, test.label, test.species, thr, test.data, ATTACK_SPECIES)
        print(opmod.evidence_table(ev))
    else:
        thr = op["threshold"]
        ev = opmod.evidence(test.score, test.label, test.species, thr, test.data, ATTACK_SPECIES)
        print(f"\n## Recorded operating point: {op['target']}, threshold {thr:.4g} (validated range "
              f"[{op['validated_range'][0]:.4g}, {op['validated_range'][1]:.4g}]), chosen on {op['split']}\n")
        print(opmod.evidence_table(ev, "test"))
    ab = scorer.info.get("abstention")
    if ab and test.uncertainty is not None:
        from edge_fas.uncertainty import abstention_rates
        acc = test.score < thr
        r = abstention_rates(test.uncertainty, acc & (test.label == 0), acc & (test.label == 1), ab["level"])
        print(f"\nabstention ({ab['statistic']} > {ab['level']:.4g}) on test: unknown on {r['abstains_on_bona_fide']}/"
              f"{r['accepted_bona_fide']} accepted bona fide, {r['abstains_on_attacks']}/{r['accepted_attacks']} "
              "accepted attacks")

    for target in [t for t in args.targets.split(",") if t]:
        chosen = metrics.operating_threshold(val.score, val.label, target, val.species)
        ev = opmod.evidence(test.score, test.label, test.species, chosen["threshold"], test.data, ATTACK_SPECIES)
        print(f"\n## Target {target}: threshold {chosen['threshold']:.4g} chosen on validation (met there: "
              f"{chosen['met']}; validation BPCER {chosen['rates']['bpcer']:.1%}, APCER_max "
              f"{chosen['rates']['apcer_max']:.1%})\n")
        print(opmod.evidence_table(ev, "test"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
