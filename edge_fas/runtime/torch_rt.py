"""PyTorch backend: the checkpoint in the artifact, eager on CPU / CUDA; half precision and a
captured CUDA graph for one fixed batch size on GPU (other batch sizes run eagerly)."""

from __future__ import annotations

import copy
import logging

import numpy as np

from edge_fas.artifact import Artifact
from edge_fas.errors import ArtifactError, EdgeFasError
from edge_fas.runtime.base import OUTPUT_ORDER, Runtime

log = logging.getLogger(__name__)


def load_model(artifact: Artifact):
    """The torch model from the artifact's checkpoint (hash already verified by load_artifact)."""
    ckpt = artifact.checkpoint_path
    if ckpt is None:
        raise ArtifactError(f"artifact {artifact.folder} has no checkpoint.pt, so the torch runtime cannot run it; "
                            "use runtime onnxruntime, or export with the checkpoint included")
    from edge_fas.models import load_checkpoint
    model, _info = load_checkpoint(ckpt)
    return model


def model_inputs(torch, batch: dict[str, np.ndarray], device, dtype):
    """numpy batch -> the model's forward arguments (present as a bool mask)."""
    t = {k: torch.from_numpy(batch[k]).to(device=device, dtype=dtype, non_blocking=True) for k in ("rgb", "depth", "ir")}
    t["present"] = torch.from_numpy(batch["present"]).to(device) > 0.5
    return t


def select_outputs(out: dict, names) -> dict:
    return {k: out[k] for k in names if out.get(k) is not None}


class TorchRuntime(Runtime):
    kind = "torch"

    def __init__(self, artifact: Artifact, device: str = "cpu", threads: int = 0, reason: str = "", model=None,
                 half: bool = False, cuda_graph_batch: int | None = None, force_precision: bool = False):
        import torch

        self.torch = torch
        if threads and device == "cpu":
            torch.set_num_threads(int(threads))
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise EdgeFasError(f"device {device} asked for, but this PyTorch has no usable CUDA; use device=cpu")
        if (half or cuda_graph_batch) and dev.type != "cuda":
            raise EdgeFasError("half precision and CUDA graphs are GPU options; drop them or use device=cuda")
        gate_note = ""
        if half:  # judged by the export gate's figures for every layer in float16, the score head included
            from edge_fas.runtime.precision import check_allowed
            gate_note = check_allowed(artifact, "fp16", force_precision)
        # a given model is copied: half() and .to() must not change the caller's (or another runtime's) model
        model = copy.deepcopy(model) if model is not None else load_model(artifact)
        self.model = model.eval().to(dev)
        self.dtype = torch.float16 if half else torch.float32
        if half:
            self.model.half()
        self.dev = dev
        self.names = [n for n in OUTPUT_ORDER if n in artifact.output_names] or ["score"]
        self.graph = None
        self.graph_batch = cuda_graph_batch
        super().__init__(artifact, str(dev), reason or f"torch {torch.__version__} on {dev}"
                         + (" half" if half else "") + (f" CUDA graph b={cuda_graph_batch}" if cuda_graph_batch else "")
                         + (f"; {gate_note}" if gate_note else ""))

    def _eager(self, t: dict) -> dict:
        with self.torch.inference_mode():
            return select_outputs(self.model(t["rgb"], t["depth"], t["ir"], t["present"]), self.names)

    def _capture(self, t: dict) -> None:
        """Record one forward pass as a CUDA graph over static input/output tensors."""
        torch = self.torch
        self.static_in = {k: v.clone() for k, v in t.items()}
        s = torch.cuda.Stream(self.dev)
        s.wait_stream(torch.cuda.current_stream(self.dev))
        with torch.cuda.stream(s):
            for _ in range(3):  # warm-up on a side stream, as CUDA graph capture requires
                self._eager(self.static_in)
        torch.cuda.current_stream(self.dev).wait_stream(s)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph):
            self.static_out = select_outputs(self.model(*(self.static_in[k] for k in ("rgb", "depth", "ir", "present"))),
                                             self.names)

    def _run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.graph_batch and batch["rgb"].shape[0] == self.graph_batch:
            try:
                return self._replay(batch)
            except RuntimeError as e:  # the same model runs eagerly: slower, the same decisions
                log.warning("CUDA graph failed (%s); running eagerly from now on", e)
                self.graph_batch, self.graph = None, None
                self.reason += f"; CUDA graph failed ({type(e).__name__}: {e}), eager since"
        out = self._eager(model_inputs(self.torch, batch, self.dev, self.dtype))
        return {k: v.float().cpu().numpy() for k, v in out.items()}

    def _replay(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The captured graph on this batch (captured on the first call of its size)."""
        torch = self.torch
        if self.graph is None:
            self._capture(model_inputs(torch, batch, self.dev, self.dtype))
            # pinned host staging buffers: the per-call upload is then one async copy per input
            self.pinned = {k: torch.empty(v.shape, dtype=v.dtype).pin_memory() for k, v in self.static_in.items()}
        for k in ("rgb", "depth", "ir"):
            self.pinned[k].copy_(torch.from_numpy(batch[k]))
        self.pinned["present"].copy_(torch.from_numpy(batch["present"] > 0.5))
        for k, v in self.static_in.items():
            v.copy_(self.pinned[k], non_blocking=True)
        self.graph.replay()
        out = self.static_out
        return {k: v.float().cpu().numpy() for k, v in out.items()}
