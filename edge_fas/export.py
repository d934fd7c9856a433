"""Export a trained model to an artifact folder (model.onnx + checkpoint + manifest.yaml) and check
that ONNX Runtime reproduces PyTorch on a few hundred frame sets before the artifact is written."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

import edge_fas
from edge_fas import artifact as art
from edge_fas.errors import ArtifactError, EdgeFasError
from edge_fas.preprocess import PreprocessParams
from edge_fas.runtime.base import OUTPUT_ORDER, check_batch
from edge_fas.runtime.mixed_precision import SELECTION_MAX_FLIPS
from edge_fas.runtime.precision import GATE_FRAME_SETS

OPSET = 17
SCORE_ATOL = 1e-4


def _plain(value):
    """Make a config value YAML-safe (tuples -> lists, odd objects -> str)."""
    return json.loads(json.dumps(value, default=str))


class _OnnxWrapper:
    """Fixed positional signature (rgb, depth, ir, present float 0/1) -> tuple of outputs in `names` order."""

    def __new__(cls, model, names):
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, rgb, depth, ir, present):
                out = self.model(rgb, depth, ir, present > 0.5)
                return tuple(out[n] for n in names)

        return Wrapped().eval()


def output_names_of(model, size: int) -> list[str]:
    """Which of the canonical outputs this model produces (one tiny forward pass)."""
    import torch
    b = random_batch(size, 2, np.random.default_rng(0))
    with torch.inference_mode():
        out = model(*(torch.from_numpy(b[k]) for k in ("rgb", "depth", "ir")), torch.from_numpy(b["present"]) > 0.5)
    if "score" not in out:
        raise EdgeFasError(f"model {getattr(model, 'name', '?')} returns {sorted(out)} without 'score'; cannot export")
    return [n for n in OUTPUT_ORDER if out.get(n) is not None]


def random_batch(size: int, n: int, rng: np.random.Generator, drop_modalities: bool = True) -> dict:
    """Inputs shaped like normalised crops (roughly unit variance), with some modalities missing."""
    present = np.ones((n, 3), np.float32)
    if drop_modalities and n > 1:
        present[1::4, 2] = 0  # IR missing on every 4th sample
        present[3::8, 1] = 0  # depth missing on some
    b = {"rgb": rng.standard_normal((n, 3, size, size), dtype=np.float32),
         "depth": rng.standard_normal((n, 1, size, size), dtype=np.float32),
         "ir": rng.standard_normal((n, 1, size, size), dtype=np.float32),
         "present": present}
    for i, m in enumerate(("rgb", "depth", "ir")):
        b[m] *= present[:, i, None, None, None]  # a missing modality is zeros, as crop_face gives
    return b


def parity_batches(size: int, count: int, batch: int, seed: int = 0, source: str = "auto",
                   params: PreprocessParams | None = None):
    """(description, iterator of batches) of `count` frame sets.

    params: the artifact's preprocessing (default: PreprocessParams(size)), so the synthetic crops are
    normalised the way the model sees them live.

    source "synthetic": registered, cropped synthetic-rig frame sets over all domains and species
    (what a kiosk feeds the network); "random": unit-variance noise crops with missing modalities
    (fast, and reaches input ranges the rig does not); "auto": synthetic when registration is
    available in this build, else random."""
    if source == "auto":
        try:
            from edge_fas.calibration import register_to_color  # noqa: F401
            source = "synthetic"
        except ImportError:
            source = "random"
    if source == "synthetic":
        from edge_fas.runtime.quantize import synthetic_crops
        params = params or PreprocessParams(size=size)

        def gen():
            done = 0
            while done < count:
                n = min(batch, count - done)
                yield synthetic_crops(n, params, seed=seed, offset=done)[0]
                done += n
        return "synthetic rig crops (all domains and species), registered and cropped", gen()
    if source != "random":
        raise EdgeFasError(f"parity source {source!r}: use auto, synthetic or random")
    rng = np.random.default_rng(seed)

    def gen_random():
        done = 0
        while done < count:
            n = min(batch, count - done)
            yield random_batch(size, n, rng)
            done += n
    return "random unit-variance crops with missing modalities", gen_random()


def torch_outputs(model, batch: dict, names) -> dict[str, np.ndarray]:
    import torch
    with torch.inference_mode():
        out = model(*(torch.from_numpy(batch[k]) for k in ("rgb", "depth", "ir")),
                    torch.from_numpy(batch["present"]) > 0.5)
    return {n: out[n].float().numpy() for n in names}


def check_parity(model, onnx_path: Path, size: int, names, count: int = 256, batch: int = 8,
                 atol: float = SCORE_ATOL, seed: int = 0, source: str = "auto", quiet: bool = True,
                 params: PreprocessParams | None = None) -> dict:
    """Run PyTorch and ONNX Runtime (CPU, float32) on the same inputs; raise if scores diverge by > atol."""
    import onnxruntime as ort

    from edge_fas.progress import Progress
    bar = Progress("export parity (PyTorch vs ONNX Runtime)", count, quiet=quiet)
    from edge_fas.runtime.ort import session_options
    sess = ort.InferenceSession(str(onnx_path), session_options(), providers=["CPUExecutionProvider"])
    worst = {n: 0.0 for n in names}
    seen = 0
    described, batches = parity_batches(size, count, batch, seed, source, params)
    for b in batches:
        b = check_batch(b, size)
        ref = torch_outputs(model, b, names)
        got = dict(zip(names, sess.run(list(names), b)))
        for n in names:
            if ref[n].shape != got[n].shape:
                raise ArtifactError(f"export parity: output {n} has shape {got[n].shape} in ONNX, {ref[n].shape} in "
                                    "PyTorch; the model has a shape that does not export (dynamic batch?)")
            d = np.abs(ref[n].astype(np.float64) - got[n]).reshape(len(ref[n]), -1).max(axis=1)
            worst[n] = max(worst[n], float(d.max()))
        if worst["score"] > atol:
            i = int(np.argmax(np.abs(ref["score"].reshape(-1) - got["score"].reshape(-1))))
            raise ArtifactError(
                f"export parity failed: ONNX Runtime score differs from PyTorch by {worst['score']:.2e} "
                f"(limit {atol:.0e}) at frame set {seen + i} (torch {float(ref['score'].reshape(-1)[i]):.6f}, "
                f"onnx {float(got['score'].reshape(-1)[i]):.6f}, present {b['present'][i].tolist()}); "
                "a layer exports differently: check the model for training-only or random ops in eval mode")
        seen += len(b["rgb"])
        bar.update(len(b["rgb"]))
    bar.close()
    return {"frame_sets": seen, "score_atol": atol, "max_abs_diff": {n: float(f"{v:.3g}") for n, v in worst.items()},
            "inputs": described, "seed": seed}


def gate_inputs(artifact: art.Artifact, count: int, source: str = "auto", seed: int = 1, quiet: bool = True):
    """(batch, labels or None, description): held-out inputs for the precision gates (seed 1; parity and
    int8 calibration use seed 0)."""
    from edge_fas.runtime import precision as prec
    if source == "random":
        return random_batch(artifact.input_size, count, np.random.default_rng(seed)), None, \
            f"random unit-variance crops, seed {seed} (no labels: agreement only)"
    return prec.held_out_inputs(artifact, count, seed, quiet=quiet, keep=True)


def measure_fp16(artifact: art.Artifact, inputs, force: bool = False, mixed: bool = False, selection=None,
                 max_flips: int = SELECTION_MAX_FLIPS, quiet: bool = True) -> dict:
    """The fp16 gate: the fp16 model TensorRT would build (precision.to_fp16), scored on the CPU through
    precision.emulate_fp16, against fp32, at the artifact's operating point. Never raises for a failed gate: fp32
    stays usable; the manifest says fp16 failed and runtimes then refuse fp16 unless forced.

    mixed: when the whole network in fp16 misses the gate, keep the fewest decision-sensitive nodes in float32
    (mixed_precision.choose_float_nodes on `selection`, default the selection seed's crops) and gate that model; the
    figures then carry the whole network's agreement and the chosen nodes (precision.fp16_float_nodes reads them)."""
    import tempfile

    from edge_fas.runtime import mixed_precision
    from edge_fas.runtime import precision as prec
    batch, labels, data = inputs
    thr = prec.operating_threshold(artifact)
    with tempfile.TemporaryDirectory() as tmp:
        f32 = prec.calibrated_ort_scores(artifact, artifact.onnx_path, batch)
        f16 = prec.fp16_emulation_onnx(artifact.onnx_path, Path(tmp) / "model.fp16-emulated.onnx")
        figures = prec.compare(f32, prec.calibrated_ort_scores(artifact, f16, batch), thr, labels)
        chosen = None
        if mixed and figures["decision_agreement"] < prec.MIN_AGREEMENT:
            try:
                chosen = prec.choose_fp16_float_nodes(artifact, selection, quiet=quiet, max_flips=max_flips)
            except EdgeFasError as e:  # no count of float nodes was enough: the whole network is judged
                figures["mixed_precision"] = str(e)
        if chosen:
            whole = figures
            prec.fp16_emulation_onnx(artifact.onnx_path, f16, chosen["nodes"])
            figures = prec.compare(f32, prec.calibrated_ort_scores(artifact, f16, batch), thr, labels)
            figures["whole_network_fp16"] = {"decision_agreement": whole["decision_agreement"], "flips": whole["flips"]}
            figures["float_nodes"] = len(chosen["nodes"])
            figures["mixed_precision"] = {"float_nodes": chosen["nodes"], "chosen_on": chosen["selection"],
                                          "rule": mixed_precision.rule(chosen["selection"]["max_flips"])}
        # what PyTorch half and ONNX Runtime's TensorRT provider run: every layer in float16, the score head included
        prec.fp16_emulation_onnx(artifact.onnx_path, f16, every_layer=True)
        every = prec.compare(f32, prec.calibrated_ort_scores(artifact, f16, batch), thr, labels)
        figures["every_layer"] = {k: every[k] for k in ("decision_agreement", "flips", "agreement_low95", "non_finite_scores",
                                                        "score_abs_diff_mean", "score_abs_diff_max") if k in every}
        figures["every_layer"]["passed"] = bool(every["decision_agreement"] >= prec.MIN_AGREEMENT)
    figures.update(data=data, recipe=prec.FP16_RECIPE,
                   measured_with="ONNX Runtime CPU on precision.emulate_fp16 of the fp16 ONNX model (every float16 "
                                 "tensor rounded through float16, float32 arithmetic inside each op); the TensorRT "
                                 "engine is gated again when built")
    try:
        return prec.judge(figures, "fp16", force=force)
    except prec.PrecisionRefused as e:
        return {**e.figures, "passed": False}


def export_onnx(model, path: Path, size: int, names, opset: int = OPSET) -> None:
    import torch
    wrapped = _OnnxWrapper(model, names)
    b = random_batch(size, 2, np.random.default_rng(1))
    args = tuple(torch.from_numpy(b[k]) for k in art.INPUT_NAMES)
    dyn = {k: {0: "batch"} for k in list(art.INPUT_NAMES) + list(names)}
    import warnings
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(wrapped, args, str(path), input_names=list(art.INPUT_NAMES), output_names=list(names),
                          dynamic_axes=dyn, opset_version=opset, dynamo=False, do_constant_folding=True)


def _prepare_out(out: Path, overwrite: bool) -> None:
    """An empty artifact folder at `out`: refused when it holds something, unless `overwrite` (then an earlier
    artifact's files are removed; nothing else is touched)."""
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise EdgeFasError(f"{out} exists and is not empty; pass --force to replace it")
        for name in [art.MANIFEST, art.ONNX, art.CHECKPOINT, "model.int8.onnx"]:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def export_model(model, out: str | Path, *, checkpoint: str | Path | None = None, threshold: float = 0.5,
                 threshold_split: str = "unset", training: dict | None = None, parity_count: int = 256,
                 parity_batch: int = 8, parity_source: str = "auto", atol: float = SCORE_ATOL,
                 preprocess: PreprocessParams | None = None, overwrite: bool = False, gate_count: int = GATE_FRAME_SETS,
                 force_precision: bool = False, quiet: bool = True, decisions: dict | None = None,
                 fp16_mixed: bool = False) -> art.Artifact:
    """Write the artifact for a torch `model` (helper A's interface: name, preset, input_size, config,
    forward(rgb, depth, ir, present) -> dict) into folder `out`, after the parity check passes, with the
    fp16 precision gate measured on `gate_count` held-out frame sets (0: not measured); fp16_mixed: keep the
    decision-sensitive nodes in float32 when the whole network in fp16 misses that gate (measure_fp16).

    decisions: manifest sections from edge_fas.operating_point (calibration, operating_point, threshold,
    abstention, maps); its `threshold` replaces threshold/threshold_split."""
    out = Path(out)
    _prepare_out(out, overwrite)
    model = model.eval().float().cpu()
    size = int(getattr(model, "input_size", 0) or (preprocess.size if preprocess else 0))
    if not size:
        raise EdgeFasError("the model has no input_size; give preprocess=PreprocessParams(size=...)")
    if preprocess is not None and getattr(model, "input_size", None) and preprocess.size != size:
        raise EdgeFasError(f"preprocessing size {preprocess.size} differs from the model's input_size {size}; "
                           "the checkpoint's metadata and its model disagree")
    params = preprocess or PreprocessParams()
    params = PreprocessParams.from_dict({**params.to_dict(), "size": size})
    names = output_names_of(model, size)
    t0 = time.perf_counter()
    export_onnx(model, out / art.ONNX, size, names)
    parity = check_parity(model, out / art.ONNX, size, names, count=parity_count, batch=parity_batch, atol=atol,
                          source=parity_source, quiet=quiet, params=params)
    parity["seconds"] = round(time.perf_counter() - t0, 1)
    files = [art.ONNX]
    if checkpoint is not None:
        shutil.copyfile(checkpoint, out / art.CHECKPOINT)
        files.append(art.CHECKPOINT)
    import torch
    manifest = {
        "format": art.FORMAT,
        "model": {"name": str(getattr(model, "name", type(model).__name__)), "preset": getattr(model, "preset", None),
                  "config": _plain(getattr(model, "config", {})),
                  "parameters": int(sum(p.numel() for p in model.parameters()))},
        "inputs": {"rgb": ["batch", 3, size, size], "depth": ["batch", 1, size, size], "ir": ["batch", 1, size, size],
                   "present": ["batch", 3], "dtype": "float32", "present_meaning": "1 = modality present (rgb, depth, ir)"},
        "outputs": names,
        "preprocess": params.to_dict(),
        "threshold": {"value": float(threshold), "split": str(threshold_split)},
        "training": _plain(training or {"summary": "unknown (the checkpoint carried no training summary)"}),
        "export": {"edge_fas": edge_fas.__version__, "torch": str(torch.__version__), "opset": OPSET,
                   "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "parity": parity},
    }
    manifest.update(_plain(decisions or {}))  # calibration and operating point (edge_fas.operating_point)
    art.write_manifest(out, manifest, files)
    artifact = art.load_artifact(out)
    if gate_count:
        artifact = gate_fp16(artifact, gate_count, parity_source, force_precision, fp16_mixed, quiet)
    return artifact


def gate_fp16(artifact: art.Artifact, gate_count: int = GATE_FRAME_SETS, source: str = "auto", force: bool = False,
              mixed: bool = False, quiet: bool = True, selection=None) -> art.Artifact:
    """Measure the artifact's fp16 gate (measure_fp16) on `gate_count` held-out frame sets and record it in the
    manifest's precision.fp16, replacing what was there; the other precisions' figures are kept."""
    fp16 = measure_fp16(artifact, gate_inputs(artifact, gate_count, source, quiet=quiet), force, mixed=mixed,
                        selection=selection, quiet=quiet)
    manifest = art.manifest_body(artifact.manifest)
    manifest["precision"] = {**(manifest.get("precision") or {}), "min_agreement": fp16["min_agreement"], "fp16": fp16}
    art.write_manifest(artifact.folder, manifest, list(artifact.manifest["files"]))
    return art.load_artifact(artifact.folder)


def export_checkpoint(checkpoint: str | Path, out: str | Path, *, threshold: float | None = None,
                      include_checkpoint: bool = True, **kw) -> art.Artifact:
    """Export a checkpoint saved by edge_fas.models.save_checkpoint (threshold/split/training from its meta)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise EdgeFasError(f"checkpoint {checkpoint} does not exist; train one with `edge-fas train`")
    from edge_fas.models import load_checkpoint
    model, info = load_checkpoint(checkpoint)
    info = info or {}
    meta = info.get("meta", info)
    thr = threshold if threshold is not None else meta.get("threshold")
    split = meta.get("threshold_split") or meta.get("split")
    if thr is None:
        thr, split = 0.5, "none: the checkpoint carried no operating threshold, 0.5 used; set --threshold"
    elif threshold is not None:
        split = "given on the export command line"
    training = meta.get("training") or meta.get("data")
    if isinstance(training, str):
        training = {"summary": training}
    if isinstance(training, dict) and "summary" not in training and training.get("source"):
        only = " only" if training["source"] == "synthetic" else ""
        training = {"summary": f"trained on {training['source']} data{only}: "
                               f"{', '.join(training.get('domains', [])) or 'domains not recorded'}, "
                               f"{training.get('samples', '?')} samples", **training}
    if meta.get("validation"):
        training = {**(training or {}), "validation": meta["validation"]}
    if "preprocess" in meta and "preprocess" not in kw:  # the crop/normalisation the model was trained with
        kw["preprocess"] = PreprocessParams.from_dict(meta["preprocess"])
    from edge_fas.operating_point import decision_sections
    decisions = decision_sections(meta)
    if threshold is not None:  # a hand-set threshold is not the recorded operating point: keep the calibration only
        decisions = {k: v for k, v in decisions.items() if k not in ("operating_point", "threshold")}
    kw.setdefault("decisions", decisions)
    return export_model(model, out, checkpoint=checkpoint if include_checkpoint else None, threshold=float(thr),
                        threshold_split=str(split), training=training, **kw)


def copy_artifact(source: str | Path, out: str | Path, overwrite: bool = False,
                  include_checkpoint: bool = True) -> art.Artifact:
    """A verified copy of the artifact at `source` (or 'demo') in `out`, without its int8 model (the caller adds a
    new one): `edge-fas export ARTIFACT --out NEW --int8` for a model whose checkpoint is not at hand, as the
    bundled demo's is not. model.onnx and the rest are copied byte for byte; the manifest says where from."""
    src = art.load_artifact(source)  # verified before anything is copied
    out = Path(out)
    if out.resolve() == src.folder.resolve():
        raise EdgeFasError(f"--out {out} is the artifact itself; write the copy to a new folder")
    _prepare_out(out, overwrite)
    files = [name for name in src.manifest["files"]
             if name != "model.int8.onnx" and (include_checkpoint or name != art.CHECKPOINT)]
    for name in files:
        shutil.copyfile(src.folder / name, out / name)
    manifest = art.manifest_body(src.manifest, "int8")
    if isinstance(manifest.get("precision"), dict):
        manifest["precision"] = {k: v for k, v in manifest["precision"].items() if k != "int8"}
    manifest["export"] = {**manifest["export"], "copied_from": {
        "artifact": str(source), "manifest_sha256": src.manifest["manifest_sha256"],  # as given: no local path for "demo"
        "copied": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
    art.write_manifest(out, manifest, files)
    return art.load_artifact(out)


def build_and_export(name: str, preset: str, out: str | Path, parity_count: int = 64, **overrides):
    """Build an untrained `name` model (speed benchmarks, tests), save its checkpoint, export it.

    Returns (artifact, model). The artifact's manifest says it is untrained."""
    from edge_fas.models import build
    out = Path(out)
    model = build(name, preset=preset, **overrides).eval()
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out.parent / f".{out.name}-untrained.pt"
    try:
        from edge_fas.models import save_checkpoint
        save_checkpoint(ckpt, model, note="untrained, for speed benchmarks and tests")
    except ImportError:  # checkpoints not available in this build: ONNX only, torch runs the in-memory model
        ckpt = None
    try:
        artifact = export_model(model, out, checkpoint=ckpt, threshold=0.5, threshold_split="none: untrained",
                                training={"summary": "untrained (random weights): for speed measurement only"},
                                parity_count=parity_count, overwrite=True, gate_count=0)
    finally:
        if ckpt is not None:
            ckpt.unlink(missing_ok=True)
    return artifact, model
