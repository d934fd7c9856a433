"""Quantisation-aware training (edge_fas.training.qat): the simulated rounding is the int8 model ONNX Runtime
runs after the export's own quantisation, the fake quantisers come off without a trace, a model's
training-only parts are left alone, and `train.quantization_aware` trains and checkpoints a plain model."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from edge_fas.errors import ConfigError
from edge_fas.training import load_train_config, qat, train


class Toy(nn.Module):
    """A conv into a BatchNorm and a ReLU, then a transposed conv into a BatchNorm: what the export folds."""

    def __init__(self):
        super().__init__()
        self.down, self.down_bn, self.relu = nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU()
        self.up, self.up_bn = nn.ConvTranspose2d(8, 4, 2, stride=2), nn.BatchNorm2d(4)
        for bn in (self.down_bn, self.up_bn):  # statistics a trained model would have
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 1.5)

    def forward(self, x):
        return self.up_bn(self.up(self.relu(self.down_bn(self.down(x)))))

    def quantisers(self):
        """The simulated roundings in the order the int8 graph's QuantizeLinear nodes run."""
        return [self.down.input_fake_quant, self.down_bn.output_fake_quant, self.up.input_fake_quant,
                self.up_bn.output_fake_quant]


def test_simulated_rounding_is_what_onnx_runtime_int8_computes(tmp_path):
    pytest.importorskip("onnxruntime")
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from edge_fas.runtime.ort import session_options
    from edge_fas.runtime.quantize import quantize_onnx

    torch.manual_seed(0)
    model = Toy().eval()
    x = torch.randn(16, 3, 16, 16)
    with torch.no_grad():
        reference = model(x).numpy()
    torch.onnx.export(model, (x[:1],), str(tmp_path / "f.onnx"), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}}, dynamo=False)
    quantize_onnx(tmp_path / "f.onnx", tmp_path / "q.onnx", {"x": x.numpy()}, batch=16)
    q = onnx.load(str(tmp_path / "q.onnx"))
    constants = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    ort_ranges = [float(constants[n.input[1]]) * 127 for n in q.graph.node if n.op_type == "QuantizeLinear"]
    int8 = ort.InferenceSession(str(tmp_path / "q.onnx"), session_options(),  # as every edge-fas session runs it
                                providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]

    assert qat.prepare(model, example=(x[:1],)) == 2
    # each output is rounded where the export rounds it: after the BatchNorm folded into the layer, over the
    # range of the ReLU ONNX Runtime folds into that rounding
    assert not hasattr(model.down, "output_fake_quant") and not hasattr(model.up, "output_fake_quant")
    assert model.down_bn.output_fake_quant.positive_only and not model.up_bn.output_fake_quant.positive_only
    model.train()
    for bn in (model.down_bn, model.up_bn):  # not recursive: their output quantisers still observe
        bn.training = False  # the running statistics the export folds, not this batch's
    with torch.no_grad():
        model(x)  # one observed batch: MinMax calibration's ranges on the same batch
    observed = [float(fq.max_abs) for fq in model.quantisers()]
    assert len(ort_ranges) == 4 and np.allclose(observed, ort_ranges, rtol=0.01), (observed, ort_ranges)
    for fq, r in zip(model.quantisers(), ort_ranges):  # ONNX Runtime's exact ranges: then the same arithmetic
        fq.max_abs.fill_(r)
    model.eval()
    with torch.no_grad():
        simulated = model(x).numpy()
    step = ort_ranges[-1] / 127  # the output's int8 step
    same = np.abs(simulated - int8) < step / 100  # the same int8 value
    assert same.mean() > 0.99, f"{same.mean():.4f} of the simulated outputs are the int8 model's"
    assert np.mean(np.abs(reference - int8) < step / 100) < 0.1  # float is not: the test can tell them apart


