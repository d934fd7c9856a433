"""Every real model: build (edge preset, small input), save a checkpoint, export with parity, then
load the artifact in ONNX Runtime and torch (from the checkpoint) and check they agree."""

import numpy as np
import pytest
import torch

from edge_fas import models
from edge_fas.errors import ConfigError
from edge_fas.cli import main
from edge_fas.export import random_batch
from edge_fas.runtime import load_artifact, load_runtime

NAMES = models.MODEL_NAMES
# small but real architectures (keeps export + parity quick); unknown keys fall back to input_size only
SMALL = {"mmfas": {"input_size": 64, "width": 48, "enc_depth": 1},
         "mmdg": {"input_size": 64, "width": 48, "depth": 2},
         "vit": {"input_size": 64, "width": 48, "depth": 2},
         "resnet50": {"input_size": 64, "width": 8, "layers": (1, 1, 1, 1)},
         "spoof_trace": {"input_size": 64, "width": 8, "dec_channels": (16, 8, 8, 8)}}


def _build(name):
    try:
        return models.build(name, preset="edge", **SMALL.get(name, {"input_size": 64}))
    except ConfigError:  # this model does not take these overrides
        return models.build(name, preset="edge", input_size=64)


@pytest.mark.parametrize("name", NAMES)
def test_export_load_and_parity(name, tmp_path, capsys):
    torch.manual_seed(0)
    model = _build(name).eval()
    models.save_checkpoint(tmp_path / "ckpt.pt", model, threshold=0.41, threshold_split="synthetic dev",
                           training={"summary": "synthetic only (test)"})
    assert main(["export", str(tmp_path / "ckpt.pt"), "--out", str(tmp_path / "art"), "--parity", "8",
                 "--parity-source", "random"]) == 0
    assert "parity: 8 frame sets" in capsys.readouterr().out
    art = load_artifact(tmp_path / "art")
    assert art.manifest["training"] == {"summary": "synthetic only (test)"}
    assert art.model_name == name and art.manifest["model"]["preset"] == "edge"
    assert art.threshold == pytest.approx(0.41)
    assert art.manifest["export"]["parity"]["max_abs_diff"]["score"] <= 1e-4
    size = art.input_size
    b = random_batch(size, 3, np.random.default_rng(1))
    ort_out = load_runtime(art.folder, kind="onnxruntime", device="cpu").infer(b)
    torch_rt = load_runtime(art.folder, kind="torch", device="cpu")
    torch_out = torch_rt.infer(b)
    assert ort_out.score.shape == (3,) and np.all((ort_out.score >= 0) & (ort_out.score <= 1))
    np.testing.assert_allclose(ort_out.score, torch_out.score, atol=1e-4)
    for extra in ("trace", "uncertainty"):
        if extra in art.output_names:
            got = getattr(ort_out, extra)
            assert got is not None and got.shape == getattr(torch_out, extra).shape
            np.testing.assert_allclose(got, getattr(torch_out, extra), atol=1e-3)


def test_a_refused_int8_export_keeps_the_fp32_artifact_and_says_so(tmp_path, capsys, monkeypatch):
    from edge_fas.runtime import precision as prec

    torch.manual_seed(0)
    models.save_checkpoint(tmp_path / "ckpt.pt", _build("spoof_trace").eval(), threshold=0.5,
                           threshold_split="synthetic dev", training={"summary": "synthetic only (test)"})
    monkeypatch.setattr(prec, "MIN_AGREEMENT", 1.01)  # no int8 model can pass: the real refusal path runs
    assert main(["export", str(tmp_path / "ckpt.pt"), "--out", str(tmp_path / "art"), "--parity", "4",
                 "--parity-source", "random", "--gate", "8", "--int8", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "int8 refused" in err and "fp32 artifact in" in err and "precision.int8" in err
    art = load_artifact(tmp_path / "art")  # complete, hashes intact
    assert "model.int8.onnx" not in art.manifest["files"] and art.manifest["precision"]["int8"]["passed"] is False
    assert load_runtime(art.folder, kind="onnxruntime", device="cpu").infer(random_batch(art.input_size, 1,
                                                                                 np.random.default_rng(0))).score.shape == (1,)
