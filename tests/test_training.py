"""`edge-fas train` then `edge-fas eval` end to end at a tiny size; resume, accumulation, config errors,
and a two-process torchrun (gloo, CPU) run whose replicas must stay identical."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from edge_fas.cli import main as cli_main
from edge_fas.errors import ConfigError
from edge_fas.models import build, save_checkpoint
from edge_fas.training import load_train_config, train

TINY_MODEL = {"name": "mmfas", "preset": "edge",
              "overrides": {"input_size": 32, "patch_size": 8, "width": 24, "heads": 2, "enc_depth": 1,
                            "fusion_depth": 1, "head_width": 24}}


def tiny_config(tmp_path, **train_kw):
    return {"model": TINY_MODEL,
            "data": {"train_domains": ["cefa"], "test_domains": ["surf"], "per_domain": {"train": 8, "val": 6, "test": 6},
                     "rig_size": [160, 120], "cache_dir": str(tmp_path.parent / "d_cache")},
            "train": {"epochs": 1, "batch_size": 4, "threads": 1, "progress": False, "log_every": 1, **train_kw},
            "out": str(tmp_path / "run")}


def write_cfg(tmp_path, cfg):
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_train_resume_then_eval_cli(tmp_path, capsys):
    cfg = write_cfg(tmp_path, tiny_config(tmp_path, keep="best", schedule="cosine"))
    assert cli_main(["train", "--config", str(cfg)]) == 0
    out = tmp_path / "run"
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    meta = ckpt["meta"]
    assert 0.0 <= meta["threshold"] <= 1.0 and "validation split" in meta["threshold_split"]
    assert meta["training"]["domains"] == ["cefa"]
    # calibration and the operating point are fitted on validation and recorded with their split
    assert meta["calibration"]["method"] in ("temperature", "platt", "isotonic")
    assert "val split" in meta["calibration"]["split"] and "held_out" in meta["calibration"]["fit"]
    op = meta["operating_point"]
    assert op["target"] == "eer" and op["threshold"] == meta["threshold"]
    assert op["validated_range"][0] <= op["threshold"] <= op["validated_range"][1]
    from edge_fas.export import export_checkpoint
    art = export_checkpoint(out / "checkpoint.pt", tmp_path / "art", parity_count=4, parity_source="random")
    assert art.calibration.method == meta["calibration"]["method"]
    assert art.threshold == op["threshold"] == art.operating_point["threshold"]
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in log} == {"step", "epoch"} and all(r["samples_per_s"] > 0 for r in log)
    assert "test" in json.loads((out / "metrics.json").read_text())
    # resume: a second epoch continues from resume.pt instead of starting over
    capsys.readouterr()
    assert cli_main(["train", "--config", str(cfg), "--resume", "--set", "train.epochs=2",
                     "--set", "train.progress=true"]) == 0
    # progress into a log (stderr is not a terminal here): whole lines, no carriage returns run together
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("epoch 2/2 step ")]
    assert "\r" not in err and len(lines) == 2 and lines[-1].startswith("epoch 2/2 step 2/2 loss ")
    hist = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in hist] == [0, 1]
    # keep: best -> the checkpoint is the epoch with the lowest validation EER (AUC breaks ties)
    best = min(hist, key=lambda h: (h["val_eer"], -h["val_auc"]))["epoch"]
    assert torch.load(out / "checkpoint.pt", weights_only=False)["meta"]["training"]["kept_epoch"] == best
    assert hist[1]["lr_factor"] < 1.0  # cosine: the second epoch trains at a lower rate
    # eval writes the report folder with the checkpoint's validation threshold
    rep = tmp_path / "report"
    assert cli_main(["eval", str(out / "checkpoint.pt"), "--out", str(rep), "--domains", "surf", "--per-domain", "6",
                     "--rig-size", "160x120", "--cache-dir", str(tmp_path.parent / "d_cache"), "--no-plots"]) == 0
    doc = json.loads((rep / "metrics.json").read_text())
    assert doc["metrics"]["threshold_source"] == "given"
    assert doc["metrics"]["threshold"] == pytest.approx(torch.load(out / "checkpoint.pt", weights_only=False)["meta"]["threshold"])
    assert (rep / "scores.csv").read_text().count("\n") == 7
    assert "replay" in doc["metrics"]["apcer"]  # surf's species are all listed, present or absent
    from edge_fas.sim import fingerprint

    assert f"synthetic rig {fingerprint()}" in doc["meta"]["data"]  # which version of the rig made these numbers
    assert doc["meta"]["rig"] == fingerprint()  # and as a field, for tools that refuse another rig's scores


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


# configs/ranges/ holds range sets for `edge-fas eval --ranges` (tests/test_sim_random.py), not training configs
TRAINING_CONFIGS = sorted(p for p in CONFIGS.rglob("*.yaml") if p.relative_to(CONFIGS).parts[0] != "ranges")


@pytest.mark.parametrize("path", TRAINING_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_shipped_configs_pass_the_checks_train_runs_first(path):
    """Every config the README or a model card tells users to run loads and passes check_config (a
    renamed key or a stale choice would otherwise surface only after a long cache build)."""
    from edge_fas.training import check_config

    check_config(load_train_config(str(path)))


def test_training_on_a_benchmarks_scenes_is_refused_before_any_rendering(capsys):
    """A continuation of the demo recipe on "another data.seed" once validated on seed 3, which is half of
    bench_demo.py's selection family: train and cache build refuse it, naming the set and the seeds to avoid,
    and accept the next free seed; the test split may be a benchmark's (scoring there is its purpose)."""
    from edge_fas.data.evaluation_sets import reserved_by
    from edge_fas.training import check_config

    recipe = str(CONFIGS / "randomized-edge.yaml")
    for seed in (3, 4):
        with pytest.raises(ConfigError, match=f"data.seed {seed}: the val split of rand_heldout .*rand_heldout_val, "
                                               "which chooses between models.*take 3, 4 for rand_heldout val"):
            check_config(load_train_config(recipe, {"data.seed": seed}))
    check_config(load_train_config(recipe, {"data.seed": 6}))
    check_config(load_train_config(recipe, {"data.seed": 11}))  # its test split is rand_test's own scenes: allowed
    # scenes, not seeds: another split at a benchmark's seed draws other indices, so other people and cameras
    check_config(load_train_config(recipe, {"data.seed": 11, "data.train_domains": ["rand_test"]}))
    assert reserved_by("rand_test", 11, "test") == "rand_test" and reserved_by("rand_test", 11, "train") is None
    assert reserved_by("surf", 7, "test") == "named_domains" and reserved_by("rand_heldout", 4, "val") == "rand_heldout_val"
    # cache build refuses before rendering anything
    assert cli_main(["cache", "build", "--config", recipe, "--set", "data.seed=3", "--splits", "val"]) == 2
    assert "rand_heldout_val" in capsys.readouterr().err


