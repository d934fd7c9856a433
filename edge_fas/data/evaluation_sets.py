"""The synthetic scenes the benchmarks keep for choosing and reporting models, and the check that training
never renders them.

A synthetic scene is fixed by its domain (range set), rig seed, split and index: the same triple gives the same
people, cameras and lighting whatever the attack mix (edge_fas.data.synthetic.sample_plan). benchmarks/bench_demo.py
scores a model on the sets below; a training run whose training or validation split is one of them would
choose its epoch and operating point on the very people it is then judged or compared on. That happened once: a
continuation of the demo model's recipe on "another data.seed" (configs/randomized-edge.yaml) picked seed 3,
whose `rand_heldout` validation split is half of the selection family. `edge-fas train` and `edge-fas cache
build` now refuse such a config (check_training_data).
"""

from __future__ import annotations

from edge_fas.errors import ConfigError

# name, domains, rig seeds, split (bench_demo.py's --sets)
REPORT_SETS = (
    ("rand_test", "rand_test", "11,12", "test"),
    ("named_domains", "surf,cefa,wmca,padisi", "7", "test"),
    ("rand_heldout_test", "rand_heldout", "5", "test"),
)
# for choosing between candidate models (an input, an augmentation, whether to adopt a continuation), never
# for reporting
SELECTION_SETS = (
    ("rand_heldout_val", "rand_heldout", "3,4", "val"),
    ("rand_heldout_proc_val", "rand_heldout_proc", "21,22", "val"),
    ("rand_heldout_bright_val", "rand_heldout_bright", "31,32", "val"),
    ("rand_heldout_dim_val", "rand_heldout_dim", "41,42", "val"),
    ("rand_heldout_skinlevel_val", "rand_heldout_skinlevel", "51,52", "val"),
)


def _sets_scoring(domain: str, split: str):
    """(set name, its rig seeds) for every benchmark set that scores `domain`'s `split`."""
    for name, domains, seeds, set_split in REPORT_SETS + SELECTION_SETS:
        if set_split == split and domain in domains.split(","):
            yield name, [int(s) for s in seeds.split(",")]


def reserved_by(domain: str, seed: int, split: str) -> str | None:
    """The benchmark set that scores `domain`'s `split` at rig `seed`, or None."""
    return next((name for name, seeds in _sets_scoring(domain, split) if int(seed) in seeds), None)


def reserved_seeds(domain: str, split: str) -> list[int]:
    """Every rig seed at which a benchmark set scores `domain`'s `split`."""
    return sorted({s for _, seeds in _sets_scoring(domain, split) for s in seeds})


def check_training_data(cfg: dict, splits=("train", "val")) -> None:
    """A ConfigError when a synthetic training config's training or validation split (of `splits`; at its
    data.seed) is a benchmark set's scenes. The test split may be one: scoring on it is what it is for."""
    d = cfg["data"]
    if d["source"] != "synthetic":
        return
    seed = int(d["seed"])
    val_domains = d["val_domains"] or d["train_domains"]  # no val_domains: validation draws the training domains
    for split, key, domains in (("train", "train_domains", d["train_domains"]), ("val", "val_domains", val_domains)):
        if split not in splits:
            continue
        for domain in domains or []:
            name = reserved_by(domain, seed, split)
            if name is None:
                continue
            role = "reports" if name in {r[0] for r in REPORT_SETS} else "chooses between models"
            taken = ", ".join(map(str, reserved_seeds(domain, split)))
            raise ConfigError(
                f"data.seed {seed}: the {split} split of {domain} (data.{key}) at rig seed {seed} is the scenes of "
                f"benchmarks/bench_demo.py's {name}, which {role}; training on them would pick this run's "
                f"{'weights' if split == 'train' else 'epoch and operating point'} on the people it is then judged "
                f"or compared on. "
                f"Use another data.seed (the benchmarks take {taken} for {domain} {split})")
