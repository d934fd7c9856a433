"""Pretrained backbone files (models/pretrained.py): timm / torchvision layouts written here from the
libraries' published key names (timm and torchvision are not installed), safetensors and .pth, the
normalisation each set of weights expects, timm's position-embedding resampling, clear errors for the
wrong file, and `model.pretrained` in a training run reaching the checkpoint and the artifact."""

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from edge_fas.errors import ArtifactError, ConfigError
from edge_fas.models import build, load_checkpoint, save_checkpoint
from edge_fas.models.pretrained import IMAGENET, detect_layout, load_pretrained
from edge_fas.models.vit import resize_pos_embed

VIT = dict(input_size=32, width=24, depth=2, heads=2)  # the vit baseline, tiny


def _r(*shape, gen):
    return torch.randn(*shape, generator=gen)


def timm_vit(width=24, depth=3, grid=14, patch=16, mlp=4, classes=1000, seed=0):
    """A state dict with timm VisionTransformer's key names (vit_*_patch16_224) and shapes."""
    g = torch.Generator().manual_seed(seed)
    sd = {"cls_token": _r(1, 1, width, gen=g), "pos_embed": _r(1, 1 + grid * grid, width, gen=g),
          "patch_embed.proj.weight": _r(width, 3, patch, patch, gen=g), "patch_embed.proj.bias": _r(width, gen=g),
          "norm.weight": _r(width, gen=g), "norm.bias": _r(width, gen=g),
          "head.weight": _r(classes, width, gen=g), "head.bias": _r(classes, gen=g)}
    for i in range(depth):
        for name, shape in (("norm1.weight", (width,)), ("norm1.bias", (width,)), ("attn.qkv.weight", (3 * width, width)),
                            ("attn.qkv.bias", (3 * width,)), ("attn.proj.weight", (width, width)),
                            ("attn.proj.bias", (width,)), ("norm2.weight", (width,)), ("norm2.bias", (width,)),
                            ("mlp.fc1.weight", (mlp * width, width)), ("mlp.fc1.bias", (mlp * width,)),
                            ("mlp.fc2.weight", (width, mlp * width)), ("mlp.fc2.bias", (width,))):
            sd[f"blocks.{i}.{name}"] = _r(*shape, gen=g)
    return sd


def torchvision_vit(width=24, depth=2, grid=14, patch=16, mlp=4, seed=1):
    """torchvision.models.VisionTransformer's key names (vit_b_16 layout)."""
    g = torch.Generator().manual_seed(seed)
    sd = {"class_token": _r(1, 1, width, gen=g), "conv_proj.weight": _r(width, 3, patch, patch, gen=g),
          "conv_proj.bias": _r(width, gen=g), "encoder.pos_embedding": _r(1, 1 + grid * grid, width, gen=g),
          "encoder.ln.weight": _r(width, gen=g), "encoder.ln.bias": _r(width, gen=g),
          "heads.head.weight": _r(1000, width, gen=g), "heads.head.bias": _r(1000, gen=g)}
    for i in range(depth):
        p = f"encoder.layers.encoder_layer_{i}."
        for name, shape in (("ln_1.weight", (width,)), ("ln_1.bias", (width,)),
                            ("self_attention.in_proj_weight", (3 * width, width)), ("self_attention.in_proj_bias", (3 * width,)),
                            ("self_attention.out_proj.weight", (width, width)), ("self_attention.out_proj.bias", (width,)),
                            ("ln_2.weight", (width,)), ("ln_2.bias", (width,)), ("mlp.0.weight", (mlp * width, width)),
                            ("mlp.0.bias", (mlp * width,)), ("mlp.3.weight", (width, mlp * width)), ("mlp.3.bias", (width,))):
            sd[p + name] = _r(*shape, gen=g)
    return sd


def torchvision_resnet(width=8, layers=(1, 1, 1, 1), classes=1000, counters=True, seed=2):
    """torchvision.models.ResNet's (and timm's resnet50) key names for bottleneck blocks."""
    g = torch.Generator().manual_seed(seed)
    sd = {}

    def bn(prefix, ch):
        sd.update({prefix + "weight": _r(ch, gen=g), prefix + "bias": _r(ch, gen=g),
                   prefix + "running_mean": _r(ch, gen=g), prefix + "running_var": torch.rand(ch, generator=g) + 0.5})
        if counters:
            sd[prefix + "num_batches_tracked"] = torch.tensor(7)

    sd["conv1.weight"] = _r(width, 3, 7, 7, gen=g)
    bn("bn1.", width)
    ch = width
    for s, n in enumerate(layers):
        mid = width * 2**s
        for b in range(n):
            p = f"layer{s + 1}.{b}."
            sd[p + "conv1.weight"] = _r(mid, ch, 1, 1, gen=g)
            bn(p + "bn1.", mid)
            sd[p + "conv2.weight"] = _r(mid, mid, 3, 3, gen=g)
            bn(p + "bn2.", mid)
            sd[p + "conv3.weight"] = _r(4 * mid, mid, 1, 1, gen=g)
            bn(p + "bn3.", 4 * mid)
            if b == 0:
                sd[p + "downsample.0.weight"] = _r(4 * mid, ch, 1, 1, gen=g)
                bn(p + "downsample.1.", 4 * mid)
            ch = 4 * mid
    sd["fc.weight"], sd["fc.bias"] = _r(classes, ch, gen=g), _r(classes, gen=g)
    return sd