def test_lr_schedules():
    from edge_fas.training import lr_factor

    assert [lr_factor("constant", k, 10) for k in (0, 5, 9)] == [1.0, 1.0, 1.0]
    cos = [lr_factor("cosine", k, 100, min_ratio=0.01) for k in range(101)]
    assert cos[0] == pytest.approx(1.0) and cos[50] == pytest.approx(0.505) and cos[100] == pytest.approx(0.01)
    assert all(a >= b for a, b in zip(cos, cos[1:]))  # never rises after warm-up
    warm = [lr_factor("cosine", k, 100, warmup=4) for k in range(6)]
    assert warm[:4] == [0.25, 0.5, 0.75, 1.0] and warm[4] == pytest.approx(1.0)


def test_gradient_accumulation_and_config_errors(tmp_path):
    cfg = load_train_config(None, {"model": TINY_MODEL, **{f"data.{k}": v for k, v in tiny_config(tmp_path)["data"].items()
                                                            if k != "test_domains"}, "out": str(tmp_path / "acc")})
    cfg["train"].update(epochs=1, batch_size=2, accumulate=2, threads=1, progress=False)
    r = train(cfg)
    assert r["val"]["n_attack"] + r["val"]["n_bona_fide"] == 6
    # 4 batches of 2 with accumulate=2 -> 2 optimiser steps: the weights moved from their seeded start
    from edge_fas.models import build, load_checkpoint
    from edge_fas.training import seed_everything

    seed_everything(0)
    start = build("mmfas", "edge", **TINY_MODEL["overrides"]).state_dict()
    trained, _ = load_checkpoint(tmp_path / "acc" / "checkpoint.pt")
    moved = [k for k, v in trained.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, start[k])]
    assert moved
    with pytest.raises(ConfigError, match="no such key \\(did you mean 'train.epochs'\\?\\)"):
        load_train_config(None, {"train.epochz": 1})
    with pytest.raises(ConfigError, match="did you mean 'train.lr'"):
        load_train_config(None, {"trian.lr": 1})
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: mmfas, colour: red}\n")
    with pytest.raises(ConfigError, match="colour"):
        load_train_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_train_config(tmp_path / "missing.yaml")
    cfg2 = load_train_config(None, {"model": {"name": "spoof_trace", "preset": "edge", "overrides": {}}, "train.accumulate": 2})
    cfg2["out"] = str(tmp_path / "st")
    cfg2["data"].update(tiny_config(tmp_path)["data"], test_domains=[])
    with pytest.raises(ConfigError, match="accumulation"):
        train(cfg2)
    cfg3 = load_train_config(None, {"model": TINY_MODEL, "data.attack_mix": "balanced"})
    cfg3["out"] = str(tmp_path / "mix")
    with pytest.raises(ConfigError, match="attack_mix 'balanced'.*uniform"):
        train(cfg3)
    cfg3["data"]["attack_mix"] = {"silicone": 3}  # a weight mapping must name rendered species
    with pytest.raises(ConfigError, match="data.attack_mix.*'silicone'.*flexible_mask"):
        train(cfg3)
    for key, bad in (("train.schedule", "step"), ("train.keep", "first")):
        cfg4 = load_train_config(None, {"model": TINY_MODEL, key: bad})
        with pytest.raises(ConfigError, match=f"{key} '{bad}'"):
            train(cfg4)


