"""Plain-torch Vision Transformer whose parameter names match timm's `VisionTransformer`.

Used by the `vit` baseline (ViT-B/16), by mmFAS (small encoders and the switch-attention blocks,
models/mmfas.py) and, for its key mapping, by MMDG.

- Key layout is timm's: `cls_token`, `pos_embed`, `patch_embed.proj`, `blocks.N.norm1`,
  `blocks.N.attn.qkv`, `blocks.N.attn.proj`, `blocks.N.norm2`, `blocks.N.mlp.fc1/fc2`, `norm`,
  `head`. A timm ViT-B/16 state dict (e.g. `vit_base_patch16_224.augreg_in21k_ft_in1k`) therefore
  loads by name with `load_timm_vit(model, path)`; `pos_embed` is resized (bicubic) when the input
  size differs and `patch_embed.proj` is adapted when the input channels differ.
- Attention runs through torch's fused `scaled_dot_product_attention` (flash / memory-efficient
  kernels on CUDA; torch.onnx.export at opset 14+ writes it as MatMul + Softmax, so exported graphs
  are unchanged). `Attention.attend(q_src, k_src, v_src)` takes the three sources separately,
  which is what mmFAS's switch-attention needs, and uses the same `qkv` weight as ordinary
  self-attention (so switch-attention adds no parameters).
- `resize_pos_embed` is timm's `resample_abs_pos_embed` (bicubic, antialias, class token kept), so
  weights loaded at another input size give the same position embedding as in timm.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edge_fas.errors import ArtifactError

# ViT-B/16 as in timm's vit_base_patch16_224
VIT_B16 = dict(patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0)


class PatchEmbed(nn.Module):
    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"ViT: input size {img_size} must be a multiple of the patch size {patch_size}")
        self.grid = img_size // patch_size
        self.num_patches = self.grid * self.grid
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)

    def forward(self, x):  # (B, C, S, S) -> (B, N, D)
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"ViT: width {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def _heads(self, x):  # (B, N, D) -> (B, H, N, d)
        b, n, _ = x.shape
        return x.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def attend(self, q_src, k_src, v_src):
        """Multi-head attention with queries from q_src, keys from k_src, values from v_src."""
        w, bias = self.qkv.weight, self.qkv.bias
        d = w.shape[1]
        bq, bk, bv = (None, None, None) if bias is None else (bias[:d], bias[d : 2 * d], bias[2 * d :])
        q = self._heads(F.linear(q_src, w[:d], bq))
        k = self._heads(F.linear(k_src, w[d : 2 * d], bk))
        v = self._heads(F.linear(v_src, w[2 * d :], bv))
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)  # softmax(q k^T * scale) v
        return self.proj(out.transpose(1, 2).flatten(2))

    def forward(self, x):
        return self.attend(x, x, x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then + mlp(norm2(.))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """ViT with a class token; `forward` gives the final-norm class token (B, D) or head logits."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768, depth=12, num_heads=12,
                 mlp_ratio=4.0, num_classes=0, final_norm=True):
        super().__init__()
        self.embed_dim = self.num_features = embed_dim
        self.in_chans = in_chans
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, embed_dim))
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6) if final_norm else nn.Identity()
        self.head = nn.Linear(embed_dim, num_classes) if num_classes else nn.Identity()
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        self.apply(_init_linear)

    def tokens(self, x):
        """Patch + class tokens with position embedding, before the blocks: (B, 1 + N, D)."""
        x = self.patch_embed(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1) + self.pos_embed

    def forward_features(self, x):
        """All tokens after the blocks and the final norm: (B, 1 + N, D)."""
        return self.norm(self.blocks(self.tokens(x)))

    def forward(self, x):
        return self.head(self.forward_features(x)[:, 0])

    def load_timm(self, source) -> dict:
        return load_timm_vit(self, source)


