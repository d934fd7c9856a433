"""The training config: its sections, keys and defaults, reading and overriding it, and the checks
that run before any data is touched.

A training config is YAML with four sections (defaults in DEFAULTS; unknown keys are errors):

    model: {name: spoof_trace, preset: edge, overrides: {},
            pretrained: null | PATH (a timm / torchvision ViT or ResNet-50 weights file, safetensors or .pth:
            loaded into the backbone, and its RGB mean/std become the crops' normalisation)}
    data:  {source: synthetic | sessions | datasets,
            protocol: null (datasets: a protocol name, edge_fas/data/protocols.py), root: null (datasets: the
            folder holding the public datasets), lists: null (the protocol lists' folder; default: root),
            frames_per_video: 3 (video sources), detect: false (re-detect faces in releases that ship crops),
            missed_face: truth | skip (synthetic: a face the detector misses is cut at the rig's true box, a framing
                        more exact than the product ever sees, or the sample is skipped as the product skips it;
                        truth keeps every cached set of earlier runs),
            wmca: preprocessed | raw (which WMCA release the WMCA partitions read),
            train_domains: [...], val_domains: null (= train), test_domains: [],
            test_missing: [] (modalities removed at test, e.g. [depth]),
            per_domain: {train: 240, val: 60, test: 60}, rig_size: [320, 240], cache_dir: runs/cache,
            start: {train: 0, val: 0, test: 0} (synthetic: the row of each domain's plan a split starts at, so a
                        later run trains on the people after an earlier run's per_domain rows; those rows are
                        the same whatever per_domain is),
            crop_cache: true (decoded, detected and cut faces kept under cache_dir/crops, edge_fas.data.cache),
            augment: true, drop: {depth: 0.1, ir: 0.1},
            attack_mix: domain (each domain's own species mix) | uniform (every attack species equally)
                        | {species: weight} (relative to uniform, unlisted species 1: hard-class emphasis),
            randomization: {rand_NAME: {base: rand, factor: [low, high]}} (custom range sets of the
                        randomised family; domains may be rand, rand_heldout or these names),
            preprocess: {depth_norm: plane_mm, ir_norm: face_log, ...} (edge_fas.preprocess; the
                        normalisation applied after the crop cache, framing: metric or silhouette before it;
                        recorded in the checkpoint and the exported manifest, so the live pipeline crops the same
                        way),
            augment_params: {photometric: 0.8, ...} (edge_fas.data.augment.AugmentParams)}
    train: {epochs, batch_size (per process), lr, weight_decay, accumulate, seed, device, threads,
            amp: auto | true | false | bf16 (mixed precision in train_step: auto and true autocast to float16
            with a gradient scaler on CUDA and train in float32 elsewhere; bf16 autocasts to bfloat16 on any
            device, no scaler needed (bfloat16 keeps float32's range): on a CPU with AVX-512 BF16 spoof_trace's
            edge train_step runs 1.66 times as fast (benchmarks/bench_training.py --amp); false: float32.
            Validation, calibration and export stay float32 either way),
            memory_format: auto | channels_last | contiguous (the layout of the model's 4-D weights, so of its
            convolutions; auto: channels_last on the CPU, where oneDNN's convolutions run it faster, contiguous
            elsewhere, where it was never measured),
            workers: auto | N (DataLoader processes decoding samples; auto: cores - 1, at most 8; 0: in the
            training process), max_steps_per_epoch, log_every,
            init_from: a checkpoint to fine-tune, whose network and options it keeps (a model.overrides value that
            differs from the saved one is refused rather than left unused),
            init_options: null | {option: value} (loss weights a fine-tune trains with instead of init_from's, among
            the model's loss_options, e.g. spoof_trace's {alpha_family: 2.0} or
            {family_class_weights: {rigid_mask: 2.0}}; the new checkpoint records them),
            init_extend: model options that add a module to init_from's checkpoint, trained from a fresh start
            with the rest (e.g. {family_head: true}: spoof_trace's attack-family head; models/checkpoint.py),
            quantization_aware: false | true (int8 rounding simulated where the export's int8 recipe rounds,
            edge_fas.training.qat; for fine-tuning a model whose int8 export the precision gate refused),
            quantization_consistency: 0 | weight (with quantization_aware, spoof_trace only: a term of the
            generator loss pulling the simulated-int8 logits towards the float ones, qat.consistency_loss),
            schedule: constant | cosine (per step from lr down to lr * min_lr_ratio, after warmup_epochs
            of linear warm-up), keep: last | best (the epoch with the lowest validation EER, AUC breaking
            ties, as timm's checkpoint saver keeps its best),
            target: the operating point chosen on validation: eer | apcer=RATE | bpcer=RATE,
            fit: all | head (head: the network of train.init_from stays frozen and only its family head
            is fitted, a linear probe on features read in train.epochs augmented passes, with its L2 penalty
            chosen by cross-validation on the training split; edge_fas.training.head_fit; it has no epochs,
            so it refuses train.resume, a time budget and quantization_consistency; keep is moot),
            head_penalties: null | [penalty, ...] (train.fit head only: the L2 penalties its cross-validation
            chooses from, null for head_fit.RIDGES; one penalty is used as given, without cross-validation,
            which cuts a 48,000-row fit on two CPU cores from about 55 min to about 7),
            time_budget_min: null | minutes (a lease on a lent GPU, say: after this run's first epoch and its
            validation, the run's epochs are cut to those that fit in the budget, the closing decision
            included; the schedule then spans the cut count, recorded in the log and the checkpoint)}
    out: runs/NAME

protocol_config turns a paper's protocol (edge_fas.data.protocols, which knows nothing of training)
into such a config.
"""

