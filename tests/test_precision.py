"""Precision gates: fp16 and int8 are compared with fp32 at the artifact's operating point, and refused
below the stated decision agreement unless forced. The shipped demo's int8 model (mixed precision: the whole
network in int8 flipped 7% of decisions and was refused) and its fp16 model (what TensorRT builds) must pass."""

import numpy as np
import onnx
import pytest
import torch

from edge_fas.artifact import load_artifact, write_manifest
from edge_fas.errors import EdgeFasError
from edge_fas.export import export_model, random_batch
from edge_fas.runtime import load_runtime
from edge_fas.runtime import precision as prec
from edge_fas.runtime.quantize import add_int8, synthetic_crops
from test_runtime import Tiny

@pytest.fixture(scope="module")
def demo_held_out():
    demo = load_artifact("demo")
    batch, labels = synthetic_crops(48, demo.preprocess, seed=1)  # the demo's int8 was calibrated on seed 0
    return demo, batch, labels, prec.ort_scores(demo.onnx_path, batch)


def test_the_demo_int8_model_is_mixed_precision_and_passes_its_gate(demo_held_out):
    """The bundled int8 model (export --int8 --int8-mixed): its recorded gate passed, the runtimes load it without
    --force-precision, its float layers carry no int8 input, and it makes float32's decisions on held-out crops."""
    demo, batch, labels, f32 = demo_held_out
    mixed = demo.manifest["int8"]["mixed_precision"]
    gate = prec.recorded_gate(demo, "int8")
    assert gate["passed"] and gate["frame_sets"] == 600 and gate["whole_network_int8"]["decision_agreement"] < 0.995
    assert load_runtime("demo", kind="onnxruntime", device="cpu", int8=True, warmup=()).int8
    g = onnx.load(str(demo.folder / "model.int8.onnx")).graph
    producer = {o: n for n in g.node for o in n.output}
    int8_weights = {n.name for n in g.node if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")
                    and len(n.input) > 1 and producer.get(n.input[1]) is not None
                    and producer[n.input[1]].op_type == "DequantizeLinear"}
    # (a float layer whose input tensor an int8 layer reads too gets it rounded: ONNX Runtime quantises a tensor once)
    assert mixed["float_nodes"] and not int8_weights & set(mixed["float_nodes"])
    quantisable = [n for n in g.node if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")]
    assert len(int8_weights) == len(quantisable) - len(mixed["float_nodes"]) >= 50  # the rest of the network is int8
    thr = prec.operating_threshold(demo)
    figures = prec.compare(prec.calibrated(demo, f32), prec.calibrated_ort_scores(demo, demo.folder / "model.int8.onnx",
                                                                                   batch), thr, labels)
    assert figures["flips"] <= 1, figures


def test_the_demo_fp16_model_passes_and_is_really_fp16(demo_held_out, tmp_path):
    demo, batch, labels, f32 = demo_held_out
    path = prec.fp16_onnx(demo.onnx_path, tmp_path / "m16.onnx")
    m = onnx.load(str(path))
    F16, F32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    assert all(t.type.tensor_type.elem_type == F32 for t in list(m.graph.input) + list(m.graph.output))
    assert sum(i.data_type == F16 for i in m.graph.initializer) > 100
    head = prec.score_head_nodes(onnx.load(str(demo.onnx_path)))
    assert head and all(n.op_type != "Conv" for n in onnx.load(str(demo.onnx_path)).graph.node if n.name in head)
    f16 = prec.ort_scores(prec.fp16_emulation_onnx(demo.onnx_path, tmp_path / "m16e.onnx"), batch)
    assert 0 < np.abs(f16 - f32).max() < 5e-3  # it is half precision (not identical), and close
    figures = prec.judge(prec.compare(f32, f16, prec.operating_threshold(demo), labels), "fp16")
    assert figures["passed"] and figures["decision_agreement"] >= 0.995


def test_the_fp16_emulation_rounds_every_float16_tensor_the_cpu_would_not(tmp_path):
    """x + 2048 - 2048 in float16 is 0 for |x| < 1 (float16's spacing at 2048 is 2). ONNX Runtime's CPU, run on the
    fp16 model itself, computes the chain in float32 and returns x; the emulation the gates score with returns 0."""
    from onnx import TensorProto as T
    from onnx import helper, numpy_helper
    c = numpy_helper.from_array(np.array(2048, np.float16), "c")
    nodes = [helper.make_node("Cast", ["x"], ["xh"], to=T.FLOAT16), helper.make_node("Add", ["xh", "c"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]), helper.make_node("Sub", ["r", "c"], ["s"]),
             helper.make_node("Cast", ["s"], ["score"], to=T.FLOAT)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", T.FLOAT, [4])],
                              [helper.make_tensor_value_info("score", T.FLOAT, [4])], [c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = np.array([0.3, 0.7, 1.2, -0.4], np.float32)
    import onnxruntime as ort

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.allclose(run(model), x, atol=1e-3)  # the CPU skipped float16's rounding
    emulated = prec.emulate_fp16(model)
    assert all(i.data_type == T.FLOAT for i in emulated.graph.initializer)
    assert run(emulated).tolist() == [0.0, 0.0, 2.0, 0.0]


def test_compare_counts_flips_and_error_rate_changes():
    ref = np.array([0.9, 0.1, 0.6, 0.4])
    cand = np.array([0.9, 0.1, 0.4, 0.6])  # one attack now accepted, one bona fide now rejected
    f = prec.compare(ref, cand, 0.5, labels=np.array([1, 0, 1, 0]))
    assert f["flips"] == 2 and f["decision_agreement"] == 0.5
    assert f["apcer_fp32"] == 0.0 and f["apcer_change"] == 0.5 and f["bpcer_fp32"] == 0.0 and f["bpcer_change"] == 0.5
    assert prec.compare(ref, np.array([0.9, np.nan, 0.6, 0.4]), 0.5)["decision_agreement"] == 0.0
    with pytest.raises(prec.PrecisionRefused, match="APCER change \\+0.500"):
        prec.judge(f, "fp16")
    assert prec.judge(f, "fp16", force=True)["forced"] is True


def test_the_operating_point_threshold_is_the_one_judged(tmp_path):
    torch.manual_seed(0)
    a = export_model(Tiny(), tmp_path, threshold=0.3, parity_count=4, parity_source="random", gate_count=16)
    assert prec.operating_threshold(a) == pytest.approx(0.3)
    assert a.manifest["precision"]["fp16"]["threshold"] == pytest.approx(0.3)
    m = {k: v for k, v in a.manifest.items() if k not in ("files", "manifest_sha256")}
    m["operating_point"] = {"target": "apcer=0.01", "threshold": 0.42, "validated_range": [0.4, 0.45],
                            "split": "val", "evidence": "test"}
    write_manifest(tmp_path, m, list(a.manifest["files"]))
    assert prec.operating_threshold(load_artifact(tmp_path)) == pytest.approx(0.42)


def test_a_failed_fp16_gate_in_the_manifest_stops_fp16_unless_forced(tmp_path):
    torch.manual_seed(0)
    a = export_model(Tiny(), tmp_path, threshold=0.5, parity_count=4, parity_source="random", gate_count=32)
    g = a.manifest["precision"]["fp16"]
    assert g["frame_sets"] == 32 and g["passed"] and "emulate_fp16 of the fp16 ONNX" in g["measured_with"]
    assert g["every_layer"]["passed"] and "every layer in float16" in prec.check_allowed(a, "fp16")
    assert "every layer" not in prec.check_allowed(a, "fp16", runs_gated_model=True)  # TensorRT: the gate itself
    m = {k: v for k, v in a.manifest.items() if k not in ("files", "manifest_sha256")}
    m["precision"]["fp16"] = {**g, "every_layer": {**g["every_layer"], "decision_agreement": 0.98, "passed": False}}
    write_manifest(tmp_path, m, list(a.manifest["files"]))
    head_rounded = load_artifact(tmp_path)  # the engine's model passes; the whole network cast to float16 does not
    assert "fp16 gate" in prec.check_allowed(head_rounded, "fp16", runs_gated_model=True)
    with pytest.raises(prec.PrecisionRefused, match="every layer in float16, the score head included"):
        prec.check_allowed(head_rounded, "fp16")
    m = {k: v for k, v in a.manifest.items() if k not in ("files", "manifest_sha256")}
    m["precision"]["fp16"] = {**g, "decision_agreement": 0.9, "flips": 3, "passed": False}
    write_manifest(tmp_path, m, list(a.manifest["files"]))
    failed = load_artifact(tmp_path)
    with pytest.raises(prec.PrecisionRefused, match="fp16 refused"):
        prec.check_allowed(failed, "fp16")
    assert "forced" in prec.check_allowed(failed, "fp16", force=True)
    assert prec.check_allowed(failed, "fp32") == ""


def test_int8_below_the_gate_is_not_written(tmp_path):
    torch.manual_seed(0)
    a = export_model(Tiny(), tmp_path, threshold=0.5, parity_count=4, parity_source="random", gate_count=0)
    rng = np.random.default_rng(0)
    held = random_batch(32, 24, rng)
    with pytest.raises(prec.PrecisionRefused, match="int8 refused"):
        add_int8(a, calibration=random_batch(32, 8, rng), held_out=(held, np.zeros(24, int)), min_agreement=1.01)
    after = load_artifact(tmp_path)
    assert "int8" not in after.manifest and not (tmp_path / "model.int8.onnx").exists()
    assert not list(tmp_path.glob(".*candidate*"))
    # the refusal is kept, so nothing later reads the artifact as "int8 never measured"
    rec = after.manifest["precision"]["int8"]
    assert rec["passed"] is False and rec["written"] is False and rec["frame_sets"] == 24
    with pytest.raises(prec.PrecisionRefused, match="int8 refused"):
        prec.check_allowed(after, "int8")
    assert "forced" in prec.check_allowed(after, "int8", force=True)
    with pytest.raises(EdgeFasError, match=r"its gate refused it \(\d+\.\d+% decision agreement.*--force-precision"):
        load_runtime(str(tmp_path), kind="onnxruntime", device="cpu", int8=True, warmup=())


def test_quantize_keeps_named_nodes_in_float_and_names_an_unknown_calibration_method(tmp_path):
    from edge_fas.runtime.quantize import quantize_onnx
    torch.manual_seed(0)
    a = export_model(Tiny(), tmp_path / "a", threshold=0.5, parity_count=4, parity_source="random", gate_count=0)
    calib = random_batch(32, 8, np.random.default_rng(0))
    convs = [n.name for n in onnx.load(str(a.onnx_path)).graph.node if n.op_type == "Conv"]
    assert len(convs) >= 2

    def quantised_convs(path):
        g = onnx.load(str(path)).graph
        producer = {o: n for n in g.node for o in n.output}
        return {n.name for n in g.node if n.op_type == "Conv"
                and any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in n.input)}

    quantize_onnx(a.onnx_path, tmp_path / "all.onnx", calib)
    assert set(convs) <= quantised_convs(tmp_path / "all.onnx")
    quantize_onnx(a.onnx_path, tmp_path / "kept.onnx", calib, keep_float=convs[:1], method="percentile")
    kept = quantised_convs(tmp_path / "kept.onnx")
    assert convs[0] not in kept and set(convs[1:]) <= kept
    with pytest.raises(EdgeFasError, match=r"int8 calibration method 'kmeans' is unknown; use one of"):
        quantize_onnx(a.onnx_path, tmp_path / "x.onnx", calib, method="kmeans")


def test_progress_lines_go_to_stderr_and_quiet_means_silent(capsys):
    import io

    from edge_fas.progress import Progress
    buf = io.StringIO()
    bar = Progress("export parity", 4, stream=buf, every_s=0.0)
    for _ in range(4):
        bar.update()
    lines = buf.getvalue().splitlines()
    assert lines[-1].startswith("export parity: 4/4") and len(lines) == 4
    quiet = io.StringIO()
    q = Progress("x", 3, quiet=True, stream=quiet)
    q.callback(3, 3)
    assert quiet.getvalue() == "" and capsys.readouterr().out == ""


def _saturating_int8_conv(path) -> None:
    """A Q/DQ int8 conv (ONNX Runtime fuses it into QLinearConv) whose activations and weights sit at the ends of
    int8: pairs of their products overflow the 16-bit sums that x86 CPUs without VNNI compute them in."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.choice(np.array([-127, 127], np.int8), size=(8, 64, 3, 3))
    f32 = lambda name, v: numpy_helper.from_array(np.asarray(v, np.float32), name)  # noqa: E731
    zero = lambda name, n=None: numpy_helper.from_array(np.zeros(n, np.int8) if n else np.int8(0), name)  # noqa: E731
    inits = [numpy_helper.from_array(w, "w_q"), f32("w_s", np.full(8, 1 / 127)), zero("w_z", 8),
             f32("x_s", 1 / 127), zero("x_z"), f32("y_s", 100 / 127), zero("y_z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["x_q"]),
             helper.make_node("DequantizeLinear", ["x_q", "x_s", "x_z"], ["x_d"]),
             helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w_d"], axis=0),
             helper.make_node("Conv", ["x_d", "w_d"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["c", "y_s", "y_z"], ["y_q"]),
             helper.make_node("DequantizeLinear", ["y_q", "y_s", "y_z"], ["y"])]
    graph = helper.make_graph(nodes, "saturating", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def test_int8_is_computed_exactly_on_every_x86_cpu(tmp_path):
    """Every session edge-fas makes computes int8 as the Q/DQ graph defines it (what the precision gate measured),
    also on CPUs whose fast int8 kernels saturate (AVX2 without VNNI). On a CPU with VNNI or on ARM the fast kernels
    are exact anyway, so there this test cannot tell the option's absence."""
    import onnxruntime as ort

    from edge_fas.runtime.ort import EXACT_INT8, session_options

    _saturating_int8_conv(tmp_path / "q.onnx")
    x = np.random.default_rng(1).choice(np.array([-1.0, 1.0], np.float32), size=(1, 64, 8, 8))
    plain = ort.SessionOptions()
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the ops one by one, in float
    reference = ort.InferenceSession(str(tmp_path / "q.onnx"), plain, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.abs(reference).max() > 10  # the products do not cancel out: there is something to saturate
    fused = ort.InferenceSession(str(tmp_path / "q.onnx"), session_options(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(fused.run(None, {"x": x})[0], reference)
    # the runtime a kiosk runs starts from the same options
    demo = load_runtime("demo", kind="onnxruntime", device="cpu", warmup=())
    assert demo.session.get_session_options().get_session_config_entry(EXACT_INT8[0]) == EXACT_INT8[1]


def test_the_gate_says_what_its_frame_count_can_show():
    # no flip in 128: 100% measured, but the 95% lower bound is 0.05 ** (1/128) = 97.7%; 600 reach 99.5%
    few = prec.judge(prec.compare(np.full(128, 0.9), np.full(128, 0.9), 0.5), "fp16")
    assert few["passed"] and not few["shown"]
    assert few["agreement_low95"] == pytest.approx(0.05 ** (1 / 128), abs=1e-5) and few["agreement_low95"] < 0.9769
    assert "128 frame sets are too few to show 99.5%" in prec.bound_note(few)
    enough = prec.judge(prec.compare(np.full(prec.GATE_FRAME_SETS, 0.9), np.full(prec.GATE_FRAME_SETS, 0.9), 0.5),
                        "fp16")
    assert enough["passed"] and enough["shown"] and enough["agreement_low95"] >= prec.MIN_AGREEMENT
    assert prec.bound_note(enough) == f"95% lower bound {enough['agreement_low95']:.2%}"
    # one flip in 600 still passes on the measured 99.83%, and the bound (Clopper-Pearson) no longer shows 99.5%
    ref = np.full(600, 0.9)
    one = prec.judge(prec.compare(ref, np.r_[0.1, ref[1:]], 0.5), "fp16")
    assert one["passed"] and not one["shown"] and 0.990 < one["agreement_low95"] < 0.995
    # figures recorded before the bound existed do not pretend to one
    assert prec.bound_note({"decision_agreement": 1.0, "frame_sets": 128}) == "95% lower bound not recorded"


def test_export_renders_the_gate_frame_sets_once_for_fp16_and_int8(tmp_path, monkeypatch):
    from edge_fas.runtime import quantize
    rendered = []
    real = quantize.synthetic_crops

    def counted(count, params, seed=0, offset=0, quiet=True):
        rendered.append((count, seed, offset))
        return real(count, params, seed=seed, offset=offset, quiet=quiet)

    monkeypatch.setattr(quantize, "synthetic_crops", counted)
    torch.manual_seed(0)
    a = export_model(Tiny(), tmp_path, threshold=0.5, parity_count=2, parity_source="synthetic", gate_count=6)
    a = add_int8(a, calib_count=4, eval_count=6, force=True)
    assert rendered.count((6, 1, 0)) == 1  # the seed-1 gate set: rendered for fp16, reused by int8
    assert a.manifest["precision"]["fp16"]["frame_sets"] == a.manifest["precision"]["int8"]["frame_sets"] == 6
    kept, labels, _ = prec.held_out_inputs(a, 6, 1, keep=True)
    with pytest.raises(ValueError):  # shared between the gates, so nobody may write into it
        kept["rgb"][0] = 0
    assert labels is not None


class Tailed(torch.nn.Module):
    """A model with decision-sensitive nodes for int8: `b` reads a tensor with a lone huge value, so per-tensor int8
    rounds every other value of it to zero, and the score moves; `a` and `c` quantise harmlessly. With `mild`, a
    second node `d` reads a tensor whose lone large value is `mild` times the rest, so it flips only a decision or
    two near the threshold while `b` flips most of them."""

    name, preset, input_size = "tailed", "edge", 32
    config = {}

    def __init__(self, mild=None):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.b = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.d = torch.nn.Conv2d(4, 4, 3, padding=1) if mild else None
        self.c = torch.nn.Conv2d(1, 4, 3, stride=2)
        self.head = torch.nn.Linear(12 if mild else 8, 1)
        for buffer, peak in (("spike", 1e4), ("mild", mild)):
            if peak:
                t = torch.ones(1, 4, 32, 32)
                t[..., 0, 0] = peak
                self.register_buffer(buffer, t)

    def forward(self, rgb, depth, ir, present=None):
        h = self.a(rgb).relu()
        # away from the spikes: only the rounding of the rest reaches the score
        pooled = [20 * self.b(h * self.spike).relu()[..., 2:, 2:].mean((2, 3))]
        if self.d is not None:
            pooled.append(20 * self.d(h * self.mild).relu()[..., 2:, 2:].mean((2, 3)))
        z = self.c(depth + ir).relu() * present[:, 1:2, None, None].to(depth.dtype)  # every input used, as in the models
        logits = self.head(torch.cat(pooled + [z.mean((2, 3))], 1))[:, 0]
        return {"logits": logits, "score": torch.sigmoid(logits)}


def test_mixed_precision_keeps_the_sensitive_node_in_float_and_passes_the_gate(tmp_path):
    from edge_fas.runtime.quantize import node_sensitivity
    torch.manual_seed(0)
    rng = np.random.default_rng(3)
    calib, held, select = (random_batch(32, n, rng) for n in (16, 40, 40))
    a = export_model(Tailed(), tmp_path / "t", threshold=0.5, parity_count=4, parity_source="random", gate_count=0)
    scores = prec.ort_scores(a.onnx_path, held)
    # the operating point amid the scores, where int8's rounding shows in the decisions. It is taken from another draw
    # of the weights than the model exported next (each Tailed() draws its own), so it sits off that model's median:
    # few decisions lie near it and only the strongly sensitive node flips them (with the model's own median, every
    # node flips some)
    a = export_model(Tailed(), tmp_path / "t", threshold=float(np.median(scores)), parity_count=4,
                     parity_source="random", gate_count=0, overwrite=True)
    labels = np.zeros(40, int)
    with pytest.raises(prec.PrecisionRefused, match="int8 refused"):
        add_int8(a, calibration=calib, held_out=(held, labels), min_agreement=0.95)
    with pytest.raises(prec.PrecisionRefused):  # no count of float nodes can reach it: judged whole, refused
        add_int8(a, calibration=calib, held_out=(held, labels), min_agreement=1.01, mixed=True,
                 selection=(select, labels))
    a = load_artifact(tmp_path / "t")
    assert "even with every one of the 3" in a.manifest["precision"]["int8"]["mixed_precision"]
    ranked = node_sensitivity(a, calib, (select, labels), tmp_path)
    assert ranked[0]["node"] == "/model/b/Conv" and ranked[0]["flips"] > 4
    assert all(r["flips"] <= 1 for r in ranked[1:]), ranked
    a = add_int8(a, calibration=calib, held_out=(held, labels), min_agreement=0.95, mixed=True, selection=(select, labels))
    mixed = a.manifest["int8"]["mixed_precision"]
    assert mixed["float_nodes"] == ["/model/b/Conv"]
    assert mixed["chosen_on"]["data"] == "given selection set" and mixed["chosen_on"]["tried"][0][0] == 1
    gate = a.manifest["precision"]["int8"]
    assert gate["passed"] and gate["whole_network_int8"]["decision_agreement"] < 0.95 <= gate["decision_agreement"]
    g = onnx.load(str(a.folder / "model.int8.onnx")).graph
    producer = {o: n for n in g.node for o in n.output}
    quantised = {n.name.split("/")[2] for n in g.node if n.op_type == "Conv"
                 and any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in n.input[:1])}
    assert quantised == {"a", "c"}
    rt = load_runtime(str(a.folder), kind="onnxruntime", device="cpu", int8=True, warmup=())
    assert "int8" in rt.reason


def _tailed_at_its_median(tmp_path):
    """(artifact, calibration batch, 120 selection inputs): Tailed exported with its threshold at the median of its
    scores on those inputs, where int8's small changes flip decisions. The threshold comes from one draw of the
    weights, the model exported with it from another (as in the test above)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(6)
    calib, select = random_batch(32, 16, rng), random_batch(32, 120, rng)
    a = export_model(Tailed(mild=100.0), tmp_path / "t", threshold=0.5, parity_count=4, parity_source="random",
                     gate_count=0)
    a = export_model(Tailed(mild=100.0), tmp_path / "t",
                     threshold=float(np.median(prec.ort_scores(a.onnx_path, select))),
                     parity_count=4, parity_source="random", gate_count=0, overwrite=True)
    return a, calib, select


def test_mixed_precision_chooses_to_no_flips_not_just_to_the_gates_share(tmp_path):
    """Choosing only to the gate's agreement stops at the first count whose flips the gate allows, so a held-out
    gate falls on either side by chance; by default the choice goes on until the selection crops flip nothing."""
    from edge_fas.runtime.quantize import choose_float_nodes
    a, calib, select = _tailed_at_its_median(tmp_path)
    selection = (select, np.zeros(120, int))
    loose = choose_float_nodes(a, calib, selection, 0.99, work=tmp_path, max_flips=1)
    assert loose["nodes"] == ["/model/b/Conv"] and loose["selection"]["flips"] == 1  # 119 of 120 meets 99%
    strict = choose_float_nodes(a, calib, selection, 0.99, work=tmp_path)
    assert strict["nodes"] == ["/model/b/Conv", "/model/d/Conv"]
    assert strict["selection"]["flips"] == 0 and strict["selection"]["max_flips"] == 0
    assert strict["selection"]["tried"] == [[1, 1], [2, 0]]
    assert strict["selection"]["confirmed_on"] is None  # a given selection is confirmed only on a given set


def test_mixed_precision_confirms_a_count_on_crops_its_ranking_never_saw(tmp_path):
    """The first count to flip nothing on the selection crops can do so by luck; it is chosen only if it also flips
    nothing on the confirmation crops, else the next count is tried."""
    from edge_fas.runtime.quantize import choose_float_nodes
    a, calib, select = _tailed_at_its_median(tmp_path)
    # count 1 flips one of these 120 decisions (the test above); the crops without it flip none at count 1
    f32 = prec.calibrated_ort_scores(a, a.onnx_path, select)
    keep = choose_float_nodes(a, calib, (select, np.zeros(120, int)), 0.99, work=tmp_path, max_flips=1)
    assert keep["nodes"] == ["/model/b/Conv"]
    import tempfile
    from pathlib import Path

    from edge_fas.runtime.quantize import quantize_onnx
    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:
        one = Path(tmp) / "one.onnx"
        quantize_onnx(a.onnx_path, one, calib, keep_float=["/model/b/Conv"])
        thr = prec.operating_threshold(a)
        flipped = (prec.calibrated_ort_scores(a, one, select) >= thr) != (f32 >= thr)
    assert flipped.sum() == 1
    lucky = {k: v[~flipped] for k, v in select.items()}
    unlucky = {k: v[flipped] for k, v in select.items()}
    lucky_only = choose_float_nodes(a, calib, (lucky, np.zeros(len(lucky["rgb"]), int)), 0.99, work=tmp_path)
    assert lucky_only["nodes"] == ["/model/b/Conv"] and lucky_only["selection"]["flips"] == 0
    confirmed = choose_float_nodes(a, calib, (lucky, np.zeros(len(lucky["rgb"]), int)), 0.99, work=tmp_path,
                                   confirm=(unlucky, np.zeros(1, int)))
    assert confirmed["nodes"] == ["/model/b/Conv", "/model/d/Conv"]
    assert confirmed["selection"]["confirmed_on"] == {"data": "given confirmation set", "frame_sets": 1,
                                                      "tried": [[1, 1], [2, 0]]}
    # a choice the gate then refuses is kept in the manifest beside the refusal, to read the refusal against
    with pytest.raises(prec.PrecisionRefused):
        add_int8(a, calibration=calib, held_out=(select, np.zeros(120, int)), min_agreement=0.995, mixed=True,
                 selection=(lucky, np.zeros(len(lucky["rgb"]), int)))
    refused = load_artifact(a.folder).manifest["precision"]["int8"]
    assert refused["float_nodes"] == 1 and refused["flips"] == 1 and refused["mixed_choice"]["tried"][0] == [1, 0]


def test_an_artifact_is_copied_with_a_new_int8_model_and_says_where_from(tmp_path, capsys):
    from edge_fas.artifact import sha256_file
    from edge_fas.cli import main
    torch.manual_seed(0)
    torch.save({"note": "stands in for the trained weights"}, tmp_path / "weights.pt")
    src = export_model(Tiny(), tmp_path / "src", checkpoint=tmp_path / "weights.pt", threshold=0.5, parity_count=2,
                       parity_source="random", gate_count=0)
    out = tmp_path / "copy"
    assert "checkpoint.pt" in src.manifest["files"]
    assert main(["export", str(src.folder), "--out", str(out), "--int8", "--gate", "6", "--force-precision",
                 "--quiet", "--no-checkpoint"]) == 0
    copy = load_artifact(out)
    assert "checkpoint.pt" not in copy.manifest["files"] and not (out / "checkpoint.pt").exists()
    assert sha256_file(out / "model.onnx") == sha256_file(src.onnx_path) and (out / "model.int8.onnx").is_file()
    assert copy.manifest["export"]["copied_from"]["manifest_sha256"] == src.manifest["manifest_sha256"]
    assert main(["export", str(src.folder), "--out", str(tmp_path / "x")]) == 2
    assert "only makes sense to add an int8 model" in capsys.readouterr().err
    assert main(["export", str(src.folder), "--out", str(src.folder), "--int8"]) == 2
    assert "is the artifact itself" in capsys.readouterr().err
    assert main(["export", str(src.folder), "--out", str(tmp_path / "y"), "--int8-mixed"]) == 2
    assert "add --int8" in capsys.readouterr().err
    assert main(["export", str(src.folder), "--out", str(tmp_path / "y"), "--int8", "--int8-mixed-flips", "2"]) == 2
    assert "add --int8 --int8-mixed" in capsys.readouterr().err


class HalfSensitive(torch.nn.Module):
    """A model with one place float16 cannot hold: `b`'s output rides on an offset of 2048 (taken off again after a
    Relu), where float16's spacing is 2, so the Add, the Relu's input and the Sub each round the signal away in fp16.
    Keeping Add and Sub in float32 is enough only if the Relu between them (an exact op) follows them into float32."""

    name, preset, input_size = "half_sensitive", "edge", 32
    config = {}

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.b = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.c = torch.nn.Conv2d(1, 4, 3, stride=2)
        self.head = torch.nn.Linear(8, 1)

    def forward(self, rgb, depth, ir, present=None):
        h = self.a(rgb).relu()
        back = (self.b(h) + 2048.0).relu() - 2048.0
        z = self.c(depth + ir).relu() * present[:, 1:2, None, None].to(depth.dtype)  # every input used
        logits = self.head(torch.cat([8 * back.mean((2, 3)), z.mean((2, 3))], 1))[:, 0]
        return {"logits": logits, "score": torch.sigmoid(logits)}


def test_mixed_fp16_keeps_the_nodes_float16_cannot_hold_and_only_tensorrt_may_run_it(tmp_path):
    from edge_fas.export import gate_fp16, measure_fp16
    torch.manual_seed(0)
    rng = np.random.default_rng(5)
    held, select = random_batch(32, 40, rng), random_batch(32, 40, rng)
    # the operating point amid the scores: the offset's rounding moves them by about a thousand times what every other
    # node's rounding does, so it flips many decisions and the rest none
    model = HalfSensitive()
    a = export_model(model, tmp_path / "t", threshold=0.5, parity_count=4, parity_source="random", gate_count=0)
    a = export_model(model, tmp_path / "t", threshold=float(np.median(prec.ort_scores(a.onnx_path, held))),
                     parity_count=4, parity_source="random", gate_count=0, overwrite=True)
    labels = np.zeros(40, int)
    whole = measure_fp16(a, (held, labels, "given"))
    assert not whole["passed"] and whole["flips"] > 2
    model = onnx.load(str(a.onnx_path))
    prec._ensure_names(model)
    assert prec.mixed_fp16(model, []).SerializeToString() == prec.to_fp16(model).SerializeToString()
    candidates = prec.fp16_candidates(model)
    assert {"/model/Add", "/model/Sub"} <= set(candidates)
    assert "/model/Relu_1" not in candidates  # exact ops are not ranked: they follow their inputs' precision

    a = gate_fp16(a, 8, source="random", mixed=True, selection=(select, labels))
    gate = a.manifest["precision"]["fp16"]
    assert gate["passed"] and gate["whole_network_fp16"]["decision_agreement"] < prec.MIN_AGREEMENT
    chosen = gate["mixed_precision"]
    assert sorted(chosen["float_nodes"]) == ["/model/Add", "/model/Sub"] and chosen["chosen_on"]["flips"] == 0
    assert prec.fp16_float_nodes(a) == chosen["float_nodes"] and gate["float_nodes"] == 2
    # the model TensorRT builds: the two nodes and the Relu between them in float32, the rest in float16
    g = onnx.load(str(prec.artifact_fp16_onnx(a, tmp_path / "m16.onnx"))).graph
    types = {t.name: t.data_type for t in g.initializer}
    types.update({v.name: v.type.tensor_type.elem_type for v in g.value_info})
    out_type = {n.name: types.get(n.output[0]) for n in g.node}
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert out_type["/model/Add"] == out_type["/model/Relu_1"] == out_type["/model/Sub"] == f32
    assert out_type["/model/a/Conv"] == out_type["/model/b/Conv"] == f16
    mixed = prec.calibrated_ort_scores(a, tmp_path / "m16.onnx", held)
    assert prec.compare(prec.calibrated_ort_scores(a, a.onnx_path, held), mixed, prec.operating_threshold(a))[
        "flips"] <= 1
    # a runtime that casts every layer to float16 runs a model the gate refused: judged by its own figures
    assert not gate["every_layer"]["passed"]
    with pytest.raises(prec.PrecisionRefused, match="every layer in float16.*only with 2 nodes kept in float32"):
        prec.check_allowed(a, "fp16")
    assert "2 nodes in float32" in prec.check_allowed(a, "fp16", runs_gated_model=True)
    assert "forced" in prec.check_allowed(a, "fp16", force=True)


def test_fp16_mixed_on_the_command_line_needs_a_gate_and_is_offered_for_an_artifact(tmp_path, capsys):
    from edge_fas.cli import main
    assert main(["export", "demo", "--out", str(tmp_path / "x"), "--fp16-mixed", "--gate", "0"]) == 2
    assert "--gate must be at least 1 with --int8 or --fp16-mixed" in capsys.readouterr().err
    assert main(["export", "demo", "--out", str(tmp_path / "x")]) == 2
    assert "--fp16-mixed" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["mmdg", "mmfas"])
def test_the_fp16_emulation_and_mixed_fp16_run_on_the_transformer_and_resnet_networks(name, tmp_path):
    """Every op of the ViT (LayerNorm, Softmax, MatMul, Erf) and ResNet networks survives the emulation and the mixed
    rewrite; the emulation rounds (not identical to float32) and stays close."""
    from edge_fas.export import build_and_export
    a, _ = build_and_export(name, "edge", tmp_path / "a", parity_count=2)
    batch = random_batch(a.input_size, 4, np.random.default_rng(0))
    ref = prec.ort_scores(a.onnx_path, batch)
    model = onnx.load(str(a.onnx_path))
    prec._ensure_names(model)
    candidates = prec.fp16_candidates(model)
    assert len(candidates) > 100
    for keep in ([], candidates[:5]):
        got = prec.ort_scores(prec.fp16_emulation_onnx(a.onnx_path, tmp_path / "e.onnx", keep), batch)
        assert 0 < np.abs(got - ref).max() < 5e-3


class NaNInHalf(HalfSensitive):
    """HalfSensitive, plus a term that is 0 in float32 and NaN in float16 (0 * an offset float16 cannot hold)."""

    def forward(self, rgb, depth, ir, present=None):
        out = super().forward(rgb, depth, ir, present)
        logits = out["logits"] + 0.0 * (rgb.mean((1, 2, 3)) + 1.0e5)
        return {"logits": logits, "score": torch.sigmoid(logits)}


def test_every_layer_in_fp16_scoring_nan_is_recorded_and_refused_not_a_crash(tmp_path):
    from edge_fas.export import export_model, measure_fp16
    torch.manual_seed(0)
    held = random_batch(32, 16, np.random.default_rng(6))
    a = export_model(NaNInHalf(), tmp_path / "n", threshold=0.5, parity_count=4, parity_source="random", gate_count=0)
    figures = measure_fp16(a, (held, np.zeros(16, int), "given"))
    # the engine's model keeps the score head in float32 and stays finite; every layer in float16 scores NaN,
    # which the record says and those runtimes' gate refuses
    assert figures["flips"] == 0 and "non_finite_scores" not in figures
    assert figures["every_layer"]["non_finite_scores"] == 16 and not figures["every_layer"]["passed"]
