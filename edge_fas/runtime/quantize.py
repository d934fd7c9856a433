"""Static int8 quantisation of an artifact's ONNX model: explicit Q/DQ that ONNX Runtime (CPU) and
TensorRT (10.x and 11.x, which has no implicit calibration) both run.

Symmetric int8 activations and per-channel int8 weights (TensorRT needs zero points of 0), Q/DQ only
at the inputs of Conv / ConvTranspose / Gemm / MatMul, and the score head (everything after the last
feature map) left in float: an operating threshold near 1 needs its decimals. Calibrated on
synthetic-rig crops (seed 0), then gated on held-out crops of another seed at the artifact's
operating point (precision.compare / judge): below the stated decision agreement the int8 model is
refused unless forced, and the figures go into the manifest.

Mixed precision (`edge-fas export --int8 --int8-mixed`): when the whole network in int8 misses the gate, the fewest
of the most decision-sensitive quantisable nodes are kept in float (mixed_precision.py says how they are chosen), and
the gate judges that model on its own crops, as it judges any int8 model."""

from __future__ import annotations

import functools

import numpy as np

from edge_fas import artifact as art
from edge_fas.errors import EdgeFasError
from edge_fas.runtime import mixed_precision
from edge_fas.runtime.mixed_precision import SELECTION_MAX_FLIPS, SELECTION_SEED  # noqa: F401 (their home before)

INT8_FILE = "model.int8.onnx"


@functools.lru_cache(maxsize=4)
def _rigs(seed: int):
    """The four named domains and one rig of the randomised family: its training ranges for the int8
    calibration (seed 0), its held-out ranges for every other seed (the precision gates). A model
    trained on the randomised family (configs/demo-rand.yaml) is then calibrated and gated on cameras like the ones it
    was made for, and every model on the named rig's look as well."""
    from edge_fas.sim import DOMAINS, make_rig
    family = "rand" if seed == 0 else "rand_heldout"
    return [make_rig(d, seed=seed, width=320, height=240) for d in (*DOMAINS, family)]


