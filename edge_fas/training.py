"""Training: `edge-fas train --config FILE` and the library function `train(config)`.

A training config is YAML with four sections (defaults in DEFAULTS; unknown keys are errors):

    model: {name: spoof_trace, preset: edge, overrides: {},
            pretrained: null | PATH (a timm / torchvision ViT or ResNet-50 weights file, safetensors or .pth:
            loaded into the backbone, and its RGB mean/std become the crops' normalisation)}
    data:  {source: synthetic | sessions | datasets,
            protocol: null (datasets: a protocol name, edge_fas/data/protocols.py), root: null (datasets: the
            folder holding the public datasets), lists: null (the protocol lists' folder; default: root),
            frames_per_video: 3 (video sources), detect: false (re-detect faces in releases that ship crops),
            wmca: preprocessed | raw (which WMCA release the WMCA partitions read),
            train_domains: [...], val_domains: null (= train), test_domains: [],
            test_missing: [] (modalities removed at test, e.g. [depth]),
            per_domain: {train: 240, val: 60, test: 60}, rig_size: [320, 240], cache_dir: runs/cache,
            augment: true, drop: {depth: 0.1, ir: 0.1},
            attack_mix: domain (each domain's own species mix) | uniform (every attack species equally)
                        | {species: weight} (relative to uniform, unlisted species 1: hard-class emphasis),
            randomization: {rand_NAME: {base: rand, factor: [low, high]}} (custom range sets of the
                        randomised family; domains may be rand, rand_heldout or these names),
            preprocess: {depth_norm: plane_mm, ir_norm: face_log, ...} (edge_fas.preprocess; recorded in
                        the checkpoint and the exported manifest, so the live pipeline crops the same way),
            augment_params: {photometric: 0.8, ...} (edge_fas.data.augment.AugmentParams)}
    train: {epochs, batch_size, lr, weight_decay, accumulate, seed, amp, device, threads,
            max_steps_per_epoch, init_from, log_every,
            schedule: constant | cosine (per step from lr down to lr * min_lr_ratio, after warmup_epochs
            of linear warm-up), keep: last | best (the epoch with the lowest validation EER, AUC breaking
            ties, as timm's checkpoint saver keeps its best),
            target: the operating point chosen on validation: eer | apcer=RATE | bpcer=RATE}
    out: runs/NAME

Each step calls the model's own `train_step(batch, optimisers, scaler)`. After every epoch the model
is validated on the validation split with edge_fas.metrics. At the end the score calibration, the
operating point (`train.target`, default the EER) and the abstention level are fitted on the
*validation* split (edge_fas.operating_point) and stored in the checkpoint meta with the split, so
test numbers use a calibration and threshold fixed before seeing test data (ISO/IEC 30107-3 practice).

Outputs in `out`: checkpoint.pt (edge_fas.models.save_checkpoint, the model + meta), resume.pt
(optimisers, epoch, RNG states: `train.resume: true` continues from it), log.jsonl (one JSON object
per logged step and per epoch), config.yaml (the effective config), metrics.json (final val/test).

Distributed: started by torchrun (WORLD_SIZE > 1) each process trains on its DistributedSampler
shard; gradients are averaged across processes right before every optimiser step (the models step
their own optimisers inside train_step, so the averaging wraps the optimisers instead of the forward,
with the same effect as DDP's all-reduce). Only rank 0 writes files.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from edge_fas import metrics
from edge_fas.data.crops import drop_modalities  # noqa: F401  (re-exported: MMDG Protocol 2's test-time drops)
from edge_fas.errors import ConfigError

__all__ = ["DEFAULTS", "load_train_config", "apply_overrides", "train", "predict", "build_data", "seed_everything"]

DEFAULTS = {
    "model": {"name": "spoof_trace", "preset": "edge", "overrides": {}, "pretrained": None},
    "data": {"source": "synthetic", "protocol": None, "root": None, "lists": None, "frames_per_video": 3,
             "detect": False, "wmca": "preprocessed",
             "train_domains": ["surf", "cefa", "wmca", "padisi"], "val_domains": None,
             "test_domains": [], "test_missing": [], "per_domain": {"train": 240, "val": 60, "test": 60}, "rig_size": [320, 240],
             "seed": 0, "cache_dir": "runs/cache", "augment": True, "drop": {"depth": 0.1, "ir": 0.1},
             "render_workers": 1, "attack_mix": "domain", "sessions": {"train": [], "val": [], "test": []}, "frames_per_take": 10,
             # randomised rig and invariance training (edge_fas.sim.ranges, edge_fas.data.augment):
             "randomization": {},  # custom range sets {rand_NAME: {base: rand | rand_heldout, factor: value}}
             "preprocess": {},  # preprocessing overrides, e.g. {depth_norm: plane_mm, ir_norm: face_log}; in the manifest
             "augment_params": {}},  # edge_fas.data.augment.AugmentParams overrides, e.g. {photometric: 0.8}
    "train": {"epochs": 4, "batch_size": 16, "lr": None, "weight_decay": None, "accumulate": 1, "seed": 0,
              "amp": "auto", "device": "auto", "threads": 0, "max_steps_per_epoch": None, "init_from": None,
              "resume": False, "log_every": 10, "progress": True, "schedule": "constant", "warmup_epochs": 0,
              "min_lr_ratio": 0.01, "keep": "last", "target": "eer"},
    "out": "runs/train",
}


FREE_FORM = ("overrides", "drop", "randomization", "preprocess", "augment_params")  # checked by their owners


def _merge(defaults: dict, given: dict, where: str) -> dict:
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"training config: unknown key(s) {unknown} in {where}; known: {sorted(defaults)}")
    out = copy.deepcopy(defaults)
    for k, v in given.items():
        if isinstance(defaults[k], dict) and k not in FREE_FORM and isinstance(v, dict):
            out[k] = _merge(defaults[k], v, f"{where}.{k}")
        else:
            out[k] = v
    return out


def load_train_config(path=None, overrides: dict | None = None) -> dict:
    """Read a training YAML (or none: the defaults) and apply dotted overrides {"train.epochs": 2}."""
    given = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"training config {p} does not exist; pass an existing YAML file (see configs/)")
        try:
            given = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"training config {p}: not valid YAML ({e})") from None
        if not isinstance(given, dict):
            raise ConfigError(f"training config {p}: the top level must be a mapping of sections")
    return apply_overrides(_merge(DEFAULTS, given, "top level"), overrides)


def apply_overrides(cfg: dict, overrides: dict | None) -> dict:
    """Dotted overrides {"train.epochs": 2, "out": "runs/x"} applied to a full config, then checked."""
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        if section not in cfg or (name and (not isinstance(cfg[section], dict) or name not in cfg[section])):
            raise ConfigError(f"training config override {key!r}: no such key")
        if name:
            cfg[section][name] = value
        else:
            cfg[section] = value
    if cfg["model"]["preset"] not in ("paper", "edge"):
        raise ConfigError(f"training config: model.preset must be 'paper' or 'edge', got {cfg['model']['preset']!r}")
    if int(cfg["train"]["accumulate"]) < 1:
        raise ConfigError("training config: train.accumulate must be >= 1")
    return cfg


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---- data -------------------------------------------------------------------------------------------

def build_data(cfg: dict, split: str, params, domains=None, progress=None):
    """CropSet for `split` from the config's data source (edge_fas.data.build.build_split)."""
    from edge_fas.data.build import build_split

    return build_split(cfg["data"], split, params, domains=domains, progress=progress)


