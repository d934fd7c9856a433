"""Inference latency / throughput of every model preset per runtime and batch size on this machine.

Untrained weights (speed does not depend on them): each model is built, exported (parity-checked)
and timed with ONNX Runtime and torch, plus the GPU variants when a GPU is present.

    nice .venv/bin/python benchmarks/bench_runtime.py                      # all models, edge + paper
    .venv/bin/python benchmarks/bench_runtime.py --models mmfas --presets edge --batch 1 --iters 20
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_fas.commands.bench import VARIANTS, bench_artifact, default_variants  # noqa: E402
from edge_fas.export import build_and_export  # noqa: E402
from edge_fas.runtime.bench import describe_machine, format_table  # noqa: E402

MODELS = ("mmfas", "mmdg", "spoof_trace", "vit", "resnet50")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--presets", default="edge,paper")
    p.add_argument("--batch", default="1,8")
    p.add_argument("--runtime", action="append", default=[], choices=sorted(VARIANTS))
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=20.0, help="per case")
    p.add_argument("--json-out", default=None, help="also write all rows to this JSON file")
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batch.split(",")]
    machine = describe_machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()), flush=True)
    rows = []
    for name in args.models.split(","):
        for preset in args.presets.split(","):
            label = f"{name}:{preset}"
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    art, model = build_and_export(name, preset, Path(tmp) / "a", parity_count=16)
                    r = bench_artifact(art, args.runtime or default_variants(art, True), batches, args, label, model)
            except Exception as e:  # one model failing to build/export must not hide the others' numbers
                print(f"{label}: FAILED {type(e).__name__}: {e}", flush=True)
                rows.append({"model": label, "failed": f"{type(e).__name__}: {e}"})
                continue
            for x in r:
                x["input_size"] = art.input_size
                x["parameters"] = art.manifest["model"]["parameters"]
            rows += r
            if args.json_out:  # after every model, so a run cut short keeps what it measured
                Path(args.json_out).write_text(json.dumps({"machine": machine, "results": rows}, indent=1))
            print(format_table([x for x in r if "skipped" not in x]).split("\n", 2)[-1], flush=True)
    done = [r for r in rows if "p50_ms" in r]
    print("\n" + format_table(done))
    for r in rows:
        if "skipped" in r or "failed" in r:
            print(f"not timed: {r['model']} {r.get('label', '')} {r.get('batch', '')}: {r.get('skipped') or r['failed']}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"machine": machine, "results": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
