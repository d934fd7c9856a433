"""Inference runtimes behind one interface: load_runtime(artifact, kind, device) -> Runtime.

kind "auto" tries, best first, and says in runtime.reason what runs, why, and what failed before it:
  a GPU the NVIDIA driver reports -> native TensorRT (fp16 engine, then fp32), ONNX Runtime's TensorRT
  provider, its CUDA provider, torch on CUDA; always last, and the only choice without a GPU: ONNX
  Runtime on the CPU. A GPU path that fails to import, parse, build, pass its precision gate or load
  is skipped with its reason; the provider ONNX Runtime really runs on is read back, not assumed.
"""

from __future__ import annotations

from pathlib import Path

from edge_fas.artifact import Artifact, demo_folder, load_artifact
from edge_fas.errors import ArtifactError, EdgeFasError
from edge_fas.runtime.base import Runtime

KINDS = ("auto", "tensorrt", "onnxruntime", "torch")

__all__ = ["KINDS", "Runtime", "available", "default_artifact", "load_artifact", "load_runtime", "from_config"]


def default_artifact() -> Path:
    """The bundled demo artifact folder; ArtifactError if this install has none."""
    folder = demo_folder()
    if not (folder / "manifest.yaml").is_file():
        raise ArtifactError(f"no bundled demo artifact at {folder}; give --model PATH to an exported artifact, or "
                            "make one with `edge-fas export runs/demo/checkpoint.pt --out edge_fas/assets/demo`")
    return folder


def _cuda_devices() -> int:
    """NVIDIA GPUs the driver reports (no torch needed: the project's torch may be a CPU build)."""
    from edge_fas.runtime import cuda
    return len(cuda.gpus())


def tensorrt_status() -> tuple[bool, str]:
    """(usable, 'TensorRT X' or why not): the wheel imports, loads its libraries and is a supported version."""
    try:
        from edge_fas.runtime.trt import import_trt
        trt = import_trt()
    except EdgeFasError as e:
        return False, str(e)
    return True, f"TensorRT {trt.__version__}"


def _has_tensorrt() -> bool:
    return tensorrt_status()[0]


def _torch_cuda() -> bool:
    try:
        import torch
        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken CUDA install must not stop CPU inference
        return False


