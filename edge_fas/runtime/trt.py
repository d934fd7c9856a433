"""Native TensorRT 10 backend.

The engine is built on the target from the artifact's ONNX file (FP16 by default, INT8 with a
calibration cache made from recorded frame sets) and cached under a key of ONNX sha256 + TensorRT
version + GPU compute capability (+ precision and batch range). Engines are loaded only from that
cache, never from the artifact or any other place. I/O tensors are allocated for the largest batch and
bound once; a call sets the input shapes and runs execute_async_v3 on the runtime's own CUDA stream.
Device memory and the stream come from PyTorch's CUDA allocator (no pycuda dependency).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge_fas.artifact import INPUT_NAMES, Artifact
from edge_fas.errors import EdgeFasError
from edge_fas.runtime.base import Runtime
from edge_fas.runtime.cache import engine_cache_dir

PRECISIONS = ("fp16", "fp32", "int8")


def _import_trt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise EdgeFasError("runtime tensorrt needs the TensorRT Python wheel (pip install tensorrt, or JetPack's "
                           "python3-libnvinfer); use runtime onnxruntime or torch meanwhile") from e
    return trt


def engine_key(onnx_sha256: str, trt_version: str, capability: tuple[int, int], precision: str,
               max_batch: int) -> str:
    """Cache key: an engine is only valid for this ONNX file, TensorRT version and GPU architecture."""
    return f"{onnx_sha256[:20]}-trt{trt_version}-sm{capability[0]}{capability[1]}-{precision}-b{max_batch}"


def _torch_dtype(torch, trt, dt):
    return {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
            trt.bool: torch.bool, trt.int64: torch.int64}[dt]


def build_engine(trt, onnx_path: Path, size: int, precision: str, max_batch: int, calibrator=None) -> bytes:
    """Parse the ONNX file and build a serialized engine with one profile for batch 1..max_batch."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgeFasError(f"TensorRT cannot parse {onnx_path}: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    if precision in ("fp16", "int8") and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        if calibrator is None:
            raise EdgeFasError("INT8 TensorRT engines need calibration frame sets (recorded sessions); give "
                               "calibration=... or use precision fp16")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
    profile = builder.create_optimization_profile()
    opt = min(max_batch, 1)
    for name in INPUT_NAMES:
        tail = (3,) if name == "present" else ((3 if name == "rgb" else 1), size, size)
        profile.set_shape(name, (1, *tail), (opt, *tail), (max_batch, *tail))
    config.add_optimization_profile(profile)
    if calibrator is not None:
        config.set_calibration_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EdgeFasError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    return bytes(plan)


def make_calibrator(trt, batches, cache_file: Path):
    """An entropy calibrator fed from an iterable of numpy batch dicts (crops of recorded frame sets)."""
    import torch

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.it = iter(batches)
            self.keep = {}
            self.bs = None

        def get_batch_size(self):
            return self.bs or 1

        def get_batch(self, names):
            try:
                b = next(self.it)
            except StopIteration:
                return None
            self.bs = len(b["rgb"])
            self.keep = {n: torch.from_numpy(np.ascontiguousarray(b[n], np.float32)).cuda() for n in names}
            return [int(self.keep[n].data_ptr()) for n in names]

        def read_calibration_cache(self):
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache):
            cache_file.write_bytes(bytes(cache))

    return Calibrator()


class TensorRTRuntime(Runtime):
    kind = "tensorrt"

    def __init__(self, artifact: Artifact, device: str = "cuda:0", reason: str = "", precision: str = "fp16",
                 max_batch: int = 8, calibration=None, rebuild: bool = False):
        trt = _import_trt()
        import torch

        if precision not in PRECISIONS:
            raise EdgeFasError(f"TensorRT precision {precision!r} is not one of {PRECISIONS}")
        if not torch.cuda.is_available():
            raise EdgeFasError("runtime tensorrt needs a CUDA GPU and none is visible; use runtime onnxruntime")
        self.torch, self.trt = torch, trt
        self.dev = torch.device(device if device.startswith("cuda") else "cuda:0")
        torch.cuda.set_device(self.dev)
        cap = torch.cuda.get_device_capability(self.dev)
        key = engine_key(artifact.onnx_sha256, trt.__version__, cap, precision, max_batch)
        cache = engine_cache_dir(key, "tensorrt")
        plan_path = cache / "engine.plan"
        size = artifact.input_size
        if rebuild or not plan_path.is_file():
            calib = make_calibrator(trt, calibration, cache / "calibration.cache") if precision == "int8" else None
            plan = build_engine(trt, artifact.onnx_path, size, precision, max_batch, calib)
            tmp = plan_path.with_suffix(".tmp")
            tmp.write_bytes(plan)
            tmp.replace(plan_path)  # atomic: a crash mid-write never leaves a half engine in the cache
            (cache / "key.json").write_text(json.dumps({"onnx_sha256": artifact.onnx_sha256, "tensorrt": trt.__version__,
                                                        "capability": list(cap), "precision": precision,
                                                        "max_batch": max_batch}))
            built = "built"
        else:
            built = "loaded from cache"
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(plan_path.read_bytes())
        if self.engine is None:
            raise EdgeFasError(f"TensorRT could not load the cached engine {plan_path}; delete it to rebuild")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(self.dev)
        self.max_batch = max_batch
        # allocate every I/O tensor at the largest batch and bind its address once
        self.buffers, self.inputs, self.outputs = {}, [], []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            is_in = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_in else self.outputs).append(name)
            if is_in:
                self.context.set_input_shape(name, (max_batch, *self.engine.get_tensor_shape(name)[1:]))
        for name in self.inputs + self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            buf = torch.empty(shape, dtype=_torch_dtype(torch, trt, self.engine.get_tensor_dtype(name)), device=self.dev)
            self.buffers[name] = buf
            self.context.set_tensor_address(name, buf.data_ptr())
        super().__init__(artifact, str(self.dev), reason or f"TensorRT {trt.__version__} {precision} engine {built} "
                         f"(sm{cap[0]}{cap[1]}, batch 1..{max_batch})")

    def _run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = batch["rgb"].shape[0]
        if n > self.max_batch:  # split: the engine's profile stops at max_batch
            parts = [self._run({k: v[i:i + self.max_batch] for k, v in batch.items()}) for i in range(0, n, self.max_batch)]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        torch = self.torch
        with torch.cuda.stream(self.stream):
            for name in self.inputs:
                src = torch.from_numpy(batch[name]).pin_memory()
                self.buffers[name][:n].copy_(src.to(self.buffers[name].dtype), non_blocking=True)
                self.context.set_input_shape(name, (n, *batch[name].shape[1:]))
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise EdgeFasError("TensorRT execute_async_v3 failed (see the TensorRT log)")
            out = {name: self.buffers[name][:n].float().cpu() for name in self.outputs}
        self.stream.synchronize()
        return {k: v.numpy() for k, v in out.items()}
