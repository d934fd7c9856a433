"""What each operating point would cost, read off `edge-fas eval` reports: thresholds chosen on one set of
reports (validation), applied to another (test), with BPCER and every species' APCER there.

    .venv/bin/python benchmarks/bench_tradeoff.py --choose runs/b34-g34/rand_heldout_val \
        --apply runs/b34-g34-test/rand_test [--targets apcer=0.05,eer,bpcer=0.05]

Each folder may hold one report (scores.csv) or one per seed (seed*/scores.csv). Use it when `edge-fas train`,
`export` or `run` warns that an artifact's operating point refuses most people: it shows, on data nothing
was chosen on, which attacks each alternative would let through. Nothing is written; to change an
artifact's operating point, see bench_operating_point.py --refit-into.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_fas import metrics  # noqa: E402

TARGETS = "apcer=0.05,apcer=0.2,eer,bpcer=0.1,bpcer=0.05,bpcer=0.01"


def read_scores(folder: str):
    """(scores, labels, species, metas) of every report (scores.csv with its metrics.json) in `folder` or its
    subfolders."""
    root = Path(folder)
    files = [root / "scores.csv"] if (root / "scores.csv").exists() else sorted(root.glob("*/scores.csv"))
    if not files:
        raise SystemExit(f"{folder}: no scores.csv in it or its subfolders; point at an `edge-fas eval --out` folder")
    rows = [r for f in files for r in csv.DictReader(open(f))]
    metas = [json.loads((f.parent / "metrics.json").read_text())["meta"] for f in files]
    return (np.array([float(r["score"]) for r in rows]), np.array([int(r["label"]) for r in rows]),
            np.array([r["species"] for r in rows]), metas)


def check_comparable(choose_metas: list, apply_metas: list) -> None:
    """One model scored every report through one runtime, and no data is on both sides."""
    for key in ("model", "scored_by"):
        seen = {str(m.get(key)) for m in choose_metas + apply_metas}
        if len(seen) > 1:
            raise SystemExit(f"the reports disagree on {key}: {sorted(seen)}; thresholds of one model say nothing "
                             "about another's scores")
    shared = {m.get("data") for m in choose_metas} & {m.get("data") for m in apply_metas}
    if shared:
        raise SystemExit(f"the same data is on both sides ({sorted(shared)[0]}): the second set must be held out")


def table(choose, apply, targets) -> str:
    """One row per target: the threshold chosen on `choose`, then edge_fas.metrics.evaluate's rates on both."""
    attacks = sorted(set(apply[2][apply[1] == 1]))
    head = "| target (chosen on the first set) | threshold | BPCER there | BPCER here [95%] | " + " | ".join(attacks) + " |"
    lines = [head, "|" + "---|" * (4 + len(attacks))]
    for target in targets:
        thr = metrics.operating_threshold(choose[0], choose[1], target, species=choose[2])["threshold"]
        there = metrics.evaluate(*choose[:3], threshold=thr)
        here = metrics.evaluate(*apply[:3], threshold=thr)
        lo, hi = here["detail"]["bpcer"]["ci95"]
        cells = [f"{here['apcer'][s]:.1%}" for s in attacks]
        lines.append(f"| {target} | {thr:.4f} | {there['bpcer']:.1%} | {here['bpcer']:.1%} [{lo:.1%}, {hi:.1%}] | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--choose", required=True, help="eval report folder the thresholds are chosen on")
    p.add_argument("--apply", required=True, help="eval report folder they are applied to (held out)")
    p.add_argument("--targets", default=TARGETS, help=f"comma separated (default {TARGETS})")
    args = p.parse_args(argv)
    choose, apply = read_scores(args.choose), read_scores(args.apply)
    check_comparable(choose[3], apply[3])
    print(f"thresholds chosen on {args.choose} ({len(choose[0])} samples), applied to {args.apply} "
          f"({len(apply[0])} samples); APCER per species at each, on the second set")
    print(table(choose, apply, [t.strip() for t in args.targets.split(",") if t.strip()]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
