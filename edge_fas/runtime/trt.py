"""Native TensorRT backend for TensorRT 10.3 (JetPack 6.2) through 11.x.

Every network is strongly typed: the ONNX file says which tensors are float16 or int8, and TensorRT
keeps those types. That is the only mode TensorRT 11 has (it removed BuilderFlag.FP16/INT8,
`platform_has_fast_fp16` and the INT8 calibrators) and the recommended one since 10.12, and 10.3
already supports it. So:

- fp32: the artifact's model.onnx, TF32 off (the same arithmetic the fp32 reference uses);
- fp16: that model rewritten to float16 by `precision.to_fp16` (score head and I/O in float32, and the
  nodes `edge-fas export --fp16-mixed` chose, if any: `precision.artifact_fp16_onnx`);
- int8: the artifact's explicit Q/DQ model (`edge-fas export --int8`: symmetric int8, score head in
  float); no calibrator is used on any version.

The only version branch is the network creation flag (10.x: STRONGLY_TYPED; 11.x: always on, flag
0); tests/test_tensorrt_api.py runs this module against the Python API of 10.3, 10.16 and 11.1 as
NVIDIA's sources declare it. Engines are built on the target, checked against fp32 on held-out
inputs at the operating point (the engine-build gate), and cached under a key of the ONNX sha256,
TensorRT version, GPU model, compute capability and SM count, build options, recipe, precision and
Q/DQ digest, with the engine's sha256 checked before every load (see cache.py). Buffers, pinned
staging and the stream come from cuda-python, not torch.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from edge_fas.artifact import INPUT_NAMES, Artifact, sha256_file
from edge_fas.errors import EdgeFasError
from edge_fas.runtime import precision as prec
from edge_fas.runtime.base import CHANNELS, Runtime
from edge_fas.runtime.cache import EngineStore, digest_of, locked

PRECISIONS = prec.PRECISIONS
SUPPORTED = ((10, 3), (11, 99))  # oldest and newest (major, minor) this module was checked against
RECIPE = "trt-strong-v1"  # bump when the build recipe changes: it is part of the engine key
WORKSPACE_BYTES = 1 << 30
# Frame sets the engine-build gate renders on the device at first start. Fewer than precision.GATE_FRAME_SETS:
# with no flip its 95% lower bound is 96.9%, not 99.5% (the export's gate on the same ONNX model shows that);
# the engine line prints the bound. Not raised: 600 renders at first start were never timed on a Jetson.
ENGINE_GATE_FRAME_SETS = 96


def import_trt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise EdgeFasError("runtime tensorrt needs the TensorRT Python wheel (pip install 'edge-fas[tensorrt]', or "
                           "JetPack's python3-libnvinfer on a Jetson); use runtime onnxruntime meanwhile") from e
    except Exception as e:  # noqa: BLE001 - a wheel whose libraries do not load raises OSError and others
        raise EdgeFasError(f"the tensorrt wheel is installed but does not load ({type(e).__name__}: {e}); "
                           "its CUDA / TensorRT libraries do not match this system") from e
    check_supported(trt)
    return trt


def version_of(trt) -> tuple[int, int]:
    try:
        major, minor = (int(x) for x in str(trt.__version__).split(".")[:2])
    except ValueError:
        raise EdgeFasError(f"cannot read the TensorRT version from {trt.__version__!r}") from None
    return major, minor


def check_supported(trt) -> tuple[int, int]:
    v = version_of(trt)
    if not SUPPORTED[0] <= v <= SUPPORTED[1]:
        raise EdgeFasError(f"TensorRT {trt.__version__} is outside the range this edge-fas supports "
                           f"({SUPPORTED[0][0]}.{SUPPORTED[0][1]} to {SUPPORTED[1][0]}.x); install "
                           "'edge-fas[tensorrt]' (the tested range) or use runtime onnxruntime")
    return v


def network_flags(trt) -> int:
    """Strongly typed network: an explicit flag on 10.x, the only mode (flag deprecated) on 11.x."""
    if version_of(trt)[0] >= 11:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def build_options(precision: str, max_batch: int, opt_batch: int) -> dict:
    return {"recipe": RECIPE, "precision": precision, "max_batch": max_batch, "opt_batch": opt_batch,
            "workspace_bytes": WORKSPACE_BYTES, "tf32": precision != "fp32", "strongly_typed": True}


def engine_key(onnx_sha256: str, trt_version: str, gpu, options: dict, model_digest: str) -> tuple[str, dict]:
    """(folder name, key fields): an engine is valid only for all of these at once."""
    fields = {"onnx_sha256": onnx_sha256, "tensorrt": str(trt_version), "gpu": gpu.name,
              "capability": f"{gpu.capability[0]}.{gpu.capability[1]}", "sm_count": gpu.sm_count,
              "options": options, "model_digest": model_digest}
    name = (f"{onnx_sha256[:16]}-trt{trt_version}-{gpu.sm}x{gpu.sm_count}-{options['precision']}"
            f"-b{options['max_batch']}-{digest_of(fields)}")
    return name, fields


def model_for(artifact: Artifact, precision: str, workdir: Path) -> Path:
    """The ONNX file a `precision` engine is built from (fp16: written into workdir)."""
    if precision == "fp32":
        return artifact.onnx_path
    if precision == "fp16":
        return prec.artifact_fp16_onnx(artifact, workdir / "model.fp16.onnx")
    q = artifact.manifest.get("int8")
    if not q:
        raise EdgeFasError(prec.no_int8_file(artifact) + " (explicit Q/DQ, the only int8 TensorRT 11 builds)")
    if not q.get("tensorrt"):
        raise EdgeFasError(f"the int8 model of {artifact.folder} uses asymmetric uint8 activations (ONNX Runtime CPU "
                           "format), which TensorRT cannot build; re-export with `edge-fas export --int8`")
    return artifact.folder / q["file"]


def keep_systemd_waiting(seconds: float = 180.0) -> None:
    """Under systemd (Type=notify), ask for `seconds` more start-up time: an engine build on an Orin Nano
    can outlast TimeoutStartSec, and a start killed mid-build would be retried, and killed, for ever."""
    from edge_fas.pipeline.systemd import notify
    notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}")


class BuildProgress:
    """A trt.IProgressMonitor that prints each top-level build phase (quiet: nothing) and keeps systemd
    waiting while the build goes on."""

    def __new__(cls, trt, quiet: bool = False):
        class Monitor(trt.IProgressMonitor):
            def __init__(self):
                trt.IProgressMonitor.__init__(self)
                self.t0 = self.pinged = time.monotonic()

            def phase_start(self, phase_name, parent_phase, num_steps):
                self._ping()
                if not quiet and parent_phase is None:
                    print(f"  [{time.monotonic() - self.t0:6.1f} s] TensorRT: {phase_name} ({num_steps} steps)",
                          file=sys.stderr, flush=True)

            def step_complete(self, phase_name, step):
                self._ping()
                return True  # False would cancel the build

            def _ping(self):
                if time.monotonic() - self.pinged > 20:
                    self.pinged = time.monotonic()
                    keep_systemd_waiting()

            def phase_finish(self, phase_name):
                pass

        return Monitor()


def build_engine(trt, onnx_path: Path, size: int, max_batch: int, opt_batch: int, precision: str,
                 timing_cache: bytes = b"", quiet: bool = False) -> tuple[bytes, bytes]:
    """Parse `onnx_path` into a strongly typed network and build it: (serialized engine, timing cache)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgeFasError(f"TensorRT {trt.__version__} cannot parse {onnx_path}: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: the gate compares against it
    cache = config.create_timing_cache(timing_cache)
    config.set_timing_cache(cache, False)
    config.progress_monitor = BuildProgress(trt, quiet)
    profile = builder.create_optimization_profile()
    for name in INPUT_NAMES:
        tail = (3,) if name == "present" else (CHANNELS[name], size, size)
        profile.set_shape(name, (1, *tail), (opt_batch, *tail), (max_batch, *tail))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EdgeFasError(f"TensorRT {trt.__version__} failed to build an engine from {onnx_path} (see its log above)")
    return bytes(plan), bytes(config.get_timing_cache().serialize())


def _np_dtype(trt, dt):
    table = {trt.float32: np.float32, trt.float16: np.float16, trt.int32: np.int32, trt.int64: np.int64,
             trt.bool: np.bool_, trt.int8: np.int8, trt.uint8: np.uint8}
    if dt not in table:
        raise EdgeFasError(f"engine I/O tensor of TensorRT type {dt} is not supported here")
    return table[dt]


class TensorRTRuntime(Runtime):
    kind = "tensorrt"

    def __init__(self, artifact: Artifact, device: str = "cuda:0", reason: str = "", precision: str = "fp16",
                 max_batch: int = 8, opt_batch: int = 1, rebuild: bool = False, force_precision: bool = False,
                 gate_inputs=None, quiet: bool = False):
        from edge_fas.runtime import cuda

        if precision not in PRECISIONS:
            raise EdgeFasError(f"TensorRT precision {precision!r} is not one of {PRECISIONS}")
        if not 1 <= opt_batch <= max_batch:
            raise EdgeFasError(f"TensorRT batch range: need 1 <= opt_batch ({opt_batch}) <= max_batch ({max_batch})")
        trt = import_trt()
        index = cuda.device_index(device)
        gpu = cuda.gpu(index)
        gate_note = prec.check_allowed(artifact, precision, force_precision, runs_gated_model=True)
        self.trt, self.cuda = trt, cuda.Cuda(index)
        self.max_batch, self.quiet = max_batch, quiet
        options = build_options(precision, max_batch, opt_batch)
        with _workdir() as work:
            model = model_for(artifact, precision, Path(work))
            key, fields = engine_key(artifact.onnx_sha256, trt.__version__, gpu, options, sha256_file(model))
            store = EngineStore(key, "tensorrt")
            with locked(store.folder):
                plan, why = (None, "rebuild asked for") if rebuild else store.load(fields)
                engine = self._deserialize(plan) if plan is not None else None
                if plan is not None and engine is None:  # recorded digest fine, TensorRT still refuses it
                    from edge_fas.runtime.cache import quarantine
                    why = f"TensorRT could not deserialise the cached engine; moved to {quarantine(store.folder, 'deserialise failed')}"
                if engine is None:
                    engine, record = self._build(trt, store, fields, model, artifact, options, precision,
                                                 gate_inputs, force_precision)
                    state = f"built ({why}) in {record['build_seconds']:.0f} s"
                else:
                    record = store.record()
                    state = "loaded from the cache (sha256 verified)"
        if getattr(self, "engine", None) is not engine:  # a fresh build is bound already (its gate ran on it)
            self._bind(engine)
        gate = record.get("gate") or {}
        gate_line = (f"; engine gate {gate['decision_agreement']:.2%} agreement with fp32 on "
                     f"{gate['frame_sets']} held-out frame sets ({prec.bound_note(gate)})" if gate else "")
        super().__init__(artifact, f"cuda:{index}", reason or (
            f"TensorRT {trt.__version__} {precision} engine {state} on {gpu.name} ({gpu.sm}, {gpu.sm_count} SMs, "
            f"batch 1..{max_batch}){gate_line}" + (f"; {gate_note}" if gate_note else "")))

    # -- build, check, load ------------------------------------------------------------------
    def _deserialize(self, plan: bytes):
        self.logger = self.trt.Logger(self.trt.Logger.WARNING)
        self.runtime = self.trt.Runtime(self.logger)
        return self.runtime.deserialize_cuda_engine(plan)

    def _build(self, trt, store, fields, model, artifact, options, precision, gate_inputs, force):
        from edge_fas.runtime.cache import cache_root, private_dir
        # the timing cache speeds up rebuilds (any model) for one TensorRT version and GPU architecture
        timing_path = private_dir(cache_root() / "timing") / f"tensorrt-{trt.__version__}-sm{fields['capability']}.cache"
        timing = timing_path.read_bytes() if timing_path.is_file() else b""
        if not self.quiet:
            print(f"building the TensorRT {precision} engine for {artifact.folder.name} (minutes on a Jetson)...",
                  file=sys.stderr, flush=True)
        t0 = time.monotonic()
        keep_systemd_waiting()
        plan, timing = build_engine(trt, model, artifact.input_size, options["max_batch"], options["opt_batch"],
                                    precision, timing, self.quiet)
        seconds = time.monotonic() - t0
        engine = self._deserialize(plan)
        if engine is None:
            raise EdgeFasError("TensorRT built an engine it cannot deserialise (see its log)")
        self._bind(engine)
        keep_systemd_waiting()  # the gate renders its held-out inputs
        gate = self._gate(artifact, precision, gate_inputs, force)
        from edge_fas.runtime.cache import atomic_write
        atomic_write(timing_path, timing)
        record = store.save(plan, fields, {"build_seconds": round(seconds, 1), "gate": gate})
        return engine, record

    def _gate(self, artifact, precision, gate_inputs, force) -> dict:
        """The engine-build gate: this engine against fp32 ONNX Runtime on held-out inputs."""
        batch, labels, data = (gate_inputs if gate_inputs is not None
                               else prec.held_out_inputs(artifact, ENGINE_GATE_FRAME_SETS, seed=2))
        ref = prec.calibrated_ort_scores(artifact, artifact.onnx_path, batch)
        raw = np.concatenate([self._run({k: v[i:i + self.max_batch] for k, v in batch.items()})["score"].reshape(-1)
                              for i in range(0, len(ref), self.max_batch)])
        got = prec.calibrated(artifact, raw)  # both on the operating threshold's (calibrated) scale
        figures = prec.compare(ref, got, prec.operating_threshold(artifact), labels)
        figures["data"] = data
        if precision == "fp32":
            return {**figures, "passed": True}
        return prec.judge(figures, f"TensorRT {precision} engine", force=force)

    def _bind(self, engine) -> None:
        """Allocate every I/O tensor for the largest batch and bind its device address once."""
        trt, cu = self.trt, self.cuda
        self.engine = engine
        self.context = engine.create_execution_context()
        self.stream = cu.stream()
        self.inputs, self.outputs, self.host, self.device_ptrs = [], [], {}, {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs.append(name)
                self.context.set_input_shape(name, (self.max_batch, *tuple(engine.get_tensor_shape(name))[1:]))
            else:
                self.outputs.append(name)
        for name in self.inputs + self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = _np_dtype(trt, engine.get_tensor_dtype(name))
            arr, hptr = cu.pinned(shape, dtype)
            self.host[name] = (arr, hptr)
            self.device_ptrs[name] = cu.malloc(arr.nbytes)
            self.context.set_tensor_address(name, self.device_ptrs[name])

    def _run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = batch["rgb"].shape[0]
        if n > self.max_batch:  # the engine's profile stops at max_batch: split
            parts = [self._run({k: v[i:i + self.max_batch] for k, v in batch.items()}) for i in range(0, n, self.max_batch)]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        cu = self.cuda
        for name in self.inputs:
            arr, hptr = self.host[name]
            arr[:n] = batch[name]
            cu.to_device(self.device_ptrs[name], hptr, arr[:n].nbytes, self.stream)
            self.context.set_input_shape(name, (n, *batch[name].shape[1:]))
        if not self.context.execute_async_v3(int(self.stream)):
            raise EdgeFasError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        for name in self.outputs:
            arr, hptr = self.host[name]
            cu.to_host(hptr, self.device_ptrs[name], arr[:n].nbytes, self.stream)
        cu.sync(self.stream)
        return {name: self.host[name][0][:n].astype(np.float32) for name in self.outputs}

    def close(self) -> None:
        for ptr in getattr(self, "device_ptrs", {}).values():
            self.cuda.free(ptr)
        for _arr, hptr in getattr(self, "host", {}).values():
            self.cuda.free_host(hptr)
        if getattr(self, "stream", None) is not None:
            self.cuda.destroy(self.stream)
        self.device_ptrs, self.host, self.stream = {}, {}, None


def _workdir():
    import tempfile
    return tempfile.TemporaryDirectory(prefix="edge-fas-trt-")
