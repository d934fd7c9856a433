"""TensorRT backend: the cache key and the clear refusal run everywhere; the engine build + parity
test runs only where the tensorrt wheel and a CUDA GPU exist (skipped on the CPU CI machine)."""

import importlib.util
import os

import numpy as np
import pytest
import torch

from edge_fas.errors import EdgeFasError
from edge_fas.export import export_model, random_batch
from edge_fas.runtime import load_runtime
from edge_fas.runtime import cuda
from edge_fas.runtime.trt import build_options, engine_key
from test_runtime import Tiny

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None and bool(cuda.gpus())
if os.environ.get("EDGE_FAS_REQUIRE_GPU") and not HAVE_TRT:  # `make gpu-check`: a skip would hide the point
    raise RuntimeError("EDGE_FAS_REQUIRE_GPU is set but the tensorrt wheel or an NVIDIA GPU is missing: "
                       + cuda.probe()[1])


def test_engine_key_depends_on_onnx_trt_version_gpu_options_and_model():
    orin = cuda.Gpu(0, "Orin", (8, 7), 8, 1)
    opts = build_options("fp16", 8, 1)
    base = engine_key("a" * 64, "10.3.0", orin, opts, "m")[0]
    variants = {base, engine_key("b" * 64, "10.3.0", orin, opts, "m")[0],
                engine_key("a" * 64, "10.4.0", orin, opts, "m")[0],
                engine_key("a" * 64, "10.3.0", cuda.Gpu(0, "RTX", (8, 9), 128, 1), opts, "m")[0],
                engine_key("a" * 64, "10.3.0", cuda.Gpu(0, "Orin", (8, 7), 4, 1), opts, "m")[0],  # Orin Nano
                engine_key("a" * 64, "10.3.0", orin, build_options("int8", 8, 1), "m")[0],
                engine_key("a" * 64, "10.3.0", orin, build_options("fp16", 16, 1), "m")[0],
                engine_key("a" * 64, "10.3.0", orin, opts, "other calibration")[0]}
    assert len(variants) == 8


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory):
    torch.manual_seed(0)
    model = Tiny()
    folder = tmp_path_factory.mktemp("trt_art")
    export_model(model, folder, parity_count=8, parity_source="random", overwrite=True)
    return model, folder


@pytest.mark.skipif(HAVE_TRT, reason="checks the message shown where TensorRT or a GPU is missing")
def test_tensorrt_refused_clearly_without_it(tiny_artifact):
    with pytest.raises(EdgeFasError, match="TensorRT|CUDA GPU"):
        load_runtime(tiny_artifact[1], kind="tensorrt")


@pytest.mark.skipif(not HAVE_TRT, reason="needs the tensorrt wheel and a CUDA GPU")
def test_tensorrt_builds_caches_and_matches_onnxruntime(tiny_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_FAS_CACHE", str(tmp_path))
    _, folder = tiny_artifact
    b = random_batch(32, 3, np.random.default_rng(2))
    ref = load_runtime(folder, kind="onnxruntime", device="cpu").infer(b).score
    rt = load_runtime(folder, kind="tensorrt", precision="fp32", max_batch=4, quiet=True)
    assert "built" in rt.reason
    np.testing.assert_allclose(rt.infer(b).score, ref, atol=1e-4)
    again = load_runtime(folder, kind="tensorrt", precision="fp32", max_batch=4, quiet=True)
    assert "loaded from cache" in again.reason
    big = random_batch(32, 9, np.random.default_rng(3))  # more than max_batch: split into engine-sized calls
    assert again.infer(big).score.shape == (9,)


@pytest.mark.skipif(not HAVE_TRT, reason="needs the tensorrt wheel and a CUDA GPU")
def test_tensorrt_fp16_engine_is_gated_and_close_to_fp32(tiny_artifact, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGE_FAS_CACHE", str(tmp_path))
    _, folder = tiny_artifact
    b = random_batch(32, 8, np.random.default_rng(5))
    ref = load_runtime(folder, kind="onnxruntime", device="cpu").infer(b).score
    rt = load_runtime(folder, kind="tensorrt", precision="fp16", max_batch=8, quiet=False)
    print(rt.reason)  # printed by `make gpu-check -s`: the TensorRT version, GPU and gate figures
    assert "engine gate" in rt.reason and "strongly" not in rt.reason
    np.testing.assert_allclose(rt.infer(b).score, ref, atol=5e-3)