def _init_linear(m):
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def resize_pos_embed(pos: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Resize a (1, 1 + g*g, D) position embedding to (1, num_tokens, D) as timm's
    resample_abs_pos_embed does: the class token kept, the grid resampled bicubic with antialias
    (which also changes upsampling: antialiased bicubic uses PIL's a = -0.5 kernel), in float32."""
    if pos.shape[1] == num_tokens:
        return pos
    g_old, g_new = math.isqrt(pos.shape[1] - 1), math.isqrt(num_tokens - 1)
    if g_old * g_old != pos.shape[1] - 1 or g_new * g_new != num_tokens - 1:
        raise ValueError(f"ViT: cannot resize a position embedding of {pos.shape[1]} tokens to {num_tokens}")
    grid = pos[:, 1:].reshape(1, g_old, g_old, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=(g_new, g_new), mode="bicubic", align_corners=False, antialias=True)
    return torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, g_new * g_new, -1).to(pos.dtype)], dim=1)


def adapt_in_chans(w: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Adapt an RGB patch-embedding / conv weight (O, 3, k, k) to `in_chans` input channels by
    averaging over RGB and repeating, scaled so the summed response stays the same."""
    if w.shape[1] == in_chans:
        return w
    return w.mean(dim=1, keepdim=True).repeat(1, in_chans, 1, 1) * (w.shape[1] / in_chans)


def read_state_dict(source, what: str) -> tuple[dict, str]:
    """A state dict from a path (safetensors or torch pickle) or a dict (models/pretrained.py)."""
    from edge_fas.models.pretrained import read_weights

    return read_weights(source, what)


def load_timm_vit(model: VisionTransformer, source, prefix: str = "") -> dict:
    """Load a timm ViT state dict (path or dict) into `model` by key.

    Blocks the model lacks (a shallower model) and `head` are skipped; `pos_embed` is resized and
    `patch_embed.proj.weight` adapted to the model's channels. `prefix` selects a sub-dict of the
    source (e.g. "backbone."). Returns {"loaded": [...], "skipped": [...]}. A missing key, a key
    of another architecture (register tokens, a global-pool norm, ...) or an unfixable shape raises
    ArtifactError naming the file and the key.
    """
    sd, name = read_state_dict(source, "ViT pretrained weights")
    if prefix:
        sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    own = model.state_dict()
    new, loaded = dict(own), []
    for k, v in own.items():
        if k.startswith("head."):
            continue
        if k not in sd:
            raise ArtifactError(f"ViT pretrained weights: {name} lacks key '{prefix}{k}'; is it a timm ViT state dict of width {model.embed_dim}?")
        w = sd[k]
        if k == "pos_embed":
            w = resize_pos_embed(w, v.shape[1]) if w.shape[2] == v.shape[2] else w
        elif k == "patch_embed.proj.weight" and w.shape[0] == v.shape[0] and w.shape[2:] == v.shape[2:]:
            w = adapt_in_chans(w, v.shape[1])
        if w.shape != v.shape:
            raise ArtifactError(f"ViT pretrained weights: {name} key '{prefix}{k}' has shape {tuple(w.shape)}, the model needs {tuple(v.shape)}; use weights of the same width and patch size")
        new[k] = w.to(v.dtype)
        loaded.append(k)
    skipped = sorted(set(sd) - set(loaded))
    depth = len(model.blocks)
    foreign = [k for k in skipped if not (k.startswith("head.") or _block_index(k) >= depth)]
    if foreign:
        raise ArtifactError(f"ViT pretrained weights: {name} has key(s) a plain ViT does not have "
                            f"({[prefix + k for k in foreign[:4]]}); it is another architecture, use the "
                            "weights of a plain timm ViT (vit_*_patch16_224 layout)")
    model.load_state_dict(new)
    return {"loaded": loaded, "skipped": skipped}


def _block_index(key: str) -> int:
    """N for "blocks.N.*", -1 otherwise."""
    parts = key.split(".")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit() else -1