def train_domain_names(cfg: dict) -> list[str]:
    """The training domains: the protocol's datasets for public data, else data.train_domains."""
    d = cfg["data"]
    if d["source"] == "datasets" and d.get("protocol"):
        from edge_fas.data.protocols import get_protocol

        return get_protocol(d["protocol"]).datasets
    return list(d["train_domains"])


def data_params(cfg: dict, size: int, rgb_norm: dict | None = None):
    """(PreprocessParams, AugmentParams) from the data section; bad keys fail before anything renders.
    rgb_norm: the RGB mean/std of a pretrained backbone or the fine-tuned checkpoint (they win)."""
    from edge_fas.data.augment import AugmentParams
    from edge_fas.preprocess import PreprocessParams

    d = cfg["data"]
    pre = dict(d["preprocess"] or {})
    if "size" in pre:
        raise ConfigError("data.preprocess.size: the input size is the model's (model.overrides.input_size)")
    params = PreprocessParams.from_dict({**pre, "size": int(size), **(rgb_norm or {})})
    return params, AugmentParams.from_dict(d["augment_params"], drop=dict(d["drop"] or {}))


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


def _check_choice(cfg: dict, key: str, choices) -> None:
    """A config error naming the key and its choices, before any rendering or training starts."""
    section, name = key.split(".")
    if cfg[section][name] not in choices:
        raise ConfigError(f"{key} {cfg[section][name]!r} is unknown; use one of {', '.join(choices)}")


