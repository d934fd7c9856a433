"""`edge-fas bench`: latency p50/p95/p99 and throughput per runtime and batch size, machine described."""

from __future__ import annotations

import json
import tempfile

from edge_fas.errors import EdgeFasError

HELP = "measure inference latency and throughput of an artifact per runtime and batch size"

# variant name -> (runtime kind, device class, options)
VARIANTS = {
    "onnxruntime": ("onnxruntime", "cpu", {}),
    "onnxruntime-int8": ("onnxruntime", "cpu", {"int8": True}),
    "onnxruntime-cuda": ("onnxruntime", "cuda", {"provider": "cuda"}),
    "onnxruntime-trt": ("onnxruntime", "cuda", {"provider": "tensorrt"}),
    "torch": ("torch", "cpu", {}),
    "torch-cuda": ("torch", "cuda", {}),
    "torch-cuda-half": ("torch", "cuda", {"half": True}),
    "torch-cuda-graph": ("torch", "cuda", {"cuda_graph_batch": "B"}),
    "torch-cuda-graph-half": ("torch", "cuda", {"cuda_graph_batch": "B", "half": True}),
    "tensorrt": ("tensorrt", "cuda", {"precision": "fp16"}),
    "tensorrt-fp32": ("tensorrt", "cuda", {"precision": "fp32"}),
    "tensorrt-int8": ("tensorrt", "cuda", {"precision": "int8"}),
}


def add_arguments(parser):
    parser.add_argument("--artifact", default=None, help="artifact folder or 'demo' (default: the bundled demo)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME[:PRESET]",
                        help="bench an untrained NAME model (speed only) instead of an artifact; repeatable")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="model build override for --model (e.g. input_size=32 for a tiny CI run)")
    parser.add_argument("--runtime", action="append", default=[], choices=sorted(VARIANTS),
                        help="runtime variant(s) to time (default: every one usable here)")
    parser.add_argument("--batch", default="1,8", help="comma-separated batch sizes (default 1,8)")
    parser.add_argument("--iters", type=int, default=50, help="timed calls per runtime and batch size")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls first")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: runtime default)")
    parser.add_argument("--max-seconds", type=float, default=None, help="stop timing a case after this long")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr (implied by --json)")
    parser.add_argument("--force-precision", action="store_true",
                        help="time fp16 / int8 variants even where the artifact's precision gate failed")


def default_variants(artifact, have_model: bool = False) -> list[str]:
    from edge_fas.runtime import _cuda_devices, _has_tensorrt, _torch_cuda
    from edge_fas.runtime import precision as prec
    from edge_fas.runtime.ort import available_providers
    out = ["onnxruntime"]
    if artifact.manifest.get("int8") and (prec.recorded_gate(artifact, "int8") or {}).get("passed"):
        out.append("onnxruntime-int8")
    if artifact.checkpoint_path is not None or have_model:
        out.append("torch")
    if _cuda_devices():
        provs = available_providers()
        if "CUDAExecutionProvider" in provs:
            out.append("onnxruntime-cuda")
        if "TensorrtExecutionProvider" in provs:
            out.append("onnxruntime-trt")
        if (artifact.checkpoint_path is not None or have_model) and _torch_cuda():
            out += ["torch-cuda", "torch-cuda-half", "torch-cuda-graph", "torch-cuda-graph-half"]
        if _has_tensorrt():
            out += ["tensorrt", "tensorrt-fp32"]
    return out


def parse_override(items: list[str]) -> dict:
    import yaml
    out = {}
    for item in items:
        if "=" not in item:
            raise EdgeFasError(f"--override {item!r}: write KEY=VALUE, e.g. input_size=32")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def parity_vs_cpu(artifact, rt, batch_size: int) -> float:
    """Largest |score difference| of `rt` against float32 ONNX Runtime on the CPU, on the timed inputs."""
    import numpy as np

    from edge_fas.export import random_batch
    from edge_fas.runtime.precision import calibrated_ort_scores
    b = random_batch(rt.input_size, batch_size, np.random.default_rng(0), drop_modalities=False)
    return float(f"{np.abs(rt.infer(b).score - calibrated_ort_scores(artifact, artifact.onnx_path, b)).max():.3g}")


