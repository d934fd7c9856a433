"""Artifact manifest + hash verification (no model needed: plain files stand in for model.onnx)."""

import pytest
import yaml

from edge_fas import artifact as art
from edge_fas.errors import ArtifactError
from edge_fas.preprocess import PreprocessParams


def _manifest():
    return {
        "format": art.FORMAT,
        "model": {"name": "tiny", "preset": "edge", "version": 1},
        "inputs": {"rgb": [None, 3, 64, 64], "depth": [None, 1, 64, 64], "ir": [None, 1, 64, 64],
                   "present": [None, 3]},
        "outputs": ["score", "logits"],
        "preprocess": PreprocessParams(size=64).to_dict(),
        "threshold": {"value": 0.42, "split": "synthetic dev"},
        "training": {"summary": "synthetic only"},
    }


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"onnx bytes" * 100)
    (tmp_path / "checkpoint.pt").write_bytes(b"ckpt")
    art.write_manifest(tmp_path, _manifest(), ["model.onnx", "checkpoint.pt"])
    return tmp_path


def test_roundtrip(folder):
    a = art.load_artifact(folder)
    assert a.threshold == pytest.approx(0.42)
    assert a.preprocess == PreprocessParams(size=64)
    assert a.model_name == "tiny" and a.output_names == ["score", "logits"]
    assert a.onnx_sha256 == art.sha256_file(folder / "model.onnx")
    assert a.checkpoint_path == folder / "checkpoint.pt"


def test_changed_onnx_is_refused_naming_it(folder):
    with open(folder / "model.onnx", "ab") as f:
        f.write(b"x")
    with pytest.raises(ArtifactError, match="model.onnx"):
        art.load_artifact(folder)


def test_edited_manifest_is_refused(folder):
    m = yaml.safe_load((folder / "manifest.yaml").read_text())
    m["threshold"]["value"] = 0.99  # someone loosens the threshold by hand
    (folder / "manifest.yaml").write_text(yaml.safe_dump(m, sort_keys=False))
    with pytest.raises(ArtifactError, match="manifest.yaml was modified"):
        art.load_artifact(folder)


def test_missing_file_and_folder(folder, tmp_path):
    (folder / "checkpoint.pt").unlink()
    with pytest.raises(ArtifactError, match="checkpoint.pt is missing"):
        art.load_artifact(folder)
    with pytest.raises(ArtifactError, match="not a folder"):
        art.load_artifact(tmp_path / "nope")


def test_write_needs_required_keys(tmp_path):
    m = _manifest()
    del m["threshold"]
    with pytest.raises(ArtifactError, match="threshold"):
        art.write_manifest(tmp_path, m, [])


def test_demo_name_resolves_or_says_how_to_make_it(monkeypatch, tmp_path, folder):
    monkeypatch.setattr(art, "demo_folder", lambda: tmp_path / "absent")
    with pytest.raises(ArtifactError, match="edge-fas export"):
        art.load_artifact("demo")
    monkeypatch.setattr(art, "demo_folder", lambda: folder)
    assert art.load_artifact("demo").folder == folder