def test_vit_loads_timm_safetensors_and_records_its_half_normalisation(tmp_path):
    sd = timm_vit()
    path = tmp_path / "model.safetensors"
    save_file(sd, str(path))
    assert detect_layout(sd) == "timm-vit"
    torch.manual_seed(0)
    net = build("vit", "edge", **VIT, pretrained=str(path))
    bb = net.backbone
    assert torch.equal(bb.blocks[1].mlp.fc1.weight, sd["blocks.1.mlp.fc1.weight"])
    assert torch.equal(bb.norm.bias, sd["norm.bias"]) and torch.equal(bb.cls_token, sd["cls_token"])
    assert torch.allclose(bb.pos_embed, resize_pos_embed(sd["pos_embed"], 5))  # 14x14 grid -> 2x2
    info = net.pretrained_info
    assert info["layout"] == "timm-vit" and info["normalisation"] == {"rgb_mean": [0.5] * 3, "rgb_std": [0.5] * 3}
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    # the checkpoint carries it and gives it back
    net.eval()
    save_checkpoint(tmp_path / "c.pt", net)
    again, meta = load_checkpoint(tmp_path / "c.pt")
    assert meta["meta"]["pretrained"]["sha256"] == info["sha256"] and again.pretrained_info["layout"] == "timm-vit"


def test_torchvision_vit_pth_maps_by_key_with_imagenet_normalisation(tmp_path):
    sd = torchvision_vit()
    torch.save(sd, tmp_path / "vit_b_16.pth")
    net = build("vit", "edge", **VIT)
    info = load_pretrained(net, tmp_path / "vit_b_16.pth")
    bb = net.backbone
    assert torch.equal(bb.blocks[1].attn.qkv.weight, sd["encoder.layers.encoder_layer_1.self_attention.in_proj_weight"])
    assert torch.equal(bb.blocks[0].mlp.fc2.bias, sd["encoder.layers.encoder_layer_0.mlp.3.bias"])
    assert torch.equal(bb.patch_embed.proj.weight, sd["conv_proj.weight"])
    assert info["layout"] == "torchvision-vit" and info["normalisation"] == {k: list(v) for k, v in IMAGENET.items()}
    # MMDG takes the same file (its official code starts from torchvision's vit_b_16)
    torch.manual_seed(0)
    m = build("mmdg", "edge", **VIT, pretrained=str(tmp_path / "vit_b_16.pth"))
    assert torch.equal(m.blocks[1].attn.qkv.weight, bb.blocks[1].attn.qkv.weight)
    assert m.pretrained_info["normalisation"]["rgb_std"] == list(IMAGENET["rgb_std"])


def test_resnet50_torchvision_and_timm_files(tmp_path):
    sd = torchvision_resnet()
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "r50.pth")
    net = build("resnet50", "edge", input_size=32, width=8, layers=(1, 1, 1, 1), pretrained=str(tmp_path / "r50.pth"))
    assert torch.equal(net.backbone.layer3[0].downsample[0].weight, sd["layer3.0.downsample.0.weight"])
    assert torch.equal(net.backbone.bn1.running_var, sd["bn1.running_var"])
    assert net.pretrained_info["layout"] == "resnet"
    assert net.pretrained_info["normalisation"]["rgb_mean"] == list(IMAGENET["rgb_mean"])
    # timm's resnet50 files carry no BatchNorm counters: they still load
    save_file(torchvision_resnet(counters=False), str(tmp_path / "timm_r50.safetensors"))
    info = load_pretrained(net, tmp_path / "timm_r50.safetensors")
    assert info["layout"] == "resnet" and info["loaded"] > 0


