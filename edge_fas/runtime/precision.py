"""Reduced precision you can check: fp16 and int8 models, and the gate that compares them with fp32.

A lower precision is only used when it makes the same decisions as float32 at the artifact's
operating point. `compare` measures that on held-out inputs (decision agreement, flips, and the
change in APCER / BPCER when labels are known); `judge` refuses a precision whose agreement is
below MIN_AGREEMENT unless forced. The figures go into the artifact manifest (export) and into the
engine record (engine build), so a site can see what it runs.

fp16 is produced the way TensorRT 11 wants it (strongly typed networks: the ONNX file carries the
types): `to_fp16` rewrites a float32 ONNX model so every float tensor is float16 except graph inputs
and outputs (kept float32, with Casts), the score head (everything between the last feature map and
the score: a threshold near 1 needs its decimals) and a few ops that overflow or lose too much in
half precision. TensorRT builds that file; the gate here scores it on the CPU through `emulate_fp16`
(float32 arithmetic inside each op, every float16 tensor rounded through float16, which is what
TensorRT's fp16 kernels do with their float32 accumulators: ONNX Runtime run on the fp16 file itself
skips most of that rounding), so the gate measures the model the engine is built from. The engine
itself is measured again on the GPU when it is built.

Mixed fp16 (`edge-fas export --fp16-mixed`): when the whole network in fp16 misses the gate, the
fewest decision-sensitive nodes are kept in float32 as well (mixed_precision.py chooses them,
`mixed_fp16` writes the model); the manifest's precision.fp16 lists them, and the native TensorRT
runtime builds that model. PyTorch half and ONNX Runtime's TensorRT provider cast every layer to
float16, score head included: export scores that model too (precision.fp16.every_layer), and
`check_allowed` judges those runtimes by it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edge_fas.errors import EdgeFasError
from edge_fas.runtime import mixed_precision

MIN_AGREEMENT = 0.995
# The fewest held-out frame sets that can show MIN_AGREEMENT: with no flip, the one-sided 95% lower bound on
# agreement is 0.05 ** (1 / n), which reaches 99.5% at n = 598. The gate passes on the measured agreement; its
# figures carry that bound too, so a gate on fewer frame sets says what it could not show.
GATE_FRAME_SETS = 600
PRECISIONS = ("fp32", "fp16", "int8")
FP16_RECIPE = "fp16-v1"  # bump when to_fp16 changes: engine keys include it
# ops kept in float32 inside an fp16 model: exponentials and power sums overflow fp16 (max 65504)
KEEP_FP32_OPS = frozenset({"Exp", "Log", "Pow", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2",
                           "ReduceLogSum", "ReduceLogSumExp", "Softplus"})
# ops whose outputs are values of their inputs (or their negation): in float16 they round nothing of their own, so
# mixed fp16 does not rank them; they follow their inputs' precision instead (mixed_fp16)
EXACT_OPS = frozenset({"Relu", "MaxPool", "Concat", "Reshape", "Flatten", "Slice", "Gather", "Unsqueeze", "Squeeze",
                       "Transpose", "Identity", "Split", "Expand", "Tile", "Neg", "Max", "Min"})
# inputs that ONNX fixes to float32 whatever the data type (Resize scales, Upsample scales)
FIXED_FLOAT_INPUTS = {"Resize": {1, 2}, "Upsample": {1}}


def operating_threshold(artifact) -> float:
    """The threshold decisions are judged at: the manifest's operating point (issue 16) or its threshold."""
    op = artifact.manifest.get("operating_point")
    if isinstance(op, dict) and op.get("threshold") is not None:
        return float(op["threshold"])
    return float(artifact.threshold)


# ---------------------------------------------------------------------------------------------
# the gate

def _error_rates(scores: np.ndarray, labels: np.ndarray, thr: float) -> dict:
    attack = scores >= thr
    out = {}
    if (labels == 1).any():
        out["apcer"] = float(np.mean(~attack[labels == 1]))  # attacks accepted as bona fide
    if (labels == 0).any():
        out["bpcer"] = float(np.mean(attack[labels == 0]))  # bona fide rejected
    return out


