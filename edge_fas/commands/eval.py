"""`edge-fas eval MODEL`: score the test sets with a checkpoint or an exported artifact (the bundled
demo included) and write the report folder (JSON, Markdown, CSV, PNGs).

    edge-fas eval demo --out R --domains wmca --seed 5                                   # synthetic rig
    edge-fas eval runs/x/checkpoint.pt --out R --protocol mmdg-p1-cps-w --data-root DIR  # real datasets
    edge-fas eval ARTIFACT --out R --sessions DIR --target apcer=0.01 --val-sessions DIR2 # recorded sessions
    edge-fas eval demo --out R --ranges configs/ranges/rand_heldout_proc.yaml --domains rand_heldout_proc  # ranges
    edge-fas eval physics --out R --sessions DIR [--config site.yaml] [--decision-physics-min-relief-mm 10]

`physics` in place of a model scores the model-free physics check instead (edge_fas/physics_eval.py): what
decides on a real camera with a synthetic-only model, at the config's decision.physics_* limits, on a
site's recorded sessions or synthetic domains.

The test sets come from edge_fas.data.build.test_indices and stream through the crop cache (decoded in
--workers processes, never all in memory); each is scored once through edge_fas.scoring (an artifact
through the runtime the live pipeline uses), then reported. A protocol
with one test set writes its report into --out; one with several (mmfas-cross, MMDG Protocol 3) writes
OUT/<test set>/ per set plus OUT/summary.json and OUT/summary.md (with the papers' image-weighted
average where the protocol has one). `--target` chooses the threshold on the validation data (the
protocol's val split, the synthetic val split of the same domains and seed, or --val-sessions) and
reports every test set at it. Every report says what data it was computed on.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from edge_fas.commands.train import add_data_arguments, print_protocols
from edge_fas.config import add_config_arguments

HELP = "evaluate a checkpoint or artifact on a protocol's test sets, synthetic domains or sessions (ISO/IEC 30107-3)"
PHYSICS = "physics"  # the model argument that scores the model-free physics check


def add_arguments(parser):
    from edge_fas.data.synthetic import MISSED_FACE

    parser.add_argument("model", nargs="?",
                        help="checkpoint (.pt) from `edge-fas train`, artifact folder from `edge-fas export`, "
                             "'demo' (the bundled artifact, scored through its runtime), or 'physics' (the model-free "
                             "physics check at the config's decision.physics_* limits: sessions or synthetic domains)")
    parser.add_argument("--out", help="report folder to write")
    add_data_arguments(parser)
    parser.add_argument("--domains", default=None,
                        help="synthetic test domains, comma separated (default: the model's training domains)")
    parser.add_argument("--sessions", default=None, metavar="DIR[,DIR]",
                        help="evaluate on recorded sessions (edge-fas record/collect) instead of synthetic domains")
    parser.add_argument("--frames-per-take", type=int, default=10, metavar="N",
                        help="with --sessions: evenly spaced frames scored from each take (default 10)")
    parser.add_argument("--ranges", default=None, metavar="FILE",
                        help="custom randomisation range sets that --domains may name: a YAML file in the format of a "
                             "training config's data.randomization ({rand_NAME: {base: rand_heldout, FACTOR: VALUE}}; "
                             "configs/ranges/ has examples)")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"], help="synthetic split (default test)")
    parser.add_argument("--per-domain", type=int, default=60, help="synthetic samples per domain (default 60)")
    parser.add_argument("--rig-size", default="320x240", help="synthetic rig resolution WxH (default 320x240)")
    parser.add_argument("--seed", type=int, default=0,
                        help="synthetic rig seed (subjects, rig, noise; default 0, the training seed of the bundled "
                             "models: use another for subjects never seen in training)")
    parser.add_argument("--attack-mix", default="domain", choices=["domain", "uniform"],
                        help="synthetic attack species mix (uniform: every species equally often)")
    parser.add_argument("--missed-face", default="truth", choices=MISSED_FACE,
                        help="synthetic: a face the detector misses is cut at the rig's true box (truth, the default, "
                             "as every earlier report was scored) or has no face, as the live pipeline sees it (skip; "
                             "its crops are cached apart, so the first run renders again)")
    parser.add_argument("--missing", default=None, metavar="MODALITY[,MODALITY]",
                        help="remove these modalities (rgb, depth, ir) from every test sample, as MMDG's Protocol 2 "
                             "does: what the model decides when a sensor stream is lost, and which stream a species' "
                             "detection rests on (added to a protocol's own)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="operating threshold (default: the model's recorded operating point)")
    parser.add_argument("--target", default=None, metavar="apcer=0.01|bpcer=0.05|eer",
                        help="choose the threshold for this target on the validation data (protocol: its val split; "
                             "synthetic: split val, same domains and seed; sessions: --val-sessions), then report the "
                             "test sets at it")
    parser.add_argument("--val-sessions", default=None, metavar="DIR[,DIR]",
                        help="sessions to choose the --target threshold on (with --sessions)")
    parser.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "torch", "tensorrt", "auto"],
                        help="runtime for an artifact (default onnxruntime on CPU)")
    parser.add_argument("--device", default="cpu", help="device for the runtime (default cpu)")
    parser.add_argument("--cache-dir", default="runs/cache",
                        help="crop cache folder (decoded, detected and cut faces are kept under DIR/crops)")
    parser.add_argument("--no-cache", action="store_true",
                        help="decode every sample afresh; do not read or write the crop cache")
    parser.add_argument("--workers", default="auto",
                        help="processes decoding samples (default auto: cores - 1, at most 8; 0: in this process)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    add_config_arguments(parser, ["decision", "detector"])  # `eval physics` only: the limits and the face detector


def data_config(args, meta: dict) -> dict:
    """The data section whose test sets this evaluation scores (edge_fas.training's data keys)."""
    from edge_fas.data.protocols import get_protocol
    from edge_fas.errors import ConfigError
    from edge_fas.training import DEFAULTS

    trained = (meta.get("train_config") or {}).get("data", {}) or {}
    training = meta.get("training") or {}
    d = copy.deepcopy(DEFAULTS["data"])
    for k in ("frames_per_video", "detect", "wmca", "randomization"):  # a custom range set stays a known domain
        if k in trained:
            d[k] = trained[k]
    if args.ranges:
        d["randomization"] = with_range_file(d.get("randomization"), args.ranges)
    synthetic_only = args.missed_face != "truth"
    if args.sessions:
        if synthetic_only:
            raise ConfigError("--missed-face skip applies to the synthetic rig, which knows each face's true box; "
                              "recorded sessions are cut where the detector finds the face")
        if args.protocol or args.domains:
            raise ConfigError("--sessions evaluates recorded sessions: leave out --protocol and --domains")
        if args.frames_per_take < 1:
            raise ConfigError(f"--frames-per-take {args.frames_per_take}: expected at least 1")
        d.update(source="sessions", sessions={"train": [], "val": (args.val_sessions or "").split(",") if
                                              args.val_sessions else [], "test": args.sessions.split(",")},
                 frames_per_take=args.frames_per_take)
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
            if synthetic_only:
                raise ConfigError(f"--missed-face skip applies to the synthetic rig; protocol {protocol}'s real data "
                                  "has no true face box")
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
    per_domain = {"val": args.per_domain, args.split: args.per_domain}  # val: where --target chooses
    d.update(source="synthetic", test_domains=list(domains), per_domain=per_domain, rig_size=[w, h],
             cache_dir=args.cache_dir, seed=args.seed, attack_mix=args.attack_mix,
             missed_face=args.missed_face)
    return d


def rig_meta(d: dict) -> dict:
    """{"rig": fingerprint} for a report on the synthetic rig, else {}: the rig's version as a field of its own, so
    tools that refuse scores of another rig need not read it out of the data description."""
    if d.get("source") != "synthetic":
        return {}
    from edge_fas.sim import fingerprint

    return {"rig": fingerprint()}


def custom_ranges_meta(d: dict, domains) -> dict:
    """{"ranges": {name: its definition}} for the custom range sets among a test set's domains (a report must say
    what data it was computed on, and a custom set's name alone does not), else {}."""
    custom = d.get("randomization") or {}
    used = {str(name): custom[name] for name in sorted(set(map(str, domains))) if name in custom}
    return {"ranges": used} if used else {}


def with_range_file(known: dict | None, path: str) -> dict:
    """The model's own custom range sets plus those in the --ranges file (checked here, so a typo is an error that
    names the file, not a failed evaluation later)."""
    import yaml

    from edge_fas.errors import ConfigError
    from edge_fas.sim.ranges import parse_custom

    try:
        spec = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"--ranges {path}: cannot read it ({e.strerror}); pass a YAML file of range sets") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"--ranges {path}: not valid YAML ({e})") from None
    if not isinstance(spec, dict) or not spec:
        raise ConfigError(f"--ranges {path}: expected a mapping of range set name to factors, e.g. "
                          "{rand_far: {base: rand_heldout, pose.distance_m: [1.0, 1.2]}}")
    known = dict(known or {})
    clash = sorted(k for k in spec if k in known and known[k] != spec[k])
    if clash:
        raise ConfigError(f"--ranges {path}: {clash} already name(s) a different range set in the model's training "
                          "config; rename them in the file")
    try:
        parse_custom({**known, **spec})
    except ConfigError as e:
        raise ConfigError(f"--ranges {path}: {e}") from None
    return {**known, **spec}