def test_torchrun_two_gloo_processes(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg["data"]["test_domains"] = []
    cfg["train"].update(device="cpu", epochs=2, time_budget_min=1e-4)  # the processes agree to stop after one
    p = write_cfg(tmp_path, cfg)
    exe = Path(sys.executable).parent / "edge-fas"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(exe), "train", "--config", str(p)], capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "run" / "checkpoint.pt").exists()
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    # 8 samples / 2 processes / batch 4 -> one step per epoch on each process, logged once (rank 0)
    assert sum(r["kind"] == "step" for r in log) == 1
    assert [r["epochs"] for r in log if r["kind"] == "budget"] == [1]


def test_finetune_from_checkpoint_on_sessions(tmp_path):
    """The 'adapt to a new site' path: record sessions, fine-tune a trained checkpoint on them."""
    from edge_fas.drivers.session import SessionWriter
    from edge_fas.sim import Rig

    rig = Rig("padisi", seed=3, width=160, height=120)
    sessions = {}
    for split, base in (("train", 0), ("val", 50)):
        path = tmp_path / f"site-{split}"
        with SessionWriter(path, device=rig.device, calibration=rig.calibration, site="lobby", domain="lobby") as w:
            for k, species in enumerate(["bona_fide", "print", "bona_fide", "replay"]):
                w.begin_take(species=species, subject_id=f"S{k}", consent=True)
                for t in (0.0, 0.5):
                    w.write(rig.render(species, base + k, t))
                w.end_take()
        sessions[split] = [str(path)]
    cfg = tiny_config(tmp_path)
    cfg["data"]["test_domains"] = []
    cfg["data"]["preprocess"] = {"ir_norm": "face_log", "rgb_norm": "face", "crop_scale": 1.3}
    p = write_cfg(tmp_path, cfg)
    assert cli_main(["train", "--config", str(p)]) == 0
    ft = tiny_config(tmp_path)
    ft["data"] = {"source": "sessions", "sessions": {**sessions, "test": sessions["val"]}, "frames_per_take": 2,
                  "cache_dir": cfg["data"]["cache_dir"]}
    ft["train"].update(init_from=str(tmp_path / "run" / "checkpoint.pt"))
    ft["out"] = str(tmp_path / "ft")
    # `edge-fas cache build` keys the crops on the checkpoint's crop_scale, as the fine-tune will cut them
    from edge_fas.commands.cache import build_cache

    from edge_fas.data.build import split_index
    from edge_fas.data.stream import StreamDataset
    from edge_fas.preprocess import PreprocessParams
    from edge_fas.training import open_cache

    ft_cfg = load_train_config(write_cfg(tmp_path, ft))
    build_cache(ft_cfg, splits=("train",), workers=0, quiet=True)
    cut_as_trained = StreamDataset(split_index(ft_cfg["data"], "train"), PreprocessParams(size=32, crop_scale=1.3),
                                   open_cache(ft_cfg))
    assert cut_as_trained.fill(0).startswith("cached")
    r = train(load_train_config(write_cfg(tmp_path, ft)))
    assert r["val"]["n_attack"] == 4 and r["val"]["n_bona_fide"] == 4 and "test" in r
    meta = torch.load(tmp_path / "ft" / "checkpoint.pt", weights_only=False)["meta"]
    assert meta["training"]["source"] == "sessions"
    # the parent is named by its digest too, since its path is a run directory only this machine has
    parent_bytes = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    assert meta["training"]["init_from_sha256"] == hashlib.sha256(parent_bytes).hexdigest()
    # the fine-tune config names no preprocessing: the network's own normalisation comes with it (adapt's case)
    assert meta["preprocess"]["ir_norm"] == "face_log" and meta["preprocess"]["rgb_norm"] == "face"
    assert meta["preprocess"]["crop_scale"] == 1.3
    rep = tmp_path / "site-report"
    assert cli_main(["eval", str(tmp_path / "ft" / "checkpoint.pt"), "--out", str(rep), "--sessions",
                     sessions["val"][0], "--no-plots", "--cache-dir", cfg["data"]["cache_dir"]]) == 0
    assert (rep / "scores.csv").read_text().count("\n") == 9  # header + 4 takes x 2 frames