from __future__ import annotations

import copy
import math
import os

from edge_fas.config import read_yaml_sections
from edge_fas.errors import ConfigError, did_you_mean

__all__ = ["DEFAULTS", "SCHEDULES", "MEMORY_FORMATS", "AMP", "KEEP", "FITS", "FREE_FORM", "load_train_config", "apply_overrides",
           "check_config", "protocol_config", "resolve_workers", "train_domain_names", "real_protocol", "model_input_size",
           "data_params", "heldout_summary"]

DEFAULTS = {
    "model": {"name": "spoof_trace", "preset": "edge", "overrides": {}, "pretrained": None},
    "data": {"source": "synthetic", "protocol": None, "root": None, "lists": None, "frames_per_video": 3,
             "detect": False, "wmca": "preprocessed", "missed_face": "truth",
             "train_domains": ["surf", "cefa", "wmca", "padisi"], "val_domains": None,
             "test_domains": [], "test_missing": [], "per_domain": {"train": 240, "val": 60, "test": 60},
             "start": {"train": 0, "val": 0, "test": 0}, "rig_size": [320, 240],
             "seed": 0, "cache_dir": "runs/cache", "crop_cache": True, "augment": True, "drop": {"depth": 0.1, "ir": 0.1},
             "render_workers": 1, "attack_mix": "domain", "sessions": {"train": [], "val": [], "test": []}, "frames_per_take": 10,
             # randomised rig and invariance training (edge_fas.sim.ranges, edge_fas.data.augment):
             "randomization": {},  # custom range sets {rand_NAME: {base: rand | rand_heldout, factor: value}}
             "preprocess": {},  # preprocessing overrides, e.g. {depth_norm: plane_mm, ir_norm: face_log}; in the manifest
             "augment_params": {}},  # edge_fas.data.augment.AugmentParams overrides, e.g. {photometric: 0.8}
    "train": {"epochs": 4, "batch_size": 16, "lr": None, "weight_decay": None, "accumulate": 1, "seed": 0,
              "amp": "auto", "device": "auto", "threads": 0, "memory_format": "auto", "workers": "auto",
              "max_steps_per_epoch": None,
              "init_from": None, "init_extend": None, "init_options": None, "quantization_aware": False,
              "quantization_consistency": 0.0,
              "resume": False, "log_every": 10, "progress": True, "schedule": "constant", "warmup_epochs": 0,
              "min_lr_ratio": 0.01, "keep": "last", "target": "eer", "time_budget_min": None, "fit": "all",
              "head_penalties": None},
    "out": "runs/train",
}
SCHEDULES = ("constant", "cosine")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
AMP = ("auto", True, False, "bf16")
KEEP = ("last", "best")
FITS = ("all", "head")
FREE_FORM = ("overrides", "drop", "randomization", "preprocess", "augment_params")  # checked by their owners


