"""Training and test data from a config's `data` section: the splits and the named test sets.

One place turns a data source into sample indices (streamed: edge_fas.data.stream) or in-memory
CropSets, for `edge-fas train`, `edge-fas eval` and `edge-fas cache` alike:

- `synthetic`: the synthetic rig's domains (edge_fas.data.synthetic);
- `sessions`: recorded field sessions (edge_fas.data.sessions);
- `datasets`: a named protocol (edge_fas.data.protocols) on the public datasets under `data.root`,
  its list files looked up in `data.lists` (else the root) and read by the dataset readers.

    split_index(cfg["data"], "train")                 -> SampleIndex (what training streams)
    test_indices(cfg["data"])                         -> {"wmca": SampleIndex, "wmca-print": SampleIndex, ...}
    build_split(cfg["data"], "train", params)        -> CropSet (decoded into memory: small sets, tools)
    build_test_sets(cfg["data"], params)              -> {"wmca": CropSet, ...}

Every index's and CropSet's meta["data"] says in words what it was computed on; reports carry it. A
test index's meta["missing"] names the modalities its protocol removes at test (MMDG Protocol 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_fas.data import casia_surf, cefa, padisi, wmca
from edge_fas.data.crops import CropSet, drop_modalities
from edge_fas.data.lists import read_list
from edge_fas.data.protocols import ListRef, Protocol, get_protocol
from edge_fas.data.records import DatasetError, Record, load_crops
from edge_fas.data.stream import SampleIndex
from edge_fas.errors import ConfigError

__all__ = ["SOURCES", "DataOptions", "find_list", "ref_records", "split_records", "records_of_test_sets", "build_split",
           "build_test_sets", "split_index", "test_indices", "weighted_average"]

SOURCES = ("synthetic", "sessions", "datasets")
READERS = {"cefa": cefa.records, "surf": casia_surf.records, "wmca": wmca.records, "padisi": padisi.records}


@dataclass(frozen=True)
class DataOptions:
    root: Path
    lists: Path | None = None
    frames_per_video: int = 3
    detect: bool = False
    wmca: str = "preprocessed"

    @classmethod
    def from_config(cls, d: dict) -> "DataOptions":
        if not d.get("root"):
            raise ConfigError(f"data.source is 'datasets' but data.root is not set: pass --data-root DIR (the folder "
                              "holding the datasets and, unless --lists DIR, their list folders)")
        root = Path(d["root"]).expanduser()
        if not root.is_dir():
            raise DatasetError(f"data root {root} does not exist or is not a folder; pass the folder holding the "
                               "datasets (--data-root DIR or data.root)")
        lists = Path(d["lists"]).expanduser() if d.get("lists") else None
        if lists is not None and not lists.is_dir():
            raise DatasetError(f"lists folder {lists} does not exist; pass the folder holding the protocol lists "
                               "(--lists DIR or data.lists) or leave it unset to read them from the data root")
        fpv = int(d.get("frames_per_video", 3))
        if fpv < 1:
            raise ConfigError("data.frames_per_video must be >= 1")
        return cls(root, lists, fpv, bool(d.get("detect", False)), str(d.get("wmca", "preprocessed")))


def find_list(ref: ListRef, opts: DataOptions) -> Path:
    """The file `ref` names: in --lists DIR (as laid out in its source, or flat) if given, else under the root."""
    tried = []
    for name in ref.names:
        if opts.lists is not None:
            tried += [opts.lists / name, opts.lists / Path(name).name]
        else:
            tried.append(opts.root / name)
    for p in tried:
        if p.is_file():
            return p
    where = "--lists DIR" if opts.lists is not None else "the data root"
    raise DatasetError(f"{ref.names[0]} is missing: looked for {', '.join(str(t) for t in dict.fromkeys(tried))}. "
                       f"It comes from {ref.origin}; put it in {where} laid out as there (or pass --lists DIR)")


def dataset_of_path(listed: str) -> str | None:
    """Which dataset a listed path belongs to, by the release folder it starts with."""
    if listed.endswith(".npz"):
        return "padisi"
    first = Path(listed).parts[0] if Path(listed).parts else ""
    if first in ("CeFA", "CASIA_CeFA"):
        return "cefa"
    if first.startswith("CASIA-SURF") or first == "CASIA_SURF":
        return "surf"
    if first.startswith("WMCA"):
        return "wmca"
    return None


def ref_records(ref: ListRef, opts: DataOptions) -> tuple[list[Record], Path]:
    """The records one list (or partition) file gives, and the file."""
    path = find_list(ref, opts)
    base = opts.root / ref.base
    if ref.polarity == "words":  # a WMCA partition CSV
        rows = wmca.select(wmca.read_partition(path), ref.split, ref.loo)
        recs = wmca.video_records(rows, base, opts.wmca, opts.frames_per_video)
    else:
        recs = []
        for line in read_list(path, ref.fields):
            ds = dataset_of_path(line.fields[0]) if ref.mixed else ref.datasets[0]
            if ds is None:
                raise DatasetError(f"{line.where}: cannot tell which dataset {line.fields[0]} belongs to (expected a "
                                   "path starting CeFA/, CASIA-SURF-CROP/, WMCA-Image/ or a .npz file)")
            if ds in ref.datasets:
                recs += READERS[ds](line, ref.polarity, base, opts.frames_per_video)
    if ref.keep == "bona_fide":
        recs = [r for r in recs if r.label == 0]
    if not recs:
        raise DatasetError(f"{path}: no {'/'.join(ref.datasets)} samples selected"
                           + (f" for split {ref.split}" if ref.split else "") + "; is it the right file?")
    return recs, path


def split_records(protocol: Protocol, split: str, opts: DataOptions) -> tuple[list[Record], list[Path]]:
    if split not in protocol.lists:
        raise ConfigError(f"protocol {protocol.name} has no {split!r} split")
    out, files = [], []
    for ref in protocol.lists[split]:
        recs, path = ref_records(ref, opts)
        out += recs
        files.append(path)
    return out, files


def records_of_test_sets(protocol: Protocol, opts: DataOptions) -> dict[str, tuple[list[Record], list[Path]]]:
    out = {}
    for name, refs in protocol.tests.items():
        recs, files = [], []
        for ref in refs:
            r, p = ref_records(ref, opts)
            recs += r
            files.append(p)
        out[name] = (recs, files)
    return out


def _describe(protocol: Protocol, what: str, files, opts: DataOptions, n: int) -> str:
    shown = ", ".join(str(f) for f in files)
    return f"real data, protocol {protocol.name} ({protocol.paper}), {what}: {n} samples from {shown}"


def _dataset_crops(protocol, what, recs, files, opts, params, progress=None) -> CropSet:
    cs = load_crops(recs, params, meta=_dataset_meta(protocol, what, files, opts), detect=opts.detect,
                    progress=progress)
    cs.meta["data"] = _describe(protocol, what, files, opts, len(cs))
    return cs


def _check_source(d: dict) -> str:
    if d["source"] not in SOURCES:
        raise ConfigError(f"data.source {d['source']!r} is unknown; use one of {', '.join(SOURCES)} (public datasets: "
                          "datasets, with data.protocol and data.root)")
    return d["source"]


def _real_protocol(d: dict) -> Protocol:
    if not d.get("protocol"):
        raise ConfigError("data.source is 'datasets' but data.protocol is not set: pass --protocol NAME")
    protocol = get_protocol(d["protocol"])
    if not protocol.real:
        raise ConfigError(f"protocol {protocol.name} exists on the synthetic rig only; use data.source synthetic")
    return protocol


def _session_paths(d: dict, split: str) -> list:
    paths = d["sessions"][split]
    if not paths:
        raise ConfigError(f"data.source is 'sessions' but data.sessions.{split} lists no session folders")
    return paths


def _split_domains(d: dict, split: str, domains=None) -> list[str]:
    if domains is not None:
        return list(domains)
    return list({"train": d["train_domains"], "val": d["val_domains"] or d["train_domains"],
                 "test": d["test_domains"]}[split])


def _synthetic_description(d: dict, domains, split: str) -> str:
    from edge_fas.sim import fingerprint

    w, h = d["rig_size"]  # the rig's version: a change to its physics changes every number computed on it
    return (f"synthetic rig {fingerprint()}, domains {', '.join(domains)} ({split} split, "
            f"{d['per_domain'][split]} per domain{_rows_from(d, split)}, seed {d['seed']}, rig {w}x{h}"
            + (", faces the detector misses skipped" if d.get("missed_face", "truth") == "skip" else "") + ")")


def first_row(d: dict, split: str) -> int:
    """data.start's row for `split`: where each synthetic domain's plan starts (0: its beginning)."""
    return int((d.get("start") or {}).get(split, 0))


def _rows_from(d: dict, split: str) -> str:
    start = first_row(d, split)
    return f" from row {start}" if start else ""


def _custom_ranges(d: dict) -> dict:
    """data.randomization's custom range sets of the randomised family {name: RangeSet}."""
    from edge_fas.sim.ranges import parse_custom

    return parse_custom(d.get("randomization"))


