"""The papers' evaluation protocols as named data, and their synthetic-domain stand-ins.

A Protocol says which sources train, which are tested, and which modalities are missing at test.
Dataset letters follow MMDG: C = CASIA-SURF CeFA, P = PADISI-Face, S = CASIA-SURF, W = WMCA
(plus M = CASIA-SURF MmFA and H = HQ-WMCA for mmFAS). Every protocol also runs on the synthetic
rig's domains, one per dataset (SYNTHETIC_DOMAIN), which is what CI and this machine can run:

    cfg = protocol_config("mmdg-p1-cps-w", "mmdg")     # a training config dict for edge_fas.training
    cfg = protocol_config("mmdg-p2-cps-w-no-depth", "mmdg")

The real-data versions need the datasets (licence-gated) and, for the papers' numbers, the
pretrained backbones (ImageNet ViT-B/16 for mmfas/mmdg, ResNet-50 and ArcFace for spoof_trace).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from edge_fas.errors import ConfigError

__all__ = ["Protocol", "PROTOCOLS", "SYNTHETIC_DOMAIN", "get_protocol", "protocol_config"]

SYNTHETIC_DOMAIN = {"C": "cefa", "P": "padisi", "S": "surf", "W": "wmca", "M": "surf", "H": "wmca"}
DATASET_NAMES = {"C": "CASIA-SURF CeFA", "P": "PADISI-Face", "S": "CASIA-SURF", "W": "WMCA",
                 "M": "CASIA-SURF MmFA", "H": "HQ-WMCA"}


@dataclass(frozen=True)
class Protocol:
    name: str
    paper: str
    train: tuple[str, ...]          # dataset letters
    test: tuple[str, ...]
    missing_at_test: tuple[str, ...] = ()  # modalities absent at test time
    note: str = ""
    extra: dict = field(default_factory=dict)

    def synthetic(self) -> tuple[list[str], list[str]]:
        """(train domains, test domains) on the synthetic rig. Testing on a training domain is
        intra-domain: the synthetic test split never shares a sample with the training split."""
        return (list(dict.fromkeys(SYNTHETIC_DOMAIN[x] for x in self.train)),
                list(dict.fromkeys(SYNTHETIC_DOMAIN[x] for x in self.test)))


def _build() -> dict[str, Protocol]:
    p = {}
    # MMDG Protocol 1: leave one dataset out; Protocol 2: the same with modalities missing at test
    for held in "WSPC":
        src = tuple(x for x in "CPSW" if x != held)
        base = f"mmdg-p1-{''.join(src).lower()}-{held.lower()}"
        p[base] = Protocol(base, "MMDG (CVPR 2024) Protocol 1", src, (held,))
        for miss, tag in ((("depth",), "no-depth"), (("ir",), "no-ir"), (("depth", "ir"), "rgb-only")):
            name = f"mmdg-p2-{''.join(src).lower()}-{held.lower()}-{tag}"
            p[name] = Protocol(name, "MMDG (CVPR 2024) Protocol 2", src, (held,), miss)
    # MMDG Protocol 3: two sources, two targets
    p["mmdg-p3-cw-ps"] = Protocol("mmdg-p3-cw-ps", "MMDG (CVPR 2024) Protocol 3", ("C", "W"), ("P", "S"))
    p["mmdg-p3-ps-cw"] = Protocol("mmdg-p3-ps-cw", "MMDG (CVPR 2024) Protocol 3", ("P", "S"), ("C", "W"))
    # mmFAS cross-dataset: train CeFA, test CeFA, MmFA, WMCA, HQ-WMCA (and the image-weighted average)
    p["mmfas-cross"] = Protocol("mmfas-cross", "mmFAS / flexible-modal (2023) cross-dataset", ("C",),
                                ("C", "M", "W", "H"), note="report each test set and the image-weighted average")
    # WMCA and CeFA protocols (real data only: their partitions are in the datasets' own files)
    p["wmca-grandtest"] = Protocol("wmca-grandtest", "WMCA grandtest", ("W",), ("W",),
                                   note="folds from the protocol CSV (train/dev/eval)")
    p["wmca-loo"] = Protocol("wmca-loo", "WMCA leave-one-attack-out", ("W",), ("W",),
                             note="one protocol CSV per held-out attack type")
    for k in ("1", "2", "4"):
        p[f"cefa-{k}"] = Protocol(f"cefa-{k}", f"CeFA protocol {k}", ("C",), ("C",),
                                  note="subsets and lists from the CeFA release (4@1..3 for protocol 4)")
    # synthetic leave-one-domain-out (benchmarks/lodo.py)
    for held in ("surf", "cefa", "wmca", "padisi"):
        letter = {v: k for k, v in SYNTHETIC_DOMAIN.items() if k in "CPSW"}[held]
        src = tuple(x for x in "CPSW" if x != letter)
        p[f"synthetic-lodo-{held}"] = Protocol(f"synthetic-lodo-{held}", "edge-fas synthetic LODO", src, (letter,))
    return p


PROTOCOLS = _build()


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}; known: {', '.join(sorted(PROTOCOLS))}")
    return PROTOCOLS[name]


def protocol_config(name: str, model: str, preset: str = "edge", base: dict | None = None) -> dict:
    """A training config (see edge_fas.training) running protocol `name` on the synthetic domains.
    Missing-at-test modalities become test-time drops via `data.test_missing`."""
    from edge_fas.training import DEFAULTS

    pr = get_protocol(name)
    train_d, test_d = pr.synthetic()
    cfg = copy.deepcopy(base or DEFAULTS)
    cfg["model"] = {"name": model, "preset": preset, "overrides": {}}
    cfg["data"].update(train_domains=train_d, test_domains=test_d, test_missing=list(pr.missing_at_test))
    cfg["out"] = f"runs/{name}-{model}"
    return cfg