def _merge(defaults: dict, given: dict, where: str) -> dict:
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"training config: unknown key(s) {unknown} in {where}{did_you_mean(unknown[0], defaults)}; "
                          f"known: {sorted(defaults)}")
    out = copy.deepcopy(defaults)
    for k, v in given.items():
        if isinstance(defaults[k], dict) and k not in FREE_FORM and isinstance(v, dict):
            out[k] = _merge(defaults[k], v, f"{where}.{k}")
        else:
            out[k] = v
    return out


def load_train_config(path=None, overrides: dict | None = None) -> dict:
    """Read a training YAML (or none: the defaults) and apply dotted overrides {"train.epochs": 2}."""
    given = {} if path is None else read_yaml_sections(path, "training config",
                                                       "pass an existing YAML file (see configs/)")
    return apply_overrides(_merge(DEFAULTS, given, "top level"), overrides)


def apply_overrides(cfg: dict, overrides: dict | None) -> dict:
    """Dotted overrides {"train.epochs": 2, "out": "runs/x"} applied to a full config, then checked."""
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        if section not in cfg or (name and (not isinstance(cfg[section], dict) or name not in cfg[section])):
            known = list(cfg) + [f"{s}.{k}" for s, keys in cfg.items() if isinstance(keys, dict) for k in keys]
            raise ConfigError(f"training config override {key!r}: no such key{did_you_mean(key, known)}")
        if name:
            cfg[section][name] = value
        else:
            cfg[section] = value
    if cfg["model"]["preset"] not in ("paper", "edge"):
        raise ConfigError(f"training config: model.preset must be 'paper' or 'edge', got {cfg['model']['preset']!r}")
    if int(cfg["train"]["accumulate"]) < 1:
        raise ConfigError("training config: train.accumulate must be >= 1")
    return cfg


def _check_head_fit(tc: dict) -> None:
    """train.fit head reads features and fits once: it has no epochs to resume, cut to a budget or add a loss term
    to, so options that would change a full run are refused by name rather than silently ignored. (train.keep
    needs no check: the one fit is both the last and the best.)"""
    ignored = {"train.resume": (tc["resume"], False), "train.time_budget_min": (tc["time_budget_min"], None),
               "train.quantization_consistency": (tc["quantization_consistency"], 0.0),
               "train.init_options": (tc.get("init_options"), None)}  # loss weights: the head fit has no such loss
    set_ = [f"{k} {v!r}" for k, (v, default) in ignored.items() if v != default]
    if set_:
        raise ConfigError(f"train.fit head fits the family head once, with no epochs, so {', '.join(set_)} would "
                          f"be ignored; leave {'them' if len(set_) > 1 else 'it'} at the default (train.resume false, "
                          "train.time_budget_min null, train.quantization_consistency 0, train.init_options null), "
                          "or use train.fit all")