def synthetic_crops(count: int, params, seed: int = 0, offset: int = 0, quiet: bool = True):
    """(batch dict, labels) of `count` registered, cropped synthetic frame sets over all species, the named
    domains and the randomised family (see _rigs)."""
    try:
        from edge_fas.calibration import register_to_color
    except ImportError as e:
        raise EdgeFasError("int8 calibration on synthetic crops needs edge_fas.calibration.register_to_color, "
                           "which this build lacks") from e
    from edge_fas.data.synthetic import detected_face_box
    from edge_fas.preprocess import crop_face, framed_box
    from edge_fas.sim import SPECIES
    from edge_fas.progress import Progress
    rigs = _rigs(seed)
    crops, labels = [], []
    bar = Progress(f"rendering synthetic held-out crops (seed {seed})", count, quiet=quiet)
    for i in range(offset, offset + count):
        bar.update()
        rig = rigs[i % len(rigs)]
        species = SPECIES[(i // len(rigs)) % len(SPECIES)]
        frames = register_to_color(rig.render(species, index=i + 1000 * seed))
        box = detected_face_box(frames.rgb, frames.truth.face_box) or frames.truth.face_box  # live framing
        crops.append(crop_face(frames, framed_box(frames, box, params), params))
        labels.append(int(frames.truth.label))
    batch = {k: np.stack([getattr(c, k) for c in crops]).astype(np.float32) for k in ("rgb", "depth", "ir", "present")}
    return batch, np.array(labels)


def _split(batch: dict, size: int):
    n = len(next(iter(batch.values())))
    for i in range(0, n, size):
        yield {k: v[i:i + size] for k, v in batch.items()}


QDQ_OPS = ["Conv", "ConvTranspose", "Gemm", "MatMul"]
INT8_RECIPE = "qdq-symmetric-v1"


CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def quantize_onnx(src, dst, calib: dict, batch: int = 8, keep_float=(), method: str = "minmax") -> list[str]:
    """Write the Q/DQ int8 model; returns the score-head nodes kept in float.

    keep_float: more node names to leave in float; method: how activation ranges are calibrated (ONNX
    Runtime's MinMax, Percentile or Entropy). Export uses the defaults (INT8_RECIPE);
    benchmarks/bench_int8.py compares the others and finds the nodes the decisions are sensitive to."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    from edge_fas.runtime.precision import score_head_nodes

    if method not in CALIBRATION_METHODS:
        raise EdgeFasError(f"int8 calibration method {method!r} is unknown; use one of {CALIBRATION_METHODS}")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(_split(calib, batch))

        def get_next(self):
            return next(self.it, None)

    from onnxruntime.quantization.shape_inference import quant_pre_process
    prepared = dst.with_suffix(".prep.onnx")
    quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)  # fold + infer shapes, as ORT advises
    try:
        head = sorted(score_head_nodes(onnx.load(str(prepared))))
        calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                     "entropy": CalibrationMethod.Entropy}[method]
        quantize_static(str(prepared), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=calibrate,
                        op_types_to_quantize=QDQ_OPS, nodes_to_exclude=head + sorted(keep_float),
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    finally:
        prepared.unlink(missing_ok=True)
    return head


def int8_build(artifact: art.Artifact, calib: dict):
    """build(keep_float, dst) for mixed_precision: the int8 model with `keep_float` nodes left in float."""
    return lambda keep, dst: quantize_onnx(artifact.onnx_path, dst, calib, keep_float=keep)


def int8_candidates(artifact: art.Artifact, calib: dict, work) -> list[str]:
    """The nodes int8 quantises (QDQ_OPS), score head aside."""
    import onnx
    from pathlib import Path
    probe = Path(work) / "head-probe.onnx"
    head = set(quantize_onnx(artifact.onnx_path, probe, calib))
    probe.unlink(missing_ok=True)
    return [n.name for n in onnx.load(str(artifact.onnx_path)).graph.node
            if n.op_type in QDQ_OPS and n.name and n.name not in head]


def node_sensitivity(artifact: art.Artifact, calib: dict, selection: tuple, work, quiet: bool = True,
                     ref=None) -> list[dict]:
    """Every quantisable node (score head aside) quantised alone, the rest in float, on the selection crops
    (mixed_precision.rank_nodes): [{node, flips, mean_change}], most flips first."""
    return mixed_precision.rank_nodes(artifact, int8_candidates(artifact, calib, work), int8_build(artifact, calib),
                                      selection, work, "int8", quiet, ref=ref)


def choose_float_nodes(artifact: art.Artifact, calib: dict, selection: tuple | None = None,
                       min_agreement: float | None = None, work=None, quiet: bool = True,
                       max_flips: int = SELECTION_MAX_FLIPS, confirm: tuple | None = None) -> dict:
    """The fewest quantisable nodes to keep in float for int8 to flip at most `max_flips` of the selection crops'
    decisions, and of `confirm`'s (mixed_precision.choose_float_nodes). Returns {nodes, selection: figures}; raises
    EdgeFasError when even every node in float misses it."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="int8-nodes-", dir=work) as tmp:
        nodes = int8_candidates(artifact, calib, tmp)
    return mixed_precision.choose_float_nodes(artifact, nodes, int8_build(artifact, calib), "int8", selection,
                                              min_agreement, work, quiet, max_flips, confirm)


def _record_refused_int8(artifact: art.Artifact, figures: dict) -> None:
    """Keep a refused int8 gate's figures in the manifest (precision.int8, passed: false; no int8 file), as a
    failed fp16 gate is kept: the model card and benchmarks can then say it was measured and refused, and the
    runtimes say why there is no int8 model. An int8 model an earlier export listed is unlisted with it."""
    manifest = art.manifest_body(artifact.manifest, "int8")
    manifest["precision"] = {**(manifest.get("precision") or {}), "int8": {**figures, "written": False}}
    art.write_manifest(artifact.folder, manifest, [n for n in artifact.manifest["files"] if n != INT8_FILE])


def add_int8(artifact: art.Artifact, calibration=None, held_out=None, calib_count: int = 64,
             eval_count: int | None = None, force: bool = False, min_agreement: float | None = None,
             quiet: bool = True, mixed: bool = False, selection=None,
             max_flips: int = SELECTION_MAX_FLIPS) -> art.Artifact:
    """Write model.int8.onnx into the artifact after its precision gate passes (or is forced).

    calibration: batch dict; held_out: (batch dict, labels). Default: synthetic-rig crops (seeds 0 and 1).
    mixed: when the whole network in int8 misses the gate, keep the fewest decision-sensitive nodes in float
    (choose_float_nodes, on `selection` = (batch, labels), default SELECTION_FRAME_SETS crops of SELECTION_SEED,
    until at most `max_flips` of their decisions flip) and gate that model instead.
    Refused below the gate's decision agreement (PrecisionRefused; no int8 file, the refused figures kept in
    the manifest's precision.int8)."""
    from edge_fas.runtime import precision as prec
    params = artifact.preprocess
    calib = calibration if calibration is not None else synthetic_crops(calib_count, params, seed=0, quiet=quiet)[0]
    if held_out is None:  # the fp16 gate's frame sets when export measured them (rendered once)
        test, labels, _ = prec.held_out_inputs(artifact, eval_count or prec.GATE_FRAME_SETS, 1, quiet, keep=True)
        if labels is None:
            raise EdgeFasError("the int8 gate needs labelled synthetic-rig crops, which need edge_fas.calibration")
    else:
        test, labels = held_out
    folder = artifact.folder
    candidate = folder / f".{INT8_FILE}.candidate"
    try:
        need = min_agreement or prec.MIN_AGREEMENT
        head = quantize_onnx(artifact.onnx_path, candidate, calib)
        f32, i8 = prec.calibrated_ort_scores(artifact, artifact.onnx_path, test), \
            prec.calibrated_ort_scores(artifact, candidate, test)
        thr = prec.operating_threshold(artifact)
        figures = prec.compare(f32, i8, thr, labels)
        chosen = None
        if mixed and figures["decision_agreement"] < need:
            whole = figures
            try:
                chosen = choose_float_nodes(artifact, calib, selection, need, quiet=quiet, max_flips=max_flips)
            except EdgeFasError as e:  # no count of float nodes was enough: the whole network is judged (refused)
                figures["mixed_precision"] = str(e)
        if chosen:
            head = quantize_onnx(artifact.onnx_path, candidate, calib, keep_float=chosen["nodes"])
            i8 = prec.calibrated_ort_scores(artifact, candidate, test)
            figures = prec.compare(f32, i8, thr, labels)
            figures["whole_network_int8"] = {"decision_agreement": whole["decision_agreement"], "flips": whole["flips"]}
            figures["float_nodes"] = len(chosen["nodes"])
        figures["data"] = ("synthetic rig crops, held-out seed 1 (named domains and the randomised family's "
                           "held-out ranges)") if held_out is None else "given held-out set"
        try:
            figures = prec.judge(figures, "int8", min_agreement or prec.MIN_AGREEMENT, force)
        except prec.PrecisionRefused as refused:
            if chosen:  # what the choice saw, so a refusal can be read against it
                refused.figures["mixed_choice"] = chosen["selection"]
            _record_refused_int8(artifact, refused.figures)
            raise
        candidate.replace(folder / INT8_FILE)
    finally:
        candidate.unlink(missing_ok=True)
    acc = lambda s: float(np.mean((s >= thr).astype(int) == labels))  # noqa: E731
    manifest = art.manifest_body(artifact.manifest)
    manifest["int8"] = {
        "file": INT8_FILE, "recipe": INT8_RECIPE, "tensorrt": True,
        "format": "explicit Q/DQ: symmetric int8 activations, per-channel int8 weights, "
                  f"{'/'.join(QDQ_OPS)} quantised, score head ({len(head)} nodes) in float"
                  + (f", {len(chosen['nodes'])} more nodes in float (mixed precision)" if chosen else ""),
        "calibration_frame_sets": int(len(calib["rgb"])),
        "accuracy_change": {"held_out_frame_sets": int(len(labels)), "data": figures["data"],
                            "accuracy_float32": round(acc(f32), 4), "accuracy_int8": round(acc(i8), 4),
                            "decision_agreement": figures["decision_agreement"]},
    }
    if chosen:
        manifest["int8"]["mixed_precision"] = {
            "float_nodes": chosen["nodes"],
            "chosen_on": chosen["selection"],
            "rule": mixed_precision.rule(max_flips)}
    manifest.setdefault("precision", {})
    manifest["precision"] = {**manifest["precision"], "int8": figures}
    files = [n for n in artifact.manifest["files"] if n != INT8_FILE] + [INT8_FILE]
    art.write_manifest(folder, manifest, files)
    return art.load_artifact(folder)
