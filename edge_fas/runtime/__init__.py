"""Inference runtimes behind one interface: load_runtime(artifact, kind, device) -> Runtime.

kind "auto" picks, and says why in runtime.reason:
  GPU asked for or available -> native TensorRT if the tensorrt wheel imports, else ONNX Runtime with
  its TensorRT / CUDA provider, else torch on CUDA; CPU -> ONNX Runtime (fastest CPU path here).
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
    try:
        import torch
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken CUDA install must not stop CPU inference
        return 0


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
        return True
    except Exception:
        return False


def _gpu_capable(kind: str) -> bool:
    """Can `kind` use the GPU in this install (torch: yes when CUDA is visible; ORT: needs its GPU build)."""
    if kind != "onnxruntime":
        return True
    from edge_fas.runtime.ort import available_providers
    return bool({"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(available_providers()))


def available() -> dict[str, str]:
    """Each runtime kind -> 'yes: ...' or 'no: why' (for doctor and bench)."""
    out = {}
    gpus = _cuda_devices()
    out["tensorrt"] = ("yes" if _has_tensorrt() and gpus else "no: " + (
        "no CUDA GPU visible" if not gpus else "the tensorrt Python wheel is not installed"))
    try:
        from edge_fas.runtime.ort import available_providers
        out["onnxruntime"] = "yes: " + ", ".join(available_providers())
    except ImportError as e:
        out["onnxruntime"] = f"no: {e}"
    try:
        import torch
        out["torch"] = f"yes: torch {torch.__version__}, {gpus} CUDA device(s)"
    except ImportError as e:
        out["torch"] = f"no: {e}"
    return out


def _pick(kind: str, device: str, art: Artifact) -> tuple[str, str, str]:
    """(kind, device, reason) for kind='auto'."""
    gpus = _cuda_devices()
    if device == "cpu" or (device == "auto" and not gpus):
        why = "device=cpu asked for" if device == "cpu" else "no CUDA GPU visible"
        return "onnxruntime", "cpu", f"auto: {why}; ONNX Runtime is the fastest CPU path"
    if not gpus:
        raise EdgeFasError(f"device {device} asked for, but no CUDA GPU is visible; use device=cpu or auto")
    dev = "cuda:0" if device in ("auto", "cuda") else device
    if _has_tensorrt():
        return "tensorrt", dev, f"auto: GPU {dev} and TensorRT are present"
    from edge_fas.runtime.ort import available_providers
    provs = available_providers()
    if "TensorrtExecutionProvider" in provs or "CUDAExecutionProvider" in provs:
        return "onnxruntime", dev, f"auto: GPU {dev}; no tensorrt wheel, so ONNX Runtime GPU providers"
    if art.checkpoint_path is not None:
        return "torch", dev, f"auto: GPU {dev}; no TensorRT or onnxruntime-gpu, so PyTorch on CUDA"
    return "onnxruntime", "cpu", "auto: GPU present but no GPU runtime can load this artifact; ONNX Runtime on CPU"


def load_runtime(artifact: str | Path | Artifact = "demo", kind: str = "auto", device: str = "auto",
                 threads: int = 0, **options) -> Runtime:
    """Load and verify `artifact` (folder, 'demo' or an Artifact) and return a ready Runtime.

    options go to the backend: torch: half, cuda_graph_batch, model; onnxruntime: provider
    ('cpu'|'cuda'|'tensorrt'), int8; tensorrt: precision ('fp16'|'fp32'|'int8'), max_batch.
    """
    if kind not in KINDS:
        raise EdgeFasError(f"runtime {kind!r} is not one of {KINDS}")
    art = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
    if kind == "auto":
        kind, device, reason = _pick(kind, device, art)
    else:
        reason = f"runtime {kind} asked for"
        if device == "auto":
            device = "cuda:0" if kind == "tensorrt" or (_cuda_devices() and _gpu_capable(kind)) else "cpu"
            reason += f", device auto -> {device}"
    if kind == "onnxruntime":
        from edge_fas.runtime.ort import OrtRuntime
        if device != "cpu" and "provider" not in options:
            from edge_fas.runtime.ort import available_providers
            options["provider"] = "tensorrt" if "TensorrtExecutionProvider" in available_providers() else "cuda"
        rt = OrtRuntime(art, device=device, threads=threads, **options)
    elif kind == "torch":
        from edge_fas.runtime.torch_rt import TorchRuntime
        rt = TorchRuntime(art, device=device, threads=threads, **options)
    else:
        from edge_fas.runtime.trt import TensorRTRuntime
        rt = TensorRTRuntime(art, device=device, **options)
    rt.reason = f"{reason}; {rt.reason}"
    return rt


def from_config(model_config) -> Runtime:
    """A runtime from the config's `model` section (artifact empty -> the bundled demo)."""
    return load_runtime(model_config.artifact or "demo", kind=model_config.runtime, device=model_config.device,
                        threads=model_config.threads)
