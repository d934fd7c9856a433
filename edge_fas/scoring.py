"""Score a CropSet, or a streamed set (edge_fas.data.stream.StreamDataset, decoded in worker processes),
with a model as it is deployed: `load_scorer(path)` takes an exported artifact folder (the bundled
'demo' included) or a training checkpoint (.pt).

An artifact is scored through `edge_fas.runtime.load_runtime`, the runtime the live pipeline uses
(ONNX Runtime on CPU unless told otherwise), so evaluation sees exactly the deployed graph, its
preprocessing parameters and its calibration. A checkpoint is scored by its PyTorch model with the
calibration stored in its meta. Either way the result holds the calibrated P(attack), the raw logits
(what calibration is fitted on), and the per-sample uncertainty statistic and map peaks
(edge_fas.uncertainty) that abstention and the viewer's colour scale are fitted on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_fas.errors import ArtifactError, ConfigError
from edge_fas.preprocess import PreprocessParams
from edge_fas.score_calibration import ScoreCalibration, logit_of
from edge_fas.types import ModelOutput
from edge_fas import uncertainty as U

__all__ = ["Scorer", "Scored", "NothingToScore", "load_scorer", "model_scorer", "describe_crops", "join_shares"]


class NothingToScore(ConfigError):
    """The set to score is empty, or none of its samples gave a face crop."""


@dataclass
class Scored:
    """Per-sample results of one scored CropSet or streamed set (a streamed sample with no face is left
    out: `index` holds the positions of the scored samples in the set)."""

    score: np.ndarray  # calibrated P(attack)
    logits: np.ndarray  # raw model logits (before calibration)
    label: np.ndarray
    species: np.ndarray
    domain: np.ndarray
    data: str  # what these samples are, in words
    statistic: str | None = None  # uncertainty statistic name (edge_fas.uncertainty) or None
    uncertainty: np.ndarray | None = None  # its value per sample
    map_peaks: dict = field(default_factory=dict)  # map kind -> per-sample 99th percentile
    index: np.ndarray | None = None  # positions of these samples in the scored set

    def __len__(self) -> int:
        return int(self.label.shape[0])


def describe_crops(crops) -> str:
    """One line saying which data a CropSet holds (source, domains or sessions, split, seed, count)."""
    m = crops.meta or {}
    if m.get("data"):  # the data loaders' own description (edge_fas.data.build)
        return f"{m['data']}: {len(crops)} samples"
    if m.get("source") == "synthetic":
        return (f"synthetic rig, domains {','.join(m.get('domains', []))}, split {m.get('split')}, "
                f"rig seed {m.get('seed')}, {m.get('per_domain')} per domain at "
                f"{'x'.join(map(str, m.get('rig_size', [])))}, attack mix {m.get('attack_mix', 'domain')}: "
                f"{len(crops)} samples")
    if m.get("source") == "sessions":
        return f"recorded sessions {', '.join(map(str, m.get('sessions', [])))}: {len(crops)} samples"
    return f"{m.get('source', 'crop set')}: {len(crops)} samples"


class Scorer:
    """A model ready to score crops. kind: 'artifact' or 'checkpoint'."""

    def __init__(self, kind: str, source: str, name: str, preprocess: PreprocessParams,
                 calibration: ScoreCalibration, info: dict, infer):
        self.kind, self.source, self.name = kind, source, name
        self.preprocess = preprocess
        self.calibration = calibration
        self.info = info  # manifest (artifact) or checkpoint meta
        self._infer = infer  # batch dict -> ModelOutput with the calibrated score and the raw logits

    @property
    def threshold(self) -> float | None:
        """The recorded operating threshold (calibrated scale when the model is calibrated), if any."""
        if self.kind == "artifact":
            return float(self.info["threshold"]["value"])
        t = self.info.get("threshold")
        return None if t is None else float(t)

    @property
    def threshold_split(self) -> str:
        if self.kind == "artifact":
            return str(self.info["threshold"].get("split", "unknown"))
        return str(self.info.get("threshold_split", "unknown"))

    @property
    def operating_point(self) -> dict | None:
        return self.info.get("operating_point")

    @property
    def training(self) -> dict:
        t = self.info.get("training") or {}
        return t if isinstance(t, dict) else {"summary": str(t)}

    def infer(self, batch: dict) -> ModelOutput:
        return self._infer(batch)

    def score(self, crops, batch_size: int = 32, progress=None, workers: int = 0) -> Scored:
        """Score every crop of a CropSet in order, or every sample of a StreamDataset (decoded in
        `workers` processes; samples with no face are left out)."""
        n = len(crops)
        if n == 0:
            raise NothingToScore("nothing to score: the crop set is empty")
        size = self.preprocess.size
        streamed = hasattr(crops, "index")
        got = crops.params.size if streamed else crops.rgb.shape[-1]
        if got != size:
            raise ConfigError(f"crops are {got} px but {self.source} takes {size} px; crop with "
                              "the model's preprocessing (scorer.preprocess)")
        scores, logits, stats, peaks, stat_name, where, done = [], [], [], {}, None, [], 0
        for batch, positions in (_stream_batches(crops, batch_size, workers) if streamed else
                                 _crop_batches(crops, batch_size)):
            out = self._infer(batch)
            scores.append(np.asarray(out.score, np.float64).reshape(-1))
            logits.append(np.asarray(out.logits, np.float64).reshape(-1) if out.logits is not None
                          else _raw_logits_from(out.score, self.calibration))
            st = U.face_statistic(out)
            if st is not None:
                stat_name = st[0]
                stats.append(st[1])
            for k, v in U.map_peaks(out).items():
                peaks.setdefault(k, []).append(v)
            where.append(positions)
            done = int(positions[-1]) + 1
            if progress:
                progress(done, n)
        if not where:
            raise NothingToScore(f"nothing to score: none of the {n} samples gave a face crop")
        idx = np.concatenate(where)
        meta = crops.index if streamed else crops
        return Scored(score=np.concatenate(scores), logits=np.concatenate(logits), label=np.asarray(meta.label)[idx],
                      species=np.asarray(meta.species)[idx], domain=np.asarray(meta.domain)[idx],
                      data=describe_crops(meta), statistic=stat_name,
                      uncertainty=np.concatenate(stats) if stats else None,
                      map_peaks={k: np.concatenate(v) for k, v in peaks.items()}, index=idx)


def join_shares(shares: list, data: str) -> Scored:
    """One Scored from the shares of a set scored by `len(shares)` processes, share r holding samples
    r, r + world, r + 2 world, ... (None where a share had nothing to score), in the set's order as if one
    process had scored it. data: the whole set's description."""
    world = len(shares)
    got = [(r, s) for r, s in enumerate(shares) if s is not None]
    if not got:
        raise NothingToScore("nothing to score: no sample of the set gave a face crop")
    where = np.concatenate([r + world * np.asarray(s.index) for r, s in got])
    order = np.argsort(where, kind="stable")

    def joined(arrays):
        return np.concatenate(arrays)[order]

    first = got[0][1]
    return Scored(score=joined([s.score for _, s in got]), logits=joined([s.logits for _, s in got]),
                  label=joined([s.label for _, s in got]), species=joined([s.species for _, s in got]),
                  domain=joined([s.domain for _, s in got]), data=data, statistic=first.statistic,
                  uncertainty=(joined([s.uncertainty for _, s in got]) if first.uncertainty is not None else None),
                  map_peaks={k: joined([s.map_peaks[k] for _, s in got]) for k in first.map_peaks},
                  index=where[order])