def test_two_processes_follow_the_loss_curve_of_one(tmp_path):
    """DDP on CPU (gloo, 2 processes x batch 2) over the streaming dataset trains like one process with
    batch 4: the same global batches, averaged gradients, the same logged losses and weights."""
    from edge_fas.models import load_checkpoint

    cfg = tiny_config(tmp_path)
    cfg["model"] = {"name": "vit", "preset": "edge",
                    "overrides": {"input_size": 32, "patch_size": 8, "width": 24, "depth": 1, "heads": 2}}
    # the default layout: with channels_last weights (auto on the CPU) oneDNN sums batch 2 and batch 4 in other
    # orders, and after 4 steps one bias differed by 1.02e-5, a rounding just past this test's tolerance
    cfg["train"].update(epochs=2, device="cpu", workers=1, lr=1e-3, memory_format="contiguous")
    runs, vals, finals = {}, {}, {}
    for name, world, batch in (("one", 1, 4), ("two", 2, 2)):
        c = {**cfg, "train": {**cfg["train"], "batch_size": batch}, "out": str(tmp_path / name)}
        p = tmp_path / f"{name}.yaml"
        p.write_text(yaml.safe_dump(c))
        exe = Path(sys.executable).parent / "edge-fas"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(world), str(exe),
               "train", "--config", str(p)] if world > 1 else [str(exe), "train", "--config", str(p)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=240)
        assert proc.returncode == 0, proc.stderr[-2000:]
        log = [json.loads(x) for x in (tmp_path / name / "log.jsonl").read_text().splitlines()]
        runs[name] = ([r["total"] for r in log if r["kind"] == "step"], load_checkpoint(tmp_path / name / "checkpoint.pt")[0])
        vals[name] = [(r["val_auc"], r["val_eer"]) for r in log if r["kind"] == "epoch"]
        finals[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    (one, m1), (two, m2) = runs["one"], runs["two"]
    # the final calibration, operating point and test scoring are shared out too, and gathered in order
    f1, f2 = finals["one"], finals["two"]
    assert f1["test"]["n_attack"] + f1["test"]["n_bona_fide"] == 6 and f1["calibration"]["method"]
    c1, c2 = f1["calibration"], f2["calibration"]  # the weights agree to float rounding (below), so does its fit
    assert c1["method"] == c2["method"] and c1.keys() == c2.keys() and np.isclose(f1["threshold"], f2["threshold"])
    assert all(np.allclose(c1["params"][k], c2["params"][k], rtol=1e-4) for k in c1["params"]), (c1, c2)
    for split in ("val", "test"):
        for k in ("auc", "eer", "apcer_max", "bpcer", "n_attack", "n_bona_fide"):
            assert np.isclose(f1[split][k], f2[split][k], atol=1e-6), (split, k, f1[split][k], f2[split][k])
    # validation is shared out between the processes and gathered: the same figures as one process's
    assert len(vals["one"]) == 2 and np.allclose(vals["one"], vals["two"], atol=1e-6), vals
    assert len(one) == len(two) == 4 and one[0] != one[-1]  # 8 samples / global batch 4, 2 epochs: the model learns
    assert np.allclose(one, two, rtol=1e-4, atol=1e-6), (one, two)
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), k


def test_fine_tuning_keeps_the_models_input_normalisation_and_refuses_another(tmp_path):
    from edge_fas.training.config import data_params

    cfg = load_train_config(None, {"train.init_from": "base/checkpoint.pt"})
    parent = {"size": 64, "depth_norm": "plane_mm", "ir_norm": "face_log", "rgb_norm": "face", "rgb_mean": [0.5] * 3}
    params, _ = data_params(cfg, 64, parent)
    assert (params.depth_norm, params.ir_norm, params.rgb_norm, params.rgb_mean) == ("plane_mm", "face_log", "face",
                                                                                    (0.5,) * 3)
    cfg["data"]["preprocess"] = {"ir_norm": "face_log", "rgb_mean": [0.5, 0.5, 0.5]}  # agreeing keys are fine
    assert data_params(cfg, 64, parent)[0].ir_norm == "face_log"
    cfg["data"]["preprocess"] = {"ir_norm": "crop", "depth_norm": "plane_mm"}
    with pytest.raises(ConfigError, match=r"base/checkpoint.pt.*ir_norm is 'crop' in the config, 'face_log' in the model"):
        data_params(cfg, 64, parent)
    # how the face is cut is the config's to choose: a fine-tune may reframe, and inherits the framing otherwise
    cfg["data"]["preprocess"] = {"framing": "metric", "framing_face_m": 0.16}
    reframed = data_params(cfg, 64, parent)[0]
    assert (reframed.framing, reframed.framing_face_m, reframed.ir_norm) == ("metric", 0.16, "face_log")
    cfg["data"]["preprocess"] = {}
    assert data_params(cfg, 64, {**parent, "framing": "metric"})[0].framing == "metric"
    cfg["data"]["preprocess"] = {"framing": "detector"}
    assert data_params(cfg, 64, {**parent, "framing": "metric"})[0].framing == "detector"