def with_missing(d: dict, missing: str | None) -> dict:
    """d with --missing's modalities added to data.test_missing (a protocol's own stay)."""
    from edge_fas.errors import ConfigError
    from edge_fas.types import MODALITIES

    if not missing:
        return d
    names = [m.strip() for m in missing.split(",") if m.strip()]
    bad = [m for m in names if m not in MODALITIES]
    if bad or not names:
        raise ConfigError(f"--missing {missing!r}: name modalities from {', '.join(MODALITIES)}, comma separated")
    merged = list(dict.fromkeys(list(d.get("test_missing") or []) + names))
    if len(merged) == len(MODALITIES):
        raise ConfigError(f"--missing {missing!r} leaves no modality to score")
    return {**d, "test_missing": merged}


def validation_set(d: dict):
    """The samples --target chooses its threshold on, disjoint from the test sets."""
    from edge_fas.data.build import split_index, test_indices
    from edge_fas.data.stream import SampleIndex
    from edge_fas.errors import ConfigError

    if d["source"] == "datasets":
        return split_index(d, "val")
    if d["source"] == "sessions":
        if not d["sessions"]["val"]:
            raise ConfigError("--target with --sessions needs --val-sessions DIR to choose the threshold on")
        return test_indices(d, split="val")["sessions"]
    sets = list(test_indices(d, split="val").values())
    return sets[0] if len(sets) == 1 else SampleIndex.concat(sets)


