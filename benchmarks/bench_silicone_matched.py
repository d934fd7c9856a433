"""Is the rig's silicone mask in the network's crops at all? The same scene rendered with and without the mask.

    .venv/bin/python benchmarks/bench_silicone_matched.py --model runs/RUN/artifact \
        [--sets rand,rand_heldout,rand_test] [--seed 300] [--scenes 120] [--workers 2]

A diagnosis of the synthetic rig, no network involved. bench_silicone_cues.py asks whether simple measurements
separate silicone masks from *other people's* skin; this asks the prior question: how much does a silicone mask
change the crop of *the same person* in the same pose, light and camera, against what the sensor's noise changes
between two frames of that person? The ratio is per pixel: a change below the noise in every pixel can still be
found where it is coherent over many pixels (an edge, a texture), and a change above it is usable only by a detector
that knows what that person's skin looks like. It says which of the mask's drawn factors reach the network's input
at all, and in which stream; bench_silicone_frames.py then asks whether the noise is what hides them.

For each scene (a silicone sample of the set's range set at --seed, index 0..N-1) it renders, at the same frame
noise unless said otherwise:
- `mask`: the silicone mask as drawn;
- `skin`: the same scene without the mask (the wearer's own face), and `skin'` with other frame noise;
- `neutral`: the mask with every drawn material factor set to skin's (same near-IR level and texture, no
  softening, no thickness, no seam, skin's gloss and scattering, no colour change): what wearing a mask changes
  beyond its materials (the wearer's specular map, the eye holes, hair lying on it);
- `neutral + F`: one factor group F as drawn, the rest neutral;
- `rigid`: the same scene with a rigid mask's materials (a species the networks catch, AUC 0.97), for scale.

Each is cut with the mask's own face box, the artifact's preprocessing (the network's input), and compared over
the whole crop (the glued edge lies at the face's border) per modality: the RMS of the difference, in the
network's units, over pixels valid in both. A change that moves the surface (thickness, softening) also shifts
features by a fraction of a pixel, which a pixel difference counts though no detector without the person's own
reference could use it; the purely photometric factors (level, texture, edge, sheen, dot spread, pigment) change
pixels in place. It prints, per range set, the median over scenes of each change's RMS
divided by the noise's (skin - skin'), with the interquartile range and the share of scenes whose change exceeds the
noise, and the same ratio for the 99th percentile of the absolute difference (where a local change shows). Seed 300 is no benchmark's (edge_fas/data/evaluation_sets.py) and no training's.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from multiprocessing import Pool
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODALITIES = ("rgb", "depth", "ir")

# factor group -> the material keys a silicone mask draws for it (edge_fas/sim/randomized.py draw_scene)
GROUPS = {
    "near-IR level (silicone.ir_ratio)": ("silicone_ir",),
    "near-IR texture kept (silicone.ir_texture)": ("silicone_ir_texture",),
    "relief softened (silicone.smooth_px)": ("silicone_smooth_px",),
    "thickness (silicone.thickness_m)": ("silicone_m",),
    "glued edge (silicone.seam)": ("silicone_seam",),
    "sheen (silicone.gloss)": ("silicone_gloss",),
    "dot spread (silicone.scatter)": ("silicone_scatter",),
    "pigment (desaturate, tint, lightness)": ("silicone_desaturate", "silicone_keep", "silicone_tint",
                                              "silicone_lightness"),
}


def neutral_materials(scene) -> dict:
    """The scene's silicone materials with every drawn factor set to what skin has (see the module docstring)."""
    from edge_fas.sim.presentations import MATERIALS

    m = dict(scene.materials)
    m.update(silicone_ir=float(scene.identity.skin_ir), silicone_ir_texture=1.0, silicone_smooth_px=0.01,
             silicone_m=0.0, silicone_seam=0.0, silicone_gloss=float(MATERIALS["skin_gloss"]),
             silicone_scatter=float(MATERIALS["skin_scatter"]), silicone_desaturate=0.0, silicone_keep=1.0,
             silicone_tint=(0.0, 0.0, 0.0), silicone_lightness=1.0)
    return m


def variants(rig, index: int) -> dict:
    """{name: (scene, noise key)} for one scene index (the noise key is the species the frame noise is drawn for)."""
    mask = rig.sample("flexible_mask", index)
    skin = replace(mask, species="bona_fide", materials={})
    neutral = neutral_materials(mask)
    out = {"mask": (mask, "flexible_mask"), "skin": (skin, "flexible_mask"), "skin'": (skin, "bona_fide"),
           "neutral": (replace(mask, materials=neutral), "flexible_mask")}
    for group, keys in GROUPS.items():
        out[f"neutral + {group}"] = (replace(mask, materials={**neutral, **{k: mask.materials[k] for k in keys}}),
                                     "flexible_mask")
    rigid_materials = dict(rig.sample("rigid_mask", index).materials)
    out["rigid"] = (replace(mask, species="rigid_mask", materials=rigid_materials), "flexible_mask")
    return out


