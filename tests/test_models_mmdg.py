"""MMDG: ReGrad's four cases, UEM, U-Adapter gating, SSP loss, the model contract."""

import pytest
import torch

from edge_fas.models.mmdg import regrad

T = torch.tensor


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models are overhead-bound: one thread is fastest on the shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_regrad_slow_owner_agreeing_others_add_their_projection():
    # losses: RGB fast (0.1); owner depth (1) slow. g_rgb agrees with g_depth, g_ir agrees too.
    g = [T([1.0, 1.0]), T([2.0, 0.0]), T([1.0, -3.0])]
    out = regrad(g, [0.1, 0.5, 0.9], [0.5, 0.7, 0.25], owner=1)
    # proj of g_rgb on g_depth = (1,0); proj of g_ir on g_depth = (1,0)
    assert torch.allclose(out, T([2.0 + 0.5 * 1 + 0.25 * 1, 0.0]))


def test_regrad_slow_owner_conflicting_other_adds_only_orthogonal_part():
    g = [T([-1.0, 2.0]), T([2.0, 0.0]), T([0.0, 0.0])]
    out = regrad(g, [0.1, 0.5, 0.9], [0.5, 0.7, 0.25], owner=1)
    # g_rgb . g_depth < 0: orthogonal part of g_rgb is (0, 2); g_ir zero contributes its (zero) orthogonal part
    assert torch.allclose(out, T([2.0, 0.5 * 2.0]))


def test_regrad_fast_owner_agreeing_is_projected_and_scaled():
    g = [T([3.0, 1.0]), T([1.0, 0.0]), T([1.0, 0.0])]
    out = regrad(g, [0.1, 0.5, 0.9], [0.5, 0.7, 0.25], owner=0)
    s = T([2.0, 0.0])
    # g_rgb . s > 0 -> projection (3, 0), scaled by c_rgb 0.5, plus the others unchanged
    assert torch.allclose(out, 0.5 * T([3.0, 0.0]) + s)


def test_regrad_fast_owner_conflicting_keeps_orthogonal_part():
    g = [T([-3.0, 1.0]), T([1.0, 0.0]), T([1.0, 0.0])]
    out = regrad(g, [0.9, 0.5, 0.1], [0.5, 0.7, 0.25], owner=2)  # IR fast now
    # owner IR: g_ir=(1,0), s=g_rgb+g_depth=(-2,1); g_ir.s<0 -> orthogonal part of g_ir to s
    s = T([-2.0, 1.0])
    orth = T([1.0, 0.0]) - (-2.0 / 5.0) * s
    assert torch.allclose(out, 0.25 * orth + s)
    assert abs(float((orth * s).sum())) < 1e-6


def test_regrad_shared_parameter_follows_the_fast_modality_and_checks_inputs():
    g = [T([[1.0, 2.0]]), T([[0.5, 0.0]]), T([[0.0, 1.0]])]
    shared = regrad(g, [0.3, 0.2, 0.9], [0.5, 0.4, 0.25], owner=None)
    assert torch.allclose(shared, regrad(g, [0.3, 0.2, 0.9], [0.5, 0.4, 0.25], owner=1))
    assert shared.shape == (1, 2)
    with pytest.raises(ValueError, match="shape"):
        regrad([T([1.0]), T([1.0, 2.0]), T([1.0])], [0, 1, 2], [1, 1, 1], owner=0)
    with pytest.raises(ValueError, match="owner"):
        regrad(g, [0, 1, 2], [1, 1, 1], owner=3)


# ---- the network -------------------------------------------------------------------------------
from edge_fas.errors import ArtifactError, ConfigError  # noqa: E402
from edge_fas.models import mmdg  # noqa: E402

TINY = dict(input_size=32, width=24, depth=2, heads=2)


def tiny(**kw):
    torch.manual_seed(0)
    return mmdg.build("edge", **{**TINY, **kw})


def batch_of(n, seed=0, size=32):
    g = torch.Generator().manual_seed(seed)
    label = torch.arange(n) % 2
    # attacks are brighter in every modality, so the task is learnable
    shift = (label.float() * 1.5 - 0.75).view(-1, 1, 1, 1)
    return {
        "rgb": torch.randn(n, 3, size, size, generator=g) + shift,
        "depth": torch.randn(n, 1, size, size, generator=g) - shift,
        "ir": torch.randn(n, 1, size, size, generator=g) + shift,
        "present": torch.ones(n, 3, dtype=torch.bool),
        "label": label,
        "domain": torch.arange(n) % 3,
    }


