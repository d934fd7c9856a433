"""Check our plain-torch backbones against the reference libraries, where those are installed.

    python benchmarks/parity_timm_torchvision.py

Builds timm's vit_base_patch16_224 and torchvision's resnet50 (random init, no download), loads
their state dicts into models/vit.py and models/resnet.py by key, and prints the largest absolute
difference of the outputs on the same random input (eval mode, float64 to see real mismatches).
edge-fas itself never imports timm/torchvision; this script only needs them to compare.
"""

from __future__ import annotations

import torch

from edge_fas.models.resnet import ResNet
from edge_fas.models.vit import VIT_B16, VisionTransformer, load_timm_vit


def main() -> int:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224, dtype=torch.float64)
    try:
        import timm
    except ImportError:
        print("timm: not installed, ViT parity skipped")
    else:
        ref = timm.create_model("vit_base_patch16_224", pretrained=False).double().eval()
        ours = VisionTransformer(**VIT_B16).double().eval()
        info = load_timm_vit(ours, ref.state_dict())
        with torch.no_grad():
            d = (ref.forward_features(x) - ours.forward_features(x)).abs().max().item()
        print(f"timm {timm.__version__} vit_base_patch16_224: {len(info['loaded'])} tensors loaded, "
              f"skipped {info['skipped']}, max |features diff| = {d:.3e}")
    try:
        import torchvision
    except ImportError:
        print("torchvision: not installed, ResNet parity skipped")
    else:
        ref = torchvision.models.resnet50(weights=None).double().eval()
        ours = ResNet().double().eval()
        info = ours.load_torchvision(ref.state_dict(), strict_fc=True)
        with torch.no_grad():
            d = (ref(x) - ours(x)).abs().max().item()
        print(f"torchvision {torchvision.__version__} resnet50: {len(info['loaded'])} tensors loaded, "
              f"max |logits diff| = {d:.3e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
