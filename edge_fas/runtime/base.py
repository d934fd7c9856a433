"""The runtime interface every backend implements, and the input checks they share."""

from __future__ import annotations

import numpy as np

from edge_fas.artifact import INPUT_NAMES, Artifact
from edge_fas.errors import ArtifactError
from edge_fas.types import ModelOutput

# canonical output order of an exported model; an artifact lists the subset it has
OUTPUT_ORDER = ("score", "logits", "trace", "uncertainty", "per_modality_scores")
CHANNELS = {"rgb": 3, "depth": 1, "ir": 1}


class Runtime:
    """A loaded model ready for inference.

    kind: "onnxruntime" | "torch" | "tensorrt"; reason: why that kind (and device) was picked;
    device: where it runs. infer(batch) takes a dict of numpy arrays rgb (B,3,S,S), depth (B,1,S,S),
    ir (B,1,S,S) float32 and present (B,3) bool/float, and returns a ModelOutput.
    """

    kind = "?"

    def __init__(self, artifact: Artifact, device: str, reason: str):
        self.artifact = artifact
        self.device = device
        self.reason = reason

    # facts from the manifest, the same for every backend
    @property
    def manifest(self) -> dict:
        return self.artifact.manifest

    @property
    def threshold(self) -> float:
        return self.artifact.threshold

    @property
    def preprocess(self):
        return self.artifact.preprocess

    @property
    def model_name(self) -> str:
        return self.artifact.model_name

    @property
    def output_names(self) -> list[str]:
        return self.artifact.output_names

    @property
    def input_size(self) -> int:
        return self.artifact.input_size

    def infer(self, batch: dict) -> ModelOutput:
        out = to_model_output(self._run(check_batch(batch, self.input_size)))
        # every backend's score leaves here calibrated (the manifest's calibration; logits stay raw)
        out.score = self.artifact.calibration.calibrate(out.score, out.logits)
        return out

    def _run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def warm_up(self, batch_sizes=(1,)) -> None:
        """Run each expected batch size once at load, so the first live frame does not pay for lazy CUDA
        loading, kernel selection, a TensorRT-provider engine build or a CUDA-graph capture."""
        from edge_fas.export import random_batch
        for b in batch_sizes:
            self.infer(random_batch(self.input_size, int(b), np.random.default_rng(0), drop_modalities=False))

    def close(self) -> None:
        """Release device memory / sessions (optional)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model_name} on {self.device}: {self.reason}>"


def check_batch(batch: dict, size: int) -> dict[str, np.ndarray]:
    """Validate shapes and return contiguous float32 arrays (present as 0/1 float32)."""
    if not isinstance(batch, dict):
        raise ValueError(f"infer() takes a dict with keys {list(INPUT_NAMES)}, got {type(batch).__name__}")
    missing = [k for k in INPUT_NAMES if k not in batch]
    if missing:
        raise ValueError(f"infer(): batch lacks {missing}; give rgb, depth, ir (B,C,{size},{size}) and present (B,3)")
    out = {}
    b = None
    for name in ("rgb", "depth", "ir"):
        a = np.ascontiguousarray(batch[name], dtype=np.float32)
        want = (CHANNELS[name], size, size)
        if a.ndim != 4 or a.shape[1:] != want:
            raise ValueError(f"infer(): {name} has shape {a.shape}, the model needs (B, {want[0]}, {size}, {size}); "
                             "crop with the runtime's .preprocess parameters")
        b = a.shape[0] if b is None else b
        if a.shape[0] != b:
            raise ValueError(f"infer(): {name} has batch {a.shape[0]}, rgb has {b}")
        out[name] = a
    p = np.ascontiguousarray(batch["present"], dtype=np.float32)
    if p.shape != (b, 3):
        raise ValueError(f"infer(): present has shape {p.shape}, expected ({b}, 3) in rgb, depth, ir order")
    out["present"] = p
    if b == 0:
        raise ValueError("infer(): empty batch")
    return out


def to_model_output(outputs: dict[str, np.ndarray]) -> ModelOutput:
    if "score" not in outputs:
        raise ArtifactError(f"model produced {sorted(outputs)} but no 'score' output; re-export the artifact")
    get = lambda k: None if outputs.get(k) is None else np.asarray(outputs[k], dtype=np.float32)  # noqa: E731
    return ModelOutput(score=get("score").reshape(-1), logits=get("logits"), trace=get("trace"),
                       uncertainty=get("uncertainty"), per_modality_scores=get("per_modality_scores"))
