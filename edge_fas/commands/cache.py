"""`edge-fas cache build`: decode, detect and cut every sample of a training config once, into the crop
cache that training and evaluation then read (edge_fas.data.cache).

    edge-fas cache build --protocol mmdg-p1-cps-w --data-root /data/fas        # a paper's protocol
    edge-fas cache build --config configs/demo.yaml --workers 8                # a training config
    edge-fas cache build --protocol mmdg-p1-cps-w --synthetic --splits train   # its synthetic stand-in

It reads the same options as `edge-fas train` (the model decides the input size, data.cache_dir the
folder) and fills the cache for the train and validation splits and every test set. Entries already
there are read back and checked; an unreadable one is rebuilt. Interrupt it at any time: every entry
is written whole or not at all, and the next run resumes where this one stopped. `--time-limit MIN` stops
it cleanly (a lease on a lent machine, say) and prints the complete prefix of each set it reached, with the
`data.per_domain` that trains on exactly what is cached: samples are planned so that a smaller count is a
prefix of a larger one.
"""

from __future__ import annotations

import time

HELP = "fill the on-disk crop cache of a training config or protocol (resumes after an interruption)"
SETS = ("train", "val", "test")


def add_arguments(parser):
    from edge_fas.commands.train import add_data_arguments

    sub = parser.add_subparsers(dest="action", metavar="ACTION", title="actions")
    build = sub.add_parser("build", help="decode every sample once into the cache", description=__doc__.split("\n\n")[0])
    build.add_argument("--config", metavar="FILE", help="training config YAML (see configs/); defaults if omitted")
    build.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override one config key, e.g. --set data.cache_dir=/fast/cache (value parsed as YAML)")
    add_data_arguments(build)
    build.add_argument("--splits", default=",".join(SETS), metavar="LIST",
                       help="which sets to fill, comma separated among train, val, test (default all)")
    build.add_argument("--workers", default=None, metavar="N",
                       help="processes decoding samples (default: the config's train.workers)")
    build.add_argument("--time-limit", type=float, default=None, metavar="MIN",
                       help="stop after MIN minutes and say how much of each set is cached (a complete prefix) and "
                            "the data.per_domain that trains on it")
    build.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args) -> int:
    import yaml

    from edge_fas.commands.train import config_from_args, print_protocols
    from edge_fas.errors import ConfigError

    if getattr(args, "list_protocols", False):
        print_protocols()
        return 0
    if args.action != "build":
        raise ConfigError("edge-fas cache: give an action, e.g. `edge-fas cache build --protocol NAME --data-root DIR`")
    cfg = config_from_args(args)
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    bad = [s for s in splits if s not in SETS]
    if bad or not splits:
        raise ConfigError(f"--splits {args.splits!r}: use some of {', '.join(SETS)}, comma separated")
    from edge_fas.data.evaluation_sets import check_training_data

    check_training_data(cfg, splits)  # a training config's own splits, before hours of rendering
    workers = yaml.safe_load(args.workers) if args.workers is not None else cfg["train"]["workers"]
    if args.time_limit is not None and not args.time_limit > 0:
        raise ConfigError(f"--time-limit {args.time_limit}: give minutes > 0")
    limit_s = args.time_limit * 60.0 if args.time_limit is not None else None
    totals = build_cache(cfg, splits, workers, quiet=args.quiet, time_limit_s=limit_s)
    print(f"crop cache {totals['folder']}: {totals['samples']} samples, {totals['cached']} already cached, "
          f"{totals['built']} built, {totals['rebuilt']} rebuilt (corrupt), {totals['no_face']} with no face; "
          f"{totals['rate']:.1f} samples/s over {totals['seconds']:.0f} s")
    if totals["stopped"]:
        print(stopped_message(cfg, totals["prefix"], args.time_limit, totals["not_reached"]))
    return 0