def run(args) -> int:
    import yaml

    from edge_fas import operating_point as opmod
    from edge_fas.data.build import test_indices, weighted_average
    from edge_fas.data.cache import CropCache
    from edge_fas.data.stream import StreamDataset
    from edge_fas.errors import ConfigError
    from edge_fas.progress import Progress
    from edge_fas.report import model_report_sections, write_report
    from edge_fas.scoring import load_scorer
    from edge_fas.training import resolve_workers

    if args.list_protocols:
        print_protocols()
        return 0
    if args.print_config:
        from edge_fas.config import config_from_args

        print(config_from_args(args).dump(), end="")
        return 0
    if args.model == PHYSICS:
        from edge_fas.physics_eval import run as run_physics

        return run_physics(args)
    config_flags = [k for k, v in vars(args).items() if k.startswith("cfg__") and v is not None]
    if config_flags or args.config:
        raise ConfigError("--config and the --decision-*/--detector-* flags apply to `edge-fas eval physics` only: "
                          "a model is judged at its artifact's operating point (--threshold or --target to change it)")
    if not args.model or not args.out:
        raise ConfigError("edge-fas eval needs a MODEL (checkpoint, artifact folder or 'demo') and --out REPORT_FOLDER")
    if args.target and args.threshold is not None:
        raise ConfigError("give either --threshold or --target, not both")
    if args.val_sessions and not args.sessions:
        raise ConfigError("--val-sessions goes with --sessions")
    scorer = load_scorer(args.model, runtime=args.runtime, device=args.device)
    d = with_missing(data_config(args, scorer.info), args.missing)
    params = scorer.preprocess
    workers = resolve_workers(yaml.safe_load(str(args.workers)))
    cache = None if args.no_cache else CropCache(Path(args.cache_dir) / "crops")

    def score(name, ix):
        """One streamed set scored (samples with no face are left out and counted)."""
        with Progress(f"scoring {name}", len(ix)) as bar:
            return scorer.score(StreamDataset(ix, params, cache, missing=ix.meta.get("missing", ())), workers=workers,
                                progress=bar.callback)

    # 1. the named test sets
    indices = test_indices(d, split=args.split)
    if not indices:
        raise ConfigError("the chosen data has no test set")
    # 2. one scoring call per set; a report covers the samples that gave a face
    scored = {name: score(name, ix) for name, ix in indices.items()}
    sets = {name: ix if len(scored[name]) == len(ix) else ix.subset(scored[name].index) for name, ix in indices.items()}
    skipped = {name: len(indices[name]) - len(scored[name]) for name in indices}
    # 3. the operating point: recorded, given, or chosen here on validation data
    op = None
    if args.target:
        val = score("validation", validation_set(d))
        first = next(iter(sets))
        try:
            op = opmod.choose(val.score, val.label, val.species, args.target, val.data,
                              (scored[first].score, scored[first].label, scored[first].species, scored[first].data),
                              sets[first].meta.get("all_species"))
        except ValueError as e:
            raise ConfigError(f"--target {args.target}: {e}") from None
        threshold, threshold_split = op["threshold"], f"{op['target']} on {val.data}"
    else:
        threshold = args.threshold if args.threshold is not None else scorer.threshold
        threshold_split = "given on the command line" if args.threshold is not None else scorer.threshold_split
        op = scorer.operating_point if args.threshold is None else None
    # 4. a report per set
    out = Path(args.out)
    results = {}
    for name, cs in sets.items():
        folder = out if len(sets) == 1 else out / name
        test = scored[name]
        data = cs.meta.get("data") or test.data
        extra, extra_doc = model_report_sections(test, threshold if threshold is not None else 0.5,
                                                 scorer.calibration, scorer.info.get("abstention"))
        r = write_report(folder, test.score, cs.label, cs.species, cs.domain, threshold=threshold,
                         all_species=cs.meta.get("all_species"), paths=cs.path, plots=not args.no_plots,
                         operating_point=op, extra_markdown=extra, title=f"{scorer.name} on {name}: {data}",
                         meta={"model": str(args.model), "scored_by": scorer.name, "test_set": name, "data": data,
                               "source": d["source"], "protocol": d.get("protocol"), "split": args.split,
                               "samples": len(cs), "skipped_no_face": skipped[name],
                               "threshold_split": threshold_split, **rig_meta(d), **custom_ranges_meta(d, cs.domain),
                               **extra_doc})
        results[name] = r
        print(f"wrote {folder}: HTER {r['hter']:.4f}, APCER max {r['apcer_max']:.4f}, BPCER {r['bpcer']:.4f}, "
              f"AUC {r['auc']:.4f} at threshold {r['threshold']:.4f} ({r['threshold_source']}: {threshold_split}); "
              f"data: {data}")
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