def test_hub_config_json_beside_the_file_overrides_the_default(tmp_path):
    (tmp_path / "deit").mkdir()
    path = tmp_path / "deit" / "model.safetensors"
    save_file(timm_vit(), str(path))
    cfg = {"architecture": "deit_tiny_patch16_224", "pretrained_cfg": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
    (tmp_path / "deit" / "config.json").write_text(json.dumps(cfg))
    info = load_pretrained(build("vit", "edge", **VIT), path)
    assert info["normalisation"] == {"rgb_mean": [0.485, 0.456, 0.406], "rgb_std": [0.229, 0.224, 0.225]}
    (tmp_path / "deit" / "config.json").write_text(json.dumps({"pretrained_cfg": {"mean": [0.5], "std": [0.5]}}))
    with pytest.raises(ArtifactError, match="config.json.*three numbers"):
        load_pretrained(build("vit", "edge", **VIT), path)


def test_wrong_files_fail_with_the_file_and_the_reason(tmp_path):
    net = build("vit", "edge", **VIT)
    save_file(torchvision_resnet(), str(tmp_path / "r50.safetensors"))
    with pytest.raises(ArtifactError, match="r50.safetensors holds a torchvision/timm ResNet.*takes a timm ViT"):
        load_pretrained(net, tmp_path / "r50.safetensors")
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ArtifactError, match="other.pth holds no known backbone layout.*encoder.weight"):
        load_pretrained(net, tmp_path / "other.pth")
    sd = timm_vit()
    del sd["blocks.1.attn.proj.bias"]
    torch.save(sd, tmp_path / "missing.pth")
    with pytest.raises(ArtifactError, match="missing.pth lacks key 'blocks.1.attn.proj.bias'"):
        load_pretrained(net, tmp_path / "missing.pth")
    sd = timm_vit()
    sd["fc_norm.weight"] = torch.ones(24)  # a global-pool ViT: another architecture
    torch.save(sd, tmp_path / "gap.pth")
    with pytest.raises(ArtifactError, match="gap.pth has key.*fc_norm.weight.*another architecture"):
        load_pretrained(net, tmp_path / "gap.pth")
    torch.save(timm_vit(width=32), tmp_path / "wide.pth")
    with pytest.raises(ArtifactError, match="wide.pth key 'cls_token' has shape \\(1, 1, 32\\), the model needs \\(1, 1, 24\\)"):
        load_pretrained(net, tmp_path / "wide.pth")
    with pytest.raises(ArtifactError, match="wide.pth.*'patch_embed.proj.weight' has shape"):
        load_pretrained(build("mmdg", "edge", **VIT), tmp_path / "wide.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ArtifactError, match="list.pth does not hold a state dict"):
        load_pretrained(net, tmp_path / "list.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ArtifactError, match="junk.pth cannot be read as a torch state dict"):
        load_pretrained(net, tmp_path / "junk.pth")
    save_file(timm_vit(), str(tmp_path / "misnamed.pth"))
    with pytest.raises(ArtifactError, match="misnamed.pth.*looks like safetensors"):
        load_pretrained(net, tmp_path / "misnamed.pth")
    (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(ArtifactError, match="bad.safetensors is not a readable safetensors file"):
        load_pretrained(net, tmp_path / "bad.safetensors")
    with pytest.raises(ArtifactError, match="nowhere.pth does not exist.*nothing is downloaded"):
        load_pretrained(net, tmp_path / "nowhere.pth")
    before = net.backbone.blocks[0].attn.qkv.weight.detach().clone()
    assert torch.equal(net.backbone.blocks[0].attn.qkv.weight, before)  # no failed load changed a weight


def test_position_embedding_resampling_is_timms_bicubic_antialias():
    # timm's resample_abs_pos_embed interpolates bicubic with antialias, which is PIL's bicubic filter
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(1, 1 + 14 * 14, 4, generator=g)
    grid = pos[0, 1:].reshape(14, 14, 4).numpy()
    for new in (7, 16):  # down (224 -> 112 input) and up (224 -> 256)
        out = resize_pos_embed(pos, 1 + new * new)
        assert torch.equal(out[:, :1], pos[:, :1])  # class token kept
        ref = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(grid[..., c])).resize((new, new), Image.BICUBIC))
                        for c in range(4)], axis=-1)
        np.testing.assert_allclose(out[0, 1:].reshape(new, new, 4).numpy(), ref, atol=2e-6)
    with pytest.raises(ValueError, match="cannot resize"):
        resize_pos_embed(pos, 1 + 50)


def test_training_with_model_pretrained_carries_the_normalisation_to_the_artifact(tmp_path):
    from edge_fas.export import export_checkpoint
    from edge_fas.training import load_train_config, train

    save_file(timm_vit(width=24, depth=2), str(tmp_path / "vit.safetensors"))
    overrides = {"model.name": "vit", "model.preset": "edge", "model.overrides": VIT,
                 "model.pretrained": str(tmp_path / "vit.safetensors"), "data.train_domains": ["cefa"],
                 "data.per_domain": {"train": 8, "val": 6, "test": 6}, "data.rig_size": [160, 120],
                 "data.cache_dir": str(tmp_path.parent / "d_cache"), "train.epochs": 1, "train.batch_size": 4,
                 "train.threads": 1, "train.progress": False, "out": str(tmp_path / "run")}
    train(load_train_config(None, overrides))
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["meta"]["preprocess"]["rgb_mean"] == [0.5, 0.5, 0.5]
    assert ckpt["meta"]["pretrained"]["file"].endswith("vit.safetensors")
    art = export_checkpoint(tmp_path / "run" / "checkpoint.pt", tmp_path / "art", parity_count=8, gate_count=16)
    assert art.preprocess.rgb_mean == (0.5, 0.5, 0.5) and art.preprocess.rgb_std == (0.5, 0.5, 0.5)
    with pytest.raises(ConfigError, match="model.pretrained and train.init_from"):
        train(load_train_config(None, {**overrides, "train.init_from": str(tmp_path / "run" / "checkpoint.pt"),
                                       "out": str(tmp_path / "run2")}))