def _crop_batches(crops, batch_size: int):
    """(batch of numpy arrays, positions) over a CropSet, in order."""
    n = len(crops)
    for i in range(0, n, batch_size):
        sl = slice(i, min(i + batch_size, n))
        batch = {k: np.asarray(getattr(crops, k)[sl], dtype=np.float32) for k in ("rgb", "depth", "ir")}
        batch["present"] = crops.present[sl].astype(np.float32)
        yield batch, np.arange(sl.start, sl.stop)


def _stream_batches(ds, batch_size: int, workers: int):
    """(batch of numpy arrays, positions) over a StreamDataset, in order, decoded in `workers` processes."""
    from edge_fas.data.stream import make_loader

    for b in make_loader(ds, batch_size, workers=workers, persistent=False):
        if b is None:  # no sample of this batch had a face
            continue
        batch = {k: b[k].numpy() for k in ("rgb", "depth", "ir")}
        batch["present"] = b["present"].numpy().astype(np.float32)
        yield batch, b["index"].numpy()


def _raw_logits_from(score, calibration: ScoreCalibration) -> np.ndarray:
    if not calibration.is_identity:
        raise ArtifactError("the model has no logits output, so its raw scores cannot be recovered after "
                            "calibration; re-export it (every edge-fas model exports logits)")
    return logit_of(score)