def _check_head_penalties(tc: dict) -> None:
    """train.head_penalties: null, or a non-empty list of positive numbers, and only where a head is fitted."""
    pen = tc["head_penalties"]
    if pen is None:
        return
    if tc["fit"] != "head":
        raise ConfigError(f"train.head_penalties {pen!r} chooses the family head's penalty in train.fit head, and this "
                          f"run has train.fit {tc['fit']!r}, so it would be ignored; remove it or set train.fit head")
    ok = isinstance(pen, (list, tuple)) and pen and all(
        isinstance(p, (int, float)) and not isinstance(p, bool) and p > 0 for p in pen)
    if not ok:
        raise ConfigError(f"train.head_penalties {pen!r}: a list of positive L2 penalties, e.g. [0.01] (that one, "
                          "no cross-validation) or [0.001, 0.01, 0.1] (chosen among them by cross-validation); "
                          "null chooses among edge_fas.training.head_fit.RIDGES")


def check_config(cfg: dict) -> None:
    """The choices, the operating-point target, the attack mix, the worker count, the data section's
    preprocessing, augmentation and range sets and the synthetic domains, checked before any rendering,
    decoding or training starts (a config error names the key and its choices)."""
    from edge_fas import metrics
    from edge_fas.data.build import SOURCES

    for key, choices in (("train.schedule", SCHEDULES), ("train.keep", KEEP), ("train.fit", FITS), ("data.source", SOURCES),
                         ("train.memory_format", MEMORY_FORMATS), ("train.amp", AMP),
                         ("data.wmca", ("preprocessed", "raw"))):
        section, name = key.split(".")
        value = cfg[section][name]
        if value not in choices:
            raise ConfigError(f"{key} {value!r} is unknown; use one of "
                              f"{', '.join(str(c).lower() if isinstance(c, bool) else c for c in choices)}")
    if cfg["train"]["amp"] == "bf16" and cfg["train"]["quantization_aware"]:
        raise ConfigError("train.amp bf16 with train.quantization_aware: the simulated int8 rounding is of float32 "
                          "values, as the export computes them; use train.amp auto or false")
    try:
        metrics.parse_target(cfg["train"]["target"])
    except ValueError as e:
        raise ConfigError(f"train.target: {e}") from None
    if cfg["train"]["fit"] == "head" and (cfg["train"]["quantization_aware"] or not cfg["train"]["init_from"]):
        raise ConfigError("train.fit head fits only the family head of train.init_from's trained network (frozen), "
                          "so it needs train.init_from and no train.quantization_aware; use train.fit all to train "
                          "the whole network")
    if cfg["train"]["fit"] == "head":
        _check_head_fit(cfg["train"])
    _check_head_penalties(cfg["train"])
    options = cfg["train"].get("init_options")
    if options is not None and (not isinstance(options, dict) or not cfg["train"]["init_from"]):
        raise ConfigError(f"train.init_options {options!r}: loss weights for a fine-tune, a mapping such as "
                          "{alpha_family: 2.0} with train.init_from set (a model trained from scratch takes them in "
                          "model.overrides)")
    if not isinstance(cfg["train"]["quantization_aware"], bool):
        raise ConfigError(f"train.quantization_aware must be true or false; got {cfg['train']['quantization_aware']!r}")
    _check_consistency(cfg["train"])
    budget = cfg["train"]["time_budget_min"]
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                               or not math.isfinite(budget) or budget <= 0):
        raise ConfigError(f"train.time_budget_min must be a number of minutes > 0, or null for no budget; got {budget!r}")
    _check_attack_mix(cfg)
    _check_missed_face(cfg)
    _check_start(cfg)
    resolve_workers(cfg["train"]["workers"])
    data_params(cfg, 64)  # data.preprocess and data.augment_params
    _check_synthetic_domains(cfg)