def compare(ref: np.ndarray, cand: np.ndarray, threshold: float, labels: np.ndarray | None = None) -> dict:
    """Decision agreement of `cand` scores with float32 `ref` scores at `threshold` (attack if >=)."""
    ref, cand = np.asarray(ref, np.float64).reshape(-1), np.asarray(cand, np.float64).reshape(-1)
    if ref.shape != cand.shape or not len(ref):
        raise EdgeFasError(f"precision gate: {len(ref)} reference and {len(cand)} candidate scores; need equal, non-zero")
    if not np.isfinite(cand).all():
        bad = int((~np.isfinite(cand)).sum())
        return {"frame_sets": len(ref), "threshold": float(threshold), "decision_agreement": 0.0,
                "flips": len(ref), "agreement_low95": 0.0, "non_finite_scores": bad}
    flips = (ref >= threshold) != (cand >= threshold)
    diff = np.abs(ref - cand)
    out = {"frame_sets": int(len(ref)), "threshold": float(threshold),
           "decision_agreement": round(float(1 - flips.mean()), 5), "flips": int(flips.sum()),
           "agreement_low95": agreement_lower_bound(int(flips.sum()), len(ref)),
           "score_abs_diff_mean": float(f"{diff.mean():.3g}"), "score_abs_diff_max": float(f"{diff.max():.3g}")}
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        r, c = _error_rates(ref, labels, threshold), _error_rates(cand, labels, threshold)
        for k in r:
            out[f"{k}_fp32"] = round(r[k], 5)
            out[f"{k}_change"] = round(c[k] - r[k], 5)
    return out


def agreement_lower_bound(flips: int, frame_sets: int) -> float:
    """The 95% lower confidence bound on decision agreement (exact binomial: one-sided at no flip, the
    Clopper-Pearson interval's lower end otherwise), floored to 5 decimals so it never overstates."""
    from edge_fas.metrics import binomial_interval
    return math.floor((1.0 - binomial_interval(flips, frame_sets)[1]) * 1e5) / 1e5


def bound_note(figures: dict) -> str:
    """What the gate's frame-set count let it show, for the lines export and the runtimes print."""
    low, need = figures.get("agreement_low95"), figures.get("min_agreement", MIN_AGREEMENT)
    if low is None:  # figures recorded before the bound was
        return "95% lower bound not recorded"
    if low >= need:
        return f"95% lower bound {low:.2%}"
    short = "" if figures["decision_agreement"] < need else \
        f": {figures['frame_sets']} frame sets are too few to show {need:.1%} ({GATE_FRAME_SETS} with no flip can)"
    return f"95% lower bound {low:.2%}{short}"


def judge(figures: dict, precision: str, min_agreement: float = MIN_AGREEMENT, force: bool = False) -> dict:
    """Add the verdict to `figures`; raise PrecisionRefused below `min_agreement` unless forced.

    The verdict is on the measured agreement. `shown` says whether the 95% lower bound reaches `min_agreement`
    as well, which takes about GATE_FRAME_SETS frame sets."""
    passed = figures["decision_agreement"] >= min_agreement
    figures = {**figures, "min_agreement": min_agreement, "passed": bool(passed),
               "shown": bool(figures.get("agreement_low95", 0.0) >= min_agreement)}
    if not passed:
        if not force:
            raise PrecisionRefused(precision, figures)
        figures["forced"] = True
    return figures


class PrecisionRefused(EdgeFasError):
    def __init__(self, precision: str, figures: dict, why: str | None = None):
        self.precision, self.figures = precision, figures
        if why:
            super().__init__(why)
            return
        extra = "".join(f", {k.split('_')[0].upper()} change {figures[k]:+.3f}" for k in ("apcer_change", "bpcer_change")
                        if k in figures)
        super().__init__(
            f"{precision} refused: it agrees with float32 on {figures['decision_agreement']:.2%} of decisions "
            f"({figures['flips']} of {figures['frame_sets']} flipped at threshold {figures['threshold']:.4f}{extra}); "
            f"the gate needs {figures['min_agreement']:.1%}. Use fp32, recalibrate the model so its operating point "
            "is not on a cliff, or accept the loss explicitly with --force-precision")