def test_init_from_reads_only_a_checkpoint_and_names_the_key_otherwise(tmp_path):
    """train.init_from is read as plain tensors and values (weights_only): a run's resume.pt (a pickle of RNG states
    and optimisers), a missing file or another torch file is refused with the key and the fix, not a traceback."""
    import random

    from edge_fas.training.config import init_from_preprocess, model_input_size

    torch.save({"rng": {"python": random.getstate(), "numpy": np.random.get_state()}, "epoch": 1}, tmp_path / "resume.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    for name, why in (("resume.pt", "not a readable checkpoint"), ("missing.pt", "not a readable checkpoint"),
                      ("other.pt", "not an edge-fas checkpoint")):
        cfg = load_train_config(None, {"train.init_from": str(tmp_path / name)})
        for read in (init_from_preprocess, model_input_size):
            with pytest.raises(ConfigError, match=f"train.init_from .*{name}: {why}"):
                read(cfg)
    model = build("spoof_trace", "edge", input_size=32)
    save_checkpoint(tmp_path / "checkpoint.pt", model, preprocess={"size": 32, "ir_norm": "face_log"})
    cfg = load_train_config(None, {"train.init_from": str(tmp_path / "checkpoint.pt")})
    assert model_input_size(cfg) == 32 and init_from_preprocess(cfg)["ir_norm"] == "face_log"


def test_time_budget_cuts_the_epochs_to_what_fits(tmp_path, capsys):
    from edge_fas.training.loop import epochs_within_budget

    # 100 s budget, first epoch 20 s, closing decision 5 s: 75 s left hold 3 more epochs
    assert epochs_within_budget(100, 20, 5, 0, 10) == 4
    assert epochs_within_budget(100, 20, 5, 0, 2) == 2  # never more than asked
    assert epochs_within_budget(10, 20, 5, 3, 10) == 4  # over budget already: the epoch that ran
    # a run whose budget its first epoch already spends stops there, and says so
    cfg = write_cfg(tmp_path, tiny_config(tmp_path, epochs=3, schedule="cosine", time_budget_min=1e-4))
    assert cli_main(["train", "--config", str(cfg)]) == 0
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if r["kind"] == "epoch"] == [0]
    assert [r["epochs"] for r in log if r["kind"] == "budget"] == [1]
    assert "1 of 3 epochs fit" in capsys.readouterr().err
    meta = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["meta"]
    assert meta["training"]["epochs"] == 1 and meta["training"]["kept_epoch"] == 0
    with pytest.raises(ConfigError, match="time_budget_min"):
        train(load_train_config(write_cfg(tmp_path, tiny_config(tmp_path, time_budget_min=0))))


def test_channels_last_trains_the_same_model_with_its_weights_in_that_layout(tmp_path):
    from edge_fas.training.loop import memory_format

    assert memory_format("auto", torch.device("cpu")) is torch.channels_last
    assert memory_format("auto", torch.device("cuda")) is torch.contiguous_format  # never measured there
    runs = {}
    for fmt in ("contiguous", "channels_last"):
        cfg = tiny_config(tmp_path / fmt, memory_format=fmt, seed=3)
        cfg["model"] = {"name": "spoof_trace", "preset": "edge", "overrides": {"input_size": 32}}
        (tmp_path / fmt).mkdir()
        result = train(load_train_config(write_cfg(tmp_path / fmt, cfg)))
        resume = torch.load(tmp_path / fmt / "run" / "resume.pt", weights_only=False)
        convs = [v for v in resume["model"].values() if v.dim() == 4 and v.shape[1] > 1 and v.shape[2] > 1]
        runs[fmt] = (result, resume["model"], convs)
    # the layout really changed: the saved conv weights are NHWC in memory, and only in the channels_last run
    assert all(v.is_contiguous() for v in runs["contiguous"][2])
    assert not any(v.is_contiguous() for v in runs["channels_last"][2])
    assert all(v.is_contiguous(memory_format=torch.channels_last) for v in runs["channels_last"][2])
    # and nothing else did: the same losses step by step (the weights are no test here: Adam's first steps are
    # lr * sign(gradient), so a gradient near zero flips with float rounding in either layout)
    logs = {fmt: [json.loads(x) for x in (tmp_path / fmt / "run" / "log.jsonl").read_text().splitlines()]
            for fmt in runs}
    steps = {fmt: [r["total"] for r in log if r["kind"] == "step"] for fmt, log in logs.items()}
    assert len(steps["contiguous"]) == 2 and steps["contiguous"] == pytest.approx(steps["channels_last"], rel=1e-4)
    with pytest.raises(ConfigError, match="train.memory_format 'nhwc' is unknown; use one of auto, channels_last"):
        train(load_train_config(None, {"model": TINY_MODEL, "train.memory_format": "nhwc"}))