def _check_synthetic_domains(cfg: dict) -> None:
    """data.randomization's range sets, and every synthetic domain named (train, val, test) known; the training
    and validation splits none of the benchmarks' scenes (edge_fas.data.evaluation_sets)."""
    d = cfg["data"]
    if d["source"] != "synthetic":
        return
    from edge_fas.data.synthetic import range_set
    from edge_fas.sim.ranges import parse_custom

    custom = parse_custom(d["randomization"])
    for key in ("train_domains", "val_domains", "test_domains"):
        for name in d[key] or []:
            try:
                range_set(name, custom)
            except ValueError as e:
                raise ConfigError(f"data.{key}: {e} (custom range sets go under data.randomization)") from None
    from edge_fas.data.evaluation_sets import check_training_data

    check_training_data(cfg)


def _check_consistency(tc: dict) -> None:
    w = tc["quantization_consistency"]
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
        raise ConfigError(f"train.quantization_consistency must be a weight >= 0 (0 = off); got {w!r}")
    if w > 0 and not tc["quantization_aware"]:
        raise ConfigError("train.quantization_consistency compares the float and the simulated-int8 model, so it "
                          "needs train.quantization_aware: true (or set it to 0)")


def _check_start(cfg: dict) -> None:
    """data.start: whole rows >= 0 for the splits train, val and test, and the synthetic source's only (the other
    sources' rows are files on disk, chosen by their lists)."""
    start = cfg["data"].get("start", {})  # a config saved before data.start existed has none: every split at row 0
    if not isinstance(start, dict):
        raise ConfigError(f"data.start must be a mapping such as {{train: 12000}}; got {start!r}")
    unknown = sorted(set(start) - {"train", "val", "test"})
    if unknown:
        raise ConfigError(f"data.start: unknown split(s) {unknown}; use train, val and test")
    for split, row in start.items():
        if isinstance(row, bool) or not isinstance(row, int) or row < 0:
            raise ConfigError(f"data.start.{split} must be a whole row number >= 0; got {row!r}")
    if any(start.values()) and cfg["data"]["source"] != "synthetic":
        raise ConfigError(f"data.start applies to the synthetic source, whose rows are a plan; data.source is "
                          f"{cfg['data']['source']} (choose its rows with its lists, or set data.start to 0)")


def _check_missed_face(cfg: dict) -> None:
    """data.missed_face: a choice, and the synthetic source's only (other sources have no true face box)."""
    from edge_fas.data.synthetic import MISSED_FACE

    value = cfg["data"]["missed_face"]
    if value not in MISSED_FACE:
        raise ConfigError(f"data.missed_face {value!r} is unknown; use one of {', '.join(MISSED_FACE)}")
    if value != "truth" and cfg["data"]["source"] != "synthetic":
        raise ConfigError(f"data.missed_face {value} applies to the synthetic source, which knows each face's true box; "
                          f"data.source is {cfg['data']['source']} (use data.detect for its faces)")


def _check_attack_mix(cfg: dict) -> None:
    """data.attack_mix (the domain's own mix needs no check)."""
    from edge_fas.data.synthetic import attack_probabilities

    mix = cfg["data"]["attack_mix"]
    if cfg["data"]["source"] != "synthetic" or mix == "domain":
        return
    try:
        attack_probabilities("", mix)  # a named mix or a weight mapping does not depend on the domain
    except ValueError as e:
        raise ConfigError(f"data.attack_mix: {e}") from None


def resolve_workers(value) -> int:
    """train.workers: a count, or auto (cores - 1, at least 1, at most 8)."""
    if value in ("auto", None):
        return min(8, max(1, (os.cpu_count() or 2) - 1))
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"train.workers {value!r}: use auto or a number of processes >= 0 (0: decode in the "
                          "training process)")
    return value


def train_domain_names(cfg: dict) -> list[str]:
    """The training domains: the protocol's datasets for public data, else data.train_domains."""
    protocol = real_protocol(cfg)
    return protocol.datasets if protocol is not None else list(cfg["data"]["train_domains"])


def real_protocol(cfg: dict):
    """The real-data protocol a config runs, or None."""
    d = cfg["data"]
    if d["source"] != "datasets" or not d.get("protocol"):
        return None
    from edge_fas.data.protocols import get_protocol

    return get_protocol(d["protocol"])