def test_weights_round_per_output_channel_and_strip_restores_the_float_model():
    torch.manual_seed(0)
    model = Toy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    qat.prepare(model, example=(torch.zeros(1, 3, 8, 8),))
    assert qat.is_prepared(model)
    for layer, axis in ((model.down, 0), (model.up, 1)):  # ConvTranspose weights are (in, out, kh, kw)
        w, original = layer.weight, layer.parametrizations.weight.original
        dims = [d for d in range(w.dim()) if d != axis]
        scale = original.abs().amax(dim=dims, keepdim=True) / qat.QMAX
        steps = w / scale
        assert torch.allclose(steps, steps.round(), atol=1e-3) and steps.abs().max() <= qat.QMAX + 1e-3
        assert not torch.equal(w, original)
    assert qat.strip(model) == 2 and not qat.is_prepared(model)
    assert not [m for m in model.modules() if hasattr(m, "output_fake_quant") or hasattr(m, "input_fake_quant")]
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_training_only_modules_stay_float():
    from edge_fas.models import build

    with pytest.warns(UserWarning, match="identity loss"):
        model = build("spoof_trace", "edge", input_size=32)
    qat.prepare(model)
    prepared = {n for n, m in model.named_modules() if hasattr(m, "input_fake_quant")}
    assert prepared and any(n.startswith("classifier") for n in prepared) and any(n.startswith("decoders") for n in prepared)
    assert not [n for n in prepared if n.startswith(model.training_only_modules)]


def test_quantization_aware_training_writes_a_plain_checkpoint(tmp_path):
    from edge_fas.models import load_checkpoint

    tiny = {"name": "spoof_trace", "preset": "edge", "overrides": {"input_size": 32}}
    cfg = load_train_config(None, {"model": tiny, "data.train_domains": ["cefa"], "data.rig_size": [160, 120],
                                   "data.per_domain": {"train": 8, "val": 6, "test": 6},
                                   "data.cache_dir": str(tmp_path / "cache"), "out": str(tmp_path / "run")})
    cfg["train"].update(epochs=1, batch_size=4, threads=1, progress=False, quantization_aware=True, keep="best",
                        quantization_consistency=0.5, log_every=1)
    with pytest.warns(UserWarning, match="identity loss"):
        result = train(cfg)
    assert result["val"]["n_attack"] + result["val"]["n_bona_fide"] == 6
    model, info = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    meta = info["meta"]
    assert meta["training"]["quantization_aware"] is True and meta["training"]["quantization_consistency"] == 0.5
    steps = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [s for s in steps if s["kind"] == "step"]
    assert steps and all(s["int8_consistency"] >= 0 for s in steps)  # a term of every generator step
    mmfas = {"name": "mmfas", "preset": "edge",
             "overrides": {"input_size": 32, "patch_size": 8, "width": 24, "heads": 2, "enc_depth": 1,
                           "fusion_depth": 1, "head_width": 24}}
    with pytest.raises(ConfigError, match="mmfas's training step takes no extra loss term"):
        train({**cfg, "model": {**cfg["model"], **mmfas}, "out": str(tmp_path / "run-mmfas")})
    assert not qat.is_prepared(model) and not [k for k in model.state_dict() if "fake_quant" in k or "original" in k]
    cfg["train"]["quantization_aware"] = "yes"
    with pytest.raises(ConfigError, match="train.quantization_aware must be true or false"):
        train(cfg)


def test_activation_range_is_a_decaying_running_maximum():
    """Never below the latest batch's maximum (as coarse as MinMax calibration), and an early peak fades."""
    fq = qat.ActivationFakeQuant(decay=0.01).train()
    fq(torch.tensor([10.0, -2.0]))
    assert float(fq.max_abs) == 10.0
    fq(torch.tensor([0.5, -1.0]))
    assert float(fq.max_abs) == pytest.approx(9.9)
    for _ in range(400):
        fq(torch.tensor([1.0]))
    assert float(fq.max_abs) == pytest.approx(1.0)
    fq(torch.tensor([3.0]))
    assert float(fq.max_abs) == 3.0
    relu = qat.ActivationFakeQuant(positive_only=True).train()
    relu(torch.tensor([-5.0, 2.0]))  # a ReLU follows: only the positive side is the int8 model's range
    assert float(relu.max_abs) == 2.0
    fq.eval()
    y = fq(torch.tensor([1.0, 0.01, 5.0]))
    step = 3.0 / qat.QMAX
    assert torch.allclose(y, torch.tensor([round(1.0 / step) * step, 0.0, 3.0]))  # rounded, clamped to the range


