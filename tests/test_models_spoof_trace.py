import warnings

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from edge_fas.errors import ConfigError
from edge_fas.models import build
from edge_fas.models.resnet import ResNet
from edge_fas.models.spoof_trace import PRESETS, CrossModalFusion, SpoofTraceNet

# tiny but complete: every piece of the paper preset, at a size that runs in milliseconds
TINY = dict(input_size=32, layers=(1, 1, 1), width=8, dec_channels=(16, 8, 8, 8), n_res=1,
            cls_width=8, disc_width=4, fusion_reduction=4)


@pytest.fixture(autouse=True)
def one_torch_thread():
    # on a shared 2-core box, torch's 2 intra-op threads spin against other processes (15x slower)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(preset="edge", **kw):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SpoofTraceNet(preset, **{**TINY, **kw})


def make_batch(n=4, s=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    label = torch.arange(n) % 2
    rgb = torch.randn(n, 3, s, s, generator=g) * 0.3
    depth = torch.randn(n, 1, s, s, generator=g) * 0.3
    ir = torch.randn(n, 1, s, s, generator=g) * 0.3
    # attacks carry a visible, learnable artefact: a stripe pattern in RGB, flat depth
    stripes = (torch.arange(s) % 4 < 2).float().view(1, 1, 1, s)
    rgb = rgb + label.view(-1, 1, 1, 1) * stripes
    depth = depth * (1 - label.view(-1, 1, 1, 1).float())
    return dict(rgb=rgb, depth=depth, ir=ir, present=torch.ones(n, 3, dtype=torch.bool), label=label)


def test_presets_and_contract_attributes():
    assert PRESETS["paper"]["input_size"] == 256 and PRESETS["edge"]["input_size"] % 16 == 0
    paper = tiny("paper")  # the paper preset's structure at a tiny size (full size: bench_spoof_trace.py)
    assert paper.preset == "paper" and paper.modalities == ("rgb", "depth")
    assert paper.trace_channels == ("rgb_r", "rgb_g", "rgb_b", "depth")
    assert paper.paper_training["lr"] == 5e-5 and paper.paper_training["batch_size"] == 4
    assert paper.config["alphas"] == [0.25, 100, 1, 100, 1, 10, 1, 1]
    assert yaml.safe_load(yaml.safe_dump(paper.config)) == paper.config
    # the paper's encoders are ResNet-50's stem + first three stages: 25,557,032 - layer4 - fc
    p = PRESETS["paper"]
    enc = ResNet(p["layers"], width=p["width"], num_classes=0, num_stages=3)
    assert sum(x.numel() for x in enc.parameters()) == 25_557_032 - 14_964_736 - 2_049_000
    edge = tiny()
    assert edge.output_names == ("logits", "score", "trace") and edge.name == "spoof_trace"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = build("spoof_trace", edge.preset, **edge.config)
    assert [tuple(p.shape) for p in again.parameters()] == [tuple(p.shape) for p in edge.parameters()]
    with pytest.raises(ConfigError, match="multiple of 16"):
        build("spoof_trace", "edge", input_size=100)
    with pytest.raises(ConfigError, match="unknown option"):
        build("spoof_trace", "edge", depthh=3)
    with pytest.raises(ConfigError, match="modalities"):
        build("spoof_trace", "edge", modalities=("rgb", "thermal"))


def test_forward_shapes_and_missing_modality():
    net = tiny().eval()
    b = make_batch()
    out = net(b["rgb"], b["depth"], b["ir"])
    assert out["logits"].shape == (4,) and out["score"].shape == (4,) and out["trace"].shape == (4, 5, 32, 32)
    assert torch.allclose(torch.sigmoid(out["logits"]), out["score"], atol=1e-5)
    assert set(out) == {"logits", "score", "trace"}
    # depth marked absent: its trace is zero and whatever sits in the depth input is ignored
    present = torch.tensor([[True, False, True]] * 4)
    a = net(b["rgb"], b["depth"], b["ir"], present)
    c = net(b["rgb"], torch.randn_like(b["depth"]) * 5, b["ir"], present)
    assert torch.count_nonzero(a["trace"][:, 3]) == 0
    assert torch.allclose(a["score"], c["score"]) and torch.allclose(a["trace"], c["trace"])
    assert not torch.allclose(a["trace"][:, :3], out["trace"][:, :3])  # depth did reach the RGB stream before
    with pytest.raises(ValueError, match="depth must be"):
        net(b["rgb"], b["depth"][:, :, :30, :30], b["ir"])


def test_fusion_gate_shapes_and_equations():
    torch.manual_seed(0)
    fus = CrossModalFusion(8, 2, reduction=4)
    f_rgb, f_dep = torch.randn(2, 8, 5, 6), torch.randn(2, 8, 5, 6)
    present = torch.ones(2, 2)
    out, gates = fus([f_rgb, f_dep], present)
    assert gates.shape == (2, 2, 5, 6)
    assert torch.allclose(gates.sum(dim=(2, 3)), torch.full((2, 2), 30.0))  # softmax over positions x H*W
    pooled = torch.cat([f_rgb.mean((2, 3)), f_dep.mean((2, 3))], 1)
    w_rgb = torch.sigmoid(fus.mlps[0](pooled))[:, :, None, None]
    w_dep = torch.sigmoid(fus.mlps[1](pooled))[:, :, None, None]
    dep_rec = w_rgb * f_rgb + f_dep  # Eq. 4: depth recalibrated by the filtered RGB
    rgb_rec = w_dep * f_dep + f_rgb
    assert torch.allclose(out[1], dep_rec * gates[:, 1:2], atol=1e-6)
    assert torch.allclose(out[0], rgb_rec * gates[:, 0:1], atol=1e-6)
    # an absent RGB stream contributes nothing to depth's recalibration
    out2, gates2 = fus([f_rgb, f_dep], torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    assert torch.allclose(out2[1][0], (f_dep * gates2[:, 1:2])[0], atol=1e-6)


def _constant_discriminators(net, value):
    for group in (net.disc_live, net.disc_spoof):
        for msd in group.values():
            for d in msd.scales:
                last = d.net[-1]
                nn.init.zeros_(last.weight)
                nn.init.constant_(last.bias, value)


def test_adversarial_loss_signs():
    net = tiny(modalities=("rgb", "depth")).train()
    b = make_batch()
    _constant_discriminators(net, 0.25)
    out = net(b["rgb"], b["depth"], b["ir"], b["present"])
    pairs = net._pairs(b["label"])
    # Eq. 6: generator pushes D(I_hat) and D(I_live + T_spoof) to 0 -> 2 terms x 0.25^2 per modality
    assert net.loss(b, out, pairs=pairs)["G"].item() == pytest.approx(2 * 2 * 0.0625)
    # Eq. 7: generated -> 1 ((0.25-1)^2 twice), real -> 0 (0.25^2 twice), per modality
    ld = net.discriminator_loss(b, out["_gen"]["traces"], out["_present"], pairs)
    assert ld.item() == pytest.approx(2 * (2 * 0.5625 + 2 * 0.0625))


def _eq7_one_call_per_input(net, b, traces, present, pairs):
    """Eq. 7 written the plain way, each discriminator called once per input (the reference for the batched one)."""
    from models.spoof_trace import _ls

    y, total = b["label"], 0.0
    for i, m in enumerate(net.modalities):
        x, t, p = b[m], traces[m].detach(), present[:, i]
        total = total + _ls(net.disc_live[m](x - t), 1.0, p) + _ls(net.disc_live[m](x), 0.0, p * (y == 0).float())
        total = total + _ls(net.disc_spoof[m](x), 0.0, p * (y == 1).float())
        if pairs is not None:
            li, sj = pairs
            total = total + _ls(net.disc_spoof[m](x[li] + t[sj]), 1.0, p[li] * p[sj])
    return total


@pytest.mark.parametrize("labels", [(0, 1, 0, 1), (0, 0, 0, 0)])  # with synthesised spoofs, and with none
def test_batched_discriminator_loss_is_eq7(labels):
    """The discriminators score their inputs in one batch each: the same loss and gradients as one call per input."""
    net = tiny(modalities=("rgb", "depth", "ir")).train()
    b = {**make_batch(), "label": torch.tensor(labels)}
    b["present"] = torch.tensor([[1, 1, 1], [1, 0, 1], [1, 1, 0], [0, 1, 1]], dtype=torch.bool)
    out = net(b["rgb"], b["depth"], b["ir"], b["present"])
    pairs = net._pairs(b["label"])
    assert (pairs is None) == (sum(labels) == 0)
    traces, pres = out["_gen"]["traces"], out["_present"]
    params = net.discriminator_parameters()
    batched = net.discriminator_loss(b, traces, pres, pairs)
    g_batched = torch.autograd.grad(batched, params)
    reference = _eq7_one_call_per_input(net, b, traces, pres, pairs)
    g_reference = torch.autograd.grad(reference, params)
    assert batched.item() == pytest.approx(reference.item(), rel=1e-5)
    assert reference.item() > 0
    for gb, gr in zip(g_batched, g_reference):
        assert torch.allclose(gb, gr, rtol=1e-4, atol=1e-6)


def test_intensity_penalises_live_traces_far_more():
    net = tiny(modalities=("rgb", "depth")).train()
    for m in net.modalities:
        nn.init.zeros_(net.decoders[m].out.weight)
        nn.init.constant_(net.decoders[m].out.bias, 0.5 if m == "rgb" else 0.0)
    b = make_batch()
    live = {**b, "label": torch.zeros(4, dtype=torch.long)}
    spoof = {**b, "label": torch.ones(4, dtype=torch.long)}
    il = net.loss(live, net(b["rgb"], b["depth"], b["ir"]))["intensity"].item()
    isp = net.loss(spoof, net(b["rgb"], b["depth"], b["ir"]))["intensity"].item()
    assert il == pytest.approx(0.5) and isp == pytest.approx(0.5e-4)


def test_center_update_and_loss():
    net = tiny(modalities=("rgb",))
    feats = {"rgb": torch.tensor([[1.0] * 8, [3.0] * 8])}
    net._update_centers(feats, torch.tensor([0, 1]), torch.ones(2, 1))
    # c_j -= 0.5 * (c_j - x) / 2 from zero
    assert torch.allclose(net.center_rgb, torch.tensor([[0.25] * 8, [0.75] * 8]))


def test_identity_loss_hook_gradients():
    net = tiny(modalities=("rgb", "depth")).train()
    face = nn.Sequential(nn.Conv2d(3, 4, 3, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    net.set_identity_net(face)
    assert not any(n.startswith("identity") for n in net.state_dict())
    b = make_batch()
    nn.init.constant_(net.decoders["rgb"].out.bias, 0.3)
    terms = net.loss(b, net(b["rgb"], b["depth"], b["ir"]))
    assert terms["id"].item() > 0
    terms["id"].backward()
    assert net.decoders["rgb"].out.bias.grad.abs().sum() > 0
    assert all(p.grad is None for p in face.parameters())
    assert net.decoders["depth"].out.bias.grad is None or net.decoders["depth"].out.bias.grad.abs().sum() == 0


def test_consistency_step_reaches_generator_only():
    net = tiny(modalities=("rgb", "depth")).train()
    b = make_batch()
    out = net(b["rgb"], b["depth"], b["ir"])
    pairs = net._pairs(b["label"])
    traces = {m: t + 0.2 for m, t in out["_gen"]["traces"].items()}
    lc = net.consistency_loss(b, traces, out["_present"], pairs, mix=torch.tensor([0.3, 1.0]))
    assert lc.item() > 0
    lc.backward()
    assert net.encoders["depth"].conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.discriminator_parameters())
    # a batch without both classes has no synthesised spoofs
    assert net._pairs(torch.zeros(4, dtype=torch.long)) is None


def test_load_pretrained_encoders(tmp_path):
    ref = ResNet(layers=(1, 1, 1, 1), width=8)
    sd = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in ref.state_dict().items()}
    torch.save(sd, tmp_path / "r50.pth")
    net = tiny(modalities=("rgb", "depth"), pretrained=str(tmp_path / "r50.pth"))
    assert torch.equal(net.encoders["rgb"].layer3[0].conv3.weight, sd["layer3.0.conv3.weight"])
    assert torch.allclose(net.encoders["depth"].conv1.weight, sd["conv1.weight"].mean(1, keepdim=True) * 3)


def test_three_step_training_overfits_small_batch():
    torch.manual_seed(0)
    net = tiny(modalities=("rgb", "depth"))
    b = make_batch(n=16)
    opts = net.make_optimisers(lr=2e-3)
    d_before = [p.clone() for p in net.discriminator_parameters()][:2]
    first = None
    for i in range(8):
        r = net.train_step(b, opts)
        first = first or r
    assert set(r) >= {"total", "G", "intensity", "e", "id", "cls", "center", "D", "consistency"}
    assert r["cls"] < first["cls"] and r["e"] < first["e"]
    assert any(not torch.equal(a, p) for a, p in zip(d_before, net.discriminator_parameters()))
    # scored with batch statistics: 8 steps are too few for BatchNorm's running averages to settle
    with torch.no_grad():
        s = net(b["rgb"], b["depth"], b["ir"])["score"]
    assert s[b["label"] == 1].mean() - s[b["label"] == 0].mean() > 0.1


def test_onnx_export_dynamic_batch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    net = tiny(modalities=("rgb", "depth")).eval()
    b = make_batch(n=2)
    args = (b["rgb"][:1], b["depth"][:1], b["ir"][:1], b["present"][:1])
    path = tmp_path / "st.onnx"
    names = ["rgb", "depth", "ir", "present"]
    torch.onnx.export(net, args, str(path), opset_version=17, dynamo=False, input_names=names,
                      output_names=list(net.output_names),
                      dynamic_axes={n: {0: "batch"} for n in names + list(net.output_names)})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {n: b[n].numpy() for n in names}
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    ref = net(b["rgb"], b["depth"], b["ir"], b["present"])
    for k in net.output_names:
        np.testing.assert_allclose(got[k], ref[k].detach().numpy(), atol=1e-4, rtol=1e-3)


def test_identity_weights_file_builds_arcface(tmp_path):
    from edge_fas.models.resnet import iresnet18

    torch.save(iresnet18().state_dict(), tmp_path / "r18.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "identity loss is off" warning when weights are given
        net = SpoofTraceNet("edge", identity_weights=str(tmp_path / "r18.pth"), **TINY)
    assert net.identity_net is not None and not any(p.requires_grad for p in net.identity_net.parameters())
    with pytest.warns(UserWarning, match="identity loss"):
        SpoofTraceNet("edge", **TINY)


def test_validation_loss_from_eval_output_keeps_batchnorm_stats():
    net = tiny(modalities=("rgb", "depth")).eval()
    b = make_batch()
    stats = net.encoders["rgb"].bn1.running_mean.clone()
    with torch.no_grad():
        terms = net.loss(b, net(b["rgb"], b["depth"], b["ir"], b["present"]))
    assert torch.isfinite(terms["total"]) and not net.training
    assert torch.equal(stats, net.encoders["rgb"].bn1.running_mean)


def test_train_step_single_class_batch_and_grad_scaler():
    net = tiny(modalities=("rgb", "depth"))
    opts = net.make_optimisers()
    live = {**make_batch(n=2), "label": torch.zeros(2, dtype=torch.long)}
    r = net.train_step(live, opts)  # no spoof: no synthesised spoofs, no consistency step
    assert r["consistency"] == 0.0 and np.isfinite(r["total"]) and np.isfinite(r["D"])
    before = net.decoders["rgb"].out.weight.clone()
    r = net.train_step(make_batch(n=2), opts, scaler=torch.amp.GradScaler("cpu"))
    assert np.isfinite(r["total"]) and not torch.equal(before, net.decoders["rgb"].out.weight)


def test_family_head_starts_at_phis_ranking_and_learns_the_families():
    from edge_fas.data.species import FAMILIES

    plain, headed = tiny().eval(), tiny(family_head=True).eval()
    headed.load_state_dict(plain.state_dict(), strict=False)  # the same network, a zero head added
    b = make_batch(n=6)
    with torch.no_grad():
        ref, got = plain(b["rgb"], b["depth"], b["ir"]), headed(b["rgb"], b["depth"], b["ir"])
    # a zero head gives every family the same logit: attack logit log 6, so the score keeps phi's order
    torch.testing.assert_close(got["logits"], 0.5 * (ref["logits"] + torch.log(torch.tensor(6.0))))
    torch.testing.assert_close(got["score"], torch.sigmoid(got["logits"]))
    # family_weight is the head's share of the logit: 1 scores by the head alone, whatever phi says
    alone = tiny(family_head=True, family_weight=1.0).eval()
    alone.load_state_dict(headed.state_dict())
    torch.nn.init.normal_(alone.family_head.weight, std=0.5)
    with torch.no_grad():
        fam = alone.family_head(alone.family_features(b["rgb"], b["depth"], b["ir"]))
        torch.testing.assert_close(alone(b["rgb"], b["depth"], b["ir"])["logits"],
                                   torch.logsumexp(fam[:, 1:], 1) - fam[:, 0])
    with pytest.raises(ConfigError, match="family_weight is the family head's share"):
        tiny(family_head=True, family_weight=1.5)
    # trained, the head's cross-entropy falls and its term is in the generator's total
    headed.train()
    b["family"] = torch.tensor([0, FAMILIES.index("flexible_mask"), 0, FAMILIES.index("print"), 0, -1])
    b["label"] = torch.tensor([0, 1, 0, 1, 0, 1])
    opts = headed.make_optimisers(lr=5e-3)
    first = headed.train_step(b, opts)
    for _ in range(6):
        last = headed.train_step(b, opts)
    assert "family" in first and last["family"] < first["family"]
    out = headed(b["rgb"], b["depth"], b["ir"])
    terms = headed.loss(b, out)
    assert float(terms["total"]) > float(terms["total"] - terms["family"])
    # every family unnamed (-1): no term, and a batch without families is refused by name
    assert float(headed.loss({**b, "family": torch.full((6,), -1)}, out)["family"]) == 0.0
    with pytest.raises(ValueError, match="family"):
        headed.loss({k: v for k, v in b.items() if k != "family"}, out)


def test_family_class_weights_weight_the_family_cross_entropy_by_class():
    import torch.nn.functional as F

    from edge_fas.data.species import FAMILIES

    rigid, paper = FAMILIES.index("rigid_mask"), FAMILIES.index("paper_mask")
    family = torch.tensor([0, rigid, paper, rigid, -1])
    logits = torch.randn(5, len(FAMILIES), generator=torch.Generator().manual_seed(0))
    plain = tiny(family_head=True)
    weighted = tiny(family_head=True, family_class_weights={"rigid_mask": 3.0})
    expected = torch.ones(len(FAMILIES))
    expected[rigid] = 3.0
    got = weighted._family_loss(logits, family)
    torch.testing.assert_close(got, F.cross_entropy(logits, family, weight=expected, ignore_index=-1))
    # a weighted mean: the named class counts 3 times as much, so the loss moves toward its samples' terms
    per_sample = F.cross_entropy(logits, family, ignore_index=-1, reduction="none")
    assert float((got - plain._family_loss(logits, family)).abs()) > 1e-4
    torch.testing.assert_close(got, (per_sample[0] + 3 * per_sample[1] + per_sample[2] + 3 * per_sample[3]) / 8)
    assert weighted.config["family_class_weights"] == {"rigid_mask": 3.0}  # plain, so it round-trips in YAML
    for bad, message in (({"silicone": 2.0}, r"unknown families \['silicone'\]"),
                         ({"rigid_mask": 0.0}, "each weight must be a number > 0"),
                         ({"rigid_mask": True}, "each weight must be a number > 0"),
                         ([2.0], "mapping of attack families to loss weights")):
        with pytest.raises(ConfigError, match=message):
            tiny(family_head=True, family_class_weights=bad)
    with pytest.raises(ConfigError, match="weights the family head's loss; set family_head: true"):
        tiny(family_class_weights={"rigid_mask": 2.0})


def test_family_head_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    net = tiny(family_head=True)
    torch.nn.init.normal_(net.family_head.weight, std=0.5)  # a head that moves the score
    net.eval()
    b = make_batch(n=2)
    names = ["rgb", "depth", "ir", "present"]
    path = tmp_path / "st.onnx"
    torch.onnx.export(net, tuple(b[n] for n in names), str(path), opset_version=17, dynamo=False, input_names=names,
                      output_names=list(net.output_names), dynamic_axes={n: {0: "batch"} for n in names})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {n: b[n].numpy() for n in names})))
    ref = net(b["rgb"], b["depth"], b["ir"], b["present"])
    np.testing.assert_allclose(got["logits"], ref["logits"].detach().numpy(), atol=1e-4, rtol=1e-3)