def model_scorer(model, preprocess: PreprocessParams, device="cpu", calibration: ScoreCalibration | None = None,
                 info: dict | None = None, source: str = "in-memory model") -> Scorer:
    """A Scorer for a PyTorch model (training's end, a loaded checkpoint), scoring like the torch runtime."""
    import torch

    from edge_fas.runtime.base import OUTPUT_ORDER, to_model_output

    cal = calibration or ScoreCalibration()
    model = model.eval()

    def infer(batch: dict) -> ModelOutput:
        with torch.inference_mode():
            out = model(*(torch.from_numpy(batch[k]).to(device) for k in ("rgb", "depth", "ir")),
                        torch.from_numpy(batch["present"]).to(device) > 0.5)
        mo = to_model_output({k: out[k].float().cpu().numpy() for k in OUTPUT_ORDER if out.get(k) is not None})
        mo.score = cal.calibrate(mo.score, mo.logits)
        return mo

    return Scorer("checkpoint", source, f"{getattr(model, 'name', '?')} ({getattr(model, 'preset', '?')})",
                  preprocess, cal, info or {}, infer)


def _checkpoint_scorer(path: Path, device: str) -> Scorer:
    from edge_fas.models import load_checkpoint

    model, info = load_checkpoint(path)
    model = model.eval().to(device)
    meta = info.get("meta", {}) if isinstance(info, dict) else {}
    try:
        cal = ScoreCalibration.from_dict(meta.get("calibration"))
    except ValueError as e:
        raise ArtifactError(f"checkpoint {path}: its score calibration is invalid ({e}); re-train or re-calibrate") from e
    params = PreprocessParams.from_dict(meta["preprocess"]) if meta.get("preprocess") else \
        PreprocessParams(size=int(model.input_size))
    return model_scorer(model, params, device, cal, meta, str(path))


def load_scorer(path, runtime: str = "onnxruntime", device: str = "cpu", threads: int = 0) -> Scorer:
    """A Scorer for an artifact folder / 'demo' (through load_runtime) or a checkpoint file (.pt)."""
    from edge_fas import artifact as art

    p = Path(str(path))
    if str(path) != "demo" and p.is_file():
        if p.suffix not in (".pt", ".pth"):
            raise ConfigError(f"{p} is a file but not a checkpoint (.pt); give a checkpoint from `edge-fas train` "
                              "or an artifact folder from `edge-fas export` (or 'demo')")
        return _checkpoint_scorer(p, "cpu" if device == "auto" else device)
    if str(path) != "demo" and not p.exists():
        raise ConfigError(f"model {path} does not exist; give a checkpoint (.pt), an artifact folder or 'demo'")
    from edge_fas.runtime import load_runtime

    a = art.load_artifact(path)
    rt = load_runtime(a, kind=runtime, device=device, threads=threads)
    return Scorer("artifact", str(a.folder) if str(path) != "demo" else "demo", f"{a.model_name} "
                  f"({a.manifest['model'].get('preset', '?')}) via {rt.kind} on {rt.device}", a.preprocess,
                  a.calibration, a.manifest, rt.infer)