def _check_attack_mix(cfg: dict) -> None:
    """data.attack_mix checked before any rendering starts (the domain's own mix needs no check)."""
    from edge_fas.data.synthetic import attack_probabilities

    mix = cfg["data"]["attack_mix"]
    if cfg["data"]["source"] != "synthetic" or mix == "domain":
        return
    try:
        attack_probabilities("", mix)  # a named mix or a weight mapping does not depend on the domain
    except ValueError as e:
        raise ConfigError(f"data.attack_mix: {e}") from None


def _to(batch: dict, device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


@torch.no_grad()
def predict(model, crops, batch_size: int = 64, device="cpu") -> np.ndarray:
    """P(attack) for every crop of a CropSet, in order."""
    from edge_fas.data import CropDataset, collate

    model.eval()
    ds = CropDataset(crops)
    out = []
    for i in range(0, len(ds), batch_size):
        b = _to(collate([ds[j] for j in range(i, min(i + batch_size, len(ds)))]), device)
        out.append(model(b["rgb"], b["depth"], b["ir"], b["present"])["score"].float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def evaluate_crops(model, crops, threshold=None, device="cpu") -> tuple[dict, np.ndarray]:
    scores = predict(model, crops, device=device)
    return metrics.evaluate(scores, crops.label, crops.species, threshold=threshold), scores


# ---- distributed ------------------------------------------------------------------------------------

def _dist_info():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def _average_grads_before_step(optimiser, world: int):
    """Wrap optimiser.step so gradients are all-reduced (mean) over processes first."""
    import torch.distributed as dist

    inner = optimiser.step
    params = [p for g in optimiser.param_groups for p in g["params"]]

    def step(*a, **k):
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= world
        off = 0
        for p, g in zip(params, grads):
            n = g.numel()
            if p.grad is not None:
                p.grad.copy_(flat[off:off + n].view_as(g))
            off += n
        return inner(*a, **k)

    optimiser.step = step


def _check_replicas(model):
    """After distributed training every process must hold the same weights; fail loudly if not."""
    import torch.distributed as dist

    with torch.no_grad():  # on the model's device, so NCCL (CUDA tensors only) works as well as gloo
        own = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    all_sums = [torch.zeros_like(own) for _ in range(dist.get_world_size())]
    dist.all_gather(all_sums, own)
    if not all(torch.allclose(a, all_sums[0], rtol=1e-6, atol=1e-6) for a in all_sums):
        raise RuntimeError(f"distributed training: the model replicas diverged (weight sums {[float(a) for a in all_sums]})")


def _broadcast_params(model):
    import torch.distributed as dist

    for t in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(t.data, 0)


# ---- checkpoints ------------------------------------------------------------------------------------

def save_model(path, model, **meta):
    """edge_fas.models.save_checkpoint (the models part owns the format)."""
    from edge_fas.models import save_checkpoint

    return save_checkpoint(path, model, **meta)


def load_model(path, map_location="cpu"):
    from edge_fas.models import load_checkpoint

    return load_checkpoint(path, map_location=map_location)


# ---- the loop ---------------------------------------------------------------------------------------

def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class _Log:
    def __init__(self, path: Path | None):
        self.f = open(path, "a") if path is not None else None

    def write(self, **rec):
        if self.f:
            self.f.write(json.dumps(rec, default=float) + "\n")
            self.f.flush()

    def close(self):
        if self.f:
            self.f.close()


SCHEDULES = ("constant", "cosine")
KEEP = ("last", "best")


def lr_factor(schedule: str, step: int, total: int, warmup: int = 0, min_ratio: float = 0.01) -> float:
    """Multiplier on the base learning rate at optimiser step `step` of `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(max(step - warmup, 0) / max(total - warmup, 1), 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _better(val: dict, best: dict | None) -> bool:
    return best is None or (val["eer"], -val["auc"]) < (best["eer"], -best["auc"])


def train(cfg: dict) -> dict:
    """Run one training described by `cfg` (see load_train_config). Returns the final metrics dict."""
    from edge_fas.data import CropDataset, balanced_sampler, collate
    from edge_fas.models import build

    world, rank, local_rank = _dist_info()
    tc = cfg["train"]
    from edge_fas.data.build import SOURCES

    for key, choices in (("train.schedule", SCHEDULES), ("train.keep", KEEP), ("data.source", SOURCES),
                         ("data.wmca", ("preprocessed", "raw"))):
        _check_choice(cfg, key, choices)
    try:
        metrics.parse_target(tc["target"])
    except ValueError as e:
        raise ConfigError(f"train.target: {e}") from None
    _check_attack_mix(cfg)
    data_params(cfg, 64)  # data.preprocess / data.augment_params / data.randomization fail here, not mid-run
    if cfg["data"]["source"] == "synthetic":
        from edge_fas.sim.ranges import parse_custom

        parse_custom(cfg["data"]["randomization"])
    if int(tc["threads"]) > 0:
        torch.set_num_threads(int(tc["threads"]))
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() and tc["device"] != "cpu" else "gloo")
    device = _device(tc["device"])
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
    seed_everything(int(tc["seed"]) + rank)
    out = Path(cfg["out"])
    main = rank == 0
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    # model (optionally initialised from a checkpoint: fine-tuning)
    mc = cfg["model"]
    if tc["init_from"]:
        model, info = load_model(tc["init_from"])
        if model.name != mc["name"]:
            raise ConfigError(f"train.init_from {tc['init_from']} holds a {model.name!r} model, config says {mc['name']!r}")
    else:
        overrides = dict(mc["overrides"] or {})
        model = build(mc["name"], mc["preset"], **overrides)
        if "num_domains" in model.config and "num_domains" not in overrides:  # one prototype per source domain
            overrides["num_domains"] = len(train_domain_names(cfg))
            model = build(mc["name"], mc["preset"], **overrides)
    # RGB normalisation: what the pretrained backbone was trained with, or what the fine-tuned
    # checkpoint's crops had; it travels on in the checkpoint meta and the exported artifact
    rgb_norm = {k: v for k, v in (info["meta"].get("preprocess") or {}).items() if k in ("rgb_mean", "rgb_std")} \
        if tc["init_from"] else {}
    if mc.get("pretrained"):  # .get: a whole model section given as an override may lack the key
        from edge_fas.models.pretrained import load_pretrained

        if tc["init_from"]:
            raise ConfigError("model.pretrained and train.init_from both initialise the model; give one of them")
        rgb_norm = load_pretrained(model, mc["pretrained"])["normalisation"]
    if world > 1:
        _broadcast_params(model)
    model.to(device)
    params, augment_params = data_params(cfg, int(model.input_size), rgb_norm)

    opt_kw = {k: tc[k] for k in ("lr", "weight_decay") if tc[k] is not None}
    optimisers = model.make_optimisers(**opt_kw)
    for o in optimisers.values():
        for g in o.param_groups:
            g.setdefault("initial_lr", g["lr"])
    if world > 1:
        for o in optimisers.values():
            _average_grads_before_step(o, world)
    accumulate = int(tc["accumulate"])
    if accumulate > 1 and not getattr(model, "supports_accumulation", False):  # its train_step must do it
        raise ConfigError(f"train.accumulate={accumulate}: {mc['name']}'s train_step does not implement gradient "
                          f"accumulation (it steps {len(optimisers)} optimiser(s) its own way); use 1")
    from edge_fas.data.build import build_test_sets

    show = main and tc["progress"]
    train_set = build_data(cfg, "train", params, progress=_loading_progress("train") if show else None)
    val_set = build_data(cfg, "val", params, progress=_loading_progress("val") if show else None)
    test_sets = build_test_sets(cfg["data"], params, progress=_loading_progress("test") if show else None)
    domain_ids = {d: k for k, d in enumerate(train_domain_names(cfg))} if cfg["data"]["source"] != "sessions" \
        else {d: k for k, d in enumerate(sorted(set(train_set.domain.tolist())))}
    ds = CropDataset(train_set, augment=bool(cfg["data"]["augment"]), seed=int(tc["seed"]), domain_ids=domain_ids,
                     augment_params=augment_params)
    bs = int(tc["batch_size"])
    if world > 1:
        sampler = torch.utils.data.DistributedSampler(ds, num_replicas=world, rank=rank, seed=int(tc["seed"]))
    else:
        sampler = balanced_sampler(train_set.label, len(train_set), seed=int(tc["seed"]))
    loader = torch.utils.data.DataLoader(ds, batch_size=bs, sampler=sampler, collate_fn=collate, drop_last=True)
    if len(loader) == 0:
        raise ConfigError(f"training set has {len(ds)} samples per process, fewer than train.batch_size={bs}")

    use_amp = device.type == "cuda" and tc["amp"] in ("auto", True)
    scaler = torch.amp.GradScaler("cuda") if use_amp else None

    start_epoch, history, best = 0, [], None  # best: {"epoch", "eer", "auc", "state"} when train.keep is best
    resume_path = out / "resume.pt"
    if tc["resume"] and resume_path.exists():
        st = torch.load(resume_path, map_location=device, weights_only=False)
        model.load_state_dict(st["model"])
        for k, o in optimisers.items():
            o.load_state_dict(st["optimisers"][k])
        start_epoch, history, best = st["epoch"] + 1, st["history"], st.get("best")
        random.setstate(st["rng"]["python"])
        np.random.set_state(st["rng"]["numpy"])
        torch.set_rng_state(st["rng"]["torch"])

    log = _Log(out / "log.jsonl" if main else None)
    max_steps = tc["max_steps_per_epoch"]
    total_steps = min(len(loader), int(max_steps)) if max_steps else len(loader)
    updates_per_epoch = -(-total_steps // accumulate)  # an epoch's last, shorter group also steps

    def schedule(update: int) -> float:
        return lr_factor(tc["schedule"], update, int(tc["epochs"]) * updates_per_epoch,
                         int(tc["warmup_epochs"]) * updates_per_epoch, float(tc["min_lr_ratio"]))
    result = {}
    for epoch in range(start_epoch, int(tc["epochs"])):
        ds.set_epoch(epoch)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        if hasattr(model, "update_prototypes"):  # MMDG: per-epoch prototype refresh on half the train set
            plain = CropDataset(train_set, domain_ids=domain_ids)
            model.update_prototypes((_to(collate([plain[j] for j in range(i, min(i + 64, len(plain)))]), device)
                                     for i in range(0, len(plain), 64)), sample_fraction=0.5, seed=epoch)
        t0, seen, run_loss = time.perf_counter(), 0, 0.0
        for step, batch in enumerate(loader):
            if step >= total_steps:
                break
            batch = _to(batch, device)
            factor = schedule(epoch * updates_per_epoch + step // accumulate)
            for o in optimisers.values():
                for g in o.param_groups:
                    g["lr"] = g["initial_lr"] * factor
            # the model's own step in every case (MMDG's ReGrad included); accumulating ones step the
            # optimiser on every accumulate-th batch and on the epoch's last
            acc = {"accumulate": accumulate, "apply": (step + 1) % accumulate == 0 or step == total_steps - 1} \
                if accumulate > 1 else {}
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                terms = model.train_step(batch, optimisers, scaler=scaler, **acc)
            if not math.isfinite(terms["total"]):
                raise RuntimeError(f"training diverged at epoch {epoch} step {step}: loss {terms['total']}; "
                                   "lower train.lr")
            seen += bs
            run_loss += terms["total"]
            rate = seen * world / max(time.perf_counter() - t0, 1e-9)
            if main and (step % int(tc["log_every"]) == 0 or step == total_steps - 1):
                log.write(kind="step", epoch=epoch, step=step, samples_per_s=round(rate, 2), **terms)
            if main and tc["progress"]:
                print(f"\repoch {epoch + 1}/{tc['epochs']} step {step + 1}/{total_steps} loss {terms['total']:.4f} "
                      f"{rate:.1f} samples/s", end="", file=sys.stderr, flush=True)
        if main and tc["progress"]:
            print(file=sys.stderr)
        train_time = time.perf_counter() - t0
        # validation: threshold fixed here, on the source domains' validation split
        val, _ = evaluate_crops(model, val_set, device=device)
        rec = {"kind": "epoch", "epoch": epoch, "train_loss": run_loss / max(total_steps, 1),
               "samples_per_s": round(seen * world / max(train_time, 1e-9), 2), "val_eer": val["eer"],
               "val_auc": val["auc"], "val_threshold": val["threshold"], "lr_factor": round(factor, 5)}
        if tc["keep"] == "best" and _better(val, best):
            best = {"epoch": epoch, "eer": val["eer"], "auc": val["auc"],
                    "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        history.append(rec)
        log.write(**rec)
        if main:
            torch.save({"model": model.state_dict(), "optimisers": {k: o.state_dict() for k, o in optimisers.items()},
                        "epoch": epoch, "history": history, "best": best,
                        "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                                "torch": torch.get_rng_state()}}, resume_path)
    if world > 1:
        _check_replicas(model)
    kept_epoch = int(tc["epochs"]) - 1
    if best is not None:  # train.keep: best
        model.load_state_dict(best["state"])
        kept_epoch = best["epoch"]
    # final: calibration, operating point and abstention fitted on validation, applied to the test sets
    from edge_fas.operating_point import fit_decision_record
    from edge_fas.score_calibration import ScoreCalibration
    from edge_fas.scoring import model_scorer

    scorer = model_scorer(model, params, device)
    scored_val = scorer.score(val_set)
    scored_tests = {name: scorer.score(cs) for name, cs in test_sets.items()}
    # the record's test evidence comes from the first test set; every set's metrics are in metrics.json
    record = fit_decision_record(scored_val, tc["target"], next(iter(scored_tests.values()), None))
    thr, cal = record["operating_point"]["threshold"], ScoreCalibration.from_dict(record["calibration"])
    val = metrics.evaluate(cal.apply_logits(scored_val.logits), val_set.label, val_set.species, threshold=thr)
    result = {"val": metrics.json_ready(val), "threshold": thr, "history": history, "kept_epoch": kept_epoch,
              "calibration": record["calibration"]}
    if test_sets:
        from edge_fas.data.build import weighted_average

        tests = {name: metrics.evaluate(cal.apply_logits(scored_tests[name].logits), cs.label, cs.species,
                                        threshold=thr) for name, cs in test_sets.items()}
        result["tests"] = {name: metrics.json_ready(m) for name, m in tests.items()}
        result["test_data"] = {name: cs.meta.get("data", "") for name, cs in test_sets.items()}
        if len(tests) == 1:
            result["test"] = result["tests"][next(iter(tests))]
        protocol = _protocol(cfg)
        if protocol is not None and protocol.average:
            result["test_average"] = weighted_average(tests, {n: len(cs) for n, cs in test_sets.items()}, protocol.average)
    if main:
        d = cfg["data"]
        sess = d["source"] == "sessions"
        vd = d["sessions"]["val"] if sess else (d["val_domains"] or train_domain_names(cfg))
        td = d["sessions"]["train"] if sess else train_domain_names(cfg)
        real = d["source"] == "datasets"
        target = record["operating_point"]["target"]
        meta = {"threshold": thr, "threshold_source": f"operating point {target} on the validation split "
                                                      "(calibrated scores)",
                "threshold_split": f"{target} on the {d['source']} validation split "
                                   f"({val_set.meta.get('data') if real else ', '.join(map(str, vd))}, {len(val_set)} samples"
                                   f"{'' if real else ', seed ' + str(d['seed'])}), disjoint from training",
                **{k: v for k, v in record.items() if k != "threshold"},
                "training": {"source": d["source"], "domains": td, "samples": len(train_set), "init_from": tc["init_from"],
                             "model": mc["name"], "preset": mc["preset"], "epochs": int(tc["epochs"]),
                             "kept_epoch": kept_epoch, "keep": tc["keep"], "schedule": tc["schedule"],
                             "protocol": d.get("protocol"), "data": train_set.meta.get("data", "")},
                "validation": {"source": d["source"], "domains": vd,
                               "split": "val", "samples": len(val_set), "seed": d["seed"], "eer": val["eer"],
                               "auc": val["auc"], "data": val_set.meta.get("data", ""), **heldout_summary(cfg, "val")},
                "trained_on": {"source": d["source"], "domains": td, "split": "train",
                               "samples": len(train_set), "seed": d["seed"], "rig_size": d["rig_size"],
                               "protocol": d.get("protocol"), "data": train_set.meta.get("data", "")},
                "preprocess": params.to_dict(), "epochs": int(tc["epochs"]), "train_config": cfg}
        save_model(out / "checkpoint.pt", model.cpu(), **meta)
        (out / "metrics.json").write_text(json.dumps(result, indent=1, default=float))
    log.close()
    return result


def _protocol(cfg: dict):
    """The real-data protocol a config runs, or None."""
    d = cfg["data"]
    if d["source"] != "datasets" or not d.get("protocol"):
        return None
    from edge_fas.data.protocols import get_protocol

    return get_protocol(d["protocol"])


def _loading_progress(what: str):
    """A (done, total) callback that shows loading or rendering progress on stderr."""
    from edge_fas.progress import Progress

    return Progress(f"loading {what} samples", 1).callback
