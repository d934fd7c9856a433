"""The training loop: `train(cfg)` builds the model, streams the data (edge_fas.training.data), runs
the epochs, validates after each, and ends by fitting the decision on validation and writing the
checkpoint.

Each step calls the model's own `train_step(batch, optimisers, scaler)` (MMDG's ReGrad and the
spoof-trace network's adversarial steps included; models that accumulate gradients do it there). After
every epoch the model is validated on the validation split with edge_fas.metrics (train.keep: best
keeps the epoch with the lowest validation EER). At the end the score calibration, the operating point
(`train.target`, default the EER) and the abstention level are fitted on the *validation* split
(edge_fas.operating_point) and stored in the checkpoint meta with the split, so test numbers use a
calibration and threshold fixed before seeing test data (ISO/IEC 30107-3 practice).

Outputs in `out`: checkpoint.pt (edge_fas.models.save_checkpoint, the model + meta), resume.pt
(optimisers, epoch, RNG states: `train.resume: true` continues from it), log.jsonl (one JSON object
per logged step and per epoch), config.yaml (the effective config), metrics.json (final val/test).
Under torchrun see edge_fas.training.distributed; each process scores a share of every validation and test
set (TrainingData.evaluate and .score gather them), and only rank 0 writes files.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from edge_fas import metrics
from edge_fas.errors import ConfigError
from edge_fas.training import distributed, qat
from edge_fas.training.config import (check_config, data_params, heldout_summary, parent_preprocess, real_protocol,
                                      train_domain_names)
from edge_fas.training.data import TrainingData, to_device

__all__ = ["train", "build_model", "lr_factor", "seed_everything", "save_model", "load_model"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_model(path, model, **meta):
    """edge_fas.models.save_checkpoint (the models part owns the format)."""
    from edge_fas.models import save_checkpoint

    return save_checkpoint(path, model, **meta)


def load_model(path, map_location="cpu", extend: dict | None = None):
    from edge_fas.models import load_checkpoint

    return load_checkpoint(path, map_location=map_location, extend=extend)


def lr_factor(schedule: str, step: int, total: int, warmup: int = 0, min_ratio: float = 0.01) -> float:
    """Multiplier on the base learning rate at optimiser step `step` of `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(max(step - warmup, 0) / max(total - warmup, 1), 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _device(name: str, local_rank: int | None = None) -> torch.device:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else torch.device(name)
    return torch.device("cuda", local_rank) if device.type == "cuda" and local_rank is not None else device


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


def memory_format(name: str, device: torch.device) -> torch.memory_format:
    """train.memory_format resolved for `device`. channels_last on the CPU: oneDNN then convolves without
    reordering every activation (spoof_trace's edge train_step: 17-21% less CPU time, same losses to 1e-5;
    benchmarks/bench_training.py --memory-format). On CUDA it was never measured, so auto keeps the default."""
    if name == "auto":
        name = "channels_last" if device.type == "cpu" else "contiguous"
    return torch.channels_last if name == "channels_last" else torch.contiguous_format


def autocast_dtype(amp, device: torch.device) -> torch.dtype | None:
    """train.amp resolved for `device`: the dtype train_step autocasts to, or None for float32 (see
    edge_fas.training.config: auto and true mean float16 on CUDA only, bf16 means bfloat16 anywhere)."""
    if amp == "bf16":
        return torch.bfloat16
    if (amp == "auto" or amp is True) and device.type == "cuda":
        return torch.float16
    return None


def _check_overrides_match(overrides, saved: dict, init_from) -> None:
    """A fine-tune keeps train.init_from's network and options: a model.overrides value that differs from the saved
    one would be silently unused, so it is refused by name (an equal one, a config reused for its own checkpoint,
    passes)."""
    def same(a, b):
        return (list(a) == list(b)) if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) else a == b

    differ = {k: v for k, v in dict(overrides or {}).items() if k not in saved or not same(v, saved[k])}
    if differ:
        saved_values = ", ".join(f"{k}: {saved[k]!r}" if k in saved else f"{k}: (none)" for k in differ)
        raise ConfigError(f"model.overrides {differ} differ from train.init_from {init_from}'s saved model "
                          f"({saved_values}); a fine-tune keeps the checkpoint's network and options, so they would go "
                          "unused: drop them from model.overrides (or give the saved values), or train from scratch "
                          "without train.init_from; train.init_extend adds a module such as family_head")


def _apply_loss_options(model, info: dict, options: dict, init_from) -> None:
    """train.init_options: loss weights the fine-tune trains with instead of the checkpoint's (the model's
    loss_options only; each value checked by the model's own constructor). The new checkpoint records them."""
    from edge_fas.models import build

    allowed = tuple(getattr(model, "loss_options", ()))
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"train.init_options {unknown}: a fine-tune of {init_from} may change only the options its "
                          f"{model.name!r} training losses read ({', '.join(allowed) or 'none'}); an option that "
                          "changes the network or its score needs a model trained from scratch")
    for k, v in options.items():  # loss weights are numbers >= 0 (alphas: a list of them)
        if isinstance(v, dict):  # per-class weights (family_class_weights): the constructor checks names and values
            continue
        values = v if isinstance(v, (list, tuple)) else [v]
        if not values or any(isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0
                             for x in values):
            raise ConfigError(f"train.init_options.{k} must be a loss weight, a number >= 0"
                              f"{' (or a list of them)' if isinstance(v, (list, tuple)) else ''}; got {v!r}")
    with torch.device("meta"):  # the model's own checks of the values, no weights allocated
        checked = build(info["name"], info["preset"], **{**info["config"], **options}).config
    model.config.update({k: checked[k] for k in options})
    info["config"] = {**info["config"], **{k: checked[k] for k in options}}


def build_model(cfg: dict, device, world: int = 1):
    """(model, PreprocessParams, AugmentParams): the model built from the config, or train.init_from's
    checkpoint (fine-tuning), with model.pretrained's backbone weights; the preprocessing is
    data.preprocess at the model's input size with the RGB normalisation of the pretrained backbone or
    the fine-tuned checkpoint, and travels on in the checkpoint meta and the exported artifact; the
    augmentation is data.augment_params with data.drop."""
    from edge_fas.models import build

    mc, tc = cfg["model"], cfg["train"]
    if tc.get("init_extend") and not tc["init_from"]:
        raise ConfigError("train.init_extend adds modules to train.init_from's checkpoint; without init_from, put "
                          f"{dict(tc['init_extend'])} in model.overrides instead")
    if tc["init_from"]:
        model, info = load_model(tc["init_from"], extend=tc.get("init_extend") or None)
        if model.name != mc["name"]:
            raise ConfigError(f"train.init_from {tc['init_from']} holds a {model.name!r} model, config says {mc['name']!r}")
        _check_overrides_match(mc["overrides"], info["config"], tc["init_from"])
        if tc.get("init_options"):
            _apply_loss_options(model, info, dict(tc["init_options"]), tc["init_from"])
    else:
        overrides = dict(mc["overrides"] or {})
        model = build(mc["name"], mc["preset"], **overrides)
        if "num_domains" in model.config and "num_domains" not in overrides:  # one prototype per source domain
            overrides["num_domains"] = len(train_domain_names(cfg))
            model = build(mc["name"], mc["preset"], **overrides)
    inherited = parent_preprocess(info["meta"]) if tc["init_from"] else {}  # all of it: see data_params
    if mc.get("pretrained"):  # .get: a whole model section given as an override may lack the key
        from edge_fas.models.pretrained import load_pretrained

        if tc["init_from"]:
            raise ConfigError("model.pretrained and train.init_from both initialise the model; give one of them")
        inherited = load_pretrained(model, mc["pretrained"])["normalisation"]
    if world > 1:
        distributed.broadcast_params(model)
    model.to(device)
    params, augment_params = data_params(cfg, int(model.input_size), inherited)
    return model, params, augment_params


def _optimisers(model, tc: dict, world: int) -> dict:
    """The model's own optimisers (train.lr / weight_decay where given), averaging gradients under
    torchrun; gradient accumulation only for models whose train_step implements it."""
    optimisers = model.make_optimisers(**{k: tc[k] for k in ("lr", "weight_decay") if tc[k] is not None})
    for o in optimisers.values():
        for g in o.param_groups:
            g.setdefault("initial_lr", g["lr"])
    if world > 1:
        for o in optimisers.values():
            distributed.average_grads_before_step(o, world)
    accumulate = int(tc["accumulate"])
    if accumulate > 1 and not getattr(model, "supports_accumulation", False):  # its train_step must do it
        raise ConfigError(f"train.accumulate={accumulate}: {model.name}'s train_step does not implement gradient "
                          f"accumulation (it steps {len(optimisers)} optimiser(s) its own way); use 1")
    return optimisers


class _Epochs:
    """The per-epoch training pass: learning-rate schedule, the model's steps, logging and progress."""

    def __init__(self, cfg, model, optimisers, data: TrainingData, device, world: int, log: _Log, main: bool):
        self.tc, self.model, self.optimisers, self.data = cfg["train"], model, optimisers, data
        self.device, self.world, self.log, self.main = device, world, log, main
        self.amp_dtype = autocast_dtype(self.tc["amp"], device)
        self.use_amp = self.amp_dtype is not None
        # float16's narrow range needs the loss scaled; bfloat16 has float32's exponent and does not
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.accumulate = int(self.tc["accumulate"])
        max_steps = self.tc["max_steps_per_epoch"]
        self.steps = min(len(data.loader), int(max_steps)) if max_steps else len(data.loader)
        self.updates = -(-self.steps // self.accumulate)  # an epoch's last, shorter group also steps
        self.total = int(self.tc["epochs"])  # the schedule's length; train.time_budget_min may cut it

    def lr(self, update: int) -> float:
        tc = self.tc
        return lr_factor(tc["schedule"], update, self.total * self.updates, int(tc["warmup_epochs"]) * self.updates,
                         float(tc["min_lr_ratio"]))

    def run(self, epoch: int) -> dict:
        """One epoch; returns its record (train_loss, samples_per_s, lr_factor)."""
        tc, data, model, world = self.tc, self.data, self.model, self.world
        data.set_epoch(epoch)
        if hasattr(model, "update_prototypes"):  # MMDG: per-epoch prototype refresh on half the train set
            model.update_prototypes(data.prototype_batches(epoch), sample_fraction=1.0, seed=epoch)
        t0, seen, run_loss, factor = time.perf_counter(), 0, 0.0, self.lr(epoch * self.updates)
        tty = sys.stderr.isatty()
        for step, batch in enumerate(data.loader):
            if step >= self.steps:
                break
            if batch is None:  # no sample of this batch had a face
                if world > 1:  # the other processes are waiting in this step's all-reduce
                    raise RuntimeError(f"epoch {epoch} step {step}: no sample of this process's batch has a face "
                                       "(a detector-framed source); raise train.batch_size or train in one process")
                continue
            n_batch = int(batch["label"].shape[0])
            batch = to_device(batch, self.device)
            factor = self.lr(epoch * self.updates + step // self.accumulate)
            for o in self.optimisers.values():
                for g in o.param_groups:
                    g["lr"] = g["initial_lr"] * factor
            # the model's own step in every case (MMDG's ReGrad included); accumulating ones step the
            # optimiser on every accumulate-th batch and on the epoch's last
            acc = {"accumulate": self.accumulate, "apply": (step + 1) % self.accumulate == 0 or step == self.steps - 1} \
                if self.accumulate > 1 else {}
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.use_amp):
                terms = model.train_step(batch, self.optimisers, scaler=self.scaler, **acc)
            if world > 1:
                terms = distributed.global_mean(terms, world, self.device)
            if not math.isfinite(terms["total"]):
                raise RuntimeError(f"training diverged at epoch {epoch} step {step}: loss {terms['total']}; "
                                   "lower train.lr")
            seen += n_batch
            run_loss += terms["total"]
            rate = seen * world / max(time.perf_counter() - t0, 1e-9)
            if self.main and (step % int(tc["log_every"]) == 0 or step == self.steps - 1):
                self.log.write(kind="step", epoch=epoch, step=step, samples_per_s=round(rate, 2), **terms)
            # a terminal gets one line redrawn every step; a log file (nohup, systemd, CI) a line every
            # log_every steps instead of thousands of carriage returns run together
            if self.main and tc["progress"] and (tty or step % int(tc["log_every"]) == 0 or step == self.steps - 1):
                print(("\r" if tty else "") + f"epoch {epoch + 1}/{self.total} step {step + 1}/{self.steps} "
                      f"loss {terms['total']:.4f} {rate:.1f} samples/s", end="" if tty else "\n",
                      file=sys.stderr, flush=True)
        if self.main and tc["progress"] and tty:
            print(file=sys.stderr)
        return {"train_loss": run_loss / max(self.steps, 1),
                "samples_per_s": round(seen * world / max(time.perf_counter() - t0, 1e-9), 2),
                "lr_factor": round(factor, 5)}


def epochs_within_budget(budget_s: float, first_s: float, final_s: float, done: int, wanted: int) -> int:
    """How many epochs a run may have in all when its first epoch (training and validation) took
    `first_s` seconds of a `budget_s` budget, the closing decision on validation takes about `final_s`
    and `done` epochs were finished before this run (resumed): the epochs that fit, at least the one
    already run, at most `wanted`."""
    more = int(max(budget_s - first_s - final_s, 0.0) // max(first_s, 1e-9))
    return max(done + 1, min(wanted, done + 1 + more))


def _better(val: dict, best: dict | None) -> bool:
    return best is None or (val["eer"], -val["auc"]) < (best["eer"], -best["auc"])


def _resume(path: Path, model, optimisers, device) -> tuple[int, list, dict | None]:
    """(first epoch, history, best) from resume.pt, with the model, optimiser and RNG states restored."""
    st = torch.load(path, map_location=device, weights_only=False)
    model.load_state_dict(st["model"])
    for k, o in optimisers.items():
        o.load_state_dict(st["optimisers"][k])
    random.setstate(st["rng"]["python"])
    np.random.set_state(st["rng"]["numpy"])
    torch.set_rng_state(st["rng"]["torch"])
    return st["epoch"] + 1, st["history"], st.get("best")


def _save_resume(path: Path, model, optimisers, epoch: int, history: list, best) -> None:
    torch.save({"model": model.state_dict(), "optimisers": {k: o.state_dict() for k, o in optimisers.items()},
                "epoch": epoch, "history": history, "best": best,
                "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}},
               path)


def train(cfg: dict) -> dict:
    """Run one training described by `cfg` (see edge_fas.training.config). Returns the final metrics dict."""
    check_config(cfg)
    tc = cfg["train"]
    world, rank, local_rank = distributed.world()
    if int(tc["threads"]) > 0:
        torch.set_num_threads(int(tc["threads"]))
    if world > 1:
        distributed.start(tc["device"])
    device = _device(tc["device"], local_rank if world > 1 else None)
    seed_everything(int(tc["seed"]) + rank)
    out, main = Path(cfg["out"]), rank == 0
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    model, params, augment_params = build_model(cfg, device, world)
    if tc["quantization_aware"]:
        qat.prepare(model)  # before the optimisers and resume.pt: both then see the prepared model
    model.to(memory_format=memory_format(tc["memory_format"], device))  # weights only; the batches stay as they are
    if tc["quantization_consistency"]:
        if not hasattr(model, "extra_losses"):
            raise ConfigError(f"train.quantization_consistency: {model.name}'s training step takes no extra loss "
                              "term (spoof_trace's does); set it to 0 for this model")
        weight = float(tc["quantization_consistency"])
        model.extra_losses = {"int8_consistency": lambda batch, out: qat.consistency_loss(model, batch, out, weight)}
    optimisers = _optimisers(model, tc, world)
    data = TrainingData(cfg, params, world, rank, device, augment_params)  # indices only: samples decode in workers
    start_epoch, history, best = 0, [], None  # best: {"epoch", "eer", "auc", "state"} when train.keep is best
    if tc["resume"] and (out / "resume.pt").exists():
        start_epoch, history, best = _resume(out / "resume.pt", model, optimisers, device)
    log = _Log(out / "log.jsonl" if main else None)
    epochs = _Epochs(cfg, model, optimisers, data, device, world, log, main)
    budget_s = float(tc["time_budget_min"]) * 60.0 if tc["time_budget_min"] is not None else None
    t_run, epoch = time.perf_counter(), start_epoch
    if tc["fit"] == "head":  # the network frozen; its family head fitted on features of train.epochs passes
        history = [_fitted_head(model, data, tc, device, log, main, world)]
        epoch = epochs.total
    while epoch < epochs.total:
        rec = {"kind": "epoch", "epoch": epoch, **epochs.run(epoch)}
        # validation: threshold fixed here, on the source domains' validation split
        t_val = time.perf_counter()
        val, _ = data.evaluate(model, data.val, data.domain_ids)
        if budget_s is not None and epoch == start_epoch:  # a lease's length: cut the schedule to what fits
            now = time.perf_counter()
            spent = {"first": now - t_run, "final": now - t_val}
            if world > 1:  # every process must cut to the same count: they decide on the mean timings
                spent = distributed.global_mean(spent, world, device)
            epochs.total = epochs_within_budget(budget_s, spent["first"], spent["final"], start_epoch, int(tc["epochs"]))
            log.write(kind="budget", epochs=epochs.total, budget_s=budget_s, first_epoch_s=round(spent["first"], 2))
            if main and epochs.total < int(tc["epochs"]):
                print(f"train.time_budget_min {tc['time_budget_min']}: the first epoch took {spent['first']:.0f} s, so "
                      f"{epochs.total} of {tc['epochs']} epochs fit; the schedule now spans {epochs.total}",
                      file=sys.stderr, flush=True)
        rec.update(val_eer=val["eer"], val_auc=val["auc"], val_threshold=val["threshold"])
        rec = {k: rec[k] for k in ("kind", "epoch", "train_loss", "samples_per_s", "val_eer", "val_auc",
                                   "val_threshold", "lr_factor")}
        if tc["keep"] == "best" and _better(val, best):
            best = {"epoch": epoch, "eer": val["eer"], "auc": val["auc"],
                    "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        history.append(rec)
        log.write(**rec)
        if main:
            _save_resume(out / "resume.pt", model, optimisers, epoch, history, best)
        epoch += 1
    if world > 1:
        distributed.check_replicas(model)
    kept_epoch = epochs.total - 1
    if best is not None:  # train.keep: best
        model.load_state_dict(best["state"])
        kept_epoch = best["epoch"]
    if tc["quantization_aware"]:
        qat.strip(model)  # the float model the checkpoint, the decision and every export carry
    if "extra_losses" in vars(model):
        del model.extra_losses  # back to the class's empty default
    result, record, n_val = _decide_and_test(cfg, model, params, data, device)
    result.update(history=history, kept_epoch=kept_epoch, epochs=epochs.total, operating_point=record["operating_point"])
    if main:
        meta = _checkpoint_meta(cfg, data, params, record, result, kept_epoch, n_val, epochs.total)
        save_model(out / "checkpoint.pt", model.cpu(), **meta)
        (out / "metrics.json").write_text(json.dumps(result, indent=1, default=float))
    log.close()
    return result


def _fitted_head(model, data: TrainingData, tc: dict, device, log: _Log, main: bool, world: int) -> dict:
    """train.fit head: edge_fas.training.head_fit, then validation as an epoch's; the log's one record."""
    from edge_fas.training.head_fit import fit_head

    if world > 1:
        raise ConfigError("train.fit head reads features and fits once, in one process; run it without torchrun")
    rec = fit_head(model, data, int(tc["epochs"]), device, progress=main and bool(tc["progress"]),
                   ridges=tc["head_penalties"])
    val, _ = data.evaluate(model, data.val, data.domain_ids)
    rec.update(val_eer=val["eer"], val_auc=val["auc"], val_threshold=val["threshold"])
    log.write(**rec)
    return rec


def _decide_and_test(cfg: dict, model, params, data: TrainingData, device) -> tuple[dict, dict, int]:
    """Calibration, operating point and abstention fitted on validation (edge_fas.operating_point), then
    every test set at that operating point: (result, decision record, validation samples scored)."""
    from edge_fas.data.build import weighted_average
    from edge_fas.operating_point import fit_decision_record
    from edge_fas.score_calibration import ScoreCalibration
    from edge_fas.scoring import model_scorer

    if data.world > 1:  # the processes score shares of each set, so they must be one model: rank 0's buffers
        distributed.broadcast_buffers(model)
    scorer = model_scorer(model, params, device)
    scored_val = data.score(scorer, data.val, data.domain_ids)
    scored_tests = {name: data.score(scorer, ix) for name, ix in data.tests.items()}
    skipped = {"val": len(data.val) - len(scored_val),
               **{n: len(ix) - len(scored_tests[n]) for n, ix in data.tests.items()}}
    # the record's test evidence comes from the first test set; every set's metrics are in metrics.json
    record = fit_decision_record(scored_val, cfg["train"]["target"], next(iter(scored_tests.values()), None))
    thr, cal = record["operating_point"]["threshold"], ScoreCalibration.from_dict(record["calibration"])
    val = metrics.evaluate(cal.apply_logits(scored_val.logits), scored_val.label, scored_val.species, threshold=thr)
    result = {"val": metrics.json_ready(val), "threshold": thr, "calibration": record["calibration"]}
    if data.tests:
        tests = {name: metrics.evaluate(cal.apply_logits(sc.logits), sc.label, sc.species, threshold=thr)
                 for name, sc in scored_tests.items()}
        result["tests"] = {name: metrics.json_ready(m) for name, m in tests.items()}
        result["test_data"] = {name: ix.meta.get("data", "") for name, ix in data.tests.items()}
        if len(tests) == 1:
            result["test"] = result["tests"][next(iter(tests))]
        protocol = real_protocol(cfg)
        if protocol is not None and protocol.average:
            result["test_average"] = weighted_average(tests, {n: len(sc) for n, sc in scored_tests.items()},
                                                      protocol.average)
    if any(skipped.values()):
        result["skipped_no_face"] = skipped
    return result, record, len(scored_val)


def _parent_sha256(init_from) -> str | None:
    """The parent checkpoint's sha256 (None without one): init_from's path is often a run directory only the
    training machine has, while the digest names the parent wherever its file or its half copy travels."""
    from edge_fas.artifact import sha256_file
    return sha256_file(init_from) if init_from else None


def _checkpoint_meta(cfg: dict, data: TrainingData, params, record: dict, result: dict, kept_epoch: int,
                     n_val: int, n_epochs: int) -> dict:
    """What the checkpoint says about itself: the decision and the split it was fitted on, what it was
    trained and validated on, the preprocessing, the config."""
    d, tc, mc = cfg["data"], cfg["train"], cfg["model"]
    sess = d["source"] == "sessions"
    vd = d["sessions"]["val"] if sess else (d["val_domains"] or train_domain_names(cfg))
    td = d["sessions"]["train"] if sess else train_domain_names(cfg)
    real = d["source"] == "datasets"
    target, val = record["operating_point"]["target"], result["val"]
    return {"threshold": result["threshold"],
            "threshold_source": f"operating point {target} on the validation split (calibrated scores)",
            "threshold_split": f"{target} on the {d['source']} validation split "
                               f"({data.val.meta.get('data') if real else ', '.join(map(str, vd))}, {n_val} samples"
                               f"{'' if real else ', seed ' + str(d['seed'])}), disjoint from training",
            **{k: v for k, v in record.items() if k != "threshold"},
            "training": {"source": d["source"], "domains": td, "samples": len(data.train), "init_from": tc["init_from"],
                         "init_from_sha256": _parent_sha256(tc["init_from"]),
                         "quantization_aware": bool(tc["quantization_aware"]), "fit": tc["fit"],
                         "quantization_consistency": float(tc["quantization_consistency"]),
                         "model": mc["name"], "preset": mc["preset"], "epochs": n_epochs,
                         "kept_epoch": kept_epoch, "keep": tc["keep"], "schedule": tc["schedule"],
                         "protocol": d.get("protocol"), "data": data.train.meta.get("data", "")},
            "validation": {"source": d["source"], "domains": vd, "split": "val", "samples": n_val, "seed": d["seed"],
                           "eer": val["eer"], "auc": val["auc"], "data": data.val.meta.get("data", ""),
                           **heldout_summary(cfg, "val")},
            "trained_on": {"source": d["source"], "domains": td, "split": "train", "samples": len(data.train),
                           "seed": d["seed"], "rig_size": d["rig_size"], "protocol": d.get("protocol"),
                           "data": data.train.meta.get("data", "")},
            "preprocess": params.to_dict(), "epochs": n_epochs, "train_config": cfg}