def _dataset_meta(protocol, what, files, opts) -> dict:
    return {"source": "datasets", "protocol": protocol.name, "set": what, "root": str(opts.root),
            "lists": [str(f) for f in files], "frames_per_video": opts.frames_per_video, "detect": opts.detect}


def split_index(d: dict, split: str, domains=None) -> SampleIndex:
    """The samples of `split` (train / val; test for synthetic and sessions) of a config's data section,
    not decoded: what training streams (edge_fas.data.stream)."""
    source = _check_source(d)
    if source == "sessions":
        from edge_fas.data.sessions import session_samples

        paths = _session_paths(d, split)
        samples = session_samples(paths, frames_per_take=int(d["frames_per_take"]))
        return SampleIndex(samples, {"source": "sessions", "sessions": [str(p) for p in paths],
                                     "data": f"recorded sessions ({split}): {', '.join(map(str, paths))}, "
                                             f"{len(samples)} samples"})
    if source == "datasets":
        protocol = _real_protocol(d)
        opts = DataOptions.from_config(d)
        recs, files = split_records(protocol, split, opts)
        return SampleIndex(recs, {**_dataset_meta(protocol, f"{split} split", files, opts),
                                  "data": _describe(protocol, f"{split} split", files, opts, len(recs))}, opts.detect)
    from edge_fas.data.synthetic import synthetic_samples

    domains = _split_domains(d, split, domains)
    w, h = d["rig_size"]
    ranges = _custom_ranges(d)
    samples = [s for dom in domains for s in synthetic_samples(dom, split, int(d["per_domain"][split]), int(d["seed"]),
                                                                int(w), int(h), d["attack_mix"], ranges,
                                                                d.get("missed_face", "truth"), first_row(d, split))]
    return SampleIndex(samples, {"source": "synthetic", "domains": domains, "split": split,
                                 "data": _synthetic_description(d, domains, split)})


