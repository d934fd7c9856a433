"""Two models scored by bench_demo.py on the same scenes, compared pair by pair.

    .venv/bin/python benchmarks/bench_compare.py runs/bench-A runs/bench-B [--per-domain 300] [--resamples 1000]
                                                 [--seed-floor runs/bench-A runs/bench-A-seed1]
    .venv/bin/python benchmarks/bench_compare.py runs/A-seed0,runs/A-seed1,runs/A-seed2 runs/B-seed1,runs/B-seed2

Both folders are bench_demo.py `--out` folders made with the same --per-domain (and so the same rendered
scenes: every test set's scenes depend only on the rig, its seed and the count). Folders scored on an older
version of the rig (another edge_fas.sim.fingerprint in their reports) are refused: their scenes differ. For
each test set both hold, it prints for each species its AUC against bona fide and its APCER at the set's own
BPCER = 5% threshold, and each skin factor's gap (bench_demo.SKIN_FACTORS: BPCER of the darkest third of bona
fide by drawn skin near-IR reflectance, or visible tone, minus that of the brightest or lightest third, at the
same threshold; randomised sets only, the named domains draw no such factors), the same gap by the subject's
distance (nearest third minus farthest: a face seen through fewer pixels), and the AUC of all attacks together
against bona fide, for A, for B and B - A, each
with a 95% paired bootstrap interval: scenes are resampled within species and both models' scores of a
resampled scene go together, so scene-to-scene variation that both share cancels from the difference.
Synthetic rig data only. On report sets (rand_test, the named domains) it describes two models and chooses
neither. On the selection family (rand_heldout_val) a rule written before the run may read its paired
intervals: a condition on a handful of attacks holds better as a paired change with its interval than as a
point estimate against a fixed line.

The paired interval covers the scenes, not the training: two runs of one recipe that differ only in their
training seed differ too. `--seed-floor C D` names two such runs' folders (scored on the same scenes); each
figure then also prints their change, C -> D, and says whether A -> B's change is beyond both (its interval
excludes 0 and it is larger than the seed-to-seed change). One pair of seeds is one draw of that noise, a
rough floor, not its distribution.

Recipe mode: either side may be several folders joined by commas, runs of one recipe under different training seeds
(or rows), all scored on the same scenes. A recipe's figure is then the mean of its runs', and the change's interval
is the paired interval over the scenes (every run's scores of a resampled scene go together) widened on each side
by the runs' spread: half-widths added in quadrature with t(0.975, df) * s * sqrt(1/n_a + 1/n_b), s the pooled
standard deviation of the figure among runs of one recipe, df = n_a + n_b - 2. The runs share the scenes, so that
spread is the training's alone. Few runs make it wide, as they should: it is what they can resolve.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_demo  # noqa: E402

SPECIES = ("flexible_mask", "rigid_mask", "paper_mask", "print", "replay", "partial")
# two-sided 95% quantiles of Student's t by degrees of freedom; beyond 10, 10's (a little wider than the truth)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
# bona fide factors whose thirds' BPCER gap is compared: the skin checks, and distance (drawn for every sample)
GAP_FACTORS = bench_demo.SKIN_FACTORS + (("pose.distance_m", "subject distance", "nearest", "farthest"),)


def auc(s: np.ndarray, attack: np.ndarray, bona: np.ndarray) -> float:
    a, b = s[attack][:, None], s[bona][None, :]
    return float((a > b).mean() + 0.5 * (a == b).mean())


def figures(s: np.ndarray, sp: np.ndarray, thirds: dict) -> dict:
    """{name: value}: all attacks' AUC, per species AUC and APCER at the set's BPCER = 5%, and each GAP_FACTORS
    factor's gap there.
    thirds: {factor: (low third, high third)}, boolean masks over the bona fide samples (in their order in s)."""
    y = (sp != "bona_fide").astype(int)
    bona = np.where(y == 0)[0]
    threshold, apcer = bench_demo.apcer_at_bpcer(s, y, sp, 0.05)
    out = {"AUC all attacks": auc(s, np.where(y == 1)[0], bona)}
    for name in SPECIES:
        attack = np.where(sp == name)[0]
        if len(attack):
            out[f"AUC {name}"] = auc(s, attack, bona)
            out[f"APCER at BPCER 5% {name}"] = apcer[name]
    rejected = s[bona] >= threshold
    for (factor, _, low, high), (lo, hi) in zip(GAP_FACTORS, thirds):
        out[f"{factor} gap ({low} - {high} third BPCER at BPCER 5%)"] = float(rejected[lo].mean() - rejected[hi].mean())
    return out


def scores(name: str, folders, rows: list, per_domain: int) -> list[np.ndarray]:
    """Each folder's scores of set `name`, checked to be the same scenes as the rig's plan (rows) and as each
    other (eval's sample index, dataset and species, row by row)."""
    for d in folders:
        bench_demo.check_rendered_by_this_rig(d / name)
    scored = [list(csv.DictReader(open(d / name / "pooled_scores.csv"))) for d in folders]
    scenes = [[(r["index"], r["dataset"], r["species"]) for r in x] for x in scored]
    if any([r["species"] for r in x] != [r[0] for r in rows] for x in scored) or scenes[1:] != scenes[:-1]:
        raise SystemExit(f"{name}: {', '.join(map(str, folders))} do not hold the same scenes (or not the rig's plan "
                         f"for --per-domain {per_domain}); compare runs made with the same bench_demo options")
    return [np.array([float(r["score"]) for r in x]) for x in scored]


def runs_spread(a: list[dict], b: list[dict], k: str) -> float:
    """Half-width the training's noise adds to the change of recipe means of figure k: t(0.975, df) * s *
    sqrt(1/n_a + 1/n_b), s pooled over both recipes' runs. 0 when neither side has two runs (df = 0)."""
    df = len(a) + len(b) - 2
    if df < 1:
        return 0.0
    squares = sum(((np.array([f[k] for f in x]) - np.mean([f[k] for f in x])) ** 2).sum() for x in (a, b))
    return T975[min(df, 10)] * float(np.sqrt(squares / df)) * float(np.sqrt(1 / len(a) + 1 / len(b)))


def compare(name: str, domain: str, seeds: str, split: str, a, b, per_domain: int,
            resamples: int, seed_floor: tuple[Path, Path] | None = None) -> None:
    """a, b: a bench_demo folder each, or a list of folders each (a recipe's runs: recipe mode)."""
    a, b = ([x] if isinstance(x, Path) else list(x) for x in (a, b))
    recipes = len(a) > 1 or len(b) > 1
    if recipes and seed_floor:
        raise SystemExit("--seed-floor is for one run against one; with several runs a side, their own spread "
                         "widens each interval")
    randomised = name in bench_demo.RANDOMISED  # the named domains draw no factors, skin or other
    if randomised:
        rows = [r for seed in seeds.split(",") for r in bench_demo.drawn_factors(domain, int(seed), split, per_domain)]
    else:  # the scenes are the first folder's, which the others must match
        rows = [(r["species"], None, None) for r in csv.DictReader(open(a[0] / name / "pooled_scores.csv"))]
    runs = scores(name, a + b, rows, per_domain)
    sp = np.array([r[0] for r in rows])
    bona = np.where(sp == "bona_fide")[0]
    factors = GAP_FACTORS if randomised else ()
    skin = [np.array([rows[i][1][f[0]] for i in bona]) for f in factors]
    cuts = [np.quantile(x, [1 / 3, 2 / 3]) for x in skin]

    def thirds(x_of):  # (low, high) masks of every skin factor, for bona fide values x_of(factor index)
        return [(x_of(k) <= c[0], x_of(k) > c[1]) for k, c in enumerate(cuts)]

    def means(fs: list[dict]) -> tuple[dict, dict]:  # each recipe's figures: the mean of its runs'
        return tuple({k: float(np.mean([f[k] for f in side])) for k in fs[0]} for side in (fs[:len(a)], fs[len(a):]))

    each = [figures(s, sp, thirds(lambda k: skin[k])) for s in runs]
    base = means(each)
    floor = None
    if seed_floor and all((d / name / "pooled_scores.csv").is_file() for d in seed_floor):
        fc, fd = (figures(s, sp, thirds(lambda k: skin[k])) for s in scores(name, seed_floor, rows, per_domain))
        floor = {k: fd[k] - fc[k] for k in fc}
    rng = np.random.default_rng(0)
    groups = {k: np.where(sp == k)[0] for k in np.unique(sp)}
    draws = {k: [] for k in base[0]}
    for _ in range(resamples):
        pick = {k: rng.choice(v, len(v)) for k, v in groups.items()}
        idx = np.concatenate([pick[k] for k in groups])
        at = np.searchsorted(bona, pick["bona_fide"])  # bona fide come out in pick's order
        masks = thirds(lambda k: skin[k][at])
        fa, fb = means([figures(s[idx], sp[idx], masks) for s in runs])
        for k in draws:
            draws[k].append((fa[k], fb[k], fb[k] - fa[k]))
    named = [",".join(map(str, x)) for x in (a, b)]
    print(f"\n## {name}: {named[0]} -> {named[1]} ({resamples} paired resamples of the scenes"
          + (f"; recipes of {len(a)} and {len(b)} runs, each interval widened by the runs' spread)" if recipes else ")")
          + (f"; seed floor {seed_floor[0]} -> {seed_floor[1]}" if floor else ""))
    for k in base[0]:
        d = np.array(draws[k])
        lo, hi = np.percentile(d[:, 2], 2.5), np.percentile(d[:, 2], 97.5)
        change = base[1][k] - base[0][k]
        if recipes:
            spread = runs_spread(each[:len(a)], each[len(a):], k)
            lo, hi = change - np.hypot(change - lo, spread), change + np.hypot(hi - change, spread)
        line = f"- {k}: {base[0][k]:.3f} -> {base[1][k]:.3f}; change {change:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        if lo > 0 or hi < 0:  # said outright: an end within 0.0005 of 0 prints as +-0.000 and hides it
            line += " (interval excludes 0)"
        if recipes:
            line += (f"; runs' spread +-{spread:.3f} (runs: " + ", ".join(f"{f[k]:.3f}" for f in each[:len(a)])
                     + " -> " + ", ".join(f"{f[k]:.3f}" for f in each[len(a):]) + ")")
        if floor:
            beyond = (lo > 0 or hi < 0) and abs(change) > abs(floor[k])
            line += f"; seed-to-seed {floor[k]:+.3f}: {'beyond both' if beyond else 'within the scenes or the seeds'}"
        print(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="bench_demo.py --out folder of the first model, or several joined by commas: the runs "
                              "of one recipe (recipe mode)")
    ap.add_argument("b", help="the same for the second model or recipe")
    ap.add_argument("--per-domain", type=int, default=300, help="bench_demo's --per-domain for both (default 300)")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed-floor", type=Path, nargs=2, metavar=("C", "D"),
                    help="two bench_demo folders of one recipe trained with different seeds: the change between them "
                         "is printed beside each figure as a rough floor for A -> B's")
    args = ap.parse_args()
    args.a, args.b = ([Path(p) for p in x.split(",") if p] for x in (args.a, args.b))
    done = 0
    for name, domain, seeds, split in bench_demo.TEST_SETS + bench_demo.SELECTION_SETS:
        if all((d / name / "pooled_scores.csv").is_file() for d in args.a + args.b):
            compare(name, domain, seeds, split, args.a, args.b, args.per_domain, args.resamples, args.seed_floor)
            done += 1
    if not done:
        raise SystemExit(f"no test set has pooled_scores.csv in every one of {', '.join(map(str, args.a + args.b))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
