"""Which range shift costs a model what: a held-out set of the randomised rig scored again with one group of
its factors put back to the training ranges, the rest left as they are.

    .venv/bin/python benchmarks/bench_range_shift.py --model runs/s16-tone/artifact --set rand_heldout_val \\
        [--groups ir,camera] [--per-domain 900] [--baseline runs/bench-s16-tone/rand_heldout_val] [--out runs/shift]

A held-out range set (`rand_heldout`, `rand_test`, or a file-defined family of bench_demo's) differs from the
training ranges (`rand`) on several factors at once: cameras, emitters, sensor responses, materials. A model's
loss on it mixes them. For each group of those factors (named by the factor's prefix: `ir` is ir.gain and
ir.gamma, `rigid` the resin's reflectance, ...), this makes a custom range set, the held-out set with that
group's factors at their training values, writes it as a `--ranges` file, scores it with the product's own
`edge-fas eval` exactly as bench_demo scores the set itself (same rig seeds, split, size and attack mix), and
prints each species' APCER where the set's bona fide BPCER is 5%, and its AUC against bona fide, beside the
unchanged set's, with the change and a 95% bootstrap interval. A large fall when a group is put back says that
shift carries that part of the loss.

Read it as a diagnosis:
- the custom set's name enters every draw, so its scenes, people and cameras are new ones, not the same scenes
  with one factor changed: the change compares two independent samples, and its interval says so;
- groups interact (a dim IR imager and a sparse emitter together), so the changes need not add up;
- on `rand_test` it is for understanding a result, never for choosing: a recipe changed because of it must be
  chosen on the selection sets (rand_heldout_val and its families), and the report must say rand_test
  informed it.

Every number is from the synthetic rig (edge_fas.sim), whose fingerprint is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_demo  # noqa: E402  (benchmarks are scripts, not a package)


def _same(a, b) -> bool:
    return type(a) is type(b) and json.dumps(a) == json.dumps(b)


def shifted_groups(domain: str) -> dict[str, dict]:
    """{group: {factor: training value}} for every factor where `domain`'s range set differs from the training
    ranges, grouped by the factor's prefix (camera, emitter, ir, rigid, ...), in the rig's factor order."""
    from edge_fas.sim.ranges import RANGE_SETS, get_ranges

    held = get_ranges(domain, bench_demo.custom_ranges(domain))
    train = RANGE_SETS["rand"]
    groups: dict[str, dict] = {}
    for factor, value in held.values.items():
        trained = train.values[factor]
        if not _same(value, trained):
            groups.setdefault(factor.split(".")[0], {})[factor] = list(trained) if isinstance(trained, tuple) \
                else trained
    return groups


def range_file_text(domain: str, group: str, factors: dict) -> tuple[str, str]:
    """(custom domain name, the --ranges YAML defining it): `domain` with `factors` at their training values. A
    file-defined domain (bench_demo.RANGE_FILES) is defined again first, as its base."""
    import yaml

    name = f"{domain}_{group.replace('.', '_')}"
    spec = {}
    if domain in bench_demo.RANGE_FILES:
        spec.update(yaml.safe_load(bench_demo.RANGE_FILES[domain].read_text()))
    spec[name] = {"base": domain, **factors}
    head = (f"# {domain} with {', '.join(factors)} put back to the training ranges (benchmarks/bench_range_shift.py):\n"
            "# a diagnosis of which shift costs a model what; never for training or for choosing a threshold\n")
    return name, head + yaml.safe_dump(spec, sort_keys=False)


def scored(folder: Path, ranges_text: str | None = None) -> bool:
    """True when `folder` holds every seed's report of the rig as it is now (and, for a custom set, of the same
    definition), so a rerun can reuse it."""
    reports = sorted(folder.glob("seed*/metrics.json"))
    if not reports:
        return False
    if ranges_text is not None:  # the same definition (comments aside)
        import yaml

        kept = folder / "ranges.yaml"
        if not kept.exists() or yaml.safe_load(kept.read_text()) != yaml.safe_load(ranges_text):
            return False
    try:
        bench_demo.check_rendered_by_this_rig(folder)
    except SystemExit:
        return False
    return True


def change_interval(base: tuple, other: tuple, species: str, resamples: int = 1000, seed: int = 0):
    """(APCER at BPCER 5% change, its 95% interval, AUC change, its 95% interval) of `species` from `base` to
    `other`, each (scores, labels, species): the two sets resampled independently (they share no scenes), the
    threshold re-derived from each resample's own bona fide."""
    rng = np.random.default_rng(seed)
    before = bench_demo.resampled_figures(*base, species, resamples, rng)
    d = bench_demo.resampled_figures(*other, species, resamples, rng) - before
    apcer = bench_demo.apcer_at_bpcer(*other)[1][species] - bench_demo.apcer_at_bpcer(*base)[1][species]
    auc = bench_demo.species_auc(*other)[species] - bench_demo.species_auc(*base)[species]
    return apcer, tuple(np.percentile(d[:, 0], [2.5, 97.5])), auc, tuple(np.percentile(d[:, 1], [2.5, 97.5]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="artifact folder (or 'demo')")
    ap.add_argument("--set", required=True, help=f"a randomised bench_demo set: {', '.join(bench_demo.RANDOMISED)}")
    ap.add_argument("--groups", default=None, help="comma-separated factor groups (ir) or single factors (ir.gain) to put "
                                                   "back (default: every group where the set differs from the "
                                                   "training ranges)")
    ap.add_argument("--per-domain", type=int, default=900, help="samples per rig seed (default 900)")
    ap.add_argument("--baseline", default=None, help="a bench_demo folder holding this set's scores for this model "
                                                     "at the same --per-domain (default: score it here)")
    ap.add_argument("--workers", type=int, default=2, help="eval's decoding workers")
    ap.add_argument("--out", default="runs/bench-shift", help="where eval writes its reports (a group already "
                                                              "scored there with the same definition is reused)")
    args = ap.parse_args()

    from edge_fas.sim import fingerprint

    domain, seeds, split = bench_demo.randomised_set(args.set)
    seeds_arg = ",".join(map(str, seeds))
    groups = shifted_groups(domain)
    # a single factor (ir.gain) is a group of one
    groups.update({k: {k: v} for g in list(groups.values()) if len(g) > 1 for k, v in g.items()})
    wanted = [g for g in groups if "." not in g] if args.groups is None else args.groups.split(",")
    unknown = [g for g in wanted if g not in groups]
    if unknown:
        raise SystemExit(f"--groups: {unknown} are not shifted in {args.set}; its shifted groups and factors are "
                         f"{list(groups)}")
    out = Path(args.out) / args.set
    print(f"{args.set}: domain {domain}, rig seeds {seeds_arg}, split {split}, {args.per_domain} per seed; synthetic "
          f"rig {fingerprint()}; model {args.model}")

    base_folder = Path(args.baseline) if args.baseline else out / "unchanged"
    if not scored(base_folder):
        if args.baseline:
            raise SystemExit(f"--baseline {base_folder}: no seed*/metrics.json of the rig as it is now; score the set "
                             f"with bench_demo.py --sets {args.set} first, or leave --baseline out")
        bench_demo.run_eval(args.model, base_folder, domain, seeds_arg, split, args.per_domain, args.workers)
    def scores_of(folder: Path) -> tuple:
        scores = bench_demo.merged(sorted(folder.glob("seed*")))[1]
        if len(scores[1]) != args.per_domain * len(seeds):
            raise SystemExit(f"{folder}: {len(scores[1])} samples, expected {args.per_domain} x {len(seeds)} "
                             "(--per-domain must match the folder's; pass another --out for another count)")
        return scores

    base = scores_of(base_folder)

    rows = []
    for group in wanted:
        name, text = range_file_text(domain, group, groups[group])
        folder = out / group
        t0 = time.perf_counter()
        if not scored(folder, text):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "ranges.yaml").write_text(text)
            bench_demo.run_eval(args.model, folder, name, seeds_arg, split, args.per_domain, args.workers,
                                ranges=folder / "ranges.yaml")
        rows.append((group, groups[group], scores_of(folder), time.perf_counter() - t0))

    species = sorted(set(base[2][base[1] == 1]))
    print(f"\n## {args.set}: each species' APCER where the set's BPCER = 5%, and the change when one group of "
          "factors is put back to the training ranges [95% bootstrap of two independent sets]\n")
    _, at5 = bench_demo.apcer_at_bpcer(*base)
    auc = bench_demo.species_auc(*base)
    print("| put back | " + " | ".join(species) + " |")
    print("|---|" + "---|" * len(species))
    print("| nothing (the set itself) | " + " | ".join(f"{bench_demo.pct(at5[k])}, AUC {auc[k]:.3f}"
                                                     for k in species) + " |")
    for group, factors, scores, _ in rows:
        _, g5 = bench_demo.apcer_at_bpcer(*scores)
        cells = []
        for k in species:
            d5, (lo5, hi5), dauc, (lo, hi) = change_interval(base, scores, k)
            cells.append(f"{bench_demo.pct(g5[k])} ({100 * d5:+.1f} [{100 * lo5:+.1f}, {100 * hi5:+.1f}]), "
                         f"AUC {dauc:+.3f} [{lo:+.3f}, {hi:+.3f}]")
        print(f"| {group} | " + " | ".join(cells) + " |")
    print("\nGroups put back (the set's values -> the training values):")
    from edge_fas.sim.ranges import get_ranges

    held = get_ranges(domain, bench_demo.custom_ranges(domain))
    for group, factors, scores, seconds in rows:
        n = f"{int((scores[1] == 0).sum())} bona fide, {int((scores[1] == 1).sum())} attacks"
        moved = "; ".join(f"{k} {list(held.values[k]) if isinstance(held.values[k], tuple) else held.values[k]} -> {v}"
                          for k, v in factors.items())
        print(f"- {group} ({n}, {seconds:.0f} s): {moved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