def render_variant(rig, scene, noise_key: str, index: int):
    """rig.render for a given scene, its frame noise drawn as for species `noise_key`.

    Done here by standing in for rig.sample rather than by a scene argument to RandomizedRig.render: any edit of
    edge_fas/sim changes the rig's fingerprint, which re-renders every cached and benchmarked scene."""
    original = rig.sample
    rig.sample = lambda species, i: scene
    rig._atlases.clear()  # keyed by (species, index): a variant with other materials must build its own
    try:
        return rig.render(noise_key, index)
    finally:
        rig.sample = original


def _scene_changes(args):
    """{variant: {modality: RMS change against its reference}} for one scene index, or None without a face."""
    domain, seed, index, width, height, params = args
    from edge_fas.data.synthetic import _rig, register
    from edge_fas.preprocess import crop_face

    rig = _rig(domain, seed, width, height)
    frames = {name: render_variant(rig, scene, key, index) for name, (scene, key) in variants(rig, index).items()}
    truth = frames["mask"].truth
    if truth is None or truth.face_box is None:
        return None
    crops = {name: crop_face(register(f), truth.face_box, params) for name, f in frames.items()}

    def rms(a, b) -> dict:
        out = {}
        for mod in MODALITIES:
            x, y = getattr(a, mod), getattr(b, mod)
            valid = (x != 0).all(0) & (y != 0).all(0) if mod != "rgb" else np.ones(x.shape[1:], bool)
            d = np.abs(x - y)[:, valid]
            out[mod] = (float(np.sqrt((d ** 2).mean())), float(np.percentile(d, 99))) if d.size else (np.nan, np.nan)
        return out

    changes = {"noise (skin - skin')": rms(crops["skin"], crops["skin'"]),
               "mask - skin": rms(crops["mask"], crops["skin"]),
               "neutral - skin": rms(crops["neutral"], crops["skin"]),
               "rigid - skin": rms(crops["rigid"], crops["skin"])}
    for group in GROUPS:
        changes[f"{group}: neutral + it - neutral"] = rms(crops[f"neutral + {group}"], crops["neutral"])
    return changes


def report(domain: str, rows: list[dict]) -> None:
    noise = {m: np.array([r["noise (skin - skin')"][m] for r in rows]) for m in MODALITIES}  # (scenes, 2)
    print(f"\n## {domain}: {len(rows)} scenes (synthetic rig)\n")
    print("noise, median over scenes of skin - skin' (network units), RMS / 99th percentile of |difference|: "
          + ", ".join(f"{m} {np.nanmedian(noise[m][:, 0]):.4f} / {np.nanmedian(noise[m][:, 1]):.4f}" for m in MODALITIES))
    print("\nEach cell: the change's RMS over the noise's, median over scenes [interquartile range], share of scenes "
          "above 1; then the same for the 99th percentile of |difference| (a local change such as an edge shows there).\n")
    print("| change | " + " | ".join(f"{m}: RMS x noise; share > 1 | {m}: 99th pct x noise" for m in MODALITIES) + " |")
    print("|---|" + "---|---|" * len(MODALITIES))
    for name in rows[0]:
        if name.startswith("noise"):
            continue
        cells = []
        for m in MODALITIES:
            ratio = np.array([r[name][m] for r in rows]) / np.maximum(noise[m], 1e-9)
            q1, q2, q3 = np.nanpercentile(ratio[:, 0], [25, 50, 75])
            cells.append(f"{q2:.2f} [{q1:.2f}, {q3:.2f}]; {100 * np.nanmean(ratio[:, 0] > 1):.0f}%")
            cells.append(f"{np.nanmedian(ratio[:, 1]):.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def refuse_benchmark_seed(domain: str, seed: int) -> None:
    """Exit naming the benchmark set whose scenes rig `seed` of `domain` draws (these audits sample every index of
    a seed, so any split a benchmark scores there counts)."""
    from edge_fas.data.evaluation_sets import reserved_by

    taken = next((name for split in ("train", "val", "test") if (name := reserved_by(domain, seed, split))), None)
    if taken:
        raise SystemExit(f"rig seed {seed} of {domain} is benchmark set {taken}'s; pass another seed")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="an artifact whose preprocessing cuts the crops (its manifest)")
    ap.add_argument("--sets", default="rand,rand_heldout,rand_test", help="range sets of the randomised family")
    ap.add_argument("--seed", type=int, default=300, help="rig seed (300: no benchmark's, no training's)")
    ap.add_argument("--scenes", type=int, default=120)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", default="640x480", help="the rig's frame size (the recipe's data.rig_size)")
    args = ap.parse_args()

    from edge_fas.artifact import load_artifact
    from edge_fas.preprocess import PreprocessParams

    params = PreprocessParams.from_dict(load_artifact(args.model).manifest["preprocess"])
    width, height = (int(v) for v in args.size.split("x"))
    for domain in [s.strip() for s in args.sets.split(",")]:
        refuse_benchmark_seed(domain, args.seed)
        jobs = [(domain, args.seed, i, width, height, params) for i in range(args.scenes)]
        with Pool(args.workers) as pool:
            rows = [r for r in pool.imap(_scene_changes, jobs, chunksize=4) if r is not None]
        report(domain, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
