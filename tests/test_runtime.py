"""Runtimes on CPU against a tiny exported model: same answers from ONNX Runtime and torch, the
manifest facts exposed, bad input refused. (Real models: tests/test_export_models.py.)"""

import numpy as np
import pytest
import torch
from torch import nn

from edge_fas.errors import ArtifactError, EdgeFasError
from edge_fas.export import export_model, random_batch
from edge_fas.preprocess import PreprocessParams
from edge_fas.runtime import load_runtime
from edge_fas.types import ModelOutput


class Tiny(nn.Module):
    """A tiny stand-in with the models' interface (name, preset, input_size, forward -> dict)."""

    name, preset, input_size = "tiny", "edge", 32
    config = {"width": 4}

    def __init__(self, trace=False):
        super().__init__()
        self.enc = nn.ModuleList(nn.Conv2d(c, 4, 3, stride=4) for c in (3, 1, 1))
        self.head = nn.Linear(12, 1)
        self.trace = nn.Conv2d(4, 1, 1) if trace else None

    def forward(self, rgb, depth, ir, present=None):
        if present is None:
            present = torch.ones(rgb.shape[0], 3, dtype=torch.bool)
        feats = [e(x).relu() for e, x in zip(self.enc, (rgb, depth, ir))]
        pooled = torch.cat([f.mean((2, 3)) * present[:, i:i + 1].to(f.dtype) for i, f in enumerate(feats)], 1)
        logits = self.head(pooled)[:, 0]
        out = {"logits": logits, "score": torch.sigmoid(logits)}
        if self.trace is not None:
            out["trace"] = self.trace(feats[0])
        return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    model = Tiny(trace=True)
    folder = tmp_path_factory.mktemp("art")
    export_model(model, folder, threshold=0.37, threshold_split="tiny dev", parity_count=16, parity_source="random", overwrite=True)
    return model, folder


def test_auto_on_cpu_is_onnxruntime_and_says_why(tiny):
    _, folder = tiny
    rt = load_runtime(folder, device="cpu", threads=1)
    assert rt.kind == "onnxruntime" and "cpu" in rt.reason
    assert rt.threshold == pytest.approx(0.37)
    assert rt.preprocess == PreprocessParams(size=32)
    assert rt.model_name == "tiny" and rt.output_names == ["score", "logits", "trace"]
    assert rt.manifest["threshold"]["split"] == "tiny dev"


def test_onnxruntime_matches_torch_and_eager_model(tiny):
    model, folder = tiny
    b = random_batch(32, 6, np.random.default_rng(5))
    ort_out = load_runtime(folder, kind="onnxruntime", device="cpu").infer(b)
    torch_out = load_runtime(folder, kind="torch", device="cpu", model=model).infer(b)
    with torch.inference_mode():
        ref = model(*(torch.from_numpy(b[k]) for k in ("rgb", "depth", "ir")), torch.from_numpy(b["present"]) > 0.5)
    assert isinstance(ort_out, ModelOutput) and ort_out.score.shape == (6,)
    np.testing.assert_allclose(ort_out.score, ref["score"].numpy(), atol=1e-5)
    np.testing.assert_allclose(torch_out.score, ort_out.score, atol=1e-5)
    assert ort_out.trace.shape == torch_out.trace.shape == (6, 1, 8, 8)
    # the present mask really reaches the network: dropping IR changes the score
    b2 = dict(b, present=np.ones((6, 3), np.float32))
    b2["ir"] = np.ones_like(b["ir"])
    b3 = dict(b2, present=np.array([[1, 1, 0]] * 6, np.float32))
    rt = load_runtime(folder, kind="onnxruntime", device="cpu")
    assert not np.allclose(rt.infer(b2).score, rt.infer(b3).score)


def test_bad_batches_are_refused_clearly(tiny):
    _, folder = tiny
    rt = load_runtime(folder, kind="onnxruntime", device="cpu")
    b = random_batch(32, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="rgb has shape"):
        rt.infer(dict(b, rgb=b["rgb"][:, :, :16]))
    with pytest.raises(ValueError, match="lacks"):
        rt.infer({k: v for k, v in b.items() if k != "present"})
    with pytest.raises(ValueError, match="present has shape"):
        rt.infer(dict(b, present=b["present"][:, :2]))


def test_bad_choices_are_refused(tiny):
    _, folder = tiny
    with pytest.raises(EdgeFasError, match="not one of"):
        load_runtime(folder, kind="tflite")
    with pytest.raises(EdgeFasError, match="GPU options"):
        load_runtime(folder, kind="torch", device="cpu", model=Tiny(), half=True)
    with pytest.raises(ArtifactError, match="checkpoint.pt"):
        load_runtime(folder, kind="torch", device="cpu")  # exported without a checkpoint


def test_tampered_onnx_refused_by_load_runtime(tiny, tmp_path):
    _, folder = tiny
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="model.onnx does not match"):
        load_runtime(copy, device="cpu")


def test_a_cuda_graph_that_fails_leaves_the_same_model_running_eagerly(tiny, caplog):
    # the graph path itself needs a GPU (tests/test_runtime_cuda.py); its failure handling does not
    model, folder = tiny
    rt = load_runtime(folder, kind="torch", device="cpu", model=model)
    b = random_batch(32, 1, np.random.default_rng(3))
    want = rt.infer(b).score
    calls = []

    def broken_replay(batch):
        calls.append(1)
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    rt.graph_batch, rt._replay = 1, broken_replay
    with caplog.at_level("WARNING"):
        got = rt.infer(b).score
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert rt.graph_batch is None and "CUDA graph failed (RuntimeError" in rt.reason
    assert "running eagerly from now on" in caplog.text
    rt.infer(b)
    assert len(calls) == 1  # not tried again on every frame