def test_forward_shapes_score_and_missing_modalities_enter_as_zeros():
    m = tiny().eval()
    b = batch_of(3)
    out = m(b["rgb"], b["depth"], b["ir"])
    assert set(m.output_names) <= set(out)
    assert out["logits"].shape == (3,) and out["score"].shape == (3,)
    assert out["uncertainty"].shape == (3, 3, 2, 2)
    assert torch.allclose(out["score"], torch.sigmoid(out["logits"]), atol=1e-6)
    assert ((out["uncertainty"] >= 0) & (out["uncertainty"] <= 1)).all()
    present = torch.tensor([[True, False, True]] * 3)
    a = m(b["rgb"], b["depth"], b["ir"], present)
    z = m(b["rgb"], torch.zeros_like(b["depth"]), b["ir"])
    assert torch.allclose(a["logits"], z["logits"], atol=1e-6)
    assert not torch.allclose(a["logits"], out["logits"], atol=1e-4)
    # eval is deterministic (analytic UEM)
    assert torch.equal(m(b["rgb"], b["depth"], b["ir"])["logits"], out["logits"])


def test_paper_preset_layout_on_meta_device():
    with torch.device("meta"):
        m = mmdg.build("paper")
    assert m.input_size == 224 and m.grid == 14
    assert m.pos_embed["ir"].shape == (1, 197, 768)
    assert m.patch_embed["depth"].weight.shape == (768, 1, 16, 16)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("blocks.10.", "blocks.0.", "patch_embed.")) for n in trainable)
    assert {"blocks.11.attn.qkv.weight", "norm.weight", "head.weight", "pos_embed.rgb", "cls_token.ir",
            "adapters.0.rgb_from_depth.up.weight"} <= trainable
    n_vit = sum(p.numel() for n, p in m.named_parameters() if n.startswith("blocks."))
    assert 85_000_000 < n_vit < 85_100_000  # 12 ViT-B blocks
    assert m.head.weight.shape == (2, 3 * 768)
    assert set(m.adapters[0]) == {"rgb_from_depth", "rgb_from_ir", "depth_from_rgb", "ir_from_rgb"}
    assert m.paper_training["lr"] == 5e-5 and m.paper_training["epochs"] == 70


def test_config_rebuilds_and_bad_options_fail_clearly():
    m = tiny()
    again = mmdg.build(m.preset, **m.config)
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in m.state_dict().items()}
    with pytest.raises(ConfigError, match="unknown option"):
        mmdg.build("edge", widht=3)
    with pytest.raises(ConfigError, match="uem"):
        mmdg.build("edge", uem="exact")


def test_zero_certainty_query_attends_uniformly():
    torch.manual_seed(0)
    att = mmdg.CertaintyCrossAttention(8, 8)
    q, kv = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    cert = torch.ones(2, 5)
    cert[:, 2] = 0.0
    out = att(q, kv, cert)
    uniform = att.proj(att.v(kv).mean(dim=1))  # every key weighted 1/N
    assert torch.allclose(out[:, 2], uniform, atol=1e-6)
    assert not torch.allclose(out[:, 1], uniform, atol=1e-3)


def test_mc_uem_converges_to_the_analytic_one():
    torch.manual_seed(0)
    x = torch.randn(4, 6) * 2
    mc = -torch.log(mmdg.mc_certainty(x, 0.3, 4000, 1.0))
    an = -torch.log(mmdg.analytic_certainty(x, 0.3, 1.0))
    assert torch.allclose(an, x.abs() * (0.3 / 0.7) ** 0.5)
    assert torch.allclose(mc, an, rtol=0.06, atol=1e-3)
    assert (mmdg.mc_certainty(torch.zeros(3), 0.3, 20, 2.25) == 1).all()


def test_adapters_start_as_no_ops_and_cdc_subtracts_the_centre_term():
    m = tiny()
    ad = m.adapters[0]["rgb_from_depth"]
    y = torch.randn(2, 5, 24)
    assert torch.equal(ad(y, torch.randn(2, 5, 24), torch.rand(2, 5, 24)), torch.zeros(2, 5, 24))
    cdc = mmdg.CDConv(4, 0.5)
    x = torch.randn(1, 4, 1, 1)  # a lone token: only the kernel centre sees it
    w = cdc.conv.weight
    expect = torch.einsum("oi,bihw->bohw", w[:, :, 1, 1] - 0.5 * w.sum(dim=(2, 3)), x)
    assert torch.allclose(cdc(x), expect, atol=1e-6)


