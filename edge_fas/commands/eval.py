"""`edge-fas eval MODEL`: score a test set with a checkpoint or an exported artifact (the bundled demo
included) and write the report folder (JSON, Markdown, CSV, PNGs)."""

from __future__ import annotations

HELP = "evaluate a checkpoint or artifact on a test set and write a report folder (ISO/IEC 30107-3 metrics)"


def add_arguments(parser):
    parser.add_argument("model", help="checkpoint (.pt) from `edge-fas train`, artifact folder from `edge-fas export`, "
                                      "or 'demo' (the bundled artifact, scored through its runtime)")
    parser.add_argument("--out", required=True, help="report folder to write")
    parser.add_argument("--domains", default=None,
                        help="synthetic test domains, comma separated (default: the model's training domains)")
    parser.add_argument("--sessions", default=None, metavar="DIR[,DIR]",
                        help="evaluate on recorded sessions (edge-fas record/collect) instead of synthetic domains")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"], help="synthetic split (default test)")
    parser.add_argument("--per-domain", type=int, default=60, help="samples per domain (default 60)")
    parser.add_argument("--rig-size", default="320x240", help="synthetic rig resolution WxH (default 320x240)")
    parser.add_argument("--seed", type=int, default=0,
                        help="synthetic rig seed (subjects, rig, noise; default 0, the training seed of the bundled "
                             "models: use another for subjects never seen in training)")
    parser.add_argument("--attack-mix", default="domain", choices=["domain", "uniform"],
                        help="synthetic attack species mix (uniform: every species equally often)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="operating threshold (default: the model's recorded operating point)")
    parser.add_argument("--target", default=None, metavar="apcer=0.01|bpcer=0.05|eer",
                        help="choose the threshold for this target on the validation split (synthetic: split val, "
                             "same domains and seed; sessions: --val-sessions), then report the test split at it")
    parser.add_argument("--val-sessions", default=None, metavar="DIR[,DIR]",
                        help="sessions to choose the --target threshold on (with --sessions)")
    parser.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "torch", "tensorrt", "auto"],
                        help="runtime for an artifact (default onnxruntime on CPU)")
    parser.add_argument("--device", default="cpu", help="device for the runtime (default cpu)")
    parser.add_argument("--cache-dir", default="runs/cache", help="where rendered crops are cached")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def _crops(args, scorer, split: str, sessions: str | None):
    from edge_fas.data.synthetic import attack_probabilities, synthetic_crops
    from edge_fas.errors import ConfigError

    if sessions:
        from edge_fas.data.sessions import session_crops
        return session_crops(sessions.split(","), scorer.preprocess), sessions.split(","), None
    try:
        w, h = (int(v) for v in args.rig_size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--rig-size {args.rig_size!r}: expected WxH, e.g. 320x240") from None
    training = scorer.training
    domains = args.domains.split(",") if args.domains else training.get("domains")
    if not domains or (training.get("source") == "sessions" and not args.domains):
        raise ConfigError("no synthetic test domains: pass --domains (e.g. --domains wmca) or --sessions DIR")
    crops = synthetic_crops(domains, split, args.per_domain, seed=args.seed, params=scorer.preprocess, width=w,
                            height=h, cache_dir=args.cache_dir, attack_mix=args.attack_mix)
    # species the test domains present (so one missing from a small sample shows as absent, not hidden)
    expected = sorted({s for d in domains for s, p in attack_probabilities(d, args.attack_mix).items() if p > 0})
    return crops, domains, expected


def run(args) -> int:
    from edge_fas import operating_point as opmod
    from edge_fas.errors import ConfigError
    from edge_fas.report import model_report_sections, write_report
    from edge_fas.scoring import load_scorer

    scorer = load_scorer(args.model, runtime=args.runtime, device=args.device)
    crops, domains, expected = _crops(args, scorer, args.split, args.sessions)
    test = scorer.score(crops)
    op = None
    if args.target:
        if args.threshold is not None:
            raise ConfigError("give either --threshold or --target, not both")
        if args.sessions and not args.val_sessions:
            raise ConfigError("--target with --sessions needs --val-sessions DIR to choose the threshold on")
        val = scorer.score(_crops(args, scorer, "val", args.val_sessions)[0])
        try:
            op = opmod.choose(val.score, val.label, val.species, args.target, val.data,
                              (test.score, test.label, test.species, test.data), expected)
        except ValueError as e:
            raise ConfigError(f"--target {args.target}: {e}") from None
        threshold, threshold_split = op["threshold"], f"{op['target']} on {val.data}"
    else:
        threshold = args.threshold if args.threshold is not None else scorer.threshold
        threshold_split = "given on the command line" if args.threshold is not None else scorer.threshold_split
        op = scorer.operating_point if args.threshold is None else None
    extra, extra_doc = model_report_sections(test, threshold if threshold is not None else 0.5, scorer.calibration,
                                             scorer.info.get("abstention"))
    r = write_report(args.out, test.score, test.label, test.species, test.domain, threshold=threshold,
                     all_species=expected, plots=not args.no_plots, operating_point=op, extra_markdown=extra,
                     title=f"{scorer.name} on {'sessions' if args.sessions else 'synthetic'} {','.join(domains)}",
                     meta={"model": str(args.model), "scored_by": scorer.name, "data": test.data,
                           "domains": domains, "split": args.split, "samples": len(crops),
                           "threshold_split": threshold_split, **extra_doc})
    print(f"wrote {args.out}: HTER {r['hter']:.4f}, APCER max {r['apcer_max']:.4f}, BPCER {r['bpcer']:.4f}, "
          f"AUC {r['auc']:.4f} at threshold {r['threshold']:.4f} ({r['threshold_source']}: {threshold_split})")
    return 0
