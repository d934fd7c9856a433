"""ONNX Runtime backend: CPU, CUDA and TensorRT execution providers, with the provider read back.

A GPU build of ONNX Runtime lists its CUDA and TensorRT providers even when their libraries (CUDA,
cuDNN, TensorRT) are missing, and then quietly runs on the CPU. So after the session is made, the
providers it really registered are read back (`session.get_providers()`); if the one asked for is not
among them, the runtime refuses (and `auto` falls back, saying why) instead of reporting a GPU run
that is a CPU run.

The TensorRT provider gets an explicit batch profile (1..max_batch, so a batch change never rebuilds),
fp16 only where the artifact's precision gate allows it, int8 only for an explicit Q/DQ model, and an
engine cache folder keyed like the native engines (ONNX hash, ORT version, GPU model and SMs,
precision, batch range); the files ORT writes there are hashed after the build and checked before the
next session may load them. Warm-up at load (runtime.warm_up) builds the engine then, not at the first
live frame.
"""

from __future__ import annotations

import json

import numpy as np

from edge_fas.artifact import INPUT_NAMES, Artifact
from edge_fas.errors import ArtifactError, EdgeFasError
from edge_fas.runtime import precision as prec
from edge_fas.runtime.base import CHANNELS, Runtime

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
# x86 CPUs with AVX2 or AVX-512 but no VNNI (AMD before Zen 4, Intel desktop parts before Ice Lake) run ONNX Runtime's
# int8 convolutions and matrix products through a 16-bit intermediate that saturates (VPMADDUBSW): an int8 model
# then scores otherwise there than on the machine its precision gate was measured on (a toy conv here: 15% of outputs
# off, by up to 13 int8 steps). This session option (ONNX Runtime's kOrtSessionOptionsAvx2PrecisionMode, in
# onnxruntime_session_options_config_keys.h) switches only those CPUs to exact u8u8 kernels; elsewhere it changes
# nothing.
EXACT_INT8 = ("session.x64quantprecision", "1")


def session_options():
    """ONNX Runtime session options every edge-fas session starts from: int8 computed exactly on every x86 CPU
    (EXACT_INT8) and only errors logged."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.add_session_config_entry(*EXACT_INT8)
    so.log_severity_level = 3
    return so


def available_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise EdgeFasError("ONNX Runtime is not installed: pip install 'edge-fas[cpu]' (or 'edge-fas[gpu]' on a "
                           "machine with an NVIDIA GPU)") from e
    return ort.get_available_providers()


def profile_shapes(size: int, batch: int) -> str:
    """'rgb:Bx3xSxS,depth:Bx1xSxS,...' as the TensorRT provider's profile options want it."""
    parts = []
    for name in INPUT_NAMES:
        tail = [3] if name == "present" else [CHANNELS[name], size, size]
        parts.append(f"{name}:" + "x".join(str(d) for d in [batch, *tail]))
    return ",".join(parts)


def read_back(session, wanted: str) -> list[str]:
    """The providers the session really runs on; EdgeFasError if `wanted` is not among them."""
    got = list(session.get_providers())
    if PROVIDERS[wanted] not in got:
        raise EdgeFasError(
            f"ONNX Runtime was asked for {PROVIDERS[wanted]} but the session runs on {got}: the provider is "
            "compiled in but its libraries did not load (CUDA, cuDNN or TensorRT missing or of another version). "
            "Run `edge-fas doctor`, install the matching CUDA/cuDNN/TensorRT, or use device=cpu")
    return got