def test_ssp_loss_prefers_own_prototype_and_reaches_only_its_modality():
    m = tiny()
    with torch.no_grad():
        m.prototypes.copy_(torch.randn(m.prototypes.shape) * 3)
        m.prototype_ready.fill_(True)
    target = torch.tensor([0, 1, 2, 3])
    feats = {mod: m.prototypes[i][target].clone().requires_grad_(True) for i, mod in enumerate(mmdg.MODALITIES)}
    present = torch.ones(4, 3)
    matched = m.ssp_losses(feats, target, present)
    shuffled = m.ssp_losses(feats, target[[1, 2, 3, 0]], present)
    assert all(a < b for a, b in zip(matched, shuffled))
    feats2 = {k: v + 0.1 for k, v in feats.items()}
    matched2 = m.ssp_losses(feats2, target, present)
    matched2[1].backward()
    assert feats["depth"].grad is not None and feats["rgb"].grad is None
    # live -> prototype 0, attacks -> 1 + domain; out-of-range domains are named
    assert m.prototype_index(torch.tensor([0, 1, 1]), torch.tensor([2, 0, 2])).tolist() == [0, 1, 3]
    with pytest.raises(ConfigError, match="num_domains"):
        m.prototype_index(torch.tensor([1]), torch.tensor([3]))


def test_update_prototypes_is_an_ema_of_class_means():
    m = tiny()
    b = batch_of(6)
    m.update_prototypes([b])
    feats = m.eval().encode(b["rgb"], b["depth"], b["ir"])["features"]
    target = m.prototype_index(b["label"], b["domain"])
    first = feats["ir"][target == 0].mean(0)
    assert torch.allclose(m.prototypes[2, 0], first, atol=1e-5)
    assert m.prototype_ready[:, [0, 1, 2, 3]].all()
    b2 = batch_of(6, seed=1)
    m.update_prototypes([b2])
    f2 = m.encode(b2["rgb"], b2["depth"], b2["ir"])["features"]["ir"][target == 0].mean(0)
    assert torch.allclose(m.prototypes[2, 0], 0.8 * f2 + 0.2 * first, atol=1e-5)


def test_owners_of_trainable_parameters():
    m = tiny()
    owners = {id(p): o for p, o in m.trainable_owners()}
    named = dict(m.named_parameters())
    assert owners[id(named["pos_embed.depth"])] == 1
    assert owners[id(named["adapters.1.ir_from_rgb.down_own.weight"])] == 2
    assert owners[id(named["adapters.1.rgb_from_ir.up.bias"])] == 0
    assert owners[id(named["blocks.0.attn.qkv.weight"])] is None


def test_train_step_adds_regrad_to_the_ce_gradient():
    m = tiny(adapter_dropout=0.0, uem="analytic")
    b = batch_of(4)
    m.update_prototypes([b])
    with torch.no_grad():  # non-zero adapters, so every modality's SSP loss reaches every stream
        for p in m.adapters.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    opt = {"model": torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.0)}
    m.train_step(b, opt)
    out = m(b["rgb"], b["depth"], b["ir"], b["present"])
    terms = m.loss(b, out)
    ssp = [float(terms[f"ssp_{k}"].detach()) for k in mmdg.MODALITIES]
    certs = [float(c) for c in out["certainties"]]
    for prm, owner in ((m.pos_embed["depth"], 1), (m.blocks[1].attn.qkv.weight, None)):
        ce = torch.autograd.grad(terms["ce"], prm, retain_graph=True)[0]
        g = [torch.autograd.grad(terms[f"ssp_{k}"], prm, retain_graph=True)[0] for k in mmdg.MODALITIES]
        assert all(float(gi.norm()) > 0 for gi in g)
        want = ce + regrad(g, ssp, certs, owner=owner)
        assert float((prm.grad - want).abs().max()) < 1e-6
        assert float((prm.grad - ce - sum(g)).abs().max()) > 1e-7  # it is not the plain sum


def test_train_step_overfits_sixteen_samples():
    torch.manual_seed(0)
    m = tiny()
    b = batch_of(16)
    opt = m.make_optimisers(lr=2e-3, weight_decay=0.0)
    first = m.train_step(b, opt)
    for _ in range(11):
        last = m.train_step(b, opt)
    assert m.prototype_ready.any()
    assert last["ce"] < 0.5 * first["ce"]