def stopped_message(cfg: dict, prefix: dict, minutes: float, not_reached=()) -> str:
    """What a build stopped by --time-limit has cached, and how to train on exactly that."""
    lines = [f"stopped at --time-limit {minutes:g} min; cached, as a complete prefix of each set:"]
    lines += [f"  {name}: not reached (training would decode it as it goes; fill it first with --splits "
              f"{name.split()[0]})" for name in not_reached]
    per_domain = dict(cfg["data"]["per_domain"])
    for name, (done, total, each) in prefix.items():
        lines.append(f"  {name}: the first {done} of {total} samples"
                     + (f" ({each} per domain)" if each is not None else ""))
        if each is not None and name in per_domain:
            per_domain[name] = each
    if cfg["data"]["source"] == "synthetic":
        lines.append("train on what is cached with --set 'data.per_domain={" + ", ".join(
            f"{k}: {v}" for k, v in per_domain.items()) + "}'; or run the same command again to go on")
    else:
        lines.append("run the same command again to go on; training reads uncached samples too, decoding them as it goes")
    return "\n".join(lines)


def build_cache(cfg: dict, splits=SETS, workers="auto", quiet: bool = False, time_limit_s: float | None = None) -> dict:
    """Fill the crop cache for `splits` of a training config; returns the counts. With `time_limit_s` it stops
    once that many seconds have passed; `prefix` then holds, per set reached, (samples done in order, samples
    in the set, the complete per-domain count of a synthetic set, else None) and `stopped` says so."""
    from edge_fas.data.build import split_index, test_indices
    from edge_fas.data.stream import StreamDataset, fill_cache
    from edge_fas.errors import ConfigError
    from edge_fas.progress import Progress
    from edge_fas.training import data_params, model_input_size, open_cache, resolve_workers
    from edge_fas.training.config import init_from_preprocess

    cache = open_cache(cfg)
    if cache is None:
        raise ConfigError("data.crop_cache is false: there is no cache to build (set data.crop_cache: true)")
    workers = resolve_workers(workers)
    # the crop_scale is in the cache key: a fine-tuned checkpoint's own, as training will use it
    params = data_params(cfg, model_input_size(cfg), init_from_preprocess(cfg))[0]
    cache.root.mkdir(parents=True, exist_ok=True)
    cache.remove_stale_temporaries(older_than_s=600.0)
    sets = {s: split_index(cfg["data"], s) for s in splits if s != "test"}
    if "test" in splits:
        sets.update({f"test {name}": ix for name, ix in test_indices(cfg["data"]).items()})
    totals = {"samples": 0, "cached": 0, "built": 0, "rebuilt": 0, "no_face": 0}
    t0 = time.perf_counter()
    deadline = t0 + time_limit_s if time_limit_s is not None else None
    prefix, stopped = {}, False
    for name, ix in sets.items():
        if stopped:
            break
        ds = StreamDataset(ix, params, cache)
        done = 0
        statuses = fill_cache(ds, workers)
        with Progress(f"crop cache, {name}", len(ix), quiet=quiet) as bar:
            for status in statuses:
                word, _, no_face = status.partition(" ")
                totals[word] += 1
                totals["no_face"] += bool(no_face)
                totals["samples"] += 1
                done += 1
                bar.update()
                if deadline is not None and time.perf_counter() >= deadline and done < len(ix):
                    stopped = True
                    break
        statuses.close()  # ends the loader and its workers now, not at garbage collection
        prefix[name] = (done, len(ix), _per_domain_prefix(ix, done))
    seconds = time.perf_counter() - t0
    return {**totals, "folder": str(cache.root), "seconds": seconds, "rate": totals["samples"] / max(seconds, 1e-9),
            "stopped": stopped, "prefix": prefix, "not_reached": [n for n in sets if n not in prefix]}


def _per_domain_prefix(ix, done: int) -> int | None:
    """The per-domain count whose samples all lie in the first `done` of a synthetic index (its domains
    follow one another, each in plan order); None for other sources."""
    if ix.meta.get("source") != "synthetic" or not len(ix):
        return None
    reached = list(ix.domain[:done])
    return min(reached.count(d) for d in dict.fromkeys(ix.domain.tolist()))
