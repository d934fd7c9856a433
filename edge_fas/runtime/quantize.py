"""Static int8 quantisation of an artifact's ONNX model for CPU-only kiosks (ONNX Runtime QDQ format).

Calibrated on synthetic-rig crops, and its effect measured on held-out synthetic crops of other rig
seeds: the accuracy at the artifact's threshold in float32 and int8, the decision agreement and the
score differences go into the manifest next to the int8 file, so a site can judge the trade."""

from __future__ import annotations

import functools

import numpy as np

from edge_fas import artifact as art
from edge_fas.errors import EdgeFasError

INT8_FILE = "model.int8.onnx"


@functools.lru_cache(maxsize=4)
def _rigs(seed: int):
    from edge_fas.sim import DOMAINS, Rig
    return [Rig(d, seed=seed, width=320, height=240) for d in DOMAINS]


def synthetic_crops(count: int, params, seed: int = 0, offset: int = 0):
    """(batch dict, labels) of `count` registered, cropped synthetic frame sets over all domains and species."""
    try:
        from edge_fas.calibration import register_to_color
    except ImportError as e:
        raise EdgeFasError("int8 calibration on synthetic crops needs edge_fas.calibration.register_to_color, "
                           "which this build lacks") from e
    from edge_fas.data.synthetic import detected_face_box
    from edge_fas.preprocess import crop_face
    from edge_fas.sim import SPECIES
    rigs = _rigs(seed)
    crops, labels = [], []
    for i in range(offset, offset + count):
        rig = rigs[i % len(rigs)]
        species = SPECIES[(i // len(rigs)) % len(SPECIES)]
        frames = register_to_color(rig.render(species, index=i + 1000 * seed))
        box = detected_face_box(frames.rgb, frames.truth.face_box) or frames.truth.face_box  # live framing
        crops.append(crop_face(frames, box, params))
        labels.append(int(frames.truth.label))
    batch = {k: np.stack([getattr(c, k) for c in crops]).astype(np.float32) for k in ("rgb", "depth", "ir", "present")}
    return batch, np.array(labels)


def _split(batch: dict, size: int):
    n = len(batch["rgb"])
    for i in range(0, n, size):
        yield {k: v[i:i + size] for k, v in batch.items()}


def quantize_onnx(src, dst, calib: dict, batch: int = 8) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(_split(calib, batch))

        def get_next(self):
            return next(self.it, None)

    from onnxruntime.quantization.shape_inference import quant_pre_process
    prepared = dst.with_suffix(".prep.onnx")
    quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)  # fold + infer shapes, as ORT advises
    try:
        quantize_static(str(prepared), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        prepared.unlink(missing_ok=True)


def _scores(path, batch: dict) -> np.ndarray:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(["score"], b)[0].reshape(-1) for b in _split(batch, 16)])


def add_int8(artifact: art.Artifact, calibration=None, held_out=None, calib_count: int = 64,
             eval_count: int = 128) -> art.Artifact:
    """Write model.int8.onnx into the artifact and record its measured accuracy change in the manifest.

    calibration: batch dict; held_out: (batch dict, labels). Default: synthetic-rig crops (seeds 0 and 1)."""
    params = artifact.preprocess
    calib = calibration if calibration is not None else synthetic_crops(calib_count, params, seed=0)[0]
    test, labels = held_out if held_out is not None else synthetic_crops(eval_count, params, seed=1)
    folder = artifact.folder
    quantize_onnx(artifact.onnx_path, folder / INT8_FILE, calib)
    cal = artifact.calibration  # the threshold is on the calibrated scale, as every runtime's scores are
    f32, i8 = cal.apply_scores(_scores(artifact.onnx_path, test)), cal.apply_scores(_scores(folder / INT8_FILE, test))
    thr = artifact.threshold
    acc = lambda s: float(np.mean((s >= thr).astype(int) == labels))  # noqa: E731
    diff = np.abs(f32 - i8)
    manifest = {k: v for k, v in artifact.manifest.items() if k not in ("files", "manifest_sha256")}
    manifest["int8"] = {
        "file": INT8_FILE, "format": "onnxruntime QDQ, per-channel int8 weights, uint8 activations",
        "calibration_frame_sets": int(len(calib["rgb"])),
        "accuracy_change": {
            "held_out_frame_sets": int(len(labels)),
            "data": "synthetic rig crops, held-out seed" if held_out is None else "given held-out set",
            "accuracy_float32": round(acc(f32), 4), "accuracy_int8": round(acc(i8), 4),
            "decision_agreement": round(float(np.mean((f32 >= thr) == (i8 >= thr))), 4),
            "score_abs_diff_mean": float(f"{diff.mean():.3g}"), "score_abs_diff_max": float(f"{diff.max():.3g}")},
    }
    files = [n for n in artifact.manifest["files"] if n != INT8_FILE] + [INT8_FILE]
    art.write_manifest(folder, manifest, files)
    return art.load_artifact(folder)