def test_timm_key_mapping_from_a_random_state_dict(tmp_path):
    m = tiny()
    own = m.state_dict()
    sd = {k: torch.randn(v.shape) for k, v in own.items() if k.startswith(("blocks.", "norm."))}
    sd["patch_embed.proj.weight"] = torch.randn(24, 3, 16, 16)
    sd["patch_embed.proj.bias"] = torch.randn(24)
    sd["cls_token"] = torch.randn(1, 1, 24)
    sd["pos_embed"] = torch.randn(1, 197, 24)
    sd["head.weight"] = torch.randn(1000, 24)
    path = tmp_path / "vit.pth"
    torch.save(sd, path)
    pos_before = m.pos_embed["rgb"].detach().clone()
    info = m.load_pretrained(str(path))
    assert torch.equal(m.blocks[1].mlp.fc2.weight, sd["blocks.1.mlp.fc2.weight"])
    assert torch.equal(m.patch_embed["rgb"].weight, sd["patch_embed.proj.weight"])
    assert torch.allclose(m.patch_embed["ir"].weight, sd["patch_embed.proj.weight"].sum(1, keepdim=True))
    assert torch.equal(m.cls_token["depth"], sd["cls_token"])
    assert torch.equal(m.pos_embed["rgb"], pos_before)  # MMDG learns new position embeddings
    assert "pos_embed" in info["skipped"] and "head.weight" in info["skipped"]
    del sd["norm.weight"]
    torch.save(sd, path)
    with pytest.raises(ArtifactError, match="norm.weight"):
        m.load_pretrained(str(path))
    with pytest.raises(ArtifactError, match="does not exist"):
        m.load_pretrained(str(tmp_path / "missing.pth"))


def test_eval_forward_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    m = tiny().eval()
    b = batch_of(2)
    args = (b["rgb"], b["depth"], b["ir"], b["present"])
    path = tmp_path / "mmdg.onnx"
    torch.onnx.export(m, args, str(path), opset_version=17, dynamo=False,
                      input_names=["rgb", "depth", "ir", "present"], output_names=list(m.output_names),
                      dynamic_axes={k: {0: "batch"} for k in ["rgb", "depth", "ir", "present", *m.output_names]})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    b3 = batch_of(3, seed=2)
    feeds = {k: b3[k].numpy() for k in ("rgb", "depth", "ir")}
    feeds["present"] = b3["present"].numpy()
    got = dict(zip(m.output_names, sess.run(None, feeds)))
    want = m(b3["rgb"], b3["depth"], b3["ir"], b3["present"])
    for k in m.output_names:
        assert torch.allclose(torch.from_numpy(got[k]), want[k], atol=1e-4), k


def test_frozen_parts_get_no_gradient_and_optimiser_skips_them():
    m = tiny(frozen_blocks=1, freeze_patch_embed=True)
    b = batch_of(4)
    opt = m.make_optimisers()
    assert opt["model"].defaults["lr"] == 5e-5 and opt["model"].defaults["weight_decay"] == 1e-3
    before = m.blocks[0].attn.qkv.weight.detach().clone()
    m.train_step(b, opt)
    assert m.blocks[0].attn.qkv.weight.grad is None and m.patch_embed["ir"].weight.grad is None
    assert torch.equal(m.blocks[0].attn.qkv.weight, before)
    assert m.blocks[1].attn.qkv.weight.grad is not None and m.pos_embed["rgb"].grad is not None
    n_opt = sum(p.numel() for g in opt["model"].param_groups for p in g["params"])
    assert n_opt == sum(p.numel() for p in m.parameters() if p.requires_grad)


def test_registry_build_and_checkpoint_round_trip_keep_prototypes(tmp_path):
    models = pytest.importorskip("edge_fas.models")
    torch.manual_seed(0)
    m = models.build("mmdg", preset="edge", **TINY)
    assert isinstance(m, mmdg.MMDG) and m.name == "mmdg"
    b = batch_of(4)
    m.train_step(b, m.make_optimisers(lr=1e-3))
    m.eval()
    path = models.save_checkpoint(tmp_path / "ckpt.pt", m, note="test")
    again, info = models.load_checkpoint(path)
    assert torch.equal(again.prototypes, m.prototypes) and bool(again.prototype_ready.any())
    assert torch.equal(again.eval()(b["rgb"], b["depth"], b["ir"])["logits"], m(b["rgb"], b["depth"], b["ir"])["logits"])


