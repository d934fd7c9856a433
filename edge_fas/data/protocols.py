"""The papers' evaluation protocols as data: which list files train, validate and test.

Protocols are kept apart from the readers, the way bob.pad separates databases from protocols: a
Protocol names, per split, the list or partition files (ListRef) it reads and the named test sets it
reports; edge_fas.data.build turns them into records with the dataset readers. Dataset letters follow
MMDG: C = CASIA-SURF CeFA, P = PADISI-Face, S = CASIA-SURF, W = WMCA.

| protocols | lists (looked up in --lists DIR, else DATA_ROOT) |
| --- | --- |
| mmdg-p1-{cps-w, psw-c, csw-p, cpw-s}: leave one dataset out (MMDG Protocol 1) | MMDG-Benchmark/{C,P,S,W}-{train,val,test}.txt |
| mmdg-p2-...-{no-depth, no-ir, rgb-only}: the same with modalities missing at test (Protocol 2) | same |
| mmdg-p3-{cw-ps, ps-cw}: two sources, two targets (Protocol 3) | same |
| mmfas-cross: flexible-modal cross-dataset (train CASIA-SURF + CeFA, test each, WMCA and WMCA per PAI) | FlexModal_Protocols/*.txt |
| wmca-grandtest, wmca-loo-{fakehead, flexiblemask, glasses, papermask, prints, replay, rigidmask} | the grandtest partition CSV |
| cefa-{1.1, 1.3, 1.5} (cross-ethnicity), cefa-{2.1, 2.2} (cross-PAI), cefa-{4.1, 4.3, 4.5} (both) | CASIA_CeFA/protocol/CASIA_CeFA@p<k>_{image,video}_{train,dev,test}.txt |
| casia-surf: the release's own split | CASIA-SURF/{train_list, val_private_list, test_private_list}.txt |

MMDG protocols train on the source datasets' train lists, fix the threshold on their val lists and test
on each target's test list. The MMDG repository carries no licence, so its lists are not copied into
edge-fas: they are read from the user's copy, laid out as in that repository.

Each protocol with dataset letters also has a synthetic stand-in (one synthetic domain per dataset,
SYNTHETIC_DOMAIN), run with `--synthetic`; stand-ins that would lose the protocol's meaning
(leave-one-attack-out, CeFA's ethnicity and PAI splits) are refused. The synthetic-lodo-* protocols
exist on the synthetic rig only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from edge_fas.data.wmca import LOO
from edge_fas.errors import ConfigError

__all__ = ["ListRef", "Protocol", "PROTOCOLS", "SYNTHETIC_DOMAIN", "DATASET_OF", "get_protocol"]

SYNTHETIC_DOMAIN = {"C": "cefa", "P": "padisi", "S": "surf", "W": "wmca"}
DATASET_OF = dict(SYNTHETIC_DOMAIN)  # letter -> dataset name (the readers' and the reports' domain names)
DATASET_NAMES = {"C": "CASIA-SURF CeFA", "P": "PADISI-Face", "S": "CASIA-SURF", "W": "WMCA"}


@dataclass(frozen=True)
class ListRef:
    """One list or partition file of a protocol."""

    names: tuple[str, ...]          # path relative to the lists folder; alternatives, first found wins
    origin: str                     # where a user gets it (named when it is missing)
    polarity: str                   # the source's labels: live=1, attack=1, or words (WMCA partitions)
    datasets: tuple[str, ...]       # the datasets whose lines are taken
    mixed: bool = False             # the file also holds other datasets' lines (each line's path says which)
    base: str = ""                  # folder under the data root that listed paths are relative to
    keep: str = "all"               # all | bona_fide
    split: str | None = None        # WMCA partition: the split (train, val, test) to take
    loo: str | None = None          # WMCA leave-one-out: the held-out species
    fields: tuple[int, ...] = (4,)  # list lines' field counts: 4 = color depth ir label, 2 = path label


@dataclass(frozen=True)
class Protocol:
    name: str
    paper: str
    train: tuple[str, ...]                   # dataset letters (the synthetic stand-in's domains too)
    test: tuple[str, ...]
    missing_at_test: tuple[str, ...] = ()    # modalities absent at test time
    note: str = ""
    lists: dict = field(default_factory=dict)    # "train" / "val" -> tuple[ListRef, ...]
    tests: dict = field(default_factory=dict)    # test-set name -> tuple[ListRef, ...]
    average: tuple[str, ...] = ()            # test sets in the papers' image-weighted average
    synthetic_ok: bool = True                # a synthetic stand-in keeps the protocol's meaning

    @property
    def real(self) -> bool:
        """Whether the protocol is defined on the real datasets (it names list files)."""
        return bool(self.lists)

    @property
    def datasets(self) -> list[str]:
        """The training datasets (domain names, one prototype each for MMDG)."""
        return [DATASET_OF[x] for x in self.train]

    def synthetic(self) -> tuple[list[str], list[str]]:
        """(train domains, test domains) on the synthetic rig. Testing on a training domain is
        intra-domain: the synthetic test split never shares a sample with the training split."""
        return (list(dict.fromkeys(SYNTHETIC_DOMAIN[x] for x in self.train)),
                list(dict.fromkeys(SYNTHETIC_DOMAIN[x] for x in self.test)))

    def list_files(self) -> list[str]:
        """Every list file the protocol reads (first alternative of each), for help and errors."""
        refs = [r for refs in (*self.lists.values(), *self.tests.values()) for r in refs]
        return list(dict.fromkeys(r.names[0] for r in refs))


MMDG_ORIGIN = "the MMDG repository (github.com/OMGGGGG/mmdg), folder MMDG-Benchmark/"
FLEX_ORIGIN = "the MMDG repository (github.com/OMGGGGG/mmdg), folder FlexModal_Protocols/"
WMCA_ORIGIN = ("the WMCA grandtest partition of bob.db.batl as CSV (client_id,filepath,group,label), e.g. "
               "IDIAP_WMCA/WMCA_Grandtest.txt of github.com/liuajian/CASIA-FAS-Dataset, saved as WMCA/grandtest.csv")
CEFA_ORIGIN = "the CASIA-FAS-Dataset re-issue (github.com/liuajian/CASIA-FAS-Dataset), folder CASIA_CeFA/protocol/"
SURF_ORIGIN = "the CASIA-SURF release (its lists, as bob.db.casiasurf and bob.pad.face read them)"
FLEX_PAI = ("fakehead", "flexiblemask", "glasses", "papermask", "print", "replay", "rigidmask")
WMCA_LOO = ("fakehead", "flexiblemask", "glasses", "papermask", "prints", "replay", "rigidmask")
CEFA_SUBPROTOCOLS = {"1.1": "cross-ethnicity, trained on AF", "1.3": "cross-ethnicity, trained on CA",
                     "1.5": "cross-ethnicity, trained on EA", "2.1": "cross-PAI, trained on cloth",
                     "2.2": "cross-PAI, trained on screen", "4.1": "cross-ethnicity and PAI, trained on AF screen",
                     "4.3": "cross-ethnicity and PAI, trained on CA screen",
                     "4.5": "cross-ethnicity and PAI, trained on EA screen"}


def _mmdg(letter: str, split: str) -> ListRef:
    return ListRef((f"MMDG-Benchmark/{letter}-{split}.txt",), MMDG_ORIGIN, "live=1", (DATASET_OF[letter],),
                   fields=(2,) if letter == "P" else (4,))


def _flex(name: str, datasets, mixed=False, keep="all") -> ListRef:
    return ListRef((f"FlexModal_Protocols/{name}",), FLEX_ORIGIN, "live=1", tuple(datasets), mixed, keep=keep)


def _mmdg_protocol(name: str, paper: str, src: str, targets: str, missing=()) -> Protocol:
    return Protocol(name, paper, tuple(src), tuple(targets), tuple(missing),
                    lists={"train": tuple(_mmdg(x, "train") for x in src), "val": tuple(_mmdg(x, "val") for x in src)},
                    tests={DATASET_OF[x]: (_mmdg(x, "test"),) for x in targets})


def _build() -> dict[str, Protocol]:
    p = {}
    # MMDG Protocol 1: leave one dataset out; Protocol 2: the same with modalities missing at test
    for held in "WSPC":
        src = "".join(x for x in "CPSW" if x != held)
        base = f"mmdg-p1-{src.lower()}-{held.lower()}"
        p[base] = _mmdg_protocol(base, "MMDG (CVPR 2024) Protocol 1", src, held)
        for miss, tag in ((("depth",), "no-depth"), (("ir",), "no-ir"), (("depth", "ir"), "rgb-only")):
            name = f"mmdg-p2-{src.lower()}-{held.lower()}-{tag}"
            p[name] = _mmdg_protocol(name, "MMDG (CVPR 2024) Protocol 2", src, held, miss)
    # MMDG Protocol 3: two sources, two targets
    p["mmdg-p3-cw-ps"] = _mmdg_protocol("mmdg-p3-cw-ps", "MMDG (CVPR 2024) Protocol 3", "CW", "PS")
    p["mmdg-p3-ps-cw"] = _mmdg_protocol("mmdg-p3-ps-cw", "MMDG (CVPR 2024) Protocol 3", "PS", "CW")
    # flexible-modal cross-dataset (FlexModal lists): train CASIA-SURF + CeFA, test each, WMCA, WMCA per PAI
    test_list = "CASIA-SURF_CeFA_test.txt"
    tests = {"surf": (_flex(test_list, ["surf"], mixed=True),), "cefa": (_flex(test_list, ["cefa"], mixed=True),),
             "wmca": (_flex("WMCA_test.txt", ["wmca"]),)}
    for pai in FLEX_PAI:  # the per-PAI lists hold attacks only: bona fide from WMCA_test.txt
        tests[f"wmca-{pai}"] = (_flex("WMCA_test.txt", ["wmca"], keep="bona_fide"),
                                _flex(f"WMCA_test_{pai}.txt", ["wmca"]))
    p["mmfas-cross"] = Protocol(
        "mmfas-cross", "mmFAS / flexible-modal FAS cross-dataset (FlexModal_Protocols)", ("S", "C"), ("C", "S", "W"),
        note="reports each test set and their image-weighted average (CeFA, CASIA-SURF, WMCA)",
        lists={"train": (_flex("CASIA-SURF_CeFA_train.txt", ["surf", "cefa"], mixed=True),),
               "val": (_flex("CASIA-SURF_CeFA_val.txt", ["surf", "cefa"], mixed=True),)},
        tests=tests, average=("cefa", "surf", "wmca"))
    # WMCA grandtest and its leave-one-out protocols (partitions from the user's bob.db.batl export)
    part = ListRef(("WMCA/grandtest.csv", "IDIAP_WMCA/WMCA_Grandtest.txt"), WMCA_ORIGIN, "words", ("wmca",),
                   base="WMCA")
    for name, loo in [("wmca-grandtest", None)] + [(f"wmca-loo-{x}", x) for x in WMCA_LOO]:
        held = LOO[loo] if loo else None
        p[name] = Protocol(name, "WMCA " + (f"leave-one-out ({loo} unseen)" if loo else "grandtest"), ("W",), ("W",),
                           lists={"train": (replace(part, split="train", loo=held),),
                                  "val": (replace(part, split="val", loo=held),)},
                           tests={"wmca": (replace(part, split="test", loo=held),)}, synthetic_ok=loo is None)
    # CeFA protocols 1, 2 and 4 with their sub-protocols (the CASIA-FAS-Dataset lists, 0 = live)
    for k, what in CEFA_SUBPROTOCOLS.items():
        def ref(split, k=k):
            names = tuple(f"CASIA_CeFA/protocol/CASIA_CeFA@p{k}_{kind}_{split}.txt" for kind in ("image", "video"))
            return ListRef(names, CEFA_ORIGIN, "attack=1", ("cefa",), fields=(2,))
        p[f"cefa-{k}"] = Protocol(f"cefa-{k}", f"CeFA protocol {k} ({what})", ("C",), ("C",),
                                  lists={"train": (ref("train"),), "val": (ref("dev"),)}, tests={"cefa": (ref("test"),)},
                                  synthetic_ok=False)
    # CASIA-SURF's own train / val / test lists (1 = bona fide)
    def surf(name):
        return ListRef((f"CASIA-SURF/{name}",), SURF_ORIGIN, "live=1", ("surf",), base="CASIA-SURF")
    p["casia-surf"] = Protocol("casia-surf", "CASIA-SURF (CVPR 2019) own split", ("S",), ("S",),
                               lists={"train": (surf("train_list.txt"),), "val": (surf("val_private_list.txt"),)},
                               tests={"surf": (surf("test_private_list.txt"),)})
    # synthetic leave-one-domain-out (benchmarks/lodo.py): synthetic rig only
    for held in ("surf", "cefa", "wmca", "padisi"):
        letter = {v: k for k, v in SYNTHETIC_DOMAIN.items()}[held]
        src = tuple(x for x in "CPSW" if x != letter)
        p[f"synthetic-lodo-{held}"] = Protocol(f"synthetic-lodo-{held}", "edge-fas synthetic LODO", src, (letter,))
    return p


PROTOCOLS = _build()


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}; known: {', '.join(sorted(PROTOCOLS))}")
    return PROTOCOLS[name]