def recorded_gate(artifact, precision: str) -> dict | None:
    """The gate figures the artifact's manifest records for `precision` (None: never measured)."""
    rec = (artifact.manifest.get("precision") or {}).get(precision)
    if rec is None and precision == "int8" and isinstance(artifact.manifest.get("int8"), dict):
        old = artifact.manifest["int8"].get("accuracy_change") or {}
        if "decision_agreement" in old:  # artifacts exported before the gate existed
            agree = float(old["decision_agreement"])
            return {"decision_agreement": agree, "passed": agree >= MIN_AGREEMENT, "legacy": True,
                    "frame_sets": old.get("held_out_frame_sets"), "min_agreement": MIN_AGREEMENT}
    return rec


def no_int8_file(artifact) -> str:
    """Why the artifact has no int8 model: never exported with --int8, or exported and refused by its gate."""
    rec = (artifact.manifest.get("precision") or {}).get("int8") or {}
    if rec.get("written") is False:
        return (f"artifact {artifact.folder} has no int8 model: `edge-fas export --int8` measured one and its gate "
                f"refused it ({float(rec['decision_agreement']):.2%} decision agreement with fp32, needs "
                f"{float(rec['min_agreement']):.1%}); run fp32 or fp16, or re-export with --int8 --force-precision "
                "to accept the loss")
    return f"artifact {artifact.folder} has no int8 model; export it with `edge-fas export --int8`"


def check_allowed(artifact, precision: str, force: bool = False, runs_gated_model: bool = False) -> str:
    """'' when the artifact's gate lets `precision` run, else raise PrecisionRefused (force: say why, go on).

    runs_gated_model: the runtime builds the artifact's own fp16 model (artifact_fp16_onnx: score head and any
    `--fp16-mixed` nodes in float32), as the native TensorRT runtime does. One that casts every layer to float16
    (PyTorch half, ONNX Runtime's TensorRT provider) is judged by the gate's `every_layer` figures instead, which
    export measures on the same frame sets; an artifact from before them is judged by the gate itself, unless its
    gate passed only with float nodes (then refused)."""
    if precision == "fp32":
        return ""
    rec = recorded_gate(artifact, precision)
    if rec is None:
        return f"{precision} not measured at export (gated when the engine is built)"
    agree = float(rec.get("decision_agreement", 0.0))
    ok = rec.get("passed", agree >= MIN_AGREEMENT) and agree >= rec.get("min_agreement", MIN_AGREEMENT)
    kept = fp16_float_nodes(artifact) if precision == "fp16" else []
    every = rec.get("every_layer") if precision == "fp16" else None
    if not runs_gated_model and (ok or rec.get("forced")) and (kept or every is not None):
        # this runtime casts the whole network to float16, score head included: judged by what that model scored
        agree_all = float((every or {}).get("decision_agreement", 0.0))
        if every is not None and every.get("passed"):
            return (f"fp16 gate, every layer in float16 as this runtime runs it: {agree_all:.2%} decision agreement "
                    f"with fp32 ({bound_note({**every, 'frame_sets': rec.get('frame_sets'), 'min_agreement': MIN_AGREEMENT})})")
        measured = f"{agree_all:.2%} agreement at export" if every is not None else "not measured at export"
        why = (f"fp16 refused for this runtime: it puts every layer in float16, the score head included ({measured}; "
               f"the gate needs {MIN_AGREEMENT:.1%})" + (f", where the gate passed only with {len(kept)} nodes kept in "
                                                        "float32 (export --fp16-mixed)" if kept else "")
               + "; use the TensorRT runtime (runtime tensorrt, which builds the gated model), fp32, or accept the "
               "loss with force_precision")
        if force:
            return f"fp16 forced with every layer in float16 ({measured})"
        raise PrecisionRefused("fp16", {**rec, "decision_agreement": agree_all}, why)
    if ok or rec.get("forced"):
        return (f"{precision} gate: {agree:.2%} decision agreement with fp32 ({bound_note(rec)})"
                + (f", {len(kept)} nodes in float32" if kept else "") + (" (forced at export)" if not ok else ""))
    figures = {"decision_agreement": agree, "flips": rec.get("flips", "?"), "frame_sets": rec.get("frame_sets", "?"),
               "threshold": rec.get("threshold", operating_threshold(artifact)),
               "min_agreement": rec.get("min_agreement", MIN_AGREEMENT)}
    if force:
        return f"{precision} forced although its gate failed ({agree:.2%} agreement)"
    if rec.get("legacy"):
        raise EdgeFasError(f"{precision} refused: the artifact's {precision} model agrees with float32 on only "
                           f"{agree:.2%} of held-out decisions (recorded at export; the gate needs "
                           f"{MIN_AGREEMENT:.1%}); use fp32, re-export with `edge-fas export --int8`, or pass "
                           "force_precision to accept it")
    raise PrecisionRefused(precision, {**figures, "flips": figures["flips"] if isinstance(figures["flips"], int) else 0,
                                       "frame_sets": figures["frame_sets"] if isinstance(figures["frame_sets"], int) else 0})