def data_params(cfg: dict, size: int, inherited: dict | None = None):
    """(PreprocessParams, AugmentParams) from the data section; bad keys fail before anything renders.

    inherited: preprocessing a model brings with it, which wins over the defaults: the RGB mean/std of a
    pretrained backbone, or every preprocessing parameter (but the size) of the checkpoint that
    train.init_from fine-tunes, since a network trained on one input normalisation is wrong on another.
    A data.preprocess key that contradicts it is an error that names both values; but the framing keys
    (framing, framing_face_m: how the face is cut) are the config's to set, so a fine-tune may reframe."""
    from edge_fas.data.augment import AugmentParams
    from edge_fas.preprocess import FRAMING_KEYS, PreprocessParams

    d = cfg["data"]
    pre = dict(d["preprocess"] or {})
    if "size" in pre:
        raise ConfigError("data.preprocess.size: the input size is the model's (model.overrides.input_size)")
    inherited = {k: v for k, v in (inherited or {}).items() if k != "size"}
    PreprocessParams.from_dict({**pre, "size": int(size)})  # the config's own keys are checked first, by name

    def same(a, b):
        return [float(x) for x in a] == [float(x) for x in b] if isinstance(a, (list, tuple)) else a == b

    # how the face is cut (preprocess.FRAMING_KEYS) is the config's to choose: a fine-tune may reframe its parent
    clash = sorted(k for k in set(pre) & set(inherited) - set(FRAMING_KEYS) if not same(pre[k], inherited[k]))
    if clash:
        where = cfg["train"].get("init_from") or "the pretrained backbone"
        raise ConfigError("data.preprocess contradicts the preprocessing of the model it starts from (" + where + "): "
                          + "; ".join(f"{k} is {pre[k]!r} in the config, {inherited[k]!r} in the model" for k in clash)
                          + ". A network is only right on the input normalisation it was trained with: remove these "
                            "keys from data.preprocess, or train from scratch to change them")
    params = PreprocessParams.from_dict({**pre, **inherited, **{k: pre[k] for k in FRAMING_KEYS if k in pre},
                                         "size": int(size)})
    owned = sorted({"ir_log_unit", "ir_clip"} & set(d["augment_params"] or {}))
    if owned:
        raise ConfigError(f"data.augment_params: {owned} follow the preprocessing; set data.preprocess.ir_log_unit "
                          "and data.preprocess.depth_clip instead")
    augment = AugmentParams.from_dict(d["augment_params"], drop=dict(d["drop"] or {}),
                                      ir_log_unit=params.ir_log_unit, ir_clip=params.depth_clip)
    if augment.ir_sensor > 0 and params.ir_norm != "face_log":
        raise ConfigError(f"data.augment_params.ir_sensor={augment.ir_sensor} re-images face-relative IR and needs "
                          f"data.preprocess.ir_norm: face_log (it is {params.ir_norm!r}); set it, or ir_sensor: 0")
    return params, augment


def heldout_summary(cfg: dict, split: str) -> dict:
    """For randomised domains in `split`: which factors lie outside every training range set's ranges."""
    from edge_fas.sim.ranges import get_ranges, is_randomized, parse_custom

    d = cfg["data"]
    if d["source"] != "synthetic":
        return {}
    custom = parse_custom(d["randomization"])
    names = {"val": d["val_domains"] or d["train_domains"], "test": d["test_domains"]}[split]
    train = [get_ranges(t, custom) for t in d["train_domains"] if is_randomized(t)]
    out = {}
    for name in names:
        if is_randomized(name) and train:
            rs = get_ranges(name, custom)
            out[name] = sorted(set.intersection(*(set(rs.disjoint_from(t)) for t in train)))
    return {"factors_outside_training_ranges": out} if out else {}