def test_bf16_autocast_trains_in_bfloat16_and_keeps_float32_weights(tmp_path):
    from edge_fas.training.loop import autocast_dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype(True, cpu) is None  # fp16 is CUDA's only
    assert autocast_dtype("auto", cuda) is torch.float16 and autocast_dtype(False, cuda) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16 and autocast_dtype("bf16", cuda) is torch.bfloat16
    steps, weights = {}, {}
    for amp in (False, "bf16"):
        cfg = tiny_config(tmp_path / str(amp), amp=amp, seed=3, memory_format="contiguous")
        cfg["model"] = {"name": "spoof_trace", "preset": "edge", "overrides": {"input_size": 32}}
        (tmp_path / str(amp)).mkdir()
        train(load_train_config(write_cfg(tmp_path / str(amp), cfg)))
        log = [json.loads(x) for x in (tmp_path / str(amp) / "run" / "log.jsonl").read_text().splitlines()]
        steps[amp] = [r["total"] for r in log if r["kind"] == "step"]
        weights[amp] = torch.load(tmp_path / str(amp) / "run" / "resume.pt", weights_only=False)["model"]
    # the same data and seed: the losses agree to bfloat16's precision, and not to float32's (it really ran in bf16)
    assert len(steps[False]) == 2 and all(np.isfinite(steps["bf16"]))
    assert steps["bf16"] == pytest.approx(steps[False], rel=0.05)
    assert steps["bf16"] != pytest.approx(steps[False], rel=1e-5)
    assert all(v.dtype == torch.float32 for v in weights["bf16"].values() if v.is_floating_point())
    with pytest.raises(ConfigError, match="train.amp 'fp8' is unknown; use one of auto, true, false, bf16"):
        train(load_train_config(None, {"model": TINY_MODEL, "train.amp": "fp8"}))
    with pytest.raises(ConfigError, match="train.amp bf16 with train.quantization_aware"):
        train(load_train_config(None, {"model": TINY_MODEL, "train.amp": "bf16", "train.quantization_aware": True}))


def test_init_extend_fine_tunes_a_checkpoint_with_a_family_head_added(tmp_path):
    base = tiny_config(tmp_path / "base", seed=3, memory_format="contiguous")
    base["model"] = {"name": "spoof_trace", "preset": "edge", "overrides": {"input_size": 32}}
    (tmp_path / "base").mkdir()
    train(load_train_config(write_cfg(tmp_path / "base", base)))
    parent = tmp_path / "base" / "run" / "checkpoint.pt"
    ft = tiny_config(tmp_path / "ft", seed=3, memory_format="contiguous", init_from=str(parent),
                     init_extend={"family_head": True})
    ft["model"] = base["model"]
    (tmp_path / "ft").mkdir()
    train(load_train_config(write_cfg(tmp_path / "ft", ft)))
    saved = torch.load(tmp_path / "ft" / "run" / "checkpoint.pt", weights_only=True)
    # the head is in the fine-tuned checkpoint, trained away from its zero start on the samples' families
    assert saved["config"]["family_head"] is True
    assert float(saved["state_dict"]["family_head.weight"].abs().sum()) > 0
    log = [json.loads(x) for x in (tmp_path / "ft" / "run" / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["family"]) for r in log if r["kind"] == "step")
    with pytest.raises(ConfigError, match="init_extend adds modules to train.init_from"):
        train(load_train_config(None, {"model": base["model"], "train.init_extend": {"family_head": True}}))


def test_a_fine_tune_refuses_model_overrides_its_checkpoint_would_leave_unused(tmp_path):
    from edge_fas.training.loop import build_model

    path = save_checkpoint(tmp_path / "st.pt", build("spoof_trace", "edge", input_size=32))
    cfg = load_train_config(None, {"model": {"name": "spoof_trace", "preset": "edge", "overrides": {"input_size": 32}},
                                   "train.init_from": str(path)})
    assert build_model(cfg, "cpu")[0].input_size == 32  # a config reused for its own checkpoint: equal values pass
    cfg["model"]["overrides"] = {"input_size": 32, "alpha_family": 2.0}
    with pytest.raises(ConfigError, match=r"model.overrides \{'alpha_family': 2.0\} differ from train.init_from .*"
                                          r"\(alpha_family: 1.0\).*drop them from model.overrides"):
        build_model(cfg, "cpu")


