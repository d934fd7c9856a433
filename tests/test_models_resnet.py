import pytest
import torch

from edge_fas.errors import ArtifactError
from edge_fas.models.resnet import ResNet, resnet50


def test_resnet50_shape_and_param_count_match_torchvision():
    with torch.device("meta"):
        net = resnet50()
    n = sum(p.numel() for p in net.parameters())
    assert n == 25_557_032  # torchvision resnet50
    keys = set(net.state_dict())
    for k in ("conv1.weight", "layer1.0.downsample.0.weight", "layer1.0.downsample.1.running_var",
              "layer4.2.bn3.bias", "layer3.5.conv2.weight", "fc.weight"):
        assert k in keys
    assert "layer3.6.conv1.weight" not in keys


def test_truncated_features_strides_and_channels():
    net = ResNet(layers=(1, 1, 1), width=8, in_chans=1, num_stages=3).eval()
    feats = net.forward_features(torch.randn(2, 1, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(8, 16, 16), (32, 16, 16), (64, 8, 8), (128, 4, 4)]
    assert net.fc is None and net(torch.randn(1, 1, 64, 64)).shape == (1, 128)


def test_load_torchvision_layout_by_key(tmp_path):
    ref = ResNet(layers=(1, 1, 1, 1), width=8, num_classes=10)
    sd = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in ref.state_dict().items()}
    path = tmp_path / "tv.pth"
    torch.save(sd, path)
    # 1-channel, first three stages only: conv1 averaged over RGB, later stages and fc skipped
    net = ResNet(layers=(1, 1, 1, 1), width=8, in_chans=1, num_stages=3)
    info = net.load_torchvision(path)
    assert torch.allclose(net.conv1.weight, sd["conv1.weight"].mean(1, keepdim=True) * 3)
    assert torch.equal(net.layer3[0].conv2.weight, sd["layer3.0.conv2.weight"])
    assert "layer4.0.conv1.weight" in info["skipped"] and "fc.weight" in info["skipped"]
    full = ResNet(layers=(1, 1, 1, 1), width=8, num_classes=10)
    full.load_torchvision(sd)
    assert torch.equal(full.fc.weight, sd["fc.weight"])


def test_load_rejects_wrong_shape_and_missing_file(tmp_path):
    sd = ResNet(layers=(1, 1, 1, 1), width=8).state_dict()
    with pytest.raises(ArtifactError, match="key .conv1.weight. has shape \\(8, 3, 7, 7\\)"):
        ResNet(layers=(1, 1, 1, 1), width=16).load_torchvision(sd)
    with pytest.raises(ArtifactError, match="does not exist"):
        ResNet(layers=(1, 1, 1, 1), width=8).load_torchvision(tmp_path / "nope.pth")
    del sd["layer2.0.bn1.weight"]
    with pytest.raises(ArtifactError, match="lacks key 'layer2.0.bn1.weight'"):
        ResNet(layers=(1, 1, 1, 1), width=8).load_torchvision(sd)


def test_iresnet18_insightface_layout(tmp_path):
    from edge_fas.models.resnet import IResNet, iresnet18

    with torch.device("meta"):
        net = iresnet18()
    keys = set(net.state_dict())
    assert {"conv1.weight", "prelu.weight", "layer1.0.bn1.running_mean", "layer1.0.downsample.0.weight",
            "layer4.1.conv2.weight", "bn2.weight", "fc.weight", "features.running_var"} <= keys
    assert sum(p.numel() for p in net.parameters()) == 24_025_600  # insightface r18
    small = IResNet((1, 1, 1, 1), num_features=16, width=4)
    sd = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in small.state_dict().items()}
    torch.save({"module." + k: v for k, v in sd.items()}, tmp_path / "r.pth")
    other = IResNet((1, 1, 1, 1), num_features=16, width=4)
    other.load_insightface(tmp_path / "r.pth")
    assert torch.equal(other.fc.weight, sd["fc.weight"])
    assert other.eval()(torch.randn(2, 3, 112, 112)).shape == (2, 16)
    with pytest.raises(ArtifactError, match="does not fit IResNet"):
        IResNet((1, 1, 1, 1), num_features=8, width=4).load_insightface(tmp_path / "r.pth")


def test_same_outputs_as_torchvision_resnet50_when_installed():
    # torchvision is not a dependency; where it is installed (e.g. a GPU box) pin numeric parity
    tv = pytest.importorskip("torchvision")
    ref = tv.models.resnet50().eval()
    net = resnet50().eval()
    info = net.load_torchvision(ref.state_dict())
    assert info["skipped"] == []
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net(x), ref(x), atol=1e-4, rtol=1e-4)
