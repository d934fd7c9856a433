"""`edge-fas export`: checkpoint -> artifact folder (model.onnx, checkpoint.pt, manifest.yaml), parity-checked."""

from __future__ import annotations

import sys

from edge_fas.errors import EdgeFasError
from edge_fas.runtime.precision import GATE_FRAME_SETS, bound_note
from edge_fas.runtime.quantize import SELECTION_MAX_FLIPS

HELP = "export a trained checkpoint to a verified model artifact (ONNX + manifest)"


def add_arguments(parser):
    parser.add_argument("checkpoint", help="checkpoint file written by `edge-fas train`, or an artifact folder (or "
                                           "'demo') to copy into --out with a new int8 model (--int8) or its fp16 "
                                           "gate measured again (--fp16-mixed)")
    parser.add_argument("--out", required=True, help="artifact folder to write")
    parser.add_argument("--threshold", type=float, default=None,
                        help="operating threshold (default: the one recorded in the checkpoint)")
    parser.add_argument("--parity", type=int, default=256, metavar="N",
                        help="frame sets on which PyTorch and ONNX Runtime must agree (default 256)")
    parser.add_argument("--parity-source", default="auto", choices=["auto", "synthetic", "random"],
                        help="parity inputs: synthetic-rig crops (auto when registration is available) or random crops")
    parser.add_argument("--int8", action="store_true",
                        help="also write an int8 model (explicit Q/DQ, score head in float; runs on ONNX Runtime's "
                             "CPU and TensorRT 10/11), written only if its precision gate passes; a refusal exits 2 (what "
                             "was asked for is missing) with the fp32 artifact complete, while the automatic fp16 "
                             "model's failed gate is reported and recorded but exits 0")
    parser.add_argument("--int8-mixed", action="store_true",
                        help="(with --int8) when the whole network in int8 misses the gate, keep in float the fewest "
                             "nodes, most decision-sensitive first, that bring held-out selection crops to the gate's "
                             "agreement, then gate that model (a few minutes: every node is tried alone)")
    parser.add_argument("--int8-mixed-flips", type=int, default=SELECTION_MAX_FLIPS, metavar="N",
                        help="(with --int8-mixed) decisions the chosen model may still flip on the selection crops "
                             f"(default {SELECTION_MAX_FLIPS}: a margin below the gate's 99.5%%, which 300 selection crops reach "
                             "with one flip left)")
    parser.add_argument("--fp16-mixed", action="store_true",
                        help="when the whole network in fp16 misses its gate, keep in float32 the fewest nodes, most "
                             "decision-sensitive first, that flip none of the held-out selection crops' decisions, then "
                             "gate that model (every rounding node is tried alone: about 15 minutes on two cores "
                             "for spoof_trace edge's 218 nodes, an hour for mmdg's 985). Runtime tensorrt builds "
                             "that model; PyTorch half and ONNX Runtime's TensorRT provider cast every layer to "
                             "float16 and are judged by that model's own figures (precision.fp16.every_layer). Also "
                             "takes an artifact folder, to measure its fp16 gate again into --out")
    parser.add_argument("--gate", type=int, default=GATE_FRAME_SETS, metavar="N",
                        help=f"held-out frame sets for the fp16 / int8 precision gates (default {GATE_FRAME_SETS}: the "
                             "fewest that can show 99.5%% agreement at 95%% confidence; fewer are faster and the gate "
                             "says what they could not show; 0: skip fp16)")
    parser.add_argument("--force-precision", action="store_true",
                        help="keep an fp16 / int8 model whose decision agreement with fp32 is below the gate "
                             "(recorded as forced in the manifest)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--no-checkpoint", action="store_true",
                        help="leave the PyTorch checkpoint out (smaller; the torch runtime then cannot load it)")
    parser.add_argument("--force", action="store_true", help="replace an existing artifact in --out")


def _is_artifact(path) -> bool:
    from pathlib import Path

    from edge_fas.artifact import MANIFEST
    return str(path) == "demo" or (Path(path) / MANIFEST).is_file()