def test_a_fine_tune_trains_with_the_loss_weights_init_options_gives(tmp_path):
    from edge_fas.training.loop import build_model

    path = save_checkpoint(tmp_path / "st.pt", build("spoof_trace", "edge", input_size=32, family_head=True))
    model_section = {"name": "spoof_trace", "preset": "edge", "overrides": {}}
    cfg = load_train_config(None, {"model": model_section, "train.init_from": str(path),
                                   "train.init_options": {"alpha_family": 2.0}})
    model = build_model(cfg, "cpu")[0]
    assert model.config["alpha_family"] == 2.0  # read by the loss at each step
    ft = tiny_config(tmp_path / "ft", seed=3, memory_format="contiguous", init_from=str(path),
                     init_options={"alpha_family": 2.0})
    ft["model"] = model_section
    (tmp_path / "ft").mkdir()
    train(load_train_config(write_cfg(tmp_path / "ft", ft)))
    saved = torch.load(tmp_path / "ft" / "run" / "checkpoint.pt", weights_only=True)
    assert saved["config"]["alpha_family"] == 2.0  # and recorded with the network it trained
    cfg["train"]["init_options"] = {"family_class_weights": {"rigid_mask": 2.0}}
    assert build_model(cfg, "cpu")[0].config["family_class_weights"] == {"rigid_mask": 2.0}
    for options, message in (({"family_weight": 0.9}, r"may change only the options its 'spoof_trace' training "
                                                       r"losses read \(alphas, lambda_t, center_alpha, mix_prob, "
                                                       r"alpha_family, family_class_weights\)"),
                             ({"alpha_family": "high"}, "init_options.alpha_family must be a loss weight"),
                             ({"alphas": [1.0, -1.0]}, r"init_options.alphas must be .*\(or a list of them\)"),
                             ({"family_class_weights": {"rigid_mask": -1.0}}, "each weight must be a number > 0")):
        cfg["train"]["init_options"] = options
        with pytest.raises(ConfigError, match=message):
            build_model(cfg, "cpu")
    from edge_fas.training.config import check_config

    with pytest.raises(ConfigError, match="train.init_options .*with train.init_from set"):
        check_config(load_train_config(None, {"model": model_section, "train.init_options": {"alpha_family": 2.0}}))
    with pytest.raises(ConfigError, match="train.init_options .* would be ignored"):
        check_config(load_train_config(None, {"model": model_section, "train.init_from": str(path), "train.fit": "head",
                                              "train.init_options": {"alpha_family": 2.0}}))


def test_head_fit_learns_a_pixel_cue_on_the_frozen_network_and_folds_its_standardisation(capsys):
    import warnings
    from types import SimpleNamespace

    from edge_fas import metrics
    from edge_fas.data.species import FAMILIES
    from edge_fas.models.spoof_trace import SpoofTraceNet
    from edge_fas.training.head_fit import RIDGES, fit_head

    torch.manual_seed(0)
    with warnings.catch_warnings():  # no identity net: the loss is not run here
        warnings.simplefilter("ignore")
        net = SpoofTraceNet("edge", input_size=32, layers=(1, 1, 1), width=8, dec_channels=(16, 8, 8, 8), n_res=1,
                            cls_width=8, disc_width=4, fusion_reduction=4, family_head=True, family_pixels=4)
        bare = SpoofTraceNet("edge", input_size=32, layers=(1, 1, 1), width=8)
    frozen = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("family_head.")}
    gen = torch.Generator().manual_seed(1)
    silicone = FAMILIES.index("flexible_mask")

    def batch(i):  # a silicone mask's depth sits 0.5 nearer in its centre cells; nothing else tells it apart
        fam = torch.tensor([0, silicone] * 4)
        depth = torch.randn(8, 1, 32, 32, generator=gen)
        depth[fam == silicone, :, 8:24, 8:24] += 0.5
        return {"rgb": torch.randn(8, 3, 32, 32, generator=gen), "depth": depth,
                "ir": torch.randn(8, 1, 32, 32, generator=gen), "present": torch.ones(8, 3), "family": fam,
                "label": (fam > 0).long(), "index": torch.arange(8 * i, 8 * i + 8)}

    batches = [batch(i) for i in range(30)]
    data = SimpleNamespace(loader=batches, train=range(240), set_epoch=lambda epoch: None)
    rec = fit_head(net, data, passes=1, device="cpu", progress=True)
    said = capsys.readouterr().err
    assert said.count("held-out cross-entropy") == len(RIDGES)  # a line per penalty while the fits run
    assert f"head fit: penalty {rec['ridge']:g} chosen; fitting it on all 240 rows" in said
    assert rec["rows"] == 240 and rec["ridge"] in RIDGES and set(rec["cv_loss"]) == {str(r) for r in RIDGES}
    assert rec["family_rows"][0] == rec["family_rows"][silicone] == 120
    # the standardisation is folded into the head exactly: on the rows it was fitted to, its loss is the fit's
    with torch.no_grad():
        rows = torch.cat([net.family_features(b["rgb"], b["depth"], b["ir"], b["present"]) for b in batches])
        fitted = torch.nn.functional.cross_entropy(net.family_head(rows), torch.cat([b["family"] for b in batches]))
    assert float(fitted) == pytest.approx(rec["train_loss"], rel=1e-3, abs=1e-4)
    # the head separates fresh samples the fit never saw
    fresh = [batch(100 + i) for i in range(10)]
    with torch.no_grad():
        attack = torch.cat([net(b["rgb"], b["depth"], b["ir"], b["present"])["logits"] for b in fresh])
    y = torch.cat([b["label"] for b in fresh]).numpy()
    assert metrics.auc(attack.numpy(), y) > 0.95
    # and nothing but the head moved
    after = net.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in frozen.items())
    # the chosen penalty given (train.head_penalties: [it]) skips the cross-validation and fits the same head
    chosen = {k: v.clone() for k, v in net.family_head.state_dict().items()}
    given = fit_head(net, data, passes=1, device="cpu", progress=True, ridges=[rec["ridge"]])
    said = capsys.readouterr().err
    assert "held-out cross-entropy" not in said and given["cv_loss"] == {} and given["ridge"] == rec["ridge"]
    assert f"head fit: penalty {rec['ridge']:g} given (train.head_penalties), no cross-validation" in said
    assert all(torch.equal(v, net.family_head.state_dict()[k]) for k, v in chosen.items())
    # a list of several is chosen among by cross-validation, over those penalties only
    among = fit_head(net, data, passes=1, device="cpu", progress=False, ridges=[1e-3, 1.0])
    assert set(among["cv_loss"]) == {"0.001", "1.0"} and among["ridge"] in (1e-3, 1.0)
    # a different penalty fits a different head
    other = max(RIDGES, key=lambda r: abs(r - rec["ridge"]))
    fit_head(net, data, passes=1, device="cpu", progress=False, ridges=[other])
    assert not torch.equal(chosen["weight"], net.family_head.weight)
    # a model without a head is refused by name
    with pytest.raises(ConfigError, match="train.fit head fits a family head"):
        fit_head(bare, data, 1, "cpu", progress=False)