def test_family_pixels_feed_the_head_each_streams_pooled_cells_and_export(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    net = tiny(family_head=True, family_pixels=4).eval()
    b = make_batch(n=3)
    feats = net.family_features(b["rgb"], b["depth"], b["ir"], b["present"])
    stage = net.family_head.in_features - 5 * 16  # rgb 3 + depth 1 + ir 1 channels, 4 x 4 cells each
    assert feats.shape == (3, net.family_head.in_features)
    # the pixel part is each input averaged over 8 x 8 blocks (32 / 4), colour first, then depth, then IR
    torch.testing.assert_close(feats[:, stage + 3 * 16:stage + 4 * 16],
                               b["depth"].reshape(3, 1, 4, 8, 4, 8).mean(dim=(3, 5)).flatten(1))
    # a missing stream gives zeros, not its pixels
    absent = b["present"].clone()
    absent[:, 1] = 0
    assert float(net.family_features(b["rgb"], b["depth"], b["ir"], absent)[:, stage + 48:stage + 64].abs().sum()) == 0
    # the head reads the same input in the full forward pass, and the exported graph agrees
    torch.nn.init.normal_(net.family_head.weight, std=0.2)
    with torch.no_grad():
        ref = net(b["rgb"], b["depth"], b["ir"], b["present"])
        attack = torch.logsumexp(net.family_head(feats)[:, 1:], 1) - net.family_head(feats)[:, 0]
        phi = tiny().eval()
        phi.load_state_dict(net.state_dict(), strict=False)
        torch.testing.assert_close(ref["logits"], 0.5 * (phi(b["rgb"], b["depth"], b["ir"], b["present"])["logits"] + attack))
    names = ["rgb", "depth", "ir", "present"]
    path = tmp_path / "px.onnx"
    torch.onnx.export(net, tuple(b[n] for n in names), str(path), opset_version=17, dynamo=False, input_names=names,
                      output_names=list(net.output_names), dynamic_axes={n: {0: "batch"} for n in names})
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["logits"], {n: b[n].numpy() for n in names})
    np.testing.assert_allclose(got[0], ref["logits"].numpy(), atol=1e-4, rtol=1e-3)
    with pytest.raises(ConfigError, match="family_pixels must be 0 .off. or a side that divides input_size 32"):
        tiny(family_head=True, family_pixels=5)
    with pytest.raises(ConfigError, match="family_pixels feeds the family head"):
        tiny(family_pixels=4)
    with pytest.raises(ConfigError, match="no family head"):
        tiny().family_features(b["rgb"], b["depth"], b["ir"])