def test_ir_hog_plgf_channels():
    g = torch.Generator().manual_seed(0)
    ir = torch.rand(2, 1, 16, 16, generator=g)
    three = mmdg.ir_hog_plgf(ir)
    assert three.shape == (2, 3, 16, 16) and torch.equal(three[:, :1], ir)
    assert torch.allclose(mmdg.ir_hog_plgf(3.0 * ir)[:, 1:], three[:, 1:], atol=1e-5)  # scale invariant
    edge = torch.zeros(1, 1, 16, 16)
    edge[..., 8:] = 1.0  # a vertical edge: horizontal gradient, HOG draws vertical lines
    hog = mmdg.ir_hog_plgf(edge)[0, 1]
    lit = sorted(set(torch.nonzero(hog)[:, 1].tolist()))
    assert lit == [3, 4, 11, 12]  # the middle columns of each 8-wide cell, over all rows
    assert (hog[:, 3] > 0).all()
    m = tiny(ir_channels=3).eval()
    b = batch_of(2)
    out = m(b["rgb"], b["depth"], b["ir"])
    assert torch.equal(out["logits"], m(b["rgb"], b["depth"], mmdg.ir_hog_plgf(b["ir"]))["logits"])
    assert m.patch_embed["ir"].in_channels == 3


def test_loss_on_an_eval_output_and_a_batch_missing_a_modality():
    m = tiny()
    b = batch_of(4)
    m.update_prototypes([b])
    m.eval()
    out = m(b["rgb"], b["depth"], b["ir"], b["present"])
    terms = m.loss(b, out)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(out["logits"], b["label"].float())
    assert torch.allclose(terms["ce"], bce, atol=1e-5)
    assert set(terms) == {"ce", "ssp_rgb", "ssp_depth", "ssp_ir", "total"}
    b["present"][:, 1] = False  # no depth anywhere in the batch
    res = m.train_step(b, m.make_optimisers(lr=1e-3))
    assert res["ssp_depth"] == 0.0 and all(v == v for v in res.values())  # finite, no NaN


def test_edge_preset_at_its_input_size_trains_one_step():
    torch.manual_seed(0)
    m = mmdg.build("edge")
    assert m.input_size == 112
    b = batch_of(2, size=112)
    res = m.train_step(b, m.make_optimisers())
    assert res["total"] == res["total"] and m.pos_embed["ir"].grad is not None
    assert m.eval()(b["rgb"], b["depth"], b["ir"])["uncertainty"].shape == (2, 3, 7, 7)


def test_torchvision_vit_layout_maps_to_the_same_weights():
    m = tiny()
    own = m.state_dict()
    tv = {"conv_proj.weight": torch.randn(24, 3, 16, 16), "conv_proj.bias": torch.randn(24),
          "class_token": torch.randn(1, 1, 24), "encoder.pos_embedding": torch.randn(1, 197, 24),
          "encoder.ln.weight": torch.randn(24), "encoder.ln.bias": torch.randn(24),
          "heads.head.weight": torch.randn(1000, 24), "heads.head.bias": torch.randn(1000)}
    names = {"ln_1": "norm1", "ln_2": "norm2", "self_attention.in_proj_": "attn.qkv.",
             "self_attention.out_proj.": "attn.proj.", "mlp.0.": "mlp.fc1.", "mlp.3.": "mlp.fc2."}
    for i in range(2):
        for tv_name, timm_name in names.items():
            for suffix in ("weight", "bias"):
                sep = "" if tv_name.endswith(("_", ".")) else "."
                key = f"blocks.{i}.{timm_name}{'' if timm_name.endswith('.') else '.'}{suffix}"
                tv[f"encoder.layers.encoder_layer_{i}.{tv_name}{sep}{suffix}"] = torch.randn(own[key].shape)
    info = m.load_pretrained(tv)
    assert torch.equal(m.blocks[1].attn.qkv.weight, tv["encoder.layers.encoder_layer_1.self_attention.in_proj_weight"])
    assert torch.equal(m.blocks[0].mlp.fc2.bias, tv["encoder.layers.encoder_layer_0.mlp.3.bias"])
    assert torch.equal(m.norm.weight, tv["encoder.ln.weight"])
    assert torch.equal(m.cls_token["rgb"], tv["class_token"])
    assert set(info["skipped"]) == {"pos_embed", "head.weight", "head.bias"}


# ---- issue 15: the step gives the same numbers as before, faster and without host syncs ---------
import copy  # noqa: E402
import hashlib  # noqa: E402
import math  # noqa: E402

import torch.nn.functional as F  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402


