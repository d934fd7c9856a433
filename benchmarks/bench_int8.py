"""Why an artifact's int8 model does or does not make float32's decisions: calibration recipes compared, the
parts of the network the decisions are sensitive to, and where the flipped frames' scores lie.

    .venv/bin/python benchmarks/bench_int8.py --model ARTIFACT [--calib 256] [--keep-float PART[,PART]]
    .venv/bin/python benchmarks/bench_int8.py --model ARTIFACT --check 600 [--seed 2]
    .venv/bin/python benchmarks/bench_int8.py --model ARTIFACT --tails 20

Uses the data `edge-fas export --int8` uses (edge_fas.runtime.quantize.add_int8): calibration crops from
synthetic-rig seed 0, the first 128 of the gate's held-out crops from seed 1 (named domains and the randomised
family's held-out ranges; the export gates on 600), decisions at the artifact's operating point. It prints, each
with the decision agreement, the flips and the mean |change| of the calibrated score:
1. the export's recipe (symmetric Q/DQ, MinMax on 64 crops) and the alternatives: MinMax, Percentile and
   Entropy calibration on `--calib` crops;
2. one part of the network at a time quantised (the rest in float), parts being the modules under the top
   level (encoders, decoders, fusion, classifier): where the flips come from;
3. the flipped frames: their label, float32 and int8 scores, and the share of the gate set whose
   float32 score lies closer to the threshold than theirs (a flip far from the threshold is a large int8
   error; one among many scores at the threshold is a crowded operating point);
4. with `--keep-float PART[,PART]`, instead of 1-3: those parts left in float, the rest quantised, on the gate
   crops and on 128 other crops of seed 0 (not the calibration crops). Parts chosen by reading sections 2-3
   were chosen on the gate crops, so only the second figure is unbiased;
5. with `--check N`, instead of 1-4: the artifact's own int8 model when it has one that its gate passed
   (what the runtimes run; a mixed-precision one included), else the export's recipe, on the gate crops and on
   N crops of seed `--seed` (default 2; the randomised family's held-out ranges and the named domains, like the
   gate; rendered by neither the export, nor its mixed-precision choice (seeds 3 and 38), nor sections 1-4), with the
   agreement's 95% Clopper-Pearson interval: a larger, untouched sample for a model changed to pass the gate;
   and the fp16 model's agreement on those N crops with its 95% lower bound (600 or more can show 99.5%); with
   `--against OTHER` also OTHER's int8 model (same float model, another int8 recipe) on the same crops, paired;
6. with `--tails N`, instead of 1-5: the N quantised inputs with the heaviest tails on the calibration crops
   (max |x| over its 99.9th percentile, and the median): per-tensor int8 spends its 255 steps on the
   maximum, so a tensor whose maximum is 10x its 99.9th percentile rounds its typical values to zero.
Synthetic rig only; ONNX Runtime on the CPU (TensorRT's int8 kernels round differently; its engine is gated
again when built).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def part_of(node_name: str) -> str:
    """'/model/ir/up4/up4.0/ConvTranspose' -> 'ir' (the module under the top level)."""
    parts = [p for p in node_name.split("/") if p]
    return parts[1] if len(parts) > 2 and parts[0] == "model" else parts[0]


def heavy_tails(model, calib: dict) -> list[tuple]:
    """(max/p99.9, max, p99.9, median, first reader, readers) of |x| for every input tensor of a quantised
    node, over the calibration crops, heaviest first (the float model run with those tensors as outputs)."""
    import onnx
    import onnxruntime as ort

    from edge_fas.runtime import quantize as q

    model = onnx.ModelProto.FromString(model.SerializeToString())
    readers = defaultdict(list)
    for n in model.graph.node:
        if n.op_type in q.QDQ_OPS:
            readers[n.input[0]].append(n.name)
    inputs = {i.name for i in model.graph.input}
    for t in readers:
        if t not in inputs:
            model.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    seen = defaultdict(list)
    for feed in q._split({k: v for k, v in calib.items() if k in inputs}, 8):
        values = {**feed, **dict(zip(names, session.run(None, feed)))}
        for t in readers:
            seen[t].append(np.abs(values[t]).ravel())
    rows = []
    for t, who in readers.items():
        x = np.concatenate(seen[t])
        p999 = float(np.percentile(x, 99.9))
        rows.append((float(x.max()) / max(p999, 1e-12), float(x.max()), p999, float(np.median(x)), who[0], len(who)))
    return sorted(rows, reverse=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="an artifact folder")
    ap.add_argument("--calib", type=int, default=256, help="calibration crops for the alternative recipes")
    ap.add_argument("--keep-float", default="", help="parts (as section 2 names them) to leave in float, comma separated")
    ap.add_argument("--tails", type=int, default=0, metavar="N",
                    help="only the N quantised inputs with the heaviest tails on the calibration crops")
    ap.add_argument("--check", type=int, default=0, metavar="N",
                    help="only the artifact's int8 model (or the export's recipe), on the gate crops and on N crops "
                         "of --seed, with intervals")
    ap.add_argument("--seed", type=int, default=2, help="rig seed of --check's crops (not 0, 1, 3 or 38: export uses them)")
    ap.add_argument("--against", default=None, metavar="ARTIFACT",
                    help="with --check: another artifact of the same float model whose int8 model is scored on the "
                         "same crops, paired (which crops each flips): two int8 recipes compared")
    args = ap.parse_args()

    import onnx

    from edge_fas import artifact as art
    from edge_fas.metrics import binomial_interval
    from edge_fas.runtime import precision as prec
    from edge_fas.runtime import mixed_precision
    from edge_fas.runtime import quantize as q

    if args.check and args.seed in (0, 1, mixed_precision.SELECTION_SEED, mixed_precision.CONFIRM_SEED):
        print(f"--seed {args.seed}: export renders that seed (calibration 0, gate 1, mixed-precision choice "
              f"{mixed_precision.SELECTION_SEED} and its confirmation {mixed_precision.CONFIRM_SEED}); pick another",
              file=sys.stderr)
        return 2
    artifact = art.load_artifact(args.model)
    rival = None
    if args.against:
        rival = art.load_artifact(args.against)
        why = None
        if not args.check:
            why = "--against needs --check"
        elif art.sha256_file(rival.onnx_path) != art.sha256_file(artifact.onnx_path):
            why = f"{args.against}'s model.onnx is not {args.model}'s: --against compares int8 recipes of one float model"
        elif not (prec.recorded_gate(rival, "int8") or {}).get("passed"):
            why = f"{args.against} has no int8 model that passed its gate"
        if why:
            print(why, file=sys.stderr)
            return 2
    model = onnx.load(str(artifact.onnx_path))
    quantisable = [n.name for n in model.graph.node if n.op_type in q.QDQ_OPS and n.name]
    by_part = defaultdict(list)
    for name in quantisable:
        by_part[part_of(name)].append(name)
    parts = [p for p in args.keep_float.split(",") if p]
    unknown = sorted(set(parts) - set(by_part))
    if unknown:
        print(f"--keep-float: no part named {unknown}; the parts are {', '.join(by_part)}", file=sys.stderr)
        return 2
    kept = [n for p in parts for n in by_part[p]]
    if args.tails:
        calib, _ = q.synthetic_crops(64, artifact.preprocess, seed=0)
        print(f"6. the {args.tails} quantised inputs with the heaviest tails (64 calibration crops of seed 0; synthetic rig)")
        for ratio, top, p999, median, name, readers in heavy_tails(model, calib)[:args.tails]:
            print(f"  max/p99.9 {ratio:6.1f}  max {top:9.3f}  p99.9 {p999:8.3f}  median {median:8.4f}  read by {name}"
                  + (f" (+{readers - 1} more)" if readers > 1 else ""))
        return 0
    start = time.time()
    calib, _ = q.synthetic_crops(64 if args.check else max(args.calib, 64), artifact.preprocess, seed=0)
    gate, labels = q.synthetic_crops(128, artifact.preprocess, seed=1)
    thr = prec.operating_threshold(artifact)
    f32 = prec.calibrated_ort_scores(artifact, artifact.onnx_path, gate)
    other = None
    if args.keep_float or args.check:  # --check takes precedence
        batch, other_labels = q.synthetic_crops(args.check, artifact.preprocess, seed=args.seed) if args.check else \
            q.synthetic_crops(128, artifact.preprocess, seed=0, offset=5000)
        other = (batch, other_labels, prec.calibrated_ort_scores(artifact, artifact.onnx_path, batch))
    print(f"{args.model}: threshold {thr:.4g} (calibrated P(attack)); {len(labels)} gate crops "
          f"({int((labels == 0).sum())} bona fide); crops rendered in {time.time() - start:.0f} s; synthetic rig")

    scratch = tempfile.TemporaryDirectory(prefix="bench-int8-")  # removed when main returns
    work = Path(scratch.name)

    own = artifact.manifest.get("int8") if (prec.recorded_gate(artifact, "int8") or {}).get("passed") else None

    def measure(label: str, n_calib: int, method: str = "minmax", keep_float=(), on=None, shipped=False) -> np.ndarray:
        batch, truth, ref = on or (gate, labels, f32)
        dst = work / "candidate.onnx"
        if shipped:
            dst = artifact.folder / own["file"]
        else:
            q.quantize_onnx(artifact.onnx_path, dst, {k: v[:n_calib] for k, v in calib.items()},
                            keep_float=keep_float, method=method)
        i8 = prec.calibrated_ort_scores(artifact, dst, batch)
        f = prec.compare(ref, i8, thr, truth)
        lo, hi, _ = binomial_interval(f["flips"], f["frame_sets"])
        print(f"  {label:44s} agreement {f['decision_agreement']:.4f} [{1 - hi:.4f}, {1 - lo:.4f}]  flips "
              f"{f['flips']:3d}  mean |change| {f['score_abs_diff_mean']:.4f}", flush=True)
        return i8

    if args.check:
        if own:
            kept = len((own.get("mixed_precision") or {}).get("float_nodes") or [])
            print(f"5. the artifact's own {own['file']} ({kept} nodes kept in float besides the score head); agreement "
                  "with its 95% interval")
        else:
            print("5. the export's recipe (MinMax, 64 crops of seed 0); agreement with its 95% interval")
        measure(f"on the gate crops (seed 1, {len(labels)})", 64, shipped=bool(own))
        mine = measure(f"on {args.check} crops of seed {args.seed}", 64, on=other, shipped=bool(own))
        batch, truth, ref = other
        if rival is not None:
            theirs = prec.calibrated_ort_scores(rival, rival.folder / rival.manifest["int8"]["file"], batch)
            f = prec.compare(ref, theirs, thr, truth)
            lo, hi, _ = binomial_interval(f["flips"], f["frame_sets"])
            kept = len((rival.manifest["int8"].get("mixed_precision") or {}).get("float_nodes") or [])
            print(f"   --against {args.against}'s int8 ({kept} nodes in float) on the same crops: agreement "
                  f"{f['decision_agreement']:.4f} [{1 - hi:.4f}, {1 - lo:.4f}], flips {f['flips']}")
            base = ref >= thr
            a, b = (mine >= thr) != base, (theirs >= thr) != base
            print(f"   paired: flipped by {args.model} only {int((a & ~b).sum())}, by {args.against} only "
                  f"{int((b & ~a).sum())}, by both {int((a & b).sum())}")
        f16 = prec.calibrated_ort_scores(artifact, prec.fp16_emulation_onnx(artifact.onnx_path, work / "model.fp16.onnx", prec.fp16_float_nodes(artifact)), batch)
        f = prec.compare(ref, f16, thr, truth)
        n16 = len(prec.fp16_float_nodes(artifact))
        print(f"   fp16 (the model TensorRT builds{f', {n16} nodes in float32' if n16 else ''}) on the same "
              f"{args.check} crops: agreement "
              f"{f['decision_agreement']:.4f}, flips {f['flips']}, mean |change| {f['score_abs_diff_mean']:.5f}; "
              f"{prec.bound_note({**f, 'min_agreement': prec.MIN_AGREEMENT})}")
        return 0

    if args.keep_float:
        print(f"4. {', '.join(parts)} ({len(kept)} nodes) kept in float, the rest quantised (MinMax, 64 crops, as export)")
        measure("on the gate crops (seed 1)", 64, keep_float=kept)
        measure("on 128 other crops of seed 0", 64, keep_float=kept, on=other)
        return 0

    print("1. recipes")
    export_scores = measure("export's: MinMax, 64 crops", 64)
    for method in q.CALIBRATION_METHODS:
        measure(f"{method}, {args.calib} crops", args.calib, method)
    print(f"2. one part quantised at a time (MinMax, {args.calib} crops)")
    for part, names in by_part.items():
        others = [n for n in quantisable if n not in set(names)]
        measure(f"{part} ({len(names)} nodes)", args.calib, keep_float=others)
    print("3. the export recipe's flips")
    flipped = np.flatnonzero((f32 >= thr) != (export_scores >= thr))
    distance = np.abs(f32 - thr)
    for i in flipped:
        closer = float(np.mean(distance < distance[i]))
        print(f"  crop {i:3d} {'attack' if labels[i] else 'bona fide':9s} float32 {f32[i]:.4f}  int8 "
              f"{export_scores[i]:.4f}  ({100 * closer:.0f}% of the gate set lies closer to the threshold)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
