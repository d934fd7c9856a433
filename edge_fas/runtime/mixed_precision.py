"""Mixed precision: which layers a reduced-precision model (int8 or fp16) keeps in float32 so that it makes
float32's decisions, chosen the way `polygraphy debug precision` or an accuracy-aware tuner works.

Each candidate node is put alone in the lower precision (every other candidate in float32) on selection crops of a
seed nothing else renders (SELECTION_SEED), and the nodes are ranked by the decisions they flip alone, then by the
mean |change| of the calibrated score. The fewest of the most sensitive (counts FLOAT_STEPS in turn) are kept in
float32 that flip at most SELECTION_MAX_FLIPS of the selection crops' decisions, and so agree on at least the gate's
share. Choosing only to the gate's 99.5% left no margin: 300 crops allow one flip, and a model chosen to exactly that
missed its held-out gate (g34e: 99.33%). A seed's crops come from one set of rigs (cameras, people), so a choice made
on one seed can fit that seed's rigs: r56's 30 nodes flipped none of 600 crops of the selection seed and 8 of 600 at
its gate's seed. So a count must also flip at most as many of CONFIRM_FRAME_SETS crops of another seed
(CONFIRM_SEED: other rigs, never ranked on) before it is chosen. The gate then judges the chosen model on its own
crops, as it judges any.

The precision is given by `build(keep_float, dst)`, which writes the model with the nodes `keep_float` (names) in
float32 and every other candidate in the lower precision: quantize.py (int8) and precision.py (fp16) each give one."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

from edge_fas.errors import EdgeFasError

SELECTION_SEED = 3  # calibration renders seed 0, the gates seed 1, bench_int8 --check seed 2
CONFIRM_SEED = 38  # other rigs than the selection seed's (bench_int8.py --check refuses both)
SELECTION_FRAME_SETS = 300
CONFIRM_FRAME_SETS = 300  # crops of CONFIRM_SEED, which confirm a count the ranking crops chose
SELECTION_MAX_FLIPS = 0  # decisions the chosen model may still flip on the selection crops: a margin below the gate's
FLOAT_STEPS = (1, 2, 4, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 100, 120, 150, 200)

Build = Callable[[list, Path], object]


def selection_crops(artifact, quiet: bool = True):
    """(batch, labels): SELECTION_FRAME_SETS synthetic-rig crops of SELECTION_SEED, rendered for a choice only."""
    from edge_fas.runtime.quantize import synthetic_crops
    return synthetic_crops(SELECTION_FRAME_SETS, artifact.preprocess, seed=SELECTION_SEED, quiet=quiet)


def confirmation_crops(artifact, quiet: bool = True):
    """(batch, labels): CONFIRM_FRAME_SETS synthetic-rig crops of CONFIRM_SEED, rendered for a choice only."""
    from edge_fas.runtime.quantize import synthetic_crops
    return synthetic_crops(CONFIRM_FRAME_SETS, artifact.preprocess, seed=CONFIRM_SEED, quiet=quiet)


def rank_nodes(artifact, nodes: list[str], build: Build, selection: tuple, work: Path, precision: str,
               quiet: bool = True, ref=None) -> list[dict]:
    """Every node of `nodes` alone in the lower precision (the rest in float32), on the selection crops:
    [{node, flips, mean_change}] of its decisions against float32's, most flips first (then the larger mean |change|
    of the calibrated score). ref: float32's calibrated scores on the selection crops, when known."""
    from edge_fas.progress import Progress
    from edge_fas.runtime import precision as prec
    batch, labels = selection
    thr = prec.operating_threshold(artifact)
    if ref is None:
        ref = prec.calibrated_ort_scores(artifact, artifact.onnx_path, batch)
    probe = Path(work) / f"probe-{precision}.onnx"
    bar = Progress(f"{precision}: each node's effect on the decisions", len(nodes), quiet=quiet)
    rows = []
    for name in nodes:
        bar.update()
        build([n for n in nodes if n != name], probe)
        f = prec.compare(ref, prec.calibrated_ort_scores(artifact, probe, batch), thr, labels)
        rows.append({"node": name, "flips": int(f["flips"]), "mean_change": float(f["score_abs_diff_mean"])})
    bar.close()
    probe.unlink(missing_ok=True)
    return sorted(rows, key=lambda r: (r["flips"], r["mean_change"]), reverse=True)