def bench_artifact(artifact, variants, batches, args, model_label, model=None) -> list[dict]:
    import sys

    from edge_fas.runtime import load_runtime
    from edge_fas.runtime.bench import bench_runtime
    rows = []
    quiet = getattr(args, "quiet", False) or getattr(args, "json", False)
    cases, n = len(variants) * len(batches), 0
    for v in variants:
        kind, dev, opts = VARIANTS[v]
        for b in batches:
            n += 1
            if not quiet:  # a case may first build an engine: say which one is running
                print(f"bench {model_label}: {v} batch {b} ({n}/{cases})", file=sys.stderr, flush=True)
            o = {k: (b if val == "B" else val) for k, val in opts.items()}
            if model is not None and kind == "torch":
                o["model"] = model
            if kind == "tensorrt":
                o.update(quiet=quiet, max_batch=max(8, b))
            if getattr(args, "force_precision", False) and kind != "torch":
                o["force_precision"] = True
            rt = None
            try:  # any failure of one variant (a missing library, a removed API, a refused gate) skips it
                rt = load_runtime(artifact, kind=kind, device="cpu" if dev == "cpu" else "cuda:0",
                                  threads=args.threads if kind != "tensorrt" else 0, warmup=(b,), **o)
                r = bench_runtime(rt, b, iters=args.iters, warmup=args.warmup, max_seconds=args.max_seconds)
                r["parity_vs_fp32_cpu"] = parity_vs_cpu(artifact, rt, b)
            except Exception as e:  # noqa: BLE001
                msg = str(e) if isinstance(e, EdgeFasError) else f"{type(e).__name__}: {e}"
                rows.append({"model": model_label, "label": v, "batch": b, "skipped": msg})
                continue
            finally:
                if rt is not None:
                    rt.close()
            # the label says what really ran: the provider read back from ONNX Runtime, not the one asked for
            runs_on = getattr(rt, "providers", [rt.device])[0]
            r.update(model=model_label, label=v, runs_on=runs_on, reason=rt.reason)
            rows.append(r)
    return rows


def run(args) -> int:
    from edge_fas.runtime import load_artifact
    from edge_fas.runtime.bench import describe_machine, format_table
    try:
        batches = [int(x) for x in args.batch.split(",") if x.strip()]
    except ValueError:
        raise EdgeFasError(f"--batch {args.batch!r}: give comma-separated integers like 1,8") from None
    if not batches or min(batches) < 1:
        raise EdgeFasError("--batch needs positive batch sizes")
    rows = []
    if args.model:
        from edge_fas.export import build_and_export
        overrides = parse_override(args.override)
        for spec in args.model:
            name, _, preset = spec.partition(":")
            with tempfile.TemporaryDirectory() as tmp:
                art, model = build_and_export(name, preset or "edge", tmp, parity_count=8, **overrides)
                rows += bench_artifact(art, args.runtime or default_variants(art, True), batches, args,
                                       f"{name}:{preset or 'edge'}", model)
    else:
        art = load_artifact(args.artifact or "demo")
        label = f"{art.model_name}:{art.manifest['model'].get('preset')}"
        rows += bench_artifact(art, args.runtime or default_variants(art), batches, args, label)
    machine = describe_machine()
    if args.json:
        print(json.dumps({"machine": machine, "results": rows}, indent=1))
        return 0
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()))
    done = [r for r in rows if "skipped" not in r]
    if done:
        print(format_table(done))
    for r in rows:
        if "skipped" in r:
            print(f"skipped {r['label']} batch {r['batch']}: {r['skipped']}")
    return 0 if done else 1