_kept_inputs: dict = {}  # at most one entry: see held_out_inputs(keep=True)


def held_out_inputs(artifact, count: int, seed: int, quiet: bool = True, keep: bool = False):
    """(batch, labels or None, description) to gate on: synthetic-rig crops of a seed never used for
    calibration (seed 0) when registration is available, else random crops (agreement only).

    keep: hold the result (read-only) until inputs of another artifact preprocessing, count or seed are asked
    for, so export's fp16 and int8 gates judge the same frame sets rendered once (600 renders take about two
    minutes on two cores). A running service asks without it and keeps nothing."""
    key = (repr(artifact.preprocess), int(artifact.input_size), int(count), int(seed))
    if key in _kept_inputs:
        return _kept_inputs[key]
    try:
        from edge_fas.runtime.quantize import synthetic_crops
        batch, labels = synthetic_crops(count, artifact.preprocess, seed=seed, quiet=quiet)
        found = batch, labels, (f"synthetic rig crops, seed {seed}: the named domains and the randomised family's "
                                "held-out ranges (held out: int8 calibration uses seed 0 and the training ranges)")
    except EdgeFasError:
        from edge_fas.export import random_batch
        found = (random_batch(artifact.input_size, count, np.random.default_rng(seed)), None,
                 f"random unit-variance crops, seed {seed} (no labels: agreement only)")
    if keep:
        for array in found[0].values():
            array.flags.writeable = False  # shared between the gates: nobody may change it
        _kept_inputs.clear()
        _kept_inputs[key] = found
    return found


# ---------------------------------------------------------------------------------------------
# the models

def _onnx():
    try:
        import onnx
    except ImportError as e:
        raise EdgeFasError("reduced-precision models need the onnx package: pip install 'edge-fas[tensorrt]' "
                           "(or onnx>=1.15)") from e
    return onnx


def _types(model) -> dict[str, int]:
    onnx = _onnx()
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    out = {t.name: t.data_type for t in g.initializer}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        out[vi.name] = vi.type.tensor_type.elem_type
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    out[n.output[0]] = a.t.data_type
    return out


def _ranks(model) -> dict[str, int]:
    onnx = _onnx()
    g = onnx.shape_inference.infer_shapes(model).graph
    out = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            out[vi.name] = len(t.shape.dim)
    return out


def score_head_nodes(model, outputs=("score", "logits")) -> set[str]:
    """Names of the nodes between the last feature map (rank >= 3) and the score/logits outputs."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    ranks = _ranks(model)

    def cone(tensors) -> set[str]:
        seen, stack = set(), list(tensors)
        while stack:
            n = producer.get(stack.pop())
            if n is not None and n.name not in seen:
                seen.add(n.name)
                stack.extend(n.input)
        return seen

    head = cone([o for o in outputs if o in producer])
    feature_maps = [o for n in g.node if n.name in head for o in n.output if ranks.get(o, 0) >= 3]
    return head - cone(feature_maps)


def _with_nodes(model, nodes: list):
    """`model` with its graph's nodes replaced by `nodes`, shapes inferred again and checked."""
    onnx = _onnx()
    g = model.graph
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    return model


