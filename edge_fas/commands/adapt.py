"""`edge-fas adapt`: adapt a model to a site in one command.

    edge-fas adapt --sessions DIR... --base ARTIFACT|CHECKPOINT --target apcer=0.01 --out NEW

1. splits the recorded sessions (edge-fas record / collect) by session into train, validation and test
   (or takes --val-sessions / --test-sessions), and refuses a split in which one subject id appears
   on both sides (the test numbers would not be held out) unless --allow-shared-subjects, and sessions
   in which a recorded camera setting separates bona fide from attack takes (`edge-fas inspect` shows
   them) unless --allow-setting-confounds;
2. fine-tunes the base model's checkpoint on the train sessions (`edge-fas train` with init_from),
   or with --epochs 0 keeps the network as it is (the bundled demo ships without its checkpoint);
3. fits the score calibration, the operating point for --target and the abstention level on the
   validation sessions (edge_fas.operating_point);
4. exports the new artifact (the exporter's checks and precision measurements included; --int8 adds
   the int8 model) with the calibration and operating point in its manifest;
5. scores the test sessions through the new artifact's runtime and writes the ISO/IEC 30107-3 report
   (per species, with 95% intervals) next to the training run, and prints the per-species table.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from edge_fas.errors import ConfigError

HELP = "adapt a model to a site: fine-tune on recorded sessions, calibrate, pick the operating point, export, report"


def add_arguments(parser):
    parser.add_argument("--sessions", nargs="+", required=True, metavar="DIR",
                        help="session folders recorded at the site (edge-fas record / collect)")
    parser.add_argument("--base", default="demo",
                        help="the model to start from: artifact folder with its checkpoint.pt, a checkpoint (.pt), "
                             "or 'demo' (no checkpoint: --epochs 0 only)")
    parser.add_argument("--target", default="apcer=0.01", metavar="apcer=R|bpcer=R|eer",
                        help="operating point chosen on the validation sessions (default apcer=0.01)")
    parser.add_argument("--out", required=True, help="the new artifact folder")
    parser.add_argument("--val-sessions", nargs="+", default=None, metavar="DIR",
                        help="validation sessions (default: split from --sessions by session)")
    parser.add_argument("--test-sessions", nargs="+", default=None, metavar="DIR",
                        help="test sessions, never used for training or selection (default: split from --sessions)")
    parser.add_argument("--allow-shared-subjects", action="store_true",
                        help="accept a split in which a subject id appears in more than one of train/val/test")
    parser.add_argument("--allow-setting-confounds", action="store_true",
                        help="accept sessions in which a recorded camera setting (laser power, a fixed exposure) "
                             "separates bona fide from attack takes (see `edge-fas inspect`)")
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (0: calibrate and pick the "
                                                                 "operating point only; default 3)")
    parser.add_argument("--lr", type=float, default=5e-5, help="fine-tuning learning rate (default 5e-5)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--frames-per-take", type=int, default=10, help="frames used from each take (default 10)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for training (0: torch default)")
    parser.add_argument("--work", default=None, help="training run and report folder (default runs/adapt-NAME)")
    parser.add_argument("--int8", action="store_true", help="also export the int8 model (CPU-only kiosks)")
    parser.add_argument("--parity", type=int, default=64, metavar="N", help="export parity frame sets (default 64)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out artifact")


def _split_sessions(args) -> dict[str, list[str]]:
    """train / val / test session lists; a deterministic split by session when val/test are not given."""
    pool = [str(p) for p in args.sessions]
    for p in pool + list(args.val_sessions or []) + list(args.test_sessions or []):
        if not (Path(p) / "session.yaml").is_file():
            raise ConfigError(f"{p} is not a session folder (no session.yaml); record one with `edge-fas record` "
                              "or `edge-fas collect`")
    if args.val_sessions and args.test_sessions:
        return {"train": pool, "val": list(args.val_sessions), "test": list(args.test_sessions)}
    need = 3 - bool(args.val_sessions) - bool(args.test_sessions)
    if len(pool) < need:
        raise ConfigError(f"adapt needs train, validation and test sessions: {len(pool)} --sessions cannot be split "
                          f"into {need} parts; record more sessions or pass --val-sessions / --test-sessions")
    # by a hash of the folder name: the same folders always land in the same split
    ordered = sorted(pool, key=lambda p: hashlib.sha256(Path(p).name.encode()).hexdigest())
    n_hold = max(1, round(0.2 * len(ordered)))
    split = {"val": list(args.val_sessions or []), "test": list(args.test_sessions or [])}
    for name in ("test", "val"):
        if not split[name]:
            split[name], ordered = ordered[:n_hold], ordered[n_hold:]
    split["train"] = ordered
    return split


def _subjects(paths) -> dict[str, str]:
    from edge_fas.drivers.session import SessionReader

    out = {}
    for p in paths:
        for take in SessionReader(p).takes:
            if take.subject_id:
                out.setdefault(take.subject_id, str(p))
    return out


def _check_subjects(split: dict, allow: bool) -> list[str]:
    seen = {name: _subjects(paths) for name, paths in split.items()}
    shared = []
    for a, b in (("train", "test"), ("val", "test"), ("train", "val")):
        for s in sorted(set(seen[a]) & set(seen[b])):
            shared.append(f"subject {s} in {a} ({seen[a][s]}) and {b} ({seen[b][s]})")
    if shared and not allow:
        raise ConfigError("the session split shares subjects, so its test numbers would not be held out: "
                          + "; ".join(shared[:5]) + ("; ..." if len(shared) > 5 else "")
                          + ". Pass --val-sessions / --test-sessions with other subjects, or --allow-shared-subjects")
    return shared


def _check_settings(split: dict, allow: bool) -> list[str]:
    """Camera settings that separate bona fide from attack takes over all the sessions (drivers/summary.py):
    the fine-tune could learn the setting instead of the attack, and the test sessions, recorded the same
    way, would not show it."""
    from edge_fas.drivers.summary import setting_confounds

    found = setting_confounds([p for paths in split.values() for p in paths])
    if found and not allow:
        raise ConfigError("the sessions' camera settings tell bona fide from attack takes: " + "; ".join(found[:3])
                          + ". Record bona fide and attack takes with the same settings (check with `edge-fas "
                          "inspect SESSION`), or pass --allow-setting-confounds")
    return found


def _base_checkpoint(base: str) -> tuple[Path | None, object]:
    """(checkpoint path or None, the loaded artifact or None) of --base."""
    from edge_fas.artifact import load_artifact

    p = Path(base)
    if base != "demo" and p.is_file():
        return p, None
    art = load_artifact(base)
    return art.checkpoint_path, art


def run(args) -> int:
    from edge_fas import metrics
    from edge_fas import operating_point as opmod
    from edge_fas.report import model_report_sections, write_report
    from edge_fas.scoring import load_scorer

    try:
        metrics.parse_target(args.target)
    except ValueError as e:
        raise ConfigError(f"--target: {e}") from None
    if args.epochs < 0:
        raise ConfigError(f"--epochs {args.epochs}: expected 0 (calibrate only) or more")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.force:
        raise ConfigError(f"{out} exists and is not empty; pass --force to replace it")
    split = _split_sessions(args)
    shared = _check_subjects(split, args.allow_shared_subjects)
    confounds = _check_settings(split, args.allow_setting_confounds)
    work = Path(args.work or Path("runs") / f"adapt-{out.name}")
    checkpoint, base_art = _base_checkpoint(args.base)
    print(f"edge-fas adapt: train {split['train']}, validation {split['val']}, test {split['test']}", file=sys.stderr)

    if args.epochs > 0:
        if checkpoint is None:
            raise ConfigError(f"--base {args.base} has no PyTorch checkpoint (the bundled demo ships without one), "
                              "so it cannot be fine-tuned; give a checkpoint (.pt) or an artifact exported with "
                              "its checkpoint, or pass --epochs 0 to calibrate it and pick its operating point only")
        art = _finetune_and_export(args, split, checkpoint, work, out)
    else:
        art = _recalibrate(args, split, base_art, checkpoint, out)

    # the report: the new artifact, through its runtime, on the test sessions
    scorer = load_scorer(art.folder)
    from edge_fas.data.sessions import session_crops
    test = scorer.score(session_crops(split["test"], scorer.preprocess, frames_per_take=args.frames_per_take))
    op = art.operating_point
    extra, extra_doc = model_report_sections(test, art.threshold, scorer.calibration, art.manifest.get("abstention"))
    report = work / "report"
    write_report(report, test.score, test.label, test.species, test.domain, threshold=art.threshold,
                 operating_point=op, extra_markdown=extra, title=f"{scorer.name} adapted, on the test sessions",
                 meta={"artifact": str(art.folder), "base": str(args.base), "sessions": split, "data": test.data,
                       "shared_subjects": shared, "setting_confounds": confounds, **extra_doc})
    ev = opmod.evidence(test.score, test.label, test.species, art.threshold, test.data)
    print(f"wrote {art.folder} (threshold {art.threshold:.4g} for {op['target']}, chosen on the validation "
          f"sessions) and the report {report}")
    print(opmod.evidence_table(ev, "test sessions"))
    return 0


def _finetune_and_export(args, split, checkpoint: Path, work: Path, out: Path):
    from edge_fas.export import export_checkpoint
    from edge_fas.models import load_checkpoint
    from edge_fas.training import load_train_config, train

    model, _ = load_checkpoint(checkpoint)
    cfg = load_train_config(None, {
        "model": {"name": model.name, "preset": model.preset, "overrides": {}},
        "data.source": "sessions", "data.sessions": split, "data.frames_per_take": args.frames_per_take,
        "train.epochs": args.epochs, "train.lr": args.lr, "train.batch_size": args.batch_size,
        "train.init_from": str(checkpoint), "train.target": args.target, "train.keep": "best",
        "train.schedule": "cosine", "train.threads": args.threads, "out": str(work / "train"),
        "data.cache_dir": str(work / "cache")})  # the sessions' decoded crops stay with the run
    del model
    train(cfg)
    art = export_checkpoint(work / "train" / "checkpoint.pt", out, parity_count=args.parity, parity_source="random",
                            overwrite=args.force)
    if args.int8:
        from edge_fas.runtime.quantize import add_int8
        art = add_int8(art)
    return art


def _recalibrate(args, split, base_art, checkpoint, out: Path):
    """--epochs 0: the base network unchanged, a new calibration and operating point from the site."""
    from edge_fas import artifact as art_mod
    from edge_fas import operating_point as opmod
    from edge_fas.data.sessions import session_crops
    from edge_fas.scoring import load_scorer

    if base_art is None:
        raise ConfigError(f"--epochs 0 re-calibrates an exported artifact; --base {args.base} is a checkpoint: "
                          "export it first (`edge-fas export`) or fine-tune it with --epochs 1 or more")
    scorer = load_scorer(base_art.folder)
    crops = {k: session_crops(split[k], scorer.preprocess, frames_per_take=args.frames_per_take) for k in ("val", "test")}
    val, test = scorer.score(crops["val"]), scorer.score(crops["test"])
    try:
        record = opmod.fit_decision_record(val, args.target, test)
    except ValueError as e:
        raise ConfigError(f"the validation sessions cannot fix an operating point: {e}") from None
    # copy the network files (the int8 model's recorded accuracy belongs to the old operating point: left out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if old.is_file():
            old.unlink()
    files = [n for n in base_art.manifest["files"] if n != base_art.manifest.get("int8", {}).get("file")]
    for name in files:
        shutil.copy2(base_art.folder / name, out / name)
    manifest = art_mod.manifest_body(base_art.manifest, "int8")
    manifest["training"] = {**(manifest.get("training") or {}),
                            "site_calibration": {"sessions": split, "note": "network unchanged (adapt --epochs 0)"}}
    art_mod.write_manifest(out, manifest, files)
    return opmod.attach_to_artifact(art_mod.load_artifact(out), record)
