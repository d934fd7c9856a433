"""`edge-fas train --protocol NAME --data-root DIR` and `edge-fas eval ... --protocol NAME` end to end on a
tree in the releases' layouts (tests/fas_tree.py): a tiny model, one epoch, checked through scores.csv."""

import csv
import json

import pytest
import torch
import yaml

from edge_fas.cli import main as cli_main
from fas_tree import make_tree

TINY = {"model": {"name": "mmfas", "preset": "edge",
                  "overrides": {"input_size": 32, "patch_size": 8, "width": 24, "heads": 2, "enc_depth": 1,
                                "fusion_depth": 1, "head_width": 24}},
        "train": {"epochs": 1, "batch_size": 4, "threads": 1, "progress": False, "log_every": 1}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A data root and a model trained on it with MMDG Protocol 1 (train C, P, S; test W)."""
    base = tmp_path_factory.mktemp("cli")
    root = make_tree(base / "data")
    cfg = base / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    out = base / "run"
    assert cli_main(["train", "--config", str(cfg), "--protocol", "mmdg-p1-cps-w", "--data-root", str(root),
                     "--set", f"out={out}", "--set", f"data.cache_dir={cache_of(base)}"]) == 0
    return root, out, cfg


def cache_of(tmp):
    """The crop cache these tests share, beside their temporary folders (not in the working tree)."""
    return str(tmp.parent / "cli-cache")


def rows(folder):
    return list(csv.DictReader(open(folder / "scores.csv")))


def test_train_on_a_real_layout_protocol(run):
    root, out, _ = run
    meta = torch.load(out / "checkpoint.pt", weights_only=False)["meta"]
    assert meta["training"]["source"] == "datasets" and meta["training"]["protocol"] == "mmdg-p1-cps-w"
    assert meta["training"]["domains"] == ["cefa", "padisi", "surf"] and meta["training"]["samples"] == 12
    assert "MMDG-Benchmark/C-train.txt" in meta["trained_on"]["data"]
    assert "C-val.txt" in meta["threshold_split"]
    result = json.loads((out / "metrics.json").read_text())
    assert set(result["tests"]) == {"wmca"} and "W-test.txt" in result["test_data"]["wmca"]


def test_eval_writes_scores_per_sample_with_paths_labels_and_species(run, tmp_path):
    root, out, _ = run
    rep = tmp_path / "rep"
    # no --protocol: a real-data checkpoint is evaluated on its own protocol
    assert cli_main(["eval", str(out / "checkpoint.pt"), "--out", str(rep), "--data-root", str(root), "--no-plots",
                     "--cache-dir", cache_of(tmp_path)]) == 0
    r = rows(rep)
    listed = [ln.split()[0] for ln in (root / "MMDG-Benchmark" / "W-test.txt").read_text().splitlines()]
    assert [x["path"] for x in r] == listed and {x["dataset"] for x in r} == {"wmca"}
    # the W list's label 1 (bona fide) is our 0; the species come from the WMCA file names
    assert [x["label"] for x in r] == ["0", "0"] + ["1"] * 7
    assert [x["species"] for x in r][2:] == ["fake_head", "flexible_mask", "glasses", "paper_mask", "print", "replay",
                                             "rigid_mask"]
    doc = json.loads((rep / "metrics.json").read_text())
    assert set(doc["metrics"]["apcer"]) == {"fake_head", "flexible_mask", "glasses", "paper_mask", "print", "replay",
                                            "rigid_mask"}
    assert "real data" in doc["meta"]["data"] and "W-test.txt" in doc["meta"]["data"]
    assert "rig" not in doc["meta"]  # a report on real data names no synthetic rig
    assert doc["meta"]["protocol"] == "mmdg-p1-cps-w"


def test_eval_other_protocols_on_the_same_tree(run, tmp_path):
    root, out, _ = run
    ckpt = str(out / "checkpoint.pt")
    # the flexible-modal protocol: one report per test set, a summary with the image-weighted average
    flex = tmp_path / "flex"
    assert cli_main(["eval", ckpt, "--out", str(flex), "--protocol", "mmfas-cross", "--data-root", str(root),
                     "--no-plots", "--cache-dir", cache_of(tmp_path)]) == 0
    summary = json.loads((flex / "summary.json").read_text())
    assert summary["average"]["sets"] == ["cefa", "surf", "wmca"] and summary["average"]["samples"] == 4 + 4 + 9
    assert [x["species"] for x in rows(flex / "wmca-glasses")] == ["bona_fide", "bona_fide", "glasses"]
    assert {x["dataset"] for x in rows(flex / "surf")} == {"surf"}
    # WMCA leave-one-out on Idiap's preprocessed HDF5 pair: only bona fide and the unseen PAI are tested
    loo = tmp_path / "loo"
    assert cli_main(["eval", ckpt, "--out", str(loo), "--protocol", "wmca-loo-prints", "--data-root", str(root),
                     "--no-plots", "--cache-dir", cache_of(tmp_path)]) == 0
    r = rows(loo)
    assert {x["species"] for x in r} == {"bona_fide", "print"} and len(r) == 3 * 3  # 3 videos x 3 frames
    assert r[0]["path"] == "face-station/17.01.18/001_01_000_0_00"
    # CeFA protocol 4.1 from the re-issued lists (0 = live)
    cefa = tmp_path / "cefa"
    assert cli_main(["eval", ckpt, "--out", str(cefa), "--protocol", "cefa-4.1", "--data-root", str(root),
                     "--no-plots", "--cache-dir", cache_of(tmp_path)]) == 0
    assert [x["label"] for x in rows(cefa)] == ["0", "1", "1", "0"]
    # MMDG Protocol 2: the same test list with depth and IR removed
    p2 = tmp_path / "p2"
    assert cli_main(["eval", ckpt, "--out", str(p2), "--protocol", "mmdg-p2-cps-w-rgb-only", "--data-root", str(root),
                     "--no-plots", "--cache-dir", cache_of(tmp_path)]) == 0
    assert "modalities removed at test: depth, ir" in json.loads((p2 / "metrics.json").read_text())["meta"]["data"]
    # --missing removes a stream from any test set (here CeFA 4.1 without IR): the same samples, other scores
    no_ir = tmp_path / "cefa-no-ir"
    assert cli_main(["eval", ckpt, "--out", str(no_ir), "--protocol", "cefa-4.1", "--data-root", str(root),
                     "--no-plots", "--cache-dir", cache_of(tmp_path), "--missing", "ir"]) == 0
    assert "modalities removed at test: ir" in json.loads((no_ir / "metrics.json").read_text())["meta"]["data"]
    assert [x["path"] for x in rows(no_ir)] == [x["path"] for x in rows(cefa)]
    assert [x["score"] for x in rows(no_ir)] != [x["score"] for x in rows(cefa)]


def test_eval_missing_names_its_modalities(run, tmp_path, capsys):
    root, out, _ = run
    base = ["eval", str(out / "checkpoint.pt"), "--out", str(tmp_path / "m"), "--data-root", str(root), "--no-plots",
            "--cache-dir", cache_of(tmp_path)]
    assert cli_main(base + ["--protocol", "cefa-4.1", "--missing", "nir"]) == 2
    assert "--missing 'nir': name modalities from rgb, depth, ir" in capsys.readouterr().err
    # added to a protocol's own: the RGB-only protocol without RGB leaves nothing
    assert cli_main(base + ["--protocol", "mmdg-p2-cps-w-rgb-only", "--missing", "rgb"]) == 2
    assert "leaves no modality to score" in capsys.readouterr().err


def test_real_protocols_never_fall_back_to_synthetic(run, tmp_path, capsys):
    root, out, cfg = run
    assert cli_main(["train", "--config", str(cfg), "--protocol", "mmdg-p1-cps-w"]) == 2
    assert "reads the real datasets: pass --data-root DIR" in capsys.readouterr().err
    # eval without --data-root reads the real data under the root the checkpoint was trained from
    assert cli_main(["eval", str(out / "checkpoint.pt"), "--out", str(tmp_path / "x"), "--protocol", "casia-surf",
                     "--no-plots", "--cache-dir", cache_of(tmp_path)]) == 0
    assert str(root / "CASIA-SURF" / "test_private_list.txt") in \
        json.loads((tmp_path / "x" / "metrics.json").read_text())["meta"]["data"]
    assert cli_main(["eval", str(out / "checkpoint.pt"), "--out", str(tmp_path / "y"), "--protocol", "wmca-loo-glasses",
                     "--synthetic"]) == 2
    assert "no synthetic stand-in" in capsys.readouterr().err
    assert cli_main(["train", "--config", str(cfg), "--protocol", "mmdg-p1-cps-w", "--data-root", str(tmp_path / "no"),
                     "--set", f"out={tmp_path / 'r'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    # --synthetic runs the stand-in, and says so in the config
    assert cli_main(["train", "--config", str(cfg), "--protocol", "mmdg-p1-cps-w", "--synthetic", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["source"] == "synthetic" and printed["data"]["test_domains"] == ["wmca"]
    # --print-config shows the merged config, then refuses it as train would
    assert cli_main(["train", "--config", str(cfg), "--print-config", "--set", "train.target=apcer=2"]) == 2
    out_err = capsys.readouterr()
    assert yaml.safe_load(out_err.out)["train"]["target"] == "apcer=2" and "train.target" in out_err.err
    assert cli_main(["train", "--list-protocols"]) == 0
    assert "MMDG-Benchmark/W-test.txt" in capsys.readouterr().out
