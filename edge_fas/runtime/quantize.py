"""Static int8 quantisation of an artifact's ONNX model: explicit Q/DQ that ONNX Runtime (CPU) and
TensorRT (10.x and 11.x, which has no implicit calibration) both run.

Symmetric int8 activations and per-channel int8 weights (TensorRT needs zero points of 0), Q/DQ only
at the inputs of Conv / ConvTranspose / Gemm / MatMul, and the score head (everything after the last
feature map) left in float: an operating threshold near 1 needs its decimals. Calibrated on
synthetic-rig crops (seed 0), then gated on held-out crops of another seed at the artifact's
operating point (precision.compare / judge): below the stated decision agreement the int8 model is
refused unless forced, and the figures go into the manifest.

Mixed precision (`edge-fas export --int8 --int8-mixed`, the way `polygraphy debug precision` or an accuracy-aware
tuner works): when the whole network in int8 misses the gate, each quantisable node is quantised alone on selection
crops of a seed nothing else renders (SELECTION_SEED), the nodes are ranked by the decisions they flip alone, and the
fewest of the most sensitive (FLOAT_STEPS) are kept in float that flip none of the selection crops' decisions
(SELECTION_MAX_FLIPS), and so agree on at least the gate's share. Choosing only to the gate's 99.5% left no margin:
300 crops allow one flip, and a model chosen to exactly that missed its held-out gate (g34e: 99.33%). The gate then
judges that model on its own crops, as it judges any int8 model."""

from __future__ import annotations

import functools

import numpy as np

from edge_fas import artifact as art
from edge_fas.errors import EdgeFasError

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
    from edge_fas.preprocess import crop_face
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
        crops.append(crop_face(frames, box, params))
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


SELECTION_SEED = 3  # calibration renders seed 0, the gates seed 1, bench_int8 --check seed 2
SELECTION_FRAME_SETS = 300
SELECTION_MAX_FLIPS = 0  # decisions the chosen model may still flip on the selection crops: a margin below the gate's
FLOAT_STEPS = (1, 2, 4, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 100, 120, 150, 200)


def node_sensitivity(artifact: art.Artifact, calib: dict, selection: tuple, work, quiet: bool = True,
                     ref=None) -> list[dict]:
    """Every quantisable node (score head aside) quantised alone, the rest in float, on the selection crops:
    [{node, flips, mean_change}] of its decisions against float32's, most flips first (then the larger mean
    |change| of the calibrated score). ref: float32's calibrated scores on the selection crops, when known."""
    import onnx

    from edge_fas.progress import Progress
    from edge_fas.runtime import precision as prec
    batch, labels = selection
    thr = prec.operating_threshold(artifact)
    if ref is None:
        ref = prec.calibrated_ort_scores(artifact, artifact.onnx_path, batch)
    probe = work / "probe.onnx"
    head = set(quantize_onnx(artifact.onnx_path, probe, calib))
    nodes = [n.name for n in onnx.load(str(artifact.onnx_path)).graph.node
             if n.op_type in QDQ_OPS and n.name and n.name not in head]
    bar = Progress("int8: each node's effect on the decisions", len(nodes), quiet=quiet)
    rows = []
    for name in nodes:
        bar.update()
        quantize_onnx(artifact.onnx_path, probe, calib, keep_float=[n for n in nodes if n != name])
        f = prec.compare(ref, prec.calibrated_ort_scores(artifact, probe, batch), thr, labels)
        rows.append({"node": name, "flips": int(f["flips"]), "mean_change": float(f["score_abs_diff_mean"])})
    probe.unlink(missing_ok=True)
    return sorted(rows, key=lambda r: (r["flips"], r["mean_change"]), reverse=True)


def choose_float_nodes(artifact: art.Artifact, calib: dict, selection: tuple | None = None,
                       min_agreement: float | None = None, work=None, quiet: bool = True,
                       max_flips: int = SELECTION_MAX_FLIPS) -> dict:
    """The fewest nodes, most sensitive first (node_sensitivity), to keep in float for int8 to flip at most
    `max_flips` of the selection crops' decisions and agree with float32's on at least `min_agreement` (the
    gate's), trying FLOAT_STEPS counts in turn. Returns {nodes, selection: figures}; raises EdgeFasError when
    even every node in float misses it."""
    import tempfile
    from pathlib import Path

    from edge_fas.runtime import precision as prec
    need = min_agreement or prec.MIN_AGREEMENT
    data = "given selection set" if selection is not None else \
        f"synthetic rig crops, seed {SELECTION_SEED} (rendered for this choice only)"
    if selection is None:
        selection = synthetic_crops(SELECTION_FRAME_SETS, artifact.preprocess, seed=SELECTION_SEED, quiet=quiet)
    batch, labels = selection
    with tempfile.TemporaryDirectory(prefix="int8-mixed-", dir=work) as tmp:
        tmp = Path(tmp)
        thr = prec.operating_threshold(artifact)
        ref = prec.calibrated_ort_scores(artifact, artifact.onnx_path, batch)
        ranked = node_sensitivity(artifact, calib, selection, tmp, quiet, ref=ref)
        tried = []
        for count in [c for c in FLOAT_STEPS if c < len(ranked)] + [len(ranked)]:
            keep = [r["node"] for r in ranked[:count]]
            quantize_onnx(artifact.onnx_path, tmp / "try.onnx", calib, keep_float=keep)
            f = prec.compare(ref, prec.calibrated_ort_scores(artifact, tmp / "try.onnx", batch), thr, labels)
            tried.append((count, f["flips"]))
            if f["decision_agreement"] >= need and f["flips"] <= max_flips:
                return {"nodes": keep, "selection": {
                    "data": data, "frame_sets": int(len(labels)), "decision_agreement": f["decision_agreement"],
                    "flips": int(f["flips"]), "max_flips": int(max_flips), "tried": [list(t) for t in tried],
                    "most_sensitive": ranked[:min(10, len(ranked))]}}
    raise EdgeFasError(f"int8 mixed precision: even with every one of the {len(ranked)} quantisable nodes in float the "
                       f"selection crops agree on less than {need:.1%} of decisions or flip more than {max_flips} "
                       f"({tried[-1][1]} flips); the "
                       "model's operating point is too close to its scores for int8: use fp32 or fp16")


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
            "rule": "nodes ranked by the decisions each flips when quantised alone; the fewest of the most sensitive "
                    f"(counts tried in turn) that flip at most {max_flips} of the selection crops' decisions and "
                    "agree on the gate's share of them"}
    manifest.setdefault("precision", {})
    manifest["precision"] = {**manifest["precision"], "int8": figures}
    files = [n for n in artifact.manifest["files"] if n != INT8_FILE] + [INT8_FILE]
    art.write_manifest(folder, manifest, files)
    return art.load_artifact(folder)