def test_indices(d: dict, split: str = "test") -> dict[str, SampleIndex]:
    """The named test sets of a config's data section as sample indices (an empty dict when it has none);
    meta["missing"]: the modalities data.test_missing removes (MMDG Protocol 2)."""
    source = _check_source(d)
    if source == "datasets":
        protocol = _real_protocol(d)
        opts = DataOptions.from_config(d)
        sets = {name: SampleIndex(recs, {**_dataset_meta(protocol, f"test set {name}", files, opts),
                                         "data": _describe(protocol, f"test set {name}", files, opts, len(recs))},
                                  opts.detect)
                for name, (recs, files) in records_of_test_sets(protocol, opts).items()}
    elif source == "sessions":
        sets = {"sessions": split_index(d, split)} if d["sessions"][split] else {}
    else:
        domains = d["test_domains"]
        if not domains:
            return {}
        ix = split_index(d, split, domains=domains)
        ix.meta["all_species"] = _domain_species(domains, d.get("attack_mix", "domain"))
        sets = {"+".join(domains): ix}
    return _with_missing(sets, d)


def _domain_species(domains, attack_mix="domain") -> list[str]:
    """The species the synthetic domains present under `attack_mix`, so one missing from a small sample
    shows as absent, not hidden."""
    from edge_fas.data.synthetic import attack_probabilities

    return sorted({s for dom in domains for s, p in attack_probabilities(dom, attack_mix).items() if p > 0})