def run(args) -> int:
    from edge_fas.export import export_checkpoint
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise EdgeFasError(f"--threshold {args.threshold}: an attack-score threshold lies in [0, 1]")
    if args.parity < 1:
        raise EdgeFasError("--parity must be at least 1")
    if args.gate < 0 or ((args.int8 or args.fp16_mixed) and args.gate < 1):
        raise EdgeFasError("--gate must be at least 1 with --int8 or --fp16-mixed (and not negative)")
    if args.int8_mixed and not args.int8:
        raise EdgeFasError("--int8-mixed chooses how the int8 model is made; add --int8")
    if args.int8_mixed_flips < 0 or (args.int8_mixed_flips != SELECTION_MAX_FLIPS and not args.int8_mixed):
        raise EdgeFasError("--int8-mixed-flips N (N >= 0) says how --int8-mixed chooses; add --int8 --int8-mixed")
    if _is_artifact(args.checkpoint):
        if not (args.int8 or args.fp16_mixed):
            raise EdgeFasError(f"{args.checkpoint} is an artifact, not a checkpoint: exporting it again only makes sense "
                               "to add an int8 model (--int8) or a mixed fp16 gate (--fp16-mixed); to copy it, copy "
                               "the folder")
        if args.threshold is not None:
            raise EdgeFasError("--threshold applies to a checkpoint's export; an artifact keeps its operating point "
                               "(`edge-fas adapt` or bench_operating_point.py --refit-into change it)")
        from edge_fas.export import copy_artifact
        art = copy_artifact(args.checkpoint, args.out, overwrite=args.force, include_checkpoint=not args.no_checkpoint)
        if args.fp16_mixed:
            from edge_fas.export import gate_fp16
            art = gate_fp16(art, args.gate, args.parity_source, args.force_precision, mixed=True, quiet=args.quiet)
    else:
        art = export_checkpoint(args.checkpoint, args.out, threshold=args.threshold, parity_count=args.parity,
                                include_checkpoint=not args.no_checkpoint, parity_source=args.parity_source,
                                overwrite=args.force, gate_count=args.gate, force_precision=args.force_precision,
                                quiet=args.quiet, fp16_mixed=args.fp16_mixed)
    if args.int8:
        from edge_fas.runtime.precision import PrecisionRefused
        from edge_fas.runtime.quantize import add_int8
        try:
            art = add_int8(art, eval_count=args.gate, force=args.force_precision, quiet=args.quiet,
                           mixed=args.int8_mixed, max_flips=args.int8_mixed_flips)
        except PrecisionRefused as e:  # still an error (int8 was asked for), but say what was kept
            hint = "" if args.int8_mixed else "; --int8-mixed keeps the layers the decisions are sensitive to in float"
            raise EdgeFasError(f"{e}. The fp32 artifact in {art.folder} is complete and usable; the refused int8 "
                               f"figures are kept in its manifest (precision.int8){hint}") from None
    m = art.manifest
    p = m["export"]["parity"]
    print(f"wrote {art.folder}: {m['model']['name']} ({m['model']['preset']}), input {art.input_size}px, "
          f"outputs {', '.join(m['outputs'])}")
    print(f"parity: {p['frame_sets']} frame sets, max |score diff| {p['max_abs_diff']['score']:.2e} "
          f"(limit {p['score_atol']:.0e})")
    print(f"threshold {art.threshold:.4f} (split: {m['threshold']['split']})")
    from edge_fas.operating_point import refusal_warning

    warning = refusal_warning(m.get("operating_point"))
    if warning:
        print(f"edge-fas export: warning: {warning}", file=sys.stderr)
    for name, g in (m.get("precision") or {}).items():
        if isinstance(g, dict):
            verdict = "passed" if g.get("passed") else ("FAILED, forced" if g.get("forced") else "FAILED: runtimes refuse it")
            print(f"{name} gate: {g['decision_agreement']:.2%} decision agreement with fp32 on {g['frame_sets']} "
                  f"held-out frame sets at threshold {g['threshold']:.4f} ({g['flips']} flips; {bound_note(g)}), "
                  f"needs {g['min_agreement']:.1%}: {verdict}")
    mixed = (m.get("int8") or {}).get("mixed_precision")
    if mixed:
        chosen = mixed["chosen_on"]
        whole = m["precision"]["int8"].get("whole_network_int8", {})
        print(f"int8 mixed precision: {len(mixed['float_nodes'])} nodes kept in float, chosen on {chosen['frame_sets']} "
              f"{chosen['data']} ({chosen['decision_agreement']:.2%} agreement there); the whole network in int8 "
              f"agreed on {whole.get('decision_agreement', float('nan')):.2%} of the gate's frame sets")
    every = ((m.get("precision") or {}).get("fp16") or {}).get("every_layer")
    if every:
        print(f"fp16 with every layer in float16, score head included (what PyTorch half and ONNX Runtime's TensorRT "
              f"provider run): {every['decision_agreement']:.2%} agreement ({every['flips']} flips): "
              + ("those runtimes may run fp16" if every["passed"] else "those runtimes refuse fp16"))
    mixed16 = ((m.get("precision") or {}).get("fp16") or {}).get("mixed_precision")
    if isinstance(mixed16, dict):
        chosen, whole = mixed16["chosen_on"], m["precision"]["fp16"].get("whole_network_fp16", {})
        print(f"fp16 mixed precision: {len(mixed16['float_nodes'])} nodes kept in float32, chosen on "
              f"{chosen['frame_sets']} {chosen['data']} ({chosen['decision_agreement']:.2%} agreement there); the "
              f"whole network in fp16 agreed on {whole.get('decision_agreement', float('nan')):.2%} of the gate's "
              "frame sets; runtime tensorrt builds this model")
    elif mixed16:
        print(f"fp16 mixed precision: {mixed16}")
    for name, e in m["files"].items():
        print(f"  {name}  {e['bytes']} bytes  sha256 {e['sha256'][:16]}…")
    return 0