def _ensure_names(model) -> None:
    for i, n in enumerate(model.graph.node):
        if not n.name:
            n.name = f"edge_fas_node_{i}"


def _half_nodes(model, types: dict, keep_fp32: set[str] | None = None) -> set[str]:
    """Names of the nodes an fp16 model computes in float16: every node with a float input or output except the
    KEEP_FP32_OPS and `keep_fp32` (default: the score head)."""
    from onnx import TensorProto
    keep = set(keep_fp32 if keep_fp32 is not None else score_head_nodes(model))
    is_float = lambda t: types.get(t) in (TensorProto.FLOAT, TensorProto.FLOAT16)  # noqa: E731
    return {n.name for n in model.graph.node if n.op_type not in KEEP_FP32_OPS and n.name not in keep
            and any(is_float(t) for t in list(n.input) + list(n.output) if t)}


def fp16_candidates(model) -> list[str]:
    """What mixed fp16 ranks (mixed_precision.rank_nodes): the nodes to_fp16 puts in float16 that round (EXACT_OPS
    aside), in graph order. `model` must have its nodes named (_ensure_names), as to_fp16 names them."""
    half = _half_nodes(model, _types(model))
    return [n.name for n in model.graph.node if n.name in half and n.op_type not in EXACT_OPS | {"Constant"}]


def mixed_fp16(model, float_nodes=()):
    """to_fp16 with the nodes `float_nodes` (names) kept in float32 too, and with them every exact op (EXACT_OPS)
    that reads only float32 nodes' outputs or graph inputs and every Constant only float32 nodes read, so no cast to
    float16 rounds a value between two float32 nodes. No float nodes: to_fp16's model itself (fp16-v1), byte for
    byte."""
    onnx = _onnx()
    if not float_nodes:
        return to_fp16(model)
    model = onnx.ModelProto.FromString(model.SerializeToString())
    _ensure_names(model)
    g = model.graph
    keep = score_head_nodes(model) | set(float_nodes)
    producer = {o: n for n in g.node for o in n.output}
    inputs = {i.name for i in g.input} - {t.name for t in g.initializer}
    for n in g.node:  # graph order is topological: a producer is decided before its consumers
        if n.op_type not in EXACT_OPS:
            continue
        sources = [t for t in n.input if t in inputs or (t in producer and producer[t].op_type != "Constant")]
        if sources and all(t in inputs or producer[t].name in keep for t in sources):
            keep.add(n.name)
    readers: dict[str, set] = {}
    for n in g.node:
        for t in n.input:
            readers.setdefault(t, set()).add(n.name)
    keep |= {n.name for n in g.node if n.op_type == "Constant" and readers.get(n.output[0])
             and readers[n.output[0]] <= keep}
    return to_fp16(model, keep_fp32=keep)