def parent_preprocess(meta: dict) -> dict:
    """The preprocessing a checkpoint that train.init_from fine-tunes brings with it (data_params' `inherited`):
    all of its manifest's parameters; a key older manifests lack had its default then."""
    from edge_fas.preprocess import PreprocessParams

    return {**PreprocessParams().to_dict(), **(meta.get("preprocess") or {})}


def init_from_preprocess(cfg: dict) -> dict:
    """parent_preprocess of the config's train.init_from checkpoint ({} without one), read without its weights."""
    if not cfg["train"]["init_from"]:
        return {}
    return parent_preprocess(_init_from_checkpoint(cfg).get("meta") or {})


def _init_from_checkpoint(cfg: dict) -> dict:
    """train.init_from's checkpoint dict, memory-mapped (its weights are not read), loaded as plain tensors and
    values only: a pickle that needs more is not a checkpoint save_checkpoint wrote."""
    import torch

    path = cfg["train"]["init_from"]
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # missing, truncated, not torch, or a pickle of arbitrary objects (resume.pt)
        raise ConfigError(f"train.init_from {path}: not a readable checkpoint ({type(e).__name__}: {str(e)[:200]}); "
                          "give the checkpoint.pt that `edge-fas train` wrote (resume.pt continues a run: --resume)") from e
    if not isinstance(ck, dict) or not {"name", "preset", "config"} <= set(ck):
        raise ConfigError(f"train.init_from {path}: not an edge-fas checkpoint (no name, preset and config); give "
                          "the checkpoint.pt that `edge-fas train` wrote")
    return ck


def model_input_size(cfg: dict) -> int:
    """The input side the config's model trains at (train.init_from's model if set), read from a model
    built on the meta device (no weights allocated)."""
    import torch

    from edge_fas.models import build

    mc = cfg["model"]
    name, preset, config = mc["name"], mc["preset"], dict(mc["overrides"] or {})
    if cfg["train"]["init_from"]:
        ck = _init_from_checkpoint(cfg)
        name, preset, config = ck["name"], ck["preset"], ck["config"]
    with torch.device("meta"):
        return int(build(name, preset, **config).input_size)


def protocol_config(name: str, model: str, preset: str = "edge", base: dict | None = None, synthetic: bool = True,
                    root=None, lists=None) -> dict:
    """A training config running protocol `name`: on its real lists under `root` (synthetic=False), or on
    its synthetic stand-in domains (synthetic=True). Missing-at-test modalities become test-time drops
    via `data.test_missing`."""
    from edge_fas.data.protocols import get_protocol

    pr = get_protocol(name)
    cfg = copy.deepcopy(base or DEFAULTS)
    cfg["model"] = {**cfg.get("model", {}), "name": model, "preset": preset}
    cfg["model"].setdefault("overrides", {})
    cfg["data"]["test_missing"] = list(pr.missing_at_test)
    if synthetic or not pr.real:
        if not pr.synthetic_ok:
            raise ConfigError(f"protocol {name} has no synthetic stand-in: its splits ({pr.paper}) select attack "
                              "species or ethnicities the synthetic domains do not model; run it on the real data "
                              "with --data-root DIR")
        train_d, test_d = pr.synthetic()
        cfg["data"].update(source="synthetic", protocol=None, train_domains=train_d, test_domains=test_d)
        cfg["out"] = f"runs/{name}-synthetic-{model}"
    else:
        if root is None:
            raise ConfigError(f"protocol {name} reads the real datasets: pass --data-root DIR (the folder holding "
                              f"{', '.join(pr.list_files()[:2])}, ...) or set data.root; --synthetic runs its synthetic "
                              "stand-in instead")
        cfg["data"].update(source="datasets", protocol=name, root=str(root), lists=None if lists is None else str(lists),
                           train_domains=pr.datasets, test_domains=list(pr.tests))
        cfg["out"] = f"runs/{name}-{model}"
    return cfg
