"""`edge-fas eval CHECKPOINT`: score the test sets and write the report folder (JSON, Markdown, CSV, PNGs).

    edge-fas eval runs/x/checkpoint.pt --out runs/x/eval --domains wmca                  # synthetic rig
    edge-fas eval runs/x/checkpoint.pt --out R --protocol mmdg-p1-cps-w --data-root DIR  # real datasets
    edge-fas eval runs/x/checkpoint.pt --out R --sessions DIR                            # recorded sessions

The test sets come from edge_fas.data.build.test_indices and stream through the crop cache (decoded in
--workers processes, never all in memory); each is scored once, then reported. A
protocol with one test set writes its report into --out; one with several (mmfas-cross, MMDG Protocol 3)
writes OUT/<test set>/ per set plus OUT/summary.json and OUT/summary.md (with the papers'
image-weighted average where the protocol has one). Every report says what data it was computed on.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import yaml

from edge_fas.commands.train import add_data_arguments, print_protocols

HELP = "evaluate a checkpoint on a protocol's test sets, synthetic domains or sessions (ISO/IEC 30107-3 report)"


def add_arguments(parser):
    parser.add_argument("checkpoint", nargs="?", help="checkpoint written by `edge-fas train`")
    parser.add_argument("--out", help="report folder to write")
    add_data_arguments(parser)
    parser.add_argument("--domains", default=None,
                        help="synthetic test domains, comma separated (default: the checkpoint's training domains)")
    parser.add_argument("--sessions", default=None, metavar="DIR[,DIR]",
                        help="evaluate on recorded sessions (edge-fas record/collect) instead of synthetic domains")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"], help="synthetic split (default test)")
    parser.add_argument("--per-domain", type=int, default=60, help="synthetic samples per domain (default 60)")
    parser.add_argument("--rig-size", default="320x240", help="synthetic rig resolution WxH (default 320x240)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="operating threshold (default: the checkpoint's validation threshold)")
    parser.add_argument("--cache-dir", default="runs/cache",
                        help="crop cache folder (decoded, detected and cut faces are kept under DIR/crops)")
    parser.add_argument("--no-cache", action="store_true",
                        help="decode every sample afresh; do not read or write the crop cache")
    parser.add_argument("--workers", default="auto",
                        help="processes decoding samples (default auto: cores - 1, at most 8; 0: in this process)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def data_config(args, meta: dict) -> dict:
    """The data section whose test sets this evaluation scores (edge_fas.training's data keys)."""
    from edge_fas.data.protocols import get_protocol
    from edge_fas.errors import ConfigError
    from edge_fas.training import DEFAULTS

    trained = (meta.get("train_config") or {}).get("data", {}) or {}
    training = meta.get("training") or {}
    d = copy.deepcopy(DEFAULTS["data"])
    for k in ("frames_per_video", "detect", "wmca"):
        if k in trained:
            d[k] = trained[k]
    if args.sessions:
        if args.protocol or args.domains:
            raise ConfigError("--sessions evaluates recorded sessions: leave out --protocol and --domains")
        d.update(source="sessions", sessions={"train": [], "val": [], "test": args.sessions.split(",")})
        return d
    protocol = args.protocol
    if protocol is None and not args.domains and training.get("source") == "datasets":
        protocol = training.get("protocol")  # a real-data checkpoint is evaluated on its own protocol
    if protocol:
        if args.domains:
            raise ConfigError("--domains picks synthetic domains; a protocol names its own test sets")
        pr = get_protocol(protocol)
        d["test_missing"] = list(pr.missing_at_test)
        if not args.synthetic and pr.real:
            root = args.data_root or trained.get("root")
            if not root:
                raise ConfigError(f"protocol {protocol} reads the real datasets: pass --data-root DIR, or --synthetic "
                                  "for its synthetic stand-in")
            d.update(source="datasets", protocol=protocol, root=root,
                     lists=args.lists or (trained.get("lists") if not args.data_root else None))
            return d
        if not pr.synthetic_ok:
            raise ConfigError(f"protocol {protocol} has no synthetic stand-in; run it on the real data with --data-root DIR")
        domains = pr.synthetic()[1]
    else:
        if args.synthetic or args.data_root or args.lists:
            raise ConfigError("--synthetic, --data-root and --lists go with --protocol NAME")
        domains = args.domains.split(",") if args.domains else training.get("domains")
        if not domains or (training.get("source") == "sessions" and not args.domains):
            raise ConfigError("no test data: pass --protocol NAME --data-root DIR, --domains (e.g. --domains wmca) "
                              "or --sessions DIR")
    try:
        w, h = (int(v) for v in args.rig_size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--rig-size {args.rig_size!r}: expected WxH, e.g. 320x240") from None
    d.update(source="synthetic", test_domains=list(domains), per_domain={args.split: args.per_domain},
             rig_size=[w, h], cache_dir=args.cache_dir)
    return d


def run(args) -> int:
    from edge_fas.data.build import test_indices, weighted_average
    from edge_fas.data.cache import CropCache
    from edge_fas.data.stream import StreamDataset
    from edge_fas.errors import ConfigError
    from edge_fas.models import load_checkpoint
    from edge_fas.preprocess import PreprocessParams
    from edge_fas.progress import Progress
    from edge_fas.report import write_report
    from edge_fas.training import predict, resolve_workers

    if args.list_protocols:
        print_protocols()
        return 0
    if not args.checkpoint or not args.out:
        raise ConfigError("edge-fas eval needs a CHECKPOINT and --out REPORT_FOLDER")
    model, info = load_checkpoint(args.checkpoint)
    meta = info.get("meta", {}) if isinstance(info, dict) else {}
    params = PreprocessParams.from_dict(meta["preprocess"]) if meta.get("preprocess") else \
        PreprocessParams(size=int(model.input_size))
    d = data_config(args, meta)
    workers = resolve_workers(yaml.safe_load(str(args.workers)))
    cache = None if args.no_cache else CropCache(Path(args.cache_dir) / "crops")

    # 1. the named test sets
    indices = test_indices(d, split=args.split)
    if not indices:
        raise ConfigError("the chosen data has no test set")
    # 2. one scoring call per set (streamed); samples with no face are left out and counted
    sets, scores, skipped = {}, {}, {}
    for name, ix in indices.items():
        with Progress(f"scoring {name}", len(ix)) as bar:
            s = predict(model, StreamDataset(ix, params, cache, missing=ix.meta.get("missing", ())), workers=workers,
                        progress=bar.callback)
        ok = np.isfinite(s)
        sets[name] = ix if ok.all() else ix.subset(np.flatnonzero(ok))
        scores[name], skipped[name] = s[ok], int((~ok).sum())
    # 3. a report per set
    threshold = args.threshold if args.threshold is not None else meta.get("threshold")
    out = Path(args.out)
    results = {}
    for name, cs in sets.items():
        folder = out if len(sets) == 1 else out / name
        data = cs.meta.get("data", "")
        r = write_report(folder, scores[name], cs.label, cs.species, cs.domain, threshold=threshold,
                         all_species=cs.meta.get("all_species"), paths=cs.path, plots=not args.no_plots,
                         title=f"{model.name} ({model.preset}) on {name}: {data}",
                         meta={"checkpoint": str(args.checkpoint), "model": model.name, "preset": model.preset,
                               "test_set": name, "data": data, "source": d["source"], "protocol": d.get("protocol"),
                               "samples": len(cs), "skipped_no_face": skipped[name],
                               "threshold_split": meta.get("threshold_split", "given or EER of these scores")})
        results[name] = r
        print(f"wrote {folder}: HTER {r['hter']:.4f}, APCER max {r['apcer_max']:.4f}, BPCER {r['bpcer']:.4f}, "
              f"AUC {r['auc']:.4f} at threshold {r['threshold']:.4f} ({r['threshold_source']}); data: {data}")
    if len(sets) > 1:
        _write_summary(out, d, sets, results, weighted_average)
    return 0


def _write_summary(out: Path, d: dict, sets: dict, results: dict, weighted_average) -> None:
    from edge_fas import metrics
    from edge_fas.data.protocols import get_protocol

    protocol = get_protocol(d["protocol"]) if d.get("protocol") else None
    doc = {"protocol": d.get("protocol"), "source": d["source"],
           "test_sets": {n: {"samples": len(cs), "data": cs.meta.get("data", ""),
                             "metrics": metrics.json_ready(results[n])} for n, cs in sets.items()}}
    if protocol is not None and protocol.average:
        doc["average"] = weighted_average(results, {n: len(cs) for n, cs in sets.items()}, protocol.average)
    (out / "summary.json").write_text(json.dumps(doc, indent=1, default=str, allow_nan=False))
    pct = lambda v: "n/a" if v is None or v != v else f"{100 * v:.2f}%"  # noqa: E731
    lines = [f"# {d.get('protocol') or d['source']}: every test set", "",
             f"Data: {'real datasets under ' + str(d.get('root')) if d['source'] == 'datasets' else d['source']}; "
             "each set's metrics.json says which list files and how many samples.", "",
             "| test set | samples | HTER | APCER max | BPCER | AUC | computed on |", "|---|---|---|---|---|---|---|"]
    for n, cs in sets.items():
        r = results[n]
        on = ", ".join(Path(f).name for f in cs.meta["lists"]) if cs.meta.get("lists") else cs.meta.get("data", "")
        lines.append(f"| {n} | {len(cs)} | {pct(r['hter'])} | {pct(r['apcer_max'])} | {pct(r['bpcer'])} | "
                     f"{pct(r['auc'])} | {on} |")
    if "average" in doc:
        a = doc["average"]
        lines += ["", f"Image-weighted average over {', '.join(a['sets'])} ({a['samples']} samples, weight = samples "
                      f"per set, as the papers report it): HTER {pct(a['hter'])}, AUC {pct(a['auc'])}, "
                      f"accuracy at BPCER 1% {pct(a['accuracy_at_bpcer_1pct'])}."]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'summary.md'}")