class OrtRuntime(Runtime):
    kind = "onnxruntime"

    def __init__(self, artifact: Artifact, device: str = "cpu", threads: int = 0, reason: str = "",
                 provider: str | None = None, int8: bool = False, fp16: bool = True, max_batch: int = 8,
                 force_precision: bool = False, spin: bool = False):
        import onnxruntime as ort

        path = artifact.onnx_path
        notes = []
        if int8:
            q = artifact.manifest.get("int8")
            if not q:
                raise ArtifactError(prec.no_int8_file(artifact))
            note = prec.check_allowed(artifact, "int8", force_precision)
            notes.append(note)
            path = artifact.folder / q["file"]
        self.int8 = int8
        so = session_options()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        if not spin:  # busy-waiting worker threads steal the cores capture and the pipeline need
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        dev_type, dev_id = _split_device(device)
        if provider is None:
            provider = "cpu" if dev_type == "cpu" else "cuda"
        if provider not in PROVIDERS:
            raise EdgeFasError(f"ONNX Runtime provider {provider!r} is not one of {sorted(PROVIDERS)}")
        have = available_providers()
        if PROVIDERS[provider] not in have:
            raise EdgeFasError(f"ONNX Runtime here has no {PROVIDERS[provider]} (it has {have}); install "
                               "'edge-fas[gpu]' (onnxruntime-gpu) for CUDA / TensorRT, or use device=cpu")
        providers: list = []
        self.engine_store = None
        if provider == "tensorrt":
            use_fp16 = fp16 and not int8
            if use_fp16:
                try:
                    notes.append(prec.check_allowed(artifact, "fp16", force_precision))
                except prec.PrecisionRefused as e:
                    use_fp16 = False
                    notes.append(f"fp16 off: {e}")
            opts, self.engine_store = _trt_provider_options(ort, artifact, dev_id, use_fp16, int8, max_batch)
            providers.append((PROVIDERS["tensorrt"], opts))
            self.engine_store.verify()
        if provider in ("tensorrt", "cuda"):
            providers.append((PROVIDERS["cuda"], {"device_id": dev_id}))
        providers.append(PROVIDERS["cpu"])
        self.session = ort.InferenceSession(str(path), so, providers=providers)
        self.providers = read_back(self.session, provider)
        self.provider = provider
        self.on_gpu = provider != "cpu"
        self._dev_id = dev_id
        self._outputs = [o.name for o in self.session.get_outputs()]
        device = "cpu" if provider == "cpu" else f"cuda:{dev_id}"
        notes = [n for n in notes if n]
        super().__init__(artifact, device, reason or (
            f"onnxruntime {ort.__version__} on {self.providers[0]} (read back from the session)"
            + (" int8" if int8 else "") + ("; " + "; ".join(notes) if notes else "")))

    def warm_up(self, batch_sizes=(1,)) -> None:
        if self.engine_store is not None:  # the TensorRT provider builds its engine inside the first run
            from edge_fas.runtime.trt import keep_systemd_waiting
            keep_systemd_waiting(1800)
        super().warm_up(batch_sizes)
        if self.engine_store is not None:
            self.engine_store.seal()  # the TensorRT provider wrote its engines during warm-up: hash them

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


def _trt_provider_options(ort, artifact, dev_id: int, fp16: bool, int8: bool, max_batch: int):
    from edge_fas.runtime import cuda
    from edge_fas.runtime.cache import digest_of

    gpu = cuda.gpu(dev_id)
    key_fields = {"onnx_sha256": artifact.onnx_sha256, "onnxruntime": ort.__version__, "gpu": gpu.name,
                  "sm": gpu.sm, "sm_count": gpu.sm_count, "fp16": fp16, "int8": int8, "max_batch": max_batch}
    key = f"{artifact.onnx_sha256[:16]}-ort{ort.__version__}-{gpu.sm}-{'int8' if int8 else 'fp16' if fp16 else 'fp32'}" \
          f"-b{max_batch}-{digest_of(key_fields)}"
    store = ProviderCache(key, key_fields)
    size = artifact.input_size
    opts = {"device_id": dev_id, "trt_fp16_enable": fp16, "trt_int8_enable": int8,
            "trt_engine_cache_enable": True, "trt_engine_cache_path": str(store.folder),
            "trt_timing_cache_enable": True, "trt_timing_cache_path": str(store.folder),
            "trt_profile_min_shapes": profile_shapes(size, 1), "trt_profile_opt_shapes": profile_shapes(size, 1),
            "trt_profile_max_shapes": profile_shapes(size, max_batch)}
    return opts, store


class ProviderCache:
    """The TensorRT provider's engine folder: ORT writes and loads its files itself, so their digests are
    recorded once warm-up has built them (`seal`) and checked before a session may load them (`verify`);
    anything changed or unrecorded is quarantined so ORT rebuilds it."""

    def __init__(self, key: str, fields: dict):
        from edge_fas.runtime.cache import engine_cache_dir
        self.folder = engine_cache_dir(key, "ort-trt")
        self.fields = fields
        self.record_path = self.folder / "record.json"

    def _files(self) -> dict[str, str]:
        from edge_fas.runtime.cache import check_private, sha256_bytes
        out = {}
        for p in sorted(self.folder.iterdir()):
            if p.name in ("record.json", ".lock") or p.name.startswith("."):
                continue
            check_private(p, "engine")
            out[p.name] = sha256_bytes(p.read_bytes())
        return out

    def verify(self) -> None:
        from edge_fas.runtime.cache import quarantine
        files = self._files()
        if not files:
            return
        try:
            record = json.loads(self.record_path.read_text())
            ok = record.get("key") == self.fields and record.get("files") == files
        except (OSError, ValueError):
            ok = False
        if not ok:
            quarantine(self.folder, "TensorRT-provider engine files differ from those recorded after their build")

    def seal(self) -> None:
        from edge_fas.runtime.cache import atomic_write
        atomic_write(self.record_path, json.dumps({"key": self.fields, "files": self._files()}, indent=1).encode())


def _split_device(device: str) -> tuple[str, int]:
    if device in ("cpu", "auto"):
        return "cpu", 0
    if device == "cuda":
        return "cuda", 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return "cuda", int(device[5:])
    raise EdgeFasError(f"device {device!r} is not one of auto, cpu, cuda, cuda:N")