def _before_regrad(grads, losses, certs, owner):
    """ReGrad as it was (commit b1db9b2): per parameter, host-side decisions, absolute zero test."""
    def project(g, onto):
        denom = (onto * onto).sum()
        return torch.zeros_like(g) if float(denom) <= 1e-12 else (g * onto).sum() / denom * onto

    def modulate(g, ref):
        proj = project(g, ref)
        return proj if float((g * ref).sum()) > 0 else g - proj

    losses = [float(x) for x in losses]
    fast = min(range(3), key=lambda i: losses[i])
    o = fast if owner is None else owner
    others = [j for j in range(3) if j != o]
    if o != fast:
        out = grads[o].clone()
        for j in others:
            out = out + float(certs[j]) * modulate(grads[j], grads[o])
        return out
    s = grads[others[0]] + grads[others[1]]
    return float(certs[o]) * modulate(grads[o], s) + s


class _Syncs(TorchDispatchMode):
    """Counts operations that make the host wait for a GPU (value reads, nonzero, boolean masks)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.split("::")[-1]
        masks = name in ("index", "index_put", "index_put_") and any(
            torch.is_tensor(i) and i.dtype == torch.bool for i in (args[1] if isinstance(args[1], (list, tuple)) else [args[1]]))
        self.count += name in ("_local_scalar_dense", "nonzero", "masked_select", "is_nonzero") or masks
        return func(*args, **(kwargs or {}))


def test_batched_regrad_matches_the_previous_implementation_without_a_host_sync():
    g = torch.Generator().manual_seed(0)
    shapes = [(5, 3), (5, 3), (7,), (2, 2, 2), (5, 3), (1,)]
    owners = [0, None, 2, 1, None, 1]
    grads = [[torch.randn(s, generator=g) for s in shapes] for _ in range(3)]
    grads[2][3] = torch.zeros(2, 2, 2)  # a modality that does not reach this parameter
    for losses, certs in (([0.2, 0.5, 0.9], [0.4, 0.6, 0.3]), ([0.7, 0.1, 0.3], [0.9, 0.2, 0.5]),
                          ([float("inf"), 0.4, 0.3], [0.0, 0.6, 0.5])):  # RGB absent from the batch
        with _Syncs() as syncs:
            now = mmdg.regrad_grads(grads, owners, torch.tensor(losses), torch.tensor(certs))
        assert syncs.count == 0
        for k, owner in enumerate(owners):
            before = _before_regrad([grads[i][k] for i in range(3)], losses, certs, owner)
            torch.testing.assert_close(now[k], before, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(mmdg.regrad([grads[i][k] for i in range(3)], losses, certs, owner), now[k])


def test_regrad_zero_test_is_relative_so_a_grad_scaler_changes_nothing():
    # gradients of the size adapters have at init: the previous absolute test (|ref|^2 <= 1e-12)
    # called the reference zero at scale 1 but not at a GradScaler's 65536, so the step depended on
    # the scaler; the relative test does not
    g = torch.Generator().manual_seed(1)
    grads = [torch.randn(20, generator=g) * 1e-7 for _ in range(3)]
    losses, certs = [0.5, 0.2, 0.9], [0.5, 0.7, 0.25]
    scaled = [65536.0 * x for x in grads]
    for owner in (0, 1, None):
        plain = mmdg.regrad(grads, losses, certs, owner)
        torch.testing.assert_close(mmdg.regrad(scaled, losses, certs, owner), 65536.0 * plain, rtol=1e-5, atol=0)
    old_plain, old_scaled = _before_regrad(grads, losses, certs, 0), _before_regrad(scaled, losses, certs, 0)
    assert not torch.allclose(old_scaled, 65536.0 * old_plain, rtol=1e-3)  # what the old test did
    # a reference that really is zero (or negligible next to the gradient) still counts as zero
    zero = [torch.ones(4), torch.zeros(4), torch.full((4,), 1e-30)]
    out = mmdg.regrad(zero, [0.9, 0.1, 0.5], [1.0, 1.0, 1.0], owner=0)
    torch.testing.assert_close(out, torch.ones(4) + torch.full((4,), 1e-30))  # g_o + c_j M(g_j, g_o) with M = g_j


def _before_mc(x, p, n, rate, masks):
    """The previous UEM: n explicit dropout draws (given masks), running sums, unbiased std."""
    total, squares = torch.zeros_like(x), torch.zeros_like(x)
    for mask in masks:
        d = x * mask / (1 - p)
        total += d
        squares += d * d
    return torch.exp(-rate * ((squares - total * total / n) / (n - 1)).clamp(min=0).sqrt())


def test_binomial_mc_certainty_is_the_draws_closed_form_and_has_their_distribution():
    p, n, rate = 0.3, 20, 2.25
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 50, generator=g)
    masks = (torch.rand(n, *x.shape, generator=g) > p).float()
    _, factor = mmdg._kept_count_table(p, n, x.device)
    closed = torch.exp(-rate * x.abs() * factor[masks.sum(0).long()])
    # the draws' arithmetic in float64 (in float32 the running sums cancel badly when every draw keeps
    # an element, giving a std of ~1e-3 |x| where the true one is 0: the closed form is exact there)
    reference = _before_mc(x.double(), p, n, rate, masks.double()).float()
    torch.testing.assert_close(closed, reference, rtol=1e-5, atol=1e-6)
    # the kept count's distribution: frequencies of each std factor vs Binomial(n, 1 - p)
    draws = -torch.log(mmdg.mc_certainty(torch.ones(400_000), p, n, 1.0, generator=torch.Generator().manual_seed(1)))
    k = torch.arange(n + 1, dtype=torch.float64)
    pmf = torch.exp(torch.lgamma(k.new_tensor(n + 1.0)) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
                    + k * math.log(1 - p) + (n - k) * math.log(p))
    levels = factor.double()
    nearest = (draws.double()[:, None] - levels[None, :].unique()[None, :]).abs().argmin(1)
    got = torch.bincount(nearest, minlength=len(levels.unique())).double() / len(draws)
    want = torch.zeros(len(levels.unique()), dtype=torch.float64).index_add_(
        0, torch.searchsorted(levels.unique(), levels), pmf)  # K and n - K share a std
    sigma = (want * (1 - want) / len(draws)).sqrt()
    assert ((got - want).abs() <= 5 * sigma + 1e-6).all(), (got, want)
    with pytest.raises(ConfigError, match="at least 2"):
        mmdg.mc_certainty(x, p, 1, rate)


def test_fused_attention_equals_the_written_out_one():
    torch.manual_seed(0)
    att = mmdg.Attention(24, 3)
    x = torch.randn(2, 5, 24)
    q, k, v = att.qkv(x).reshape(2, 5, 3, 3, 8).permute(2, 0, 3, 1, 4).unbind(0)
    manual = att.proj((torch.softmax(q @ k.transpose(-2, -1) * 8**-0.5, -1) @ v).transpose(1, 2).reshape(2, 5, 24))
    torch.testing.assert_close(att(x), manual, rtol=1e-5, atol=1e-6)
    cross = mmdg.CertaintyCrossAttention(8, 8)
    xq, xkv, cert = torch.randn(2, 5, 8), torch.randn(2, 5, 8), torch.rand(2, 5)
    q, k, v = (t.reshape(2, 5, 8, 1).transpose(1, 2) for t in (cross.q(xq), cross.k(xkv), cross.v(xkv)))
    logits = (q @ k.transpose(-2, -1)) * cert[:, None, :, None]  # official: logits times the query's certainty
    manual = cross.proj((torch.softmax(logits, -1) @ v).transpose(1, 2).flatten(2))
    torch.testing.assert_close(cross(xq, xkv, cert), manual, rtol=1e-5, atol=1e-6)
    from edge_fas.models.vit import Attention as VitAttention

    va = VitAttention(24, 3)
    a, b = torch.randn(2, 5, 24), torch.randn(2, 7, 24)
    w = va.qkv.weight
    qq = F.linear(a, w[:24], va.qkv.bias[:24]).reshape(2, 5, 3, 8).transpose(1, 2)
    kk = F.linear(b, w[24:48], va.qkv.bias[24:48]).reshape(2, 7, 3, 8).transpose(1, 2)
    vv = F.linear(b, w[48:], va.qkv.bias[48:]).reshape(2, 7, 3, 8).transpose(1, 2)
    manual = va.proj((torch.softmax(qq @ kk.transpose(-2, -1) * 8**-0.5, -1) @ vv).transpose(1, 2).flatten(2))
    torch.testing.assert_close(va.attend(a, b, b), manual, rtol=1e-5, atol=1e-6)


def _encode_per_modality(m, b):
    """The previous encode: each shared block run once per modality (eval mode, analytic UEM)."""
    p = b["present"].float()
    x = {}
    for i, mod in enumerate(mmdg.MODALITIES):
        tok = m.patch_embed[mod](b[mod] * p[:, i].view(-1, 1, 1, 1)).flatten(2).transpose(1, 2)
        x[mod] = torch.cat([m.cls_token[mod].expand(len(tok), -1, -1), tok], dim=1) + m.pos_embed[mod]
    for blk, adapters in zip(m.blocks, m.adapters):
        x_a, y, cert = {}, {}, {}
        for mod in mmdg.MODALITIES:
            x_c = blk.attn(blk.norm1(x[mod]))
            cert[mod] = m._certainty(x_c)
            x_a[mod] = x[mod] + x_c
            y[mod] = blk.norm2(x_a[mod])
        x = {mod: x_a[mod] + blk.mlp(y[mod]) for mod in mmdg.MODALITIES}
        for key, (tgt, src) in mmdg.ADAPTERS.items():
            x[tgt] = x[tgt] + adapters[key](y[tgt], y[src], cert[src])
    return {mod: m.norm(x[mod])[:, 0] for mod in mmdg.MODALITIES}, cert


def test_stacked_shared_blocks_give_the_per_modality_outputs():
    m = tiny(depth=3)
    with torch.no_grad():  # non-zero adapters, so the streams really interact
        for prm in m.adapters.parameters():
            prm.add_(torch.randn_like(prm) * 0.1)
    m.eval()
    b = batch_of(3)
    b["present"][1, 2] = False
    with torch.no_grad():
        feats, cert = _encode_per_modality(m, b)
        enc = m.encode(b["rgb"], b["depth"], b["ir"], b["present"])
    for mod in mmdg.MODALITIES:
        torch.testing.assert_close(enc["features"][mod], feats[mod], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(enc["certainty"][mod], cert[mod], rtol=1e-5, atol=1e-6)
    # state-dict keys as before the change (the sha256 of the sorted names, computed on commit
    # b1db9b2), so existing checkpoints and the timm mapping still load
    keys = sorted(m.state_dict())
    assert len(keys) == 222 and hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16] == "c68ab86059391578"


def _deterministic(**kw):
    m = tiny(adapter_dropout=0.0, uem="analytic", **kw)
    with torch.no_grad():
        for prm in m.adapters.parameters():
            prm.add_(torch.randn_like(prm) * 0.1)
    return m


def _grads_after(m, batches, accumulate):
    opt = {"model": torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.0)}
    for i, b in enumerate(batches):
        m.train_step(b, opt, accumulate=accumulate, apply=i == len(batches) - 1)
    return {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}


def test_accumulated_step_applies_regrad_as_the_large_batch_step_would():
    torch.manual_seed(0)
    m = _deterministic()
    whole = batch_of(8)
    halves = [{k: v[:4] for k, v in whole.items()}, {k: v[4:] for k, v in whole.items()}]
    m.update_prototypes([whole])
    assert bool(m.prototype_ready[:, :4].all())
    one = _grads_after(copy.deepcopy(m), [whole], 1)
    two = _grads_after(copy.deepcopy(m), halves, 2)
    assert set(one) == set(two)
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6, msg=name)
    # ReGrad did act: the result is neither Eq. 8's plain sum nor the CE gradient alone
    for kw in (dict(regrad=False), dict(ssp_weight=0.0)):
        other = _deterministic(**kw)
        other.load_state_dict(m.state_dict())
        got = _grads_after(other, halves, 2)
        assert max(float((got[n] - two[n]).abs().max()) for n in two) > 1e-6, kw


def test_trainer_accumulation_steps_through_mmdg_regrad(tmp_path, monkeypatch):
    from edge_fas.training import load_train_config, train

    calls = []
    inner = mmdg.regrad_grads
    monkeypatch.setattr(mmdg, "regrad_grads", lambda *a, **k: calls.append(1) or inner(*a, **k))
    cfg = load_train_config(None, {
        "model.name": "mmdg", "model.preset": "edge", "model.overrides": TINY, "data.train_domains": ["cefa"],
        "data.per_domain": {"train": 8, "val": 6, "test": 6}, "data.rig_size": [160, 120],
        "data.cache_dir": str(tmp_path.parent / "d_cache"), "train.epochs": 1, "train.batch_size": 2,
        "train.accumulate": 3, "train.threads": 1, "train.progress": False, "out": str(tmp_path / "run")})
    train(cfg)
    # 8 samples in batches of 2 with accumulate=3: optimiser steps after batches 3 and 4 (the epoch's end)
    assert len(calls) == 2