def _with_missing(sets: dict, d: dict) -> dict:
    missing = list(d.get("test_missing") or [])
    if missing:
        for name, ix in sets.items():
            ix.meta["missing"] = missing
            ix.meta["data"] = f"{ix.meta.get('data', '')}; modalities removed at test: {', '.join(missing)}"
    return sets


def build_split(d: dict, split: str, params, domains=None, progress=None) -> CropSet:
    """CropSet for `split` (train / val; test for synthetic and sessions) from a config's data section."""
    source = _check_source(d)
    if source == "sessions":  # recorded field sessions: fine-tuning at a new site
        from edge_fas.data.sessions import session_crops

        paths = _session_paths(d, split)
        cs = session_crops(paths, params, frames_per_take=int(d["frames_per_take"]))
        cs.meta["data"] = f"recorded sessions ({split}): {', '.join(map(str, paths))}, {len(cs)} samples"
        return cs
    if source == "datasets":
        protocol = _real_protocol(d)
        opts = DataOptions.from_config(d)
        recs, files = split_records(protocol, split, opts)
        return _dataset_crops(protocol, f"{split} split", recs, files, opts, params, progress)
    from edge_fas.data.synthetic import synthetic_crops

    domains = _split_domains(d, split, domains)
    w, h = d["rig_size"]
    cs = synthetic_crops(domains, split, int(d["per_domain"][split]), seed=int(d["seed"]), params=params,
                         width=int(w), height=int(h), cache_dir=d["cache_dir"], workers=int(d["render_workers"]),
                         attack_mix=d["attack_mix"], progress=progress, ranges=_custom_ranges(d),
                         missed_face=d.get("missed_face", "truth"), start=first_row(d, split))
    cs.meta["data"] = _synthetic_description(d, domains, split)
    return cs


def build_test_sets(d: dict, params, split: str = "test", progress=None) -> dict[str, CropSet]:
    """The named test sets of a config's data section (an empty dict when it has none), with the
    modalities in data.test_missing removed (MMDG Protocol 2)."""
    source = _check_source(d)
    if source == "datasets":
        protocol = _real_protocol(d)
        opts = DataOptions.from_config(d)
        sets = {name: _dataset_crops(protocol, f"test set {name}", recs, files, opts, params, progress)
                for name, (recs, files) in records_of_test_sets(protocol, opts).items()}
    elif source == "sessions":
        sets = {"sessions": build_split(d, split, params)} if d["sessions"][split] else {}
    else:
        domains = d["test_domains"]
        if not domains:
            return {}
        cs = build_split(d, split, params, domains=domains)
        cs.meta["all_species"] = _domain_species(domains, d.get("attack_mix", "domain"))
        sets = {"+".join(domains): cs}
    missing = list(d.get("test_missing") or [])
    if missing:
        for name, cs in sets.items():
            meta = dict(cs.meta)
            sets[name] = drop_modalities(cs, missing)
            removed = f"modalities removed at test: {', '.join(missing)}"
            sets[name].meta = {**meta, "data": f"{meta.get('data', '')}; {removed}"}
    return sets


def weighted_average(results: dict[str, dict], sizes: dict[str, int], names, keys=("hter", "auc", "acer",
                     "hter_at_test_eer", "accuracy", "accuracy_at_bpcer_1pct")) -> dict:
    """The papers' image-weighted average of per-test-set metrics (weight = the set's sample count)."""
    names = [n for n in names if n in results]
    total = sum(sizes[n] for n in names)
    out = {"sets": names, "samples": total}
    for k in keys:
        vals = [(results[n].get(k), sizes[n]) for n in names]
        if total and all(v is not None and v == v for v, _ in vals):
            out[k] = sum(v * w for v, w in vals) / total
        else:
            out[k] = None
    return out