def choose_float_nodes(artifact, nodes: list[str], build: Build, precision: str, selection: tuple | None = None,
                       min_agreement: float | None = None, work=None, quiet: bool = True,
                       max_flips: int = SELECTION_MAX_FLIPS, confirm: tuple | None = None) -> dict:
    """The fewest nodes of `nodes`, most sensitive first (rank_nodes), to keep in float32 for `precision` to flip at
    most `max_flips` of the selection crops' decisions and agree with float32's on at least `min_agreement` (the
    gate's), trying FLOAT_STEPS counts in turn; a count that does is chosen only if it does on `confirm` (batch,
    labels) too. Without a given selection both are rendered (selection_crops, confirmation_crops); a given selection
    is confirmed only on a given `confirm`. Returns {nodes, selection: figures}; raises EdgeFasError when even every
    node in float32 misses it."""
    from edge_fas.runtime import precision as prec
    need = min_agreement or prec.MIN_AGREEMENT
    data = "given selection set" if selection is not None else \
        f"synthetic rig crops, seed {SELECTION_SEED} (rendered for this choice only)"
    confirm_data = "given confirmation set"
    if selection is None:
        selection = selection_crops(artifact, quiet)
        if confirm is None:
            confirm = confirmation_crops(artifact, quiet)
            confirm_data = f"synthetic rig crops, seed {CONFIRM_SEED} (rendered for this choice only)"
    batch, labels = selection
    with tempfile.TemporaryDirectory(prefix=f"{precision}-mixed-", dir=work) as tmp:
        tmp = Path(tmp)
        thr = prec.operating_threshold(artifact)
        ref = prec.calibrated_ort_scores(artifact, artifact.onnx_path, batch)
        ranked = rank_nodes(artifact, nodes, build, selection, tmp, precision, quiet, ref=ref)
        confirm_ref = None if confirm is None else prec.calibrated_ort_scores(artifact, artifact.onnx_path, confirm[0])
        tried, confirmed = [], []
        for count in [c for c in FLOAT_STEPS if c < len(ranked)] + [len(ranked)]:
            keep = [r["node"] for r in ranked[:count]]
            build(keep, tmp / "try.onnx")
            f = prec.compare(ref, prec.calibrated_ort_scores(artifact, tmp / "try.onnx", batch), thr, labels)
            tried.append((count, f["flips"]))
            if f["decision_agreement"] < need or f["flips"] > max_flips:
                continue
            if confirm is not None:
                c = prec.compare(confirm_ref, prec.calibrated_ort_scores(artifact, tmp / "try.onnx", confirm[0]), thr,
                                 confirm[1])
                confirmed.append((count, c["flips"]))
                if c["decision_agreement"] < need or c["flips"] > max_flips:
                    continue
            return {"nodes": keep, "selection": {
                "data": data, "frame_sets": int(len(labels)), "decision_agreement": f["decision_agreement"],
                "flips": int(f["flips"]), "max_flips": int(max_flips), "tried": [list(t) for t in tried],
                "confirmed_on": None if confirm is None else {"data": confirm_data, "frame_sets": int(len(confirm[1])),
                                                              "tried": [list(t) for t in confirmed]},
                "most_sensitive": ranked[:min(10, len(ranked))]}}
    raise EdgeFasError(f"{precision} mixed precision: even with every one of the {len(ranked)} candidate nodes in "
                       f"float the selection crops (or their confirmation crops) agree on less than {need:.1%} of "
                       f"decisions or flip more than {max_flips} ({tried[-1][1]} flips); the model's operating point "
                       f"is too close to its scores "
                       f"for {precision}: use fp32" + (" or fp16" if precision == "int8" else ""))


def rule(max_flips: int) -> str:
    """How the float nodes were chosen, for the manifest."""
    return ("nodes ranked by the decisions each flips when alone in the lower precision; the fewest of the most "
            f"sensitive (counts tried in turn) that flip at most {max_flips} of the selection crops' decisions and "
            "agree on the gate's share of them, and do so on the confirmation crops too where there are some")