def _gpu_capable(kind: str) -> bool:
    """Can `kind` use the GPU in this install (torch: a CUDA build; ORT: its GPU build)."""
    if kind == "torch":
        return _torch_cuda()
    if kind != "onnxruntime":
        return True
    from edge_fas.runtime.ort import available_providers
    return bool({"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(available_providers()))


def available() -> dict[str, str]:
    """Each runtime kind -> 'yes: ...' or 'no: why' (for doctor and bench)."""
    from edge_fas.runtime import cuda
    out = {}
    found, why_no_gpu = cuda.probe()
    trt_ok, trt_line = tensorrt_status()
    gpu_line = ", ".join(f"{g.name} ({g.sm}, {g.sm_count} SMs)" for g in found)
    out["tensorrt"] = (f"yes: {trt_line} on {gpu_line}" if trt_ok and found else
                       "no: " + (trt_line if not trt_ok else why_no_gpu))
    try:
        from edge_fas.runtime.ort import available_providers
        out["onnxruntime"] = "yes: " + ", ".join(available_providers()) + (
            " (GPU providers are listed when compiled in; the one in use is read back at load)" if found else "")
    except EdgeFasError as e:
        out["onnxruntime"] = f"no: {e}"
    try:
        import torch
        out["torch"] = f"yes: torch {torch.__version__}, " + (
            "CUDA usable" if _torch_cuda() else "CPU only (a CPU build, or no GPU)")
    except ImportError as e:
        out["torch"] = f"no: {e}"
    return out


def _candidates(device: str, art: Artifact) -> list[tuple[str, str, dict, str]]:
    """(kind, device, options, why) for kind='auto', best first; ONNX Runtime on the CPU is always last."""
    from edge_fas.runtime import cuda
    from edge_fas.runtime import precision as prec
    found, why_no_gpu = cuda.probe()
    cpu = ("onnxruntime", "cpu", {}, "ONNX Runtime is the fastest CPU path")
    if device == "cpu":
        return [(*cpu[:3], "device=cpu asked for; " + cpu[3])]
    if not found:
        if device != "auto":
            raise EdgeFasError(f"device {device} asked for, but no CUDA GPU is usable ({why_no_gpu}); "
                               "use device=cpu or auto")
        return [(*cpu[:3], f"no CUDA GPU ({why_no_gpu}); " + cpu[3])]
    dev = "cuda:0" if device in ("auto", "cuda") else device
    out = []
    fp16_ok = (prec.recorded_gate(art, "fp16") or {}).get("passed", True)
    if _has_tensorrt():
        if fp16_ok:
            out.append(("tensorrt", dev, {"precision": "fp16"}, f"GPU {dev} and TensorRT: fp16 engine"))
        out.append(("tensorrt", dev, {"precision": "fp32"}, f"GPU {dev} and TensorRT: fp32 engine"))
    from edge_fas.runtime.ort import available_providers
    provs = available_providers()
    if "TensorrtExecutionProvider" in provs:
        out.append(("onnxruntime", dev, {"provider": "tensorrt"}, f"GPU {dev}: ONNX Runtime TensorRT provider"))
    if "CUDAExecutionProvider" in provs:
        out.append(("onnxruntime", dev, {"provider": "cuda"}, f"GPU {dev}: ONNX Runtime CUDA provider"))
    if art.checkpoint_path is not None and _torch_cuda():
        # the live pipeline scores one face a call: eager PyTorch is launch-bound there (spoof_trace edge at 128 px
        # on an H200: 12.3 ms, as slow as mmdg on 16 CPU cores), replaying a captured CUDA graph is not (1.3 ms)
        out.append(("torch", dev, {"cuda_graph_batch": 1}, f"GPU {dev}: PyTorch on CUDA, one face a call as a CUDA graph"))
        out.append(("torch", dev, {}, f"GPU {dev}: PyTorch on CUDA"))
    out.append((*cpu[:3], "every GPU path failed or is missing; " + cpu[3]))
    return out


def load_runtime(artifact: str | Path | Artifact = "demo", kind: str = "auto", device: str = "auto",
                 threads: int = 0, warmup=(1,), **options) -> Runtime:
    """Load and verify `artifact` (folder, 'demo' or an Artifact), warm it up for each batch size in
    `warmup`, and return a ready Runtime whose .reason says what runs and why.

    options go to the backend: torch: half, cuda_graph_batch, model; onnxruntime: provider
    ('cpu'|'cuda'|'tensorrt'), int8, fp16, max_batch; tensorrt: precision ('fp16'|'fp32'|'int8'), max_batch,
    opt_batch, rebuild, gate_inputs, quiet; all: force_precision (run a precision whose gate failed).
    kind 'auto' tries the GPU paths best first and falls back, with each failure in the reason.
    """
    if kind not in KINDS:
        raise EdgeFasError(f"runtime {kind!r} is not one of {KINDS}")
    art = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
    if kind == "auto":
        failures = []
        for k, dev, opts, why in _candidates(device, art):
            try:
                rt = _load(art, k, dev, threads, {**opts, **_options_for(k, options)}, warmup)
            except Exception as e:  # noqa: BLE001 - any GPU-path failure means: try the next path, say why
                how = opts.get("provider") or opts.get("precision") or ("cuda-graph" if opts.get("cuda_graph_batch") else "")
                failures.append(f"{k}{'/' + how if how else ''} failed ({type(e).__name__}: {e})")
                continue
            tried = ("; after: " + "; ".join(failures)) if failures else ""
            rt.reason = f"auto: {why}{tried}; {rt.reason}"
            return rt
        raise EdgeFasError("no runtime could load this artifact: " + "; ".join(failures))
    if device == "auto":
        device = "cuda:0" if kind == "tensorrt" or (_cuda_devices() and _gpu_capable(kind)) else "cpu"
        reason = f"runtime {kind} asked for, device auto -> {device}"
    else:
        reason = f"runtime {kind} asked for"
    if kind == "onnxruntime" and device != "cpu" and "provider" not in options:
        from edge_fas.runtime.ort import available_providers
        options["provider"] = "tensorrt" if "TensorrtExecutionProvider" in available_providers() else "cuda"
    rt = _load(art, kind, device, threads, _options_for(kind, options), warmup)
    rt.reason = f"{reason}; {rt.reason}"
    return rt


_OPTIONS = {"onnxruntime": {"int8", "fp16", "max_batch", "force_precision", "spin", "provider"},
            "torch": {"half", "cuda_graph_batch", "model", "force_precision"},
            "tensorrt": {"precision", "max_batch", "opt_batch", "rebuild", "gate_inputs", "quiet", "force_precision"}}


def _options_for(kind: str, options: dict) -> dict:
    """The options that apply to `kind` (auto and model.precision pass one set to several backends);
    a name no backend knows is an error, not silently dropped."""
    unknown = set(options) - set().union(*_OPTIONS.values())
    if unknown:
        raise EdgeFasError(f"unknown runtime option(s) {sorted(unknown)}; known: "
                           + "; ".join(f"{k}: {', '.join(sorted(v))}" for k, v in _OPTIONS.items()))
    return {k: v for k, v in options.items() if k in _OPTIONS[kind]}


def _load(art: Artifact, kind: str, device: str, threads: int, options: dict, warmup) -> Runtime:
    if kind == "onnxruntime":
        from edge_fas.runtime.ort import OrtRuntime
        rt = OrtRuntime(art, device=device, threads=threads, **options)
    elif kind == "torch":
        from edge_fas.runtime.torch_rt import TorchRuntime
        rt = TorchRuntime(art, device=device, threads=threads, **options)
    else:
        from edge_fas.runtime.trt import TensorRTRuntime
        rt = TensorRTRuntime(art, device=device, **options)
    try:
        if warmup:
            rt.warm_up(tuple(warmup))
    except Exception:
        rt.close()
        raise
    return rt


def precision_options(model_config) -> dict:
    """load_runtime options for the config's model.precision ('auto': none, each backend's default)."""
    p = getattr(model_config, "precision", "auto")
    if p == "auto":
        return {}
    return {"precision": p, "int8": p == "int8", "fp16": p == "fp16", "half": p == "fp16"}


def from_config(model_config) -> Runtime:
    """A runtime from the config's `model` section (artifact empty -> the bundled demo)."""
    return load_runtime(model_config.artifact or "demo", kind=model_config.runtime, device=model_config.device,
                        threads=model_config.threads, **precision_options(model_config))