def test_the_head_alone_stays_finite_where_phis_float16_logit_is_infinite():
    net = tiny(family_head=True, family_weight=1.0).eval()
    torch.nn.init.normal_(net.family_head.weight, std=0.5)
    b = make_batch(n=2)
    net.half()  # in float16 phi's clamp to 1 - 1e-6 rounds to 1, so a saturated phi's logit is +inf
    with torch.no_grad():
        fam = net.family_head(net.family_features(*(b[m].half() for m in ("rgb", "depth", "ir"))))
        _, _, logits = net.classify({m: torch.full_like(b[m], 1e4).half() for m in net.modalities}, fam)
    assert torch.isfinite(logits).all()


def test_phis_float16_logit_is_bounded_where_it_saturates():
    """In float16 phi's clamp to 1 - 1e-6 rounds to 1, so a saturated phi's logit was +inf; it must be the float32
    bound instead, so the weighted mean with the head's logit is a number the head can still move."""
    from models.spoof_trace import PHI_LOGIT_MAX

    b = make_batch(n=2)
    for overrides in ({}, {"family_head": True}):
        net = tiny(**overrides).eval()
        fam = None
        with torch.no_grad():
            if net.family_head is not None:
                torch.nn.init.normal_(net.family_head.weight, std=0.5)
                fam = net.family_head(net.family_features(b["rgb"], b["depth"], b["ir"]))
            net.half()
            traces = {m: torch.full_like(b[m], 1e4).half() for m in net.modalities}
            _, _, got = net.classify(traces, None if fam is None else fam.half())
        assert torch.isfinite(got).all(), overrides
        want = torch.full((2,), PHI_LOGIT_MAX)
        if fam is not None:
            want = 0.5 * want + 0.5 * (torch.logsumexp(fam[:, 1:], 1) - fam[:, 0])
        torch.testing.assert_close(got.float(), want, atol=0.02, rtol=0.002)
