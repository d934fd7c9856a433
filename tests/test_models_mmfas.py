"""mmFAS: switch order, residual base, alignment losses, hard-pair mining, masks, training, export."""

import numpy as np
import pytest
import torch

from edge_fas.errors import ConfigError
from edge_fas.models import build
from edge_fas.models.mmfas import MMFAS, icl_loss, mine_pairs, switch_sources

TINY = dict(input_size=32, width=24, heads=2, enc_depth=1, fusion_depth=3, head_width=24)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models are overhead-bound: one thread is fastest and fair on the shared 2-core box."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(**kw):
    torch.manual_seed(0)
    return build("mmfas", "edge", **{**TINY, **kw})


def batch(n=8, s=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    label = torch.tensor([0, 1] * (n // 2))
    # attacks are brighter in every modality: a learnable signal
    shift = label.float().view(-1, 1, 1, 1)
    return dict(rgb=torch.randn(n, 3, s, s, generator=g) + shift, depth=torch.randn(n, 1, s, s, generator=g) - shift,
                ir=torch.randn(n, 1, s, s, generator=g) + shift, present=torch.ones(n, 3, dtype=torch.bool), label=label)


def test_switch_sources_cycle_rdi_and_other_orders():
    assert [switch_sources("RDI", l) for l in range(4)] == [("R", "D", "I"), ("D", "I", "R"), ("I", "R", "D"), ("R", "D", "I")]
    assert switch_sources("DRI", 1) == ("R", "I", "D")
    with pytest.raises(ConfigError, match="permutation"):
        tiny(order="RRD")


def _probe_switch(net, streams):
    """Record which stream feeds q/k/v in each block by giving every stream a distinct constant."""
    seen = []
    for blk in net.fusion:
        orig = blk.attn.attend

        def spy(q, k, v, _orig=orig):
            seen.append(tuple(round(float(t.detach().mean()), 3) for t in (q, k, v)))
            return _orig(q, k, v)

        blk.attn.attend = spy
    net._switch(streams)
    return seen


def test_switch_block_uses_shifted_sources_and_replaces_only_rgb():
    net = tiny().eval()
    for blk in net.fusion:  # identity norms so the spy sees the raw stream values
        blk.norm1 = torch.nn.Identity()
    t = {"rgb": torch.full((1, 5, 24), 1.0), "depth": torch.full((1, 5, 24), 2.0), "ir": torch.full((1, 5, 24), 3.0)}
    seen = _probe_switch(net, dict(t))
    assert seen[0] == (1.0, 2.0, 3.0)  # (R, D, I)
    assert seen[1][:2] == (2.0, 3.0) and seen[1][2] != 1.0  # (D, I, R') with R' block 0's output
    assert seen[2][0] == 3.0 and seen[2][2] == 2.0 and seen[2][1] not in (1.0, seen[1][2])  # (I, R'', D)
    out = net._switch(dict(t))
    assert torch.equal(out["depth"], t["depth"]) and torch.equal(out["ir"], t["ir"])
    assert not torch.equal(out["rgb"], t["rgb"])


@pytest.mark.parametrize("residual,base", [("query", "depth"), ("rgb", "rgb")])
def test_residual_base_stream(residual, base):
    net = tiny(residual=residual, fusion_depth=2).eval()
    blk = net.fusion[1]  # block 1 queries depth
    with torch.no_grad():  # zero attention and FFN outputs: the block returns its residual base
        for lin in (blk.attn.proj, blk.mlp.fc2):
            lin.weight.zero_()
            lin.bias.zero_()
    g = torch.Generator().manual_seed(1)
    t = {k: torch.randn(2, 5, 24, generator=g) for k in ("rgb", "depth", "ir")}
    net.fusion = net.fusion[1:]  # run only that block (layer index 0 -> would query rgb) ...
    net.config = {**net.config, "order": "DIR"}  # ... so shift the order to make it query depth
    out = net._switch(dict(t))
    torch.testing.assert_close(out["rgb"], t[base])


def test_icl_loss_lower_for_matched_than_shuffled():
    g = torch.Generator().manual_seed(0)
    f = torch.nn.functional.normalize(torch.randn(16, 24, generator=g), dim=1)
    matched = icl_loss(20 * f @ f.t())
    shuffled = icl_loss(20 * f @ f[torch.randperm(16, generator=g)].t())
    assert matched < 0.1 < shuffled


PAIR_LABEL = torch.tensor([0, 0, 1, 1])
PAIR_SIM = torch.tensor([[0.9, 0.1, 0.5, 0.7],
                         [0.2, 0.8, 0.6, 0.3],
                         [0.4, 0.0, 0.9, 0.2],
                         [0.1, 0.3, 0.5, 0.6]])


def test_hard_pair_mining_picks_hardest_negative_and_positive():
    label, sim = PAIR_LABEL, PAIR_SIM
    ri, oi, same = mine_pairs(sim, label)
    pairs = {(int(a), int(b), int(s)) for a, b, s in zip(ri, oi, same)}
    assert len(ri) == 8
    assert {(0, 3, 0), (1, 2, 0), (2, 0, 0), (3, 1, 0)} <= pairs  # highest-similarity other-class
    assert {(0, 1, 1), (1, 0, 1), (2, 3, 1), (3, 2, 1)} <= pairs  # lowest-similarity same-class
    ri, oi, same = mine_pairs(sim, torch.zeros(4, dtype=torch.long))  # one class: positives only
    assert len(ri) == 4 and bool(same.all())


def test_class_matching_head_learns_same_class_pairs():
    """Same-class is an XOR of the pair's classes: the matcher must learn it from mined pairs."""
    torch.manual_seed(0)
    mod = tiny().align["depth"]
    g = torch.Generator().manual_seed(2)
    label = torch.tensor([0, 1] * 16)
    centre = torch.randn(2, 24, generator=g) * 3
    f_r = centre[label] + torch.randn(32, 24, generator=g)
    f_o = centre[label] + torch.randn(32, 24, generator=g)
    opt = torch.optim.Adam(mod.matcher.parameters(), lr=1e-2)
    for _ in range(60):
        ri, oi, same = mine_pairs(mod.similarity(f_r, f_o).detach(), label)
        loss = torch.nn.functional.cross_entropy(mod.matcher(torch.cat([f_r[ri], f_o[oi]], dim=1)), same)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss < 0.1  # chance is ln 2 = 0.69


def test_alignment_losses_skip_missing_modalities_and_reach_encoders():
    net = tiny().train()
    b = batch()
    b["present"][:, 2] = False  # IR missing everywhere: the RGB-IR module contributes nothing
    out = net(b["rgb"], b["depth"], b["ir"], b["present"])
    terms = net.alignment_losses(out["align"], out["present"], b["label"])
    terms["icl"].backward()
    assert net.align["ir"].proj_other.weight.grad is None
    assert net.align["depth"].proj_other.weight.grad.abs().sum() > 0
    assert net.encoders["depth"].patch_embed.proj.weight.grad.abs().sum() > 0


def test_missing_modality_input_is_ignored():
    net = tiny().eval()
    b = batch(n=2)
    p = torch.tensor([[True, False, True]] * 2)
    a = net(b["rgb"], b["depth"], b["ir"], p)["score"]
    c = net(b["rgb"], torch.randn_like(b["depth"]) * 5, b["ir"], p)["score"]
    torch.testing.assert_close(a, c)


@pytest.mark.parametrize("fusion", ["switch", "merge", "cross"])
def test_training_lowers_loss_on_fixed_batch(fusion):
    net = tiny(fusion=fusion)
    b = batch(n=16)
    opt = net.make_optimisers(lr=2e-3)
    first = net.train_step(b, opt)
    for _ in range(25):
        last = net.train_step(b, opt)
    assert set(last) == {"bce", "icl", "cm", "total"}
    assert last["total"] < first["total"] and last["bce"] < first["bce"]


def test_paper_preset_shapes_and_training_record():
    with torch.device("meta"):
        net = build("mmfas", "paper")
    assert net.input_size == 224 and net.config["width"] == 270 and len(net.fusion) == 6
    assert len(net.encoders["rgb"].blocks) == 3 and net.encoders["rgb"].blocks[0].attn.head_dim == 45
    assert net.encoders["rgb"].pos_embed.shape == (1, 197, 270)
    assert net.fusion[0].mlp.fc1.weight.shape == (1080, 270)
    assert net.align["depth"].matcher[0].weight.shape == (540, 540)
    assert net.paper_training["lr"] == 1e-4 and net.paper_training["epochs"] == 30
    n = sum(p.numel() for p in net.parameters())
    assert 13e6 < n < 15.5e6  # 3 x 3 encoder blocks + 6 fusion blocks of width 270


@pytest.mark.parametrize("preset", ["edge", "paper"])
def test_full_size_forward_backward(preset):
    torch.manual_seed(0)
    net = build("mmfas", preset)
    b = batch(n=2, s=net.input_size)
    out = net(b["rgb"], b["depth"], b["ir"], b["present"])
    assert out["score"].shape == (2,) and set(out["align"]) == {"rgb_d", "rgb_i", "depth", "ir"}
    net.loss(b, out)["total"].backward()
    assert net.encoders["ir"].patch_embed.proj.weight.grad.abs().sum() > 0
    assert net.head[-1].weight.grad.abs().sum() > 0


def test_onnx_export_dynamic_batch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    net = tiny().eval()
    b = batch(n=4)
    names = ["rgb", "depth", "ir", "present"]
    path = tmp_path / "mmfas.onnx"
    torch.onnx.export(net, tuple(b[n][:1] for n in names), str(path), opset_version=17, dynamo=False,
                      input_names=names, output_names=list(net.output_names),
                      dynamic_axes={n: {0: "batch"} for n in names + list(net.output_names)})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {n: b[n].numpy() for n in names})
    ref = net(*(b[n] for n in names))
    for k, v in zip(net.output_names, got):
        np.testing.assert_allclose(v, ref[k].detach().numpy(), atol=1e-4, rtol=1e-3)


def test_bad_options_name_the_fix():
    with pytest.raises(ConfigError, match="unknown option"):
        tiny(widht=3)
    with pytest.raises(ConfigError, match="fusion"):
        tiny(fusion="concat")
    assert isinstance(tiny(), MMFAS)


# ---- ablation switches (Table 2): mining mode, modality subsets ------------------------------------
def test_mining_modes_hnm_only_and_every_pair():
    label, sim = PAIR_LABEL, PAIR_SIM
    ri, oi, same = mine_pairs(sim, label, "hnm")
    pairs = {(int(a), int(b), int(s)) for a, b, s in zip(ri, oi, same)}
    assert pairs == {(0, 3, 0), (1, 2, 0), (2, 0, 0), (3, 1, 0), (0, 0, 1), (1, 1, 1), (2, 2, 1), (3, 3, 1)}
    ri, oi, same = mine_pairs(sim, label, "none")
    assert len(ri) == 16 and {(int(a), int(b)) for a, b in zip(ri, oi)} == {(a, b) for a in range(4) for b in range(4)}
    assert [int(s) for s in same] == [int(label[a] == label[b]) for a, b in zip(ri, oi)]
    with pytest.raises(ValueError, match="mining"):
        mine_pairs(sim, label, "hpm")


def test_mining_option_reaches_the_class_matching_loss():
    b = batch()
    cms = {}
    for mode in ("hnm+hpm", "hnm", "none"):
        net = tiny(mining=mode).train()
        cms[mode] = float(net.loss(b, net(b["rgb"], b["depth"], b["ir"], b["present"]))["cm"])
    assert len({round(v, 6) for v in cms.values()}) == 3  # same weights, different pairs, different CM loss
    with pytest.raises(ConfigError, match="mining must be one of.*hnm"):
        tiny(mining="hard")


def test_modality_subsets_build_only_what_they_use():
    net = tiny(modalities=["depth", "rgb"], fusion="merge")
    assert net.modalities == ("rgb", "depth") and set(net.encoders) == {"rgb", "depth"} and set(net.align) == {"depth"}
    b = batch()
    net.eval()
    out = net(b["rgb"], b["depth"], b["ir"], b["present"])
    assert torch.equal(out["logits"], net(b["rgb"], b["depth"], torch.randn_like(b["ir"]), b["present"])["logits"])
    assert not torch.equal(out["logits"], net(b["rgb"], torch.randn_like(b["depth"]), b["ir"], b["present"])["logits"])
    opt = net.make_optimisers(lr=3e-3)
    first = net.train_step(b, opt)
    for _ in range(8):
        last = net.train_step(b, opt)
    assert last["total"] < first["total"] and first["icl"] > 0 and first["cm"] > 0
    # no RGB: no alignment module (RGB is the bridge), so no alignment loss
    di = tiny(modalities=["depth", "ir"], fusion="none")
    assert len(di.align) == 0 and len(di.fusion) == 0
    terms = di.loss(b, di.train()(b["rgb"], b["depth"], b["ir"], b["present"]))
    assert terms["icl"] == 0 and terms["cm"] == 0 and terms["total"] == terms["bce"]
    # unimodal: fewer parameters than the full model, and a checkpoint rebuilds it
    uni = tiny(modalities="ir", fusion="none")
    assert sum(p.numel() for p in uni.parameters()) < sum(p.numel() for p in tiny().parameters()) / 3
    again = build("mmfas", "edge", **uni.config)
    assert set(again.state_dict()) == set(uni.state_dict())
    assert set(tiny().state_dict()) >= {"encoders.ir.pos_embed", "align.ir.matcher.0.weight", "fusion.2.attn.qkv.weight"}


def test_modality_subsets_refuse_fusions_that_need_more_streams():
    with pytest.raises(ConfigError, match="'switch'.*needs all three.*'none', 'merge' or 'cross'"):
        tiny(modalities=["rgb", "depth"])
    with pytest.raises(ConfigError, match="'cross'.*two or more"):
        tiny(modalities=["rgb"], fusion="cross")
    with pytest.raises(ConfigError, match="modalities must be distinct names"):
        tiny(modalities=["rgb", "thermal"], fusion="none")
    assert len(tiny(modalities=["rgb", "ir"], fusion="cross").fusion[0]) == 2  # one block per stream