def test_train_fit_head_fits_only_the_added_head_through_the_config(tmp_path):
    base = tiny_config(tmp_path / "base", seed=3, memory_format="contiguous")
    base["model"] = {"name": "spoof_trace", "preset": "edge", "overrides": {"input_size": 32}}
    (tmp_path / "base").mkdir()
    train(load_train_config(write_cfg(tmp_path / "base", base)))
    parent = tmp_path / "base" / "run" / "checkpoint.pt"
    ft = tiny_config(tmp_path / "ft", seed=3, init_from=str(parent), fit="head", epochs=2,
                     init_extend={"family_head": True, "family_pixels": 4})
    ft["model"] = base["model"]
    (tmp_path / "ft").mkdir()
    assert cli_main(["train", "--config", str(write_cfg(tmp_path / "ft", ft))]) == 0
    before = torch.load(parent, weights_only=True)["state_dict"]
    saved = torch.load(tmp_path / "ft" / "run" / "checkpoint.pt", weights_only=False)
    # the network is the parent's to the bit; only the head (with its pixel inputs) is new and fitted
    assert all(torch.equal(v, saved["state_dict"][k]) for k, v in before.items())
    assert saved["config"]["family_pixels"] == 4 and float(saved["state_dict"]["family_head.weight"].abs().sum()) > 0
    assert saved["meta"]["training"]["fit"] == "head"
    log = [json.loads(x) for x in (tmp_path / "ft" / "run" / "log.jsonl").read_text().splitlines()]
    fit = [r for r in log if r["kind"] == "head_fit"]
    assert len(fit) == 1 and fit[0]["epoch"] == 1 and np.isfinite(fit[0]["val_auc"]) and fit[0]["rows"] > 0
    with pytest.raises(ConfigError, match="train.fit head fits only the family head of train.init_from"):
        train(load_train_config(None, {"model": base["model"], "train.fit": "head"}))
    with pytest.raises(ConfigError, match="train.fit 'probe' is unknown; use one of all, head"):
        train(load_train_config(None, {"model": base["model"], "train.fit": "probe"}))
    # a run that fits no head refuses train.head_penalties by name; so does a penalty that is not one
    with pytest.raises(ConfigError, match="train.head_penalties \\[0.01\\] chooses the family head's penalty in "
                                          "train.fit head, and this run has train.fit 'all'"):
        train(load_train_config(None, {"model": base["model"], "train.head_penalties": [0.01]}))
    for bad in ([], [0], [-0.1], 0.01, ["a"], [True]):
        with pytest.raises(ConfigError, match="train.head_penalties .*: a list of positive L2 penalties"):
            train(load_train_config(None, {"model": base["model"], "train.fit": "head", "train.init_from": str(parent),
                                           "train.head_penalties": bad}))
    # options a head fit has no epochs for are refused by name, not silently ignored
    for key, value in (("train.resume", True), ("train.time_budget_min", 30),
                       ("train.quantization_consistency", 0.1)):
        with pytest.raises(ConfigError, match=f"train.fit head fits the family head once, with no epochs, so {key} "):
            train(load_train_config(None, {"model": base["model"], "train.fit": "head", "train.init_from": str(parent),
                                           key: value}))