class Scored(nn.Module):
    """The three streams into a Conv-BN-ReLU and a conv, averaged into one logit per sample, plus a layer the
    scored path never uses (like spoof_trace's discriminators)."""

    training_only_modules = ("unused",)

    def __init__(self):
        super().__init__()
        self.a, self.bn, self.relu = nn.Conv2d(5, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()
        self.b = nn.Conv2d(16, 1, 3, padding=1)
        self.unused = nn.Linear(2, 2)

    def forward(self, rgb, depth, ir, present=None):
        return {"logits": 10 * self.b(self.relu(self.bn(self.a(torch.cat([rgb, depth, ir], 1))))).flatten(1).mean(1)}


def _prepared_copy(model, batch):
    """A second prepared Scored with `model`'s state (deepcopy does not copy a parametrized module)."""
    twin = Scored()
    qat.prepare(twin, example=tuple(batch[m][:1] for m in ("rgb", "depth", "ir")))
    twin.load_state_dict(model.state_dict())
    return twin.train(model.training)


def _scored_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(8, c, 16, 16, generator=g) for m, c in (("rgb", 3), ("depth", 1), ("ir", 1))}


def test_float_path_is_the_float_model_and_leaves_the_ranges_alone():
    torch.manual_seed(0)
    batch = _scored_batch()
    model = Scored()
    qat.prepare(model, example=tuple(batch[m][:1] for m in ("rgb", "depth", "ir")))
    model.train()
    model(**batch)  # observe one batch
    model.eval()
    plain = _prepared_copy(model, batch)
    qat.strip(plain)  # the same weights and BatchNorm statistics, no rounding
    with torch.no_grad():
        quantised = model(**batch)["logits"]
        with qat.float_path(model):
            floating = model(**batch)["logits"]
        again = model(**batch)["logits"]
        reference = plain(**batch)["logits"]
    assert torch.allclose(floating, reference, atol=1e-6)
    assert not torch.allclose(quantised, reference, atol=1e-4)  # the test can tell the two paths apart
    assert torch.equal(again, quantised)  # rounding is back after the block
    ranges = [float(m.max_abs) for m in model.modules() if isinstance(m, qat.ActivationFakeQuant)]
    with qat.float_path(model), torch.no_grad():
        model.train()(**{k: 100 * v for k, v in batch.items()})  # would widen every range if observed
    assert ranges == [float(m.max_abs) for m in model.modules() if isinstance(m, qat.ActivationFakeQuant)]


def test_consistency_loss_compares_this_steps_int8_logits_with_the_float_models():
    torch.manual_seed(0)
    batch = _scored_batch()
    model = Scored()
    qat.prepare(model, example=tuple(batch[m][:1] for m in ("rgb", "depth", "ir")))
    model.train()
    out = model(**batch)  # the step's own forward pass: simulated int8
    twin = _prepared_copy(model, batch)  # the float pass, computed independently
    with torch.no_grad(), qat.float_path(twin):
        target = twin(**batch)["logits"]
    loss = qat.consistency_loss(model, batch, out, 0.7)
    assert float(loss) == pytest.approx(float(0.7 * torch.nn.functional.smooth_l1_loss(out["logits"], target)), rel=1e-5)
    assert float(loss) > 0
    loss.backward()  # through the int8 path only: the float target is a constant
    assert model.a.parametrizations.weight.original.grad is not None and model.unused.weight.grad is None


@pytest.mark.parametrize("train_section, message", [
    ({"quantization_consistency": 0.5}, "needs train.quantization_aware: true"),
    ({"quantization_aware": True, "quantization_consistency": -1}, "must be a weight >= 0"),
    ({"quantization_aware": True, "quantization_consistency": "high"}, "must be a weight >= 0"),
])
def test_consistency_weight_is_checked(train_section, message):
    from edge_fas.training.config import check_config

    with pytest.raises(ConfigError, match=message):
        check_config(load_train_config(None, {f"train.{k}": v for k, v in train_section.items()}))
