"""vit / resnet50 baselines: modality selection, pass-through reduce, timm/torchvision key mapping,
training, export."""

import numpy as np
import pytest
import torch

from edge_fas.errors import ArtifactError, ConfigError
from edge_fas.models import build
from edge_fas.models.vit import VIT_B16

TINY = {"vit": dict(input_size=32, width=24, depth=1, heads=2), "resnet50": dict(input_size=32, width=8, layers=(1, 1, 1, 1))}


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(name, **kw):
    torch.manual_seed(0)
    return build(name, "edge", **{**TINY[name], **kw})


def batch(n=8, s=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    label = torch.tensor([0, 1] * (n // 2))
    shift = label.float().view(-1, 1, 1, 1)
    return dict(rgb=torch.randn(n, 3, s, s, generator=g) + shift, depth=torch.randn(n, 1, s, s, generator=g) - shift,
                ir=torch.randn(n, 1, s, s, generator=g), present=torch.ones(n, 3, dtype=torch.bool), label=label)


def test_paper_presets_are_vit_b16_and_resnet50():
    with torch.device("meta"):
        vit, r50 = build("vit", "paper"), build("resnet50", "paper")
    n_vit = sum(p.numel() for n, p in vit.named_parameters() if n.startswith("backbone.") and "head" not in n)
    assert n_vit == 85_798_656  # timm vit_base_patch16_224 without its 1000-class head
    n_r50 = sum(p.numel() for n, p in r50.named_parameters() if n.startswith("backbone.") and not n.startswith("backbone.fc"))
    assert n_r50 == 23_508_032  # torchvision resnet50 without fc
    assert vit.reduce.weight.shape == (3, 5, 1, 1) and vit.input_size == r50.input_size == 224


@pytest.mark.parametrize("name", ["vit", "resnet50"])
def test_single_modality_variant_ignores_other_modalities(name):
    net = tiny(name, modalities=["depth"]).eval()
    b = batch(n=2)
    assert net.config["modalities"] == ("depth",) and net.reduce.in_channels == 1
    a = net(b["rgb"], b["depth"], b["ir"])["score"]
    c = net(torch.randn_like(b["rgb"]), b["depth"], torch.randn_like(b["ir"]))["score"]
    torch.testing.assert_close(a, c)
    d = net(b["rgb"], b["depth"] + 1, b["ir"])["score"]
    assert not torch.allclose(a, d)


def test_reduce_starts_as_pass_through():
    net = tiny("vit")
    x = batch(n=2)
    cat = torch.cat([x["rgb"], x["depth"], x["ir"]], dim=1)
    torch.testing.assert_close(net.reduce(cat), x["rgb"])  # RGB identity, depth/IR zero at start
    grey = tiny("vit", modalities=("depth", "ir")).reduce(torch.cat([x["depth"], x["ir"]], dim=1))
    torch.testing.assert_close(grey, ((x["depth"] + x["ir"]) / 2).expand(-1, 3, -1, -1))
    with pytest.raises(ConfigError, match="modalities must be distinct"):
        tiny("vit", modalities=("rgb", "thermal"))


def timm_layout(width, depth, grid, classes=1000, mlp=4):
    """A state dict with timm VisionTransformer key names and shapes, from random tensors."""
    g = torch.Generator().manual_seed(3)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    sd = {"cls_token": r(1, 1, width), "pos_embed": r(1, grid * grid + 1, width),
          "patch_embed.proj.weight": r(width, 3, 16, 16), "patch_embed.proj.bias": r(width),
          "norm.weight": r(width), "norm.bias": r(width), "head.weight": r(classes, width), "head.bias": r(classes)}
    for i in range(depth):
        p = f"blocks.{i}."
        sd.update({p + "norm1.weight": r(width), p + "norm1.bias": r(width), p + "norm2.weight": r(width),
                   p + "norm2.bias": r(width), p + "attn.qkv.weight": r(3 * width, width), p + "attn.qkv.bias": r(3 * width),
                   p + "attn.proj.weight": r(width, width), p + "attn.proj.bias": r(width),
                   p + "mlp.fc1.weight": r(mlp * width, width), p + "mlp.fc1.bias": r(mlp * width),
                   p + "mlp.fc2.weight": r(width, mlp * width), p + "mlp.fc2.bias": r(width)})
    return sd


def test_vit_loads_timm_layout_by_key_resizing_pos_embed(tmp_path):
    sd = timm_layout(width=24, depth=2, grid=14)  # a 224-input checkpoint, deeper than the model
    torch.save({"model": sd}, tmp_path / "timm.pth")
    net = build("vit", "edge", input_size=32, width=24, depth=2, heads=2, pretrained=str(tmp_path / "timm.pth"))
    bb = net.backbone
    torch.testing.assert_close(bb.blocks[1].attn.qkv.weight, sd["blocks.1.attn.qkv.weight"])
    torch.testing.assert_close(bb.patch_embed.proj.weight, sd["patch_embed.proj.weight"])
    torch.testing.assert_close(bb.pos_embed[:, 0], sd["pos_embed"][:, 0])  # class position kept
    assert bb.pos_embed.shape == (1, 5, 24) and bb.head.weight.shape == (1, 24)  # 2x2 grid; new head
    del sd["blocks.0.mlp.fc1.bias"]
    torch.save(sd, tmp_path / "broken.pth")
    with pytest.raises(ArtifactError, match="broken.pth lacks key 'blocks.0.mlp.fc1.bias'"):
        build("vit", "edge", input_size=32, width=24, depth=2, heads=2, pretrained=str(tmp_path / "broken.pth"))


def test_timm_mapping_adapts_one_channel_patch_embedding():
    from edge_fas.models.vit import VisionTransformer, load_timm_vit

    sd = timm_layout(width=24, depth=1, grid=2)
    enc = VisionTransformer(img_size=32, embed_dim=24, depth=1, num_heads=2, in_chans=1)
    load_timm_vit(enc, sd)
    torch.testing.assert_close(enc.patch_embed.proj.weight, sd["patch_embed.proj.weight"].sum(dim=1, keepdim=True))


def test_resnet50_loads_torchvision_layout_skipping_fc(tmp_path):
    from edge_fas.models.resnet import ResNet

    src = ResNet((1, 1, 1, 1), width=8, num_classes=1000).state_dict()  # torchvision key names
    torch.save(src, tmp_path / "tv.pth")
    net = tiny("resnet50", pretrained=str(tmp_path / "tv.pth"))
    torch.testing.assert_close(net.backbone.layer3[0].conv2.weight, src["layer3.0.conv2.weight"])
    assert net.backbone.fc.weight.shape == (1, 8 * 8 * 4)


@pytest.mark.parametrize("name", ["vit", "resnet50"])
def test_training_lowers_loss(name):
    net = tiny(name)
    b = batch(n=16)
    opt = net.make_optimisers(lr=3e-3)
    first = net.train_step(b, opt)
    for _ in range(15):
        last = net.train_step(b, opt)
    assert set(last) == {"bce", "total"} and last["total"] < 0.8 * first["total"]


@pytest.mark.parametrize("name", ["vit", "resnet50"])
def test_onnx_export_dynamic_batch(tmp_path, name):
    ort = pytest.importorskip("onnxruntime")
    net = tiny(name).eval()
    b = batch(n=4)
    names = ["rgb", "depth", "ir", "present"]
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(net, tuple(b[n][:1] for n in names), str(path), opset_version=17, dynamo=False,
                      input_names=names, output_names=list(net.output_names),
                      dynamic_axes={n: {0: "batch"} for n in names + list(net.output_names)})
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {n: b[n].numpy() for n in names})
    ref = net(*(b[n] for n in names))
    for k, v in zip(net.output_names, got):
        np.testing.assert_allclose(v, ref[k].detach().numpy(), atol=1e-4, rtol=1e-3)