def to_fp16(model, keep_fp32: set[str] | None = None):
    """A strongly typed float16 copy of float32 ONNX `model` (I/O stay float32). keep_fp32: node names."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    _ensure_names(model)
    g = model.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in g.node for a in n.attribute):
        raise EdgeFasError("fp16 conversion: the model has control flow (If/Loop) subgraphs, which this converter "
                           "does not rewrite; build it in fp32")
    F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
    types = _types(model)
    half = _half_nodes(model, types, keep_fp32)
    new_type = dict(types)
    for n in g.node:
        if n.name in half:
            for o in n.output:
                if types.get(o) == F32:
                    new_type[o] = F16

    def wants(n, i) -> int:
        return F16 if n.name in half and i not in FIXED_FLOAT_INPUTS.get(n.op_type, ()) else F32

    consumers: dict[str, list] = {}
    for n in g.node:
        for i, t in enumerate(n.input):
            consumers.setdefault(t, []).append((n, i))
    outputs = {o.name for o in g.output}
    for init in g.initializer:
        uses = consumers.get(init.name, [])
        if init.data_type == F32 and uses and all(wants(n, i) == F16 for n, i in uses) and init.name not in outputs:
            arr = numpy_helper.to_array(init)
            if np.abs(arr).max(initial=0) < 65504:
                init.CopyFrom(numpy_helper.from_array(arr.astype(np.float16), init.name))
                new_type[init.name] = F16

    casts: dict[tuple[str, int], str] = {}
    nodes = []

    def cast(t: str, to: int) -> str:
        if (t, to) not in casts:
            name = f"{t}__to_{'fp16' if to == F16 else 'fp32'}"
            nodes.append(helper.make_node("Cast", [t], [name], name=f"edge_fas_cast_{len(casts)}", to=to))
            casts[(t, to)] = name
        return casts[(t, to)]

    for n in g.node:
        if n.name in half:
            for a in n.attribute:
                if n.op_type == "Cast" and a.name == "to" and a.i == F32:
                    a.i = F16
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR and a.t.data_type == F32:
                    arr = numpy_helper.to_array(a.t)
                    a.t.CopyFrom(numpy_helper.from_array(arr.astype(np.float16), a.t.name))
        for i, t in enumerate(n.input):
            if t and new_type.get(t) in (F32, F16) and new_type[t] != wants(n, i):
                n.input[i] = cast(t, wants(n, i))
        nodes.append(n)
    # graph outputs stay float32: the producer writes name__fp16, a final Cast restores the name
    for o in g.output:
        if new_type.get(o.name) == F16:
            inner = f"{o.name}__fp16"
            for n in nodes:
                n.output[:] = [inner if x == o.name else x for x in n.output]
                n.input[:] = [inner if x == o.name else x for x in n.input]
            nodes.append(helper.make_node("Cast", [inner], [o.name], name=f"edge_fas_out_{o.name}", to=F32))
    return _with_nodes(model, nodes)


def fp16_onnx(src: Path, dst: Path, float_nodes=()) -> Path:
    """Write the fp16 version of ONNX file `src` to `dst`, with `float_nodes` kept in float32 (mixed_fp16)."""
    onnx = _onnx()
    model = mixed_fp16(onnx.load(str(src)), float_nodes)
    onnx.save(model, str(dst))
    return dst


def emulate_fp16(model):
    """A float32 copy of the strongly typed fp16 `model` (to_fp16's) that rounds through float16 wherever `model`
    stores a value in float16: float16 weights and constants become the same values in float32, and every float16
    tensor a node writes is rounded by a Cast pair (float32 -> float16 -> float32) that ONNX Runtime keeps.

    This is what the gates measure fp16 with on a CPU. Run as it is, the fp16 model is not measured: ONNX Runtime's
    CPU has no float16 kernel for most ops, computes them in float32, and removes the casts it inserted between two
    such nodes, so a chain of them never rounds (x + 2048 - 2048 returned x, where float16 returns 0 for |x| < 1).
    Each op here computes in float32 and rounds its result once, which for a single addition, multiplication or
    division is float16's own result, and for a convolution or matrix product is TensorRT's float16 kernel with a
    float32 accumulator; a kernel that accumulates in float16 rounds more, which the engine-build gate measures."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper
    F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
    model = onnx.ModelProto.FromString(model.SerializeToString())
    _ensure_names(model)
    g = model.graph
    types = _types(model)

    def widen(t):  # a float16 tensor proto -> the same values in float32
        if t.data_type == F16:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name))

    for init in g.initializer:
        widen(init)
    nodes = []
    for n in g.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                widen(a.t)
        if n.op_type == "Cast":
            to = next(a for a in n.attribute if a.name == "to")
            if to.i == F16:  # round, and stay in float32
                rounded = f"{n.output[0]}__f16"
                nodes += [helper.make_node("Cast", list(n.input), [rounded], name=n.name, to=F16),
                          helper.make_node("Cast", [rounded], list(n.output), name=f"{n.name}__back", to=F32)]
                continue
            if types.get(n.input[0]) == F16 and to.i == F32:  # the value is float32 already
                nodes.append(helper.make_node("Identity", list(n.input), list(n.output), name=n.name))
                continue
        halves = [i for i, o in enumerate(n.output) if types.get(o) == F16]
        if n.op_type == "Constant" or not halves:  # constants were widened: their values are float16's already
            nodes.append(n)
            continue
        after = []
        for i in halves:
            o = n.output[i]
            n.output[i] = f"{o}__f32"
            after += [helper.make_node("Cast", [n.output[i]], [f"{o}__f16"], name=f"{n.name}__round{i}", to=F16),
                      helper.make_node("Cast", [f"{o}__f16"], [o], name=f"{n.name}__back{i}", to=F32)]
        nodes += [n, *after]
    return _with_nodes(model, nodes)


