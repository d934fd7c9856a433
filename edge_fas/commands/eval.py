"""`edge-fas eval CHECKPOINT`: score a test set and write the report folder (JSON, Markdown, CSV, PNGs)."""

from __future__ import annotations

HELP = "evaluate a checkpoint on a test set and write a report folder (ISO/IEC 30107-3 metrics)"


def add_arguments(parser):
    parser.add_argument("checkpoint", help="checkpoint written by `edge-fas train`")
    parser.add_argument("--out", required=True, help="report folder to write")
    parser.add_argument("--domains", default=None,
                        help="synthetic test domains, comma separated (default: the checkpoint's training domains)")
    parser.add_argument("--sessions", default=None, metavar="DIR[,DIR]",
                        help="evaluate on recorded sessions (edge-fas record/collect) instead of synthetic domains")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"], help="synthetic split (default test)")
    parser.add_argument("--per-domain", type=int, default=60, help="samples per domain (default 60)")
    parser.add_argument("--rig-size", default="320x240", help="synthetic rig resolution WxH (default 320x240)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="operating threshold (default: the checkpoint's validation threshold)")
    parser.add_argument("--cache-dir", default="runs/cache", help="where rendered crops are cached")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def run(args) -> int:
    from edge_fas.data.synthetic import synthetic_crops
    from edge_fas.errors import ConfigError
    from edge_fas.models import load_checkpoint
    from edge_fas.preprocess import PreprocessParams
    from edge_fas.report import write_report
    from edge_fas.sim import get_domain
    from edge_fas.training import predict

    model, info = load_checkpoint(args.checkpoint)
    meta = info.get("meta", {}) if isinstance(info, dict) else {}
    try:
        w, h = (int(v) for v in args.rig_size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--rig-size {args.rig_size!r}: expected WxH, e.g. 320x240") from None
    params = PreprocessParams.from_dict(meta["preprocess"]) if meta.get("preprocess") else \
        PreprocessParams(size=int(model.input_size))
    if args.sessions:
        from edge_fas.data.sessions import session_crops

        domains = args.sessions.split(",")
        crops = session_crops(domains, params)
        expected = None
    else:
        domains = args.domains.split(",") if args.domains else (meta.get("training") or {}).get("domains")
        if not domains or (meta.get("training") or {}).get("source") == "sessions" and not args.domains:
            raise ConfigError("no synthetic test domains: pass --domains (e.g. --domains wmca) or --sessions DIR")
        crops = synthetic_crops(domains, args.split, args.per_domain, params=params, width=w, height=h,
                                cache_dir=args.cache_dir)
        # species the test domains present (so one missing from a small sample shows as absent, not hidden)
        expected = sorted({s for d in domains for s, p in get_domain(d).attack_probabilities().items() if p > 0})
    scores = predict(model, crops)
    threshold = args.threshold if args.threshold is not None else meta.get("threshold")
    r = write_report(args.out, scores, crops.label, crops.species, crops.domain, threshold=threshold,
                     all_species=expected,
                     plots=not args.no_plots, title=f"{model.name} ({model.preset}) on {'sessions' if args.sessions else 'synthetic'} {','.join(domains)}",
                     meta={"checkpoint": str(args.checkpoint), "model": model.name, "preset": model.preset,
                           "domains": domains, "split": args.split, "samples": len(crops),
                           "threshold_split": meta.get("threshold_split", "given or EER of these scores")})
    print(f"wrote {args.out}: HTER {r['hter']:.4f}, APCER max {r['apcer_max']:.4f}, BPCER {r['bpcer']:.4f}, "
          f"AUC {r['auc']:.4f} at threshold {r['threshold']:.4f} ({r['threshold_source']})")
    return 0
