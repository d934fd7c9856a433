"""ONNX Runtime backend: CPU (thread count from config), CUDA and TensorRT execution providers.

On a GPU provider inputs are bound once per call through I/O binding so outputs stay on the device
until copied back in one go. The TensorRT EP keeps its engines in the same cache folder as the native
TensorRT runtime, keyed by the ONNX hash (ORT adds its own TensorRT-version / GPU checks).
"""

from __future__ import annotations

import numpy as np

from edge_fas.artifact import Artifact
from edge_fas.errors import ArtifactError, EdgeFasError
from edge_fas.runtime.base import Runtime
from edge_fas.runtime.cache import engine_cache_dir

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def available_providers() -> list[str]:
    import onnxruntime as ort
    return ort.get_available_providers()


class OrtRuntime(Runtime):
    kind = "onnxruntime"

    def __init__(self, artifact: Artifact, device: str = "cpu", threads: int = 0, reason: str = "",
                 provider: str | None = None, int8: bool = False):
        import onnxruntime as ort

        path = artifact.onnx_path
        if int8:
            q = artifact.manifest.get("int8")
            if not q:
                raise ArtifactError(f"artifact {artifact.folder} has no int8 model; export it with --int8")
            path = artifact.folder / q["file"]
        self.int8 = int8
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        so.log_severity_level = 3
        dev_type, dev_id = _split_device(device)
        if provider is None:
            provider = "cpu" if dev_type == "cpu" else "cuda"
        have = available_providers()
        if PROVIDERS[provider] not in have:
            raise EdgeFasError(f"ONNX Runtime here has no {PROVIDERS[provider]} (it has {have}); install "
                               "onnxruntime-gpu for CUDA / TensorRT, or use device=cpu")
        providers: list = []
        if provider == "tensorrt":
            cache = engine_cache_dir(artifact.onnx_sha256 + ("-int8" if int8 else ""), "ort-trt")
            providers.append((PROVIDERS["tensorrt"], {
                "device_id": dev_id, "trt_fp16_enable": True, "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(cache), "trt_timing_cache_enable": True,
                "trt_timing_cache_path": str(cache)}))
        if provider in ("tensorrt", "cuda"):
            providers.append((PROVIDERS["cuda"], {"device_id": dev_id}))
        providers.append(PROVIDERS["cpu"])
        self.session = ort.InferenceSession(str(path), so, providers=providers)
        self.provider = provider
        self.on_gpu = provider != "cpu"
        self._dev_id = dev_id
        self._outputs = [o.name for o in self.session.get_outputs()]
        device = "cpu" if provider == "cpu" else f"cuda:{dev_id}"
        super().__init__(artifact, device, reason or f"onnxruntime {ort.__version__} with {provider}" + (" int8" if int8 else ""))

    def _run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.on_gpu:
            return dict(zip(self._outputs, self.session.run(self._outputs, batch)))
        io = self.session.io_binding()
        for name, a in batch.items():
            io.bind_cpu_input(name, a)
        for name in self._outputs:
            io.bind_output(name, "cuda", self._dev_id)
        self.session.run_with_iobinding(io)
        return dict(zip(self._outputs, io.copy_outputs_to_cpu()))


def _split_device(device: str) -> tuple[str, int]:
    if device in ("cpu", "auto"):
        return "cpu", 0
    if device == "cuda":
        return "cuda", 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return "cuda", int(device[5:])
    raise EdgeFasError(f"device {device!r} is not one of auto, cpu, cuda, cuda:N")