def choose_fp16_float_nodes(artifact, selection=None, quiet: bool = True,
                            max_flips: int = mixed_precision.SELECTION_MAX_FLIPS) -> dict:
    """mixed_precision.choose_float_nodes for fp16: the fewest of the artifact's rounding nodes (fp16_candidates) to
    keep in float32, each model scored through emulate_fp16. Returns {nodes, selection}; raises EdgeFasError when
    even every node in float32 misses."""
    onnx = _onnx()
    model = onnx.load(str(artifact.onnx_path))
    _ensure_names(model)

    def build(keep, dst):
        onnx.save(emulate_fp16(mixed_fp16(model, keep)), str(dst))

    return mixed_precision.choose_float_nodes(artifact, fp16_candidates(model), build, "fp16", selection, quiet=quiet,
                                              max_flips=max_flips)


def fp16_emulation_onnx(src: Path, dst: Path, float_nodes=(), every_layer: bool = False) -> Path:
    """Write emulate_fp16 of the fp16 model fp16_onnx writes (the one TensorRT builds) to `dst`: what to score.

    every_layer: the model a runtime that casts the whole network to float16 runs instead (PyTorch half, ONNX
    Runtime's TensorRT provider): the score head in float16 too (KEEP_FP32_OPS still in float32)."""
    onnx = _onnx()
    model = onnx.load(str(src))
    model = to_fp16(model, keep_fp32=set()) if every_layer else mixed_fp16(model, float_nodes)
    onnx.save(emulate_fp16(model), str(dst))
    return dst


def fp16_float_nodes(artifact) -> list[str]:
    """The nodes the artifact's fp16 model keeps in float32 beyond the score head (`edge-fas export --fp16-mixed`
    chose them; none for a model the gate passed whole)."""
    chosen = (recorded_gate(artifact, "fp16") or {}).get("mixed_precision")
    return list(chosen.get("float_nodes") or []) if isinstance(chosen, dict) else []


def artifact_fp16_onnx(artifact, dst: Path) -> Path:
    """Write `artifact`'s fp16 model, the one its gate measured, to `dst`: what export gates and TensorRT builds."""
    return fp16_onnx(artifact.onnx_path, dst, fp16_float_nodes(artifact))


def ort_scores(path, batch: dict, chunk: int = 16) -> np.ndarray:
    """'score' of ONNX file `path` on the CPU (ONNX Runtime), in chunks."""
    import onnxruntime as ort

    from edge_fas.runtime.ort import session_options
    s = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    n = len(batch["rgb"])
    return np.concatenate([s.run(["score"], {k: v[i:i + chunk] for k, v in batch.items()})[0].reshape(-1)
                           for i in range(0, n, chunk)])


def calibrated_ort_scores(artifact, path, batch: dict) -> np.ndarray:
    """ort_scores on the scale of the artifact's operating threshold: its score calibration applied
    (identity for an uncalibrated artifact), as every runtime's scores are (Runtime.infer)."""
    return calibrated(artifact, ort_scores(path, batch))


def calibrated(artifact, scores) -> np.ndarray:
    """Raw model scores mapped through the artifact's score calibration."""
    return np.asarray(artifact.calibration.apply_scores(np.asarray(scores).reshape(-1)), dtype=np.float64)
