"""Runtime selection you can believe: the provider ONNX Runtime really runs on is read back, `auto`
falls back past a failing GPU path and says why, warm-up runs every expected batch size, and bench
survives a variant that breaks. No GPU here: the driver's answer is faked (one fake GPU) and the GPU
build of ONNX Runtime is imitated the way it behaves without its CUDA libraries: it lists the CUDA
provider, and a session asked for it runs on the CPU."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_fas.cli import main
from edge_fas.errors import EdgeFasError
from edge_fas.export import export_model
from edge_fas.runtime import cuda, load_runtime
from edge_fas.runtime import ort as ort_rt
from test_runtime import Tiny

sys.path.insert(0, str(Path(__file__).parent / "trt_api"))
import fake_tensorrt as fake  # noqa: E402


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("select")
    export_model(Tiny(), folder, threshold=0.5, parity_count=4, parity_source="random", gate_count=0)
    return folder


@pytest.fixture
def gpu_without_cuda_libraries(monkeypatch, tmp_path):
    monkeypatch.setattr(cuda, "probe", lambda: ((cuda.Gpu(0, "NVIDIA RTX (fake)", (8, 9), 46, 8 << 30),), ""))
    monkeypatch.setattr(ort_rt, "available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setenv("EDGE_FAS_CACHE", str(tmp_path / "cache"))


def test_cpu_provider_is_read_back(art):
    rt = load_runtime(art, kind="onnxruntime", device="cpu")
    assert rt.providers == ["CPUExecutionProvider"] and "CPUExecutionProvider (read back" in rt.reason


def test_a_gpu_provider_that_silently_became_cpu_is_refused(art, gpu_without_cuda_libraries):
    # ONNX Runtime itself only warns and builds a CPU session; the read-back turns that into a refusal
    with pytest.warns(UserWarning, match="not in available provider names"):
        with pytest.raises(EdgeFasError, match=r"asked for CUDAExecutionProvider but the session runs on "
                                               r"\['CPUExecutionProvider'\]"):
            load_runtime(art, kind="onnxruntime", device="cuda:0", provider="cuda")


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_auto_falls_back_past_every_failing_gpu_path_and_says_why(art, gpu_without_cuda_libraries, monkeypatch):
    trt = fake.make_module("11.1.0")
    trt._behave = fake.default_behaviour(trt, fake.io_of(art / "model.onnx"), fail={"build"})
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(cuda, "Cuda", fake.FakeGpu)
    rt = load_runtime(art, kind="auto", device="auto", quiet=True)
    assert rt.kind == "onnxruntime" and rt.device == "cpu"
    r = rt.reason
    assert r.startswith("auto: every GPU path failed or is missing")
    assert "tensorrt/fp16 failed (EdgeFasError: TensorRT 11.1.0 failed to build" in r
    assert "onnxruntime/tensorrt failed" in r and "onnxruntime/cuda failed" in r
    assert "runs on ['CPUExecutionProvider']" in r


def test_auto_takes_tensorrt_when_it_works(art, gpu_without_cuda_libraries, monkeypatch):
    trt = fake.make_module("10.3.0")
    trt._behave = fake.default_behaviour(trt, fake.io_of(art / "model.onnx"))
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(cuda, "Cuda", fake.FakeGpu)
    rt = load_runtime(art, quiet=True, gate_inputs=(fake_batch(), None, "random"))
    assert rt.kind == "tensorrt" and "auto: GPU cuda:0 and TensorRT: fp16 engine" in rt.reason


def fake_batch():
    from edge_fas.export import random_batch
    return random_batch(32, 16, np.random.default_rng(0))


def test_no_gpu_means_onnxruntime_on_cpu_with_the_drivers_reason(art, monkeypatch):
    monkeypatch.setattr(cuda, "probe", lambda: ((), "no NVIDIA driver library (libcuda.so.1)"))
    rt = load_runtime(art)
    assert rt.kind == "onnxruntime" and "no CUDA GPU (no NVIDIA driver library" in rt.reason
    with pytest.raises(EdgeFasError, match="no CUDA GPU is usable"):
        load_runtime(art, device="cuda:0")


def test_warm_up_runs_each_expected_batch_size(art, monkeypatch):
    seen = []
    real = ort_rt.OrtRuntime._run
    monkeypatch.setattr(ort_rt.OrtRuntime, "_run", lambda self, b: seen.append(len(b["rgb"])) or real(self, b))
    load_runtime(art, kind="onnxruntime", device="cpu", warmup=(1, 4))
    assert seen == [1, 4]


def test_the_real_driver_probe_answers_without_a_gpu():
    found, why = cuda.probe()
    assert isinstance(found, tuple)
    if not found:
        assert why  # e.g. "no NVIDIA driver library (libcuda.so.1 / libcuda.so): ..."


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_bench_reports_a_broken_variant_instead_of_aborting(art, gpu_without_cuda_libraries, monkeypatch, capsys):
    trt = fake.make_module("11.1.0")
    trt._behave = lambda obj, attr: (_ for _ in ()).throw(AttributeError(f"{obj._trt_name}.{attr} exploded"))
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(cuda, "Cuda", fake.FakeGpu)
    rc = main(["bench", "--artifact", str(art), "--runtime", "onnxruntime", "--runtime", "tensorrt",
               "--runtime", "onnxruntime-cuda", "--batch", "1", "--iters", "2", "--warmup", "1", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and "CPUExecutionProvider" in out
    assert "skipped tensorrt batch 1: AttributeError" in out
    assert "skipped onnxruntime-cuda batch 1: ONNX Runtime was asked for CUDAExecutionProvider" in out


def test_model_precision_from_config_reaches_the_runtime(art):
    from edge_fas.config import ModelConfig
    from edge_fas.runtime import from_config, precision_options
    assert precision_options(ModelConfig()) == {}
    cfg = ModelConfig(artifact=str(art), runtime="onnxruntime", device="cpu", precision="int8")
    with pytest.raises(EdgeFasError, match="no int8 model"):
        from_config(cfg)
    with pytest.raises(EdgeFasError, match="unknown runtime option.*'precison'"):
        load_runtime(art, kind="onnxruntime", device="cpu", precison="fp16")


def test_auto_on_a_gpu_tries_pytorch_as_a_cuda_graph_before_eager(art, gpu_without_cuda_libraries, monkeypatch):
    import dataclasses

    from edge_fas import runtime
    from edge_fas.artifact import Artifact, load_artifact

    class WithCheckpoint(Artifact):  # as if exported with its checkpoint (the torch runtime's input)
        checkpoint_path = property(lambda self: self.folder / "checkpoint.pt")

    monkeypatch.setattr(runtime, "_has_tensorrt", lambda: False)
    monkeypatch.setattr(runtime, "_torch_cuda", lambda: True)
    plain = load_artifact(art)
    with_checkpoint = WithCheckpoint(**{f.name: getattr(plain, f.name) for f in dataclasses.fields(plain)})
    found = [(k, opts) for k, _, opts, _ in runtime._candidates("auto", with_checkpoint)]
    torch_paths = [opts for k, opts in found if k == "torch"]
    assert torch_paths == [{"cuda_graph_batch": 1}, {}]  # one face a call is replayed; eager if capture fails
    assert found[-1] == ("onnxruntime", {})  # the CPU stays last
    without = [k for k, _, _, _ in runtime._candidates("auto", load_artifact(art))]
    assert "torch" not in without  # no checkpoint, no PyTorch path
