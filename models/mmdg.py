"""MMDG (Lin et al., CVPR 2024, papers/mmdg.txt): multimodal domain-generalised face anti-spoofing.

Follows the official code (github OMGGGGG/mmdg, models/u_adapter.py MMDG and models/regrad.py),
which produced the paper's numbers; written from scratch in plain torch.

Architecture (paper preset; the edge preset only shrinks sizes):
- One ViT-B/16 (12 blocks, width 768, 12 heads) shared by RGB, depth and IR. Each modality has its
  own patch projection (frozen copies of the pretrained one; 1-channel depth/IR get the RGB kernel
  summed over its channels), its own class token (trainable copies) and its own NEW, randomly
  initialised position embedding. Blocks 0-10 are frozen; block 11 and the final LayerNorm train.
- Every block, per modality m: x_c = MHSA(LN1(x)); UEM on x_c: certainty = exp(-2.25 * std) with
  the std over 20 Monte-Carlo dropout (p = 0.3) samples of x_c, element-wise (B, N, C), no gradient;
  x_a = x + x_c; y = LN2(x_a); out = x_a + MLP(y) + U-Adapters. RGB receives adapters from depth and
  from IR, depth and IR from RGB only.
- U-Adapter (target t, source s): down-project y_t and y_s (768 -> 8, QuickGELU); cross-attention
  (8 heads of width 1, no qkv bias) with query = source, key = value = target; each query row of
  attention logits is multiplied by the source token's certainty (mean over channels) before the
  softmax, so a zero-certainty token attends uniformly; LN(cross + own); central-difference conv
  3x3 (theta 0.5, no bias) over the patch grid and, separately, over the class token as a 1x1
  image; QuickGELU, dropout 0.2; up-project 8 -> 768 initialised to zero (adapters start as no-ops).
- Head: Linear(3*768 -> 2) on the concatenated class tokens after the final LN; CE loss.
  `logits` = z_attack - z_bonafide, `score` = softmax(z)[:, 1] = P(attack).
- SSP loss (Eq. 7) per modality on its class token: prototypes for live faces (all domains, index 0)
  and for the attacks of each source domain (index 1 + domain); softmax over -Euclidean distance,
  cross-entropy to the sample's own prototype; weight 0.3 each.
- ReGrad (Eq. 5, `regrad` below): the SSP gradients of each trainable parameter are modulated and
  added to its CE gradient (`train_step`); certainties are the last block's class-token certainty
  per modality, averaged over the batch (as the official code's uc_1..3).

Where this departs from / interprets the paper or the official code:
- The official code starts from torchvision's vit_b_16 (IMAGENET1K_V1); `load_pretrained` takes
  that layout or timm's ViT-B/16 layout (renamed by key; the tensors are the same shapes). Which
  ImageNet weights are used is the caller's choice; the paper's numbers used torchvision's.
- Shared parameters under ReGrad: the official code skips them (and then misaligns its gradient
  list); here they follow the fast-owner rule with the fast modality as owner (see `regrad`).
- Prototypes: the official code recomputes them at the start of every epoch from a 50% sample of
  the training set in eval mode, EMA momentum 0.2 (`update_prototypes(batches)` does exactly this,
  for the trainer to call once per epoch). If the trainer never calls it, `train_step` seeds each
  still-empty prototype from the current batch, so the SSP loss is defined from the first step.
  Prototypes are buffers and travel in checkpoints.
- Eval forward uses the analytic UEM by default (`uem_eval="analytic"`): MC dropout of a fixed
  tensor has std -> |x| * sqrt(p / (1 - p)), so this is the MC estimate's limit, deterministic and
  exportable. Training uses `uem` ("mc" in both presets, faithful).
- Missing modalities (present False) enter as zero images (flexible-modal protocols); a sample's SSP
  term counts only for its present modalities.
- The grid is input_size / patch_size (14 at 224) rather than the official hard-coded 14.
- `ir_channels=3` feeds IR as [IR, HOG(IR), PLGF(IR)] like the official data loader. Given the
  usual 1-channel IR the model computes the two extra channels itself (`ir_hog_plgf`, plain torch
  and exportable); a 3-channel IR tensor is used as given. HOG here is the rendered HOG picture
  (8x8 cells, 9 unsigned orientation bins, each cell drawing a line per bin across the cell,
  perpendicular to the gradient, as skimage's `hog(visualize=True)`), without block
  normalisation; PLGF is the local gravitational force magnitude arctan(|K * I| / I) with 5x5
  kernels cos/r^2, sin/r^2, on the IR shifted to be positive (the model sees normalised IR).
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edge_fas.errors import ArtifactError, ConfigError
from edge_fas.models.vit import Mlp

MODALITIES = ("rgb", "depth", "ir")  # the columns of `present`, and ReGrad's owner indices
# adapter name -> (target stream it adds to, source stream it queries from)
ADAPTERS = {"rgb_from_depth": ("rgb", "depth"), "rgb_from_ir": ("rgb", "ir"),
            "depth_from_rgb": ("depth", "rgb"), "ir_from_rgb": ("ir", "rgb")}

PRESETS = {
    "paper": dict(input_size=224, patch_size=16, width=768, depth=12, heads=12, mlp_ratio=4.0,
                  frozen_blocks=11, freeze_patch_embed=True, adapter_dim=8, adapter_heads=8,
                  cdc_theta=0.5, adapter_dropout=0.2, uem="mc", uem_eval="analytic", mc_p=0.3,
                  mc_samples=20, exp_rate=2.25, ssp_weight=0.3, proto_momentum=0.2, num_domains=3,
                  regrad=True, ir_channels=1),
    "edge": dict(input_size=112, patch_size=16, width=192, depth=4, heads=3, mlp_ratio=4.0,
                 frozen_blocks=0, freeze_patch_embed=False, adapter_dim=8, adapter_heads=8,
                 cdc_theta=0.5, adapter_dropout=0.2, uem="mc", uem_eval="analytic", mc_p=0.3,
                 mc_samples=20, exp_rate=2.25, ssp_weight=0.3, proto_momentum=0.2, num_domains=3,
                 regrad=True, ir_channels=1),
}
PAPER_TRAINING = dict(optimiser="Adam", lr=5e-5, weight_decay=1e-3, schedule="constant", epochs=70,
                      batch_size=32, input_size=224, prototype_refresh="every epoch, 50% of the train set",
                      source="paper Sec. 4.1 and official code")



_EPS = 1e-12


def _project(g: torch.Tensor, onto: torch.Tensor) -> torch.Tensor:
    """Component of `g` along `onto` (zero when `onto` is the zero vector)."""
    denom = (onto * onto).sum()
    if float(denom) <= _EPS:
        return torch.zeros_like(g)
    return (g * onto).sum() / denom * onto


def _agree_or_orthogonal(g: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Eq. 5's modulation of `g` against `ref`: its projection on `ref` when the two agree
    (g . ref > 0), otherwise its part orthogonal to `ref` (the conflicting component dropped)."""
    proj = _project(g, ref)
    if float((g * ref).sum()) > 0:
        return proj
    return g - proj


def regrad(grads: Sequence[torch.Tensor], ssp_losses: Sequence[float], certainties: Sequence[float],
           owner: Optional[int]) -> torch.Tensor:
    """Re-weighted gradient of one parameter (paper Eq. 5), to be added to its CE-loss gradient.

    grads: the three modalities' (RGB, depth, IR) gradients of the parameter, each from that
    modality's SSP loss, all of one shape. ssp_losses, certainties: three floats each (the
    modalities' SSP losses and mean certainties). owner: 0/1/2 for the modality the parameter
    belongs to, or None for a parameter shared by all three.

    The fast modality is the one with the lowest SSP loss; every other modality is slow.
    - Owner slow: g_o + sum_{j != o} c_j * M(g_j, g_o), where M(g, r) is g's projection on r if
      g . r > 0, else g's part orthogonal to r: the others help the slow owner only along (or
      without conflicting with) its own direction, scaled by their certainty.
    - Owner fast: c_o * M(g_o, s) + sum_{j != o} g_j with s the sum of the other two: the fast
      owner is slowed down (certainty-scaled, and stripped of what conflicts with the slow ones).
    - Shared (owner None), our decision: the paper says the modulation acts on every trainable
      layer, and a shared parameter is "owned" by all three, so it is treated as owned by the fast
      modality, i.e. the fast-owner rule with o = fast. This slows the dominant modality on shared
      weights too, which is the paper's stated aim. (The official code skips shared parameters and
      misaligns its gradient list after the skip; we do neither.)
    """
    if len(grads) != 3 or len(ssp_losses) != 3 or len(certainties) != 3:
        raise ValueError("regrad needs three gradients, three SSP losses and three certainties "
                         "(RGB, depth, IR)")
    shape = grads[0].shape
    if any(g.shape != shape for g in grads):
        raise ValueError(f"regrad: gradients differ in shape {[tuple(g.shape) for g in grads]}; "
                         "pass the three modalities' gradients of ONE parameter")
    if owner is not None and owner not in (0, 1, 2):
        raise ValueError(f"regrad: owner must be 0 (RGB), 1 (depth), 2 (IR) or None, got {owner!r}")
    losses = [float(x) for x in ssp_losses]
    fast = min(range(3), key=lambda i: losses[i])
    o = fast if owner is None else owner
    others = [j for j in range(3) if j != o]
    g_o = grads[o]
    if o != fast:
        out = g_o.clone()
        for j in others:
            out = out + float(certainties[j]) * _agree_or_orthogonal(grads[j], g_o)
        return out
    s = grads[others[0]] + grads[others[1]]
    return float(certainties[o]) * _agree_or_orthogonal(g_o, s) + s


# ---- uncertainty estimation (UEM) ------------------------------------------------------------
def mc_certainty(x: torch.Tensor, p: float, samples: int, rate: float) -> torch.Tensor:
    """exp(-rate * std) with the element-wise std over `samples` dropout(p) draws of x (always
    sampling, whatever the module mode, like the official MC dropout); no gradient."""
    if samples < 2:
        raise ConfigError(f"mmdg: mc_samples must be at least 2 for a standard deviation, got {samples}")
    with torch.no_grad():
        # running sums instead of stacking the draws: same unbiased std, 1/samples of the memory
        # (the paper preset would otherwise hold 20 copies of every block's attention output)
        x = x.float()
        total = torch.zeros_like(x)
        squares = torch.zeros_like(x)
        for _ in range(samples):
            d = F.dropout(x, p, training=True)
            total += d
            squares += d * d
        var = (squares - total * total / samples) / (samples - 1)
        return torch.exp(-rate * var.clamp(min=0).sqrt())


def analytic_certainty(x: torch.Tensor, p: float, rate: float) -> torch.Tensor:
    """The MC estimate's limit: the std of dropout(p) applied to a fixed x is |x| sqrt(p / (1-p))."""
    with torch.no_grad():
        return torch.exp(-rate * x.abs() * math.sqrt(p / (1.0 - p)))


# ---- IR descriptors for ir_channels=3 -------------------------------------------------------------
HOG_CELL, HOG_BINS, PLGF_SIZE = 8, 9, 5


def _hog_stencils(cell: int, bins: int) -> torch.Tensor:
    """(bins, 1, cell, cell) line drawings: bin b (gradient orientation b*pi/bins) draws a line
    through the cell centre perpendicular to that gradient, as skimage's HOG visualisation."""
    c = (cell - 1) / 2.0
    yy, xx = torch.meshgrid(torch.arange(cell) - c, torch.arange(cell) - c, indexing="ij")
    out = []
    for b in range(bins):
        t = math.pi * b / bins  # gradient direction; the drawn line runs along (-sin t, cos t)
        dist = (xx * math.cos(t) + yy * math.sin(t)).abs()  # distance from the line
        out.append((dist <= 0.5).float())
    return torch.stack(out).unsqueeze(1)


def _plgf_kernels(size: int) -> torch.Tensor:
    c = size // 2
    yy, xx = torch.meshgrid(torch.arange(size) - c, torch.arange(size) - c, indexing="ij")
    r2 = (xx**2 + yy**2).float()
    r3 = r2.clamp(min=1) ** 1.5
    kx = torch.where(r2 > 0, xx / r3, torch.zeros(()))  # cos(theta) / r^2
    ky = torch.where(r2 > 0, yy / r3, torch.zeros(()))
    return torch.stack([kx, ky]).unsqueeze(1).float()


def ir_hog_plgf(ir: torch.Tensor) -> torch.Tensor:
    """(B, 1, S, S) IR -> (B, 3, S, S) [IR, HOG picture, PLGF], S a multiple of 8 (see module doc).
    Both descriptors are invariant to a positive scale of the input."""
    b, _, h, w = ir.shape
    if h % HOG_CELL or w % HOG_CELL:
        raise ConfigError(f"mmdg: ir_channels=3 needs an input size that is a multiple of {HOG_CELL}, got {h}x{w}")
    sobel = ir.new_tensor([[[[-1.0, 0.0, 1.0]]]])
    gx = F.conv2d(F.pad(ir, (1, 1, 0, 0), mode="replicate"), sobel)
    gy = F.conv2d(F.pad(ir, (0, 0, 1, 1), mode="replicate"), sobel.transpose(2, 3))
    mag = torch.sqrt(gx * gx + gy * gy)
    angles = torch.arange(HOG_BINS, dtype=ir.dtype, device=ir.device) * (math.pi / HOG_BINS)
    proj = (gx * torch.cos(angles).view(1, -1, 1, 1) + gy * torch.sin(angles).view(1, -1, 1, 1)).abs()
    nearest = F.one_hot(proj.argmax(dim=1), HOG_BINS).permute(0, 3, 1, 2).to(ir.dtype)  # unsigned bin
    hist = F.avg_pool2d(nearest * mag, HOG_CELL)  # (B, bins, S/8, S/8)
    hist = hist / (hist.flatten(1).amax(dim=1).view(-1, 1, 1, 1) + 1e-12)
    hog = F.conv_transpose2d(hist, _hog_stencils(HOG_CELL, HOG_BINS).to(ir), stride=HOG_CELL)
    lo = ir.amin(dim=(1, 2, 3), keepdim=True)
    hi = ir.amax(dim=(1, 2, 3), keepdim=True)
    pos = ir - lo + 0.01 * (hi - lo) + 1e-12  # positive, and scales with the input
    k = _plgf_kernels(PLGF_SIZE).to(ir)
    force = F.conv2d(F.pad(pos, (PLGF_SIZE // 2,) * 4, mode="replicate"), k)
    plgf = torch.atan(torch.sqrt((force * force).sum(dim=1, keepdim=True)) / pos)
    return torch.cat([ir, hog, plgf], dim=1)


# ---- U-Adapter ---------------------------------------------------------------------------------
class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class CDConv(nn.Module):
    """Central difference conv 3x3 (no bias): conv(x) - theta * (sum of the kernel) * x."""

    def __init__(self, channels: int, theta: float):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.theta = theta

    def forward(self, x):  # (B, C, H, W)
        diff = self.conv.weight.sum(dim=(2, 3), keepdim=True)
        return self.conv(x) - self.theta * F.conv2d(x, diff)


class CertaintyCrossAttention(nn.Module):
    """Multi-head cross-attention whose logits of query token i are scaled by certainty[i]."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"mmdg: adapter_dim {dim} is not divisible by adapter_heads {heads}")
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def _split(self, x):  # (B, N, C) -> (B, H, N, C/H)
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, x_q, x_kv, certainty):
        """certainty: (B, N) per query token."""
        q, k, v = self._split(self.q(x_q)), self._split(self.k(x_kv)), self._split(self.v(x_kv))
        logits = (q * self.scale) @ k.transpose(-2, -1)  # (B, H, Nq, Nk)
        attn = torch.softmax(logits * certainty[:, None, :, None], dim=-1)
        return self.proj((attn @ v).transpose(1, 2).flatten(2))


class UAdapter(nn.Module):
    """Uncertainty-guided cross adapter: own stream's y (key/value) queried by the other's y."""

    def __init__(self, width: int, dim: int, heads: int, theta: float, dropout: float):
        super().__init__()
        self.down_own = nn.Linear(width, dim)
        self.down_other = nn.Linear(width, dim)
        self.cross = CertaintyCrossAttention(dim, heads)
        self.norm = nn.LayerNorm(dim)
        self.cdc = CDConv(dim, theta)
        self.act = QuickGELU()
        self.drop = nn.Dropout(dropout)
        self.up = nn.Linear(dim, width)
        for lin in (self.down_own, self.down_other):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        nn.init.zeros_(self.up.weight)  # the adapter starts as a no-op on the pretrained ViT
        nn.init.zeros_(self.up.bias)

    def forward(self, y_own, y_other, certainty_other):
        """y_*: (B, 1 + g*g, width); certainty_other: (B, 1 + g*g, width) of the query stream."""
        own = self.act(self.down_own(y_own))
        other = self.act(self.down_other(y_other))
        z = self.norm(self.cross(other, own, certainty_other.mean(dim=-1)) + own)
        b, n, c = z.shape
        g = math.isqrt(n - 1)
        patches = self.cdc(z[:, 1:].transpose(1, 2).reshape(b, c, g, g)).flatten(2).transpose(1, 2)
        cls = self.cdc(z[:, :1].transpose(1, 2).reshape(b, c, 1, 1)).flatten(2).transpose(1, 2)
        return self.up(self.drop(self.act(torch.cat([cls, patches], dim=1))))


# ---- ViT pieces (timm parameter names, so a timm ViT-B/16 state dict maps by key) -----------
class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"mmdg: width {dim} is not divisible by heads {heads}")
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        attn = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """A ViT block run in MMDG's split form (attention half, then MLP half plus adapters)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))


def _init_linear(m):
    if isinstance(m, nn.Linear) and not getattr(m, "_keep_init", False):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


# ---- the model ---------------------------------------------------------------------------------
class MMDG(nn.Module):
    name = "mmdg"
    output_names = ("logits", "score", "uncertainty")

    def __init__(self, preset: str = "paper", pretrained=None, **overrides):
        super().__init__()
        if preset not in PRESETS:
            raise ConfigError(f"mmdg: unknown preset {preset!r}; use one of {sorted(PRESETS)}")
        unknown = sorted(set(overrides) - set(PRESETS[preset]))
        if unknown:
            raise ConfigError(f"mmdg: unknown option(s) {unknown}; known options: {sorted(PRESETS[preset])}")
        cfg = {**PRESETS[preset], **overrides}
        for key in ("uem", "uem_eval"):
            if cfg[key] not in ("mc", "analytic"):
                raise ConfigError(f"mmdg: {key} must be 'mc' or 'analytic', got {cfg[key]!r}")
        if cfg["input_size"] % cfg["patch_size"]:
            raise ConfigError(f"mmdg: input_size {cfg['input_size']} must be a multiple of patch_size {cfg['patch_size']}")
        if cfg["ir_channels"] not in (1, 3):
            raise ConfigError(f"mmdg: ir_channels must be 1 (IR) or 3 ([IR, HOG, PLGF]), got {cfg['ir_channels']!r}")
        if not 0 <= cfg["frozen_blocks"] <= cfg["depth"]:
            raise ConfigError(f"mmdg: frozen_blocks must be in 0..depth ({cfg['depth']}), got {cfg['frozen_blocks']}")
        self.preset, self.config = preset, cfg
        self.input_size = cfg["input_size"]
        self.paper_training = dict(PAPER_TRAINING)
        w, self.grid = cfg["width"], cfg["input_size"] // cfg["patch_size"]
        chans = {"rgb": 3, "depth": 1, "ir": cfg["ir_channels"]}
        self.patch_embed = nn.ModuleDict(
            {m: nn.Conv2d(chans[m], w, cfg["patch_size"], stride=cfg["patch_size"]) for m in MODALITIES})
        self.cls_token = nn.ParameterDict({m: nn.Parameter(torch.zeros(1, 1, w)) for m in MODALITIES})
        self.pos_embed = nn.ParameterDict(
            {m: nn.Parameter(torch.zeros(1, 1 + self.grid ** 2, w)) for m in MODALITIES})
        self.blocks = nn.ModuleList(Block(w, cfg["heads"], cfg["mlp_ratio"]) for _ in range(cfg["depth"]))
        self.norm = nn.LayerNorm(w, eps=1e-6)
        self.head = nn.Linear(3 * w, 2)
        self.apply(_init_linear)
        # adapters are built after the generic init so their own (zero up-projection) init stays
        self.adapters = nn.ModuleList(
            nn.ModuleDict({k: UAdapter(w, cfg["adapter_dim"], cfg["adapter_heads"], cfg["cdc_theta"],
                                       cfg["adapter_dropout"]) for k in ADAPTERS})
            for _ in range(cfg["depth"]))
        for m in MODALITIES:
            nn.init.normal_(self.pos_embed[m], std=0.02)
            nn.init.normal_(self.cls_token[m], std=1e-6)
        # SSP prototypes: [modality, 0 = live | 1 + source domain, feature]; ready = ever set
        n_proto = 1 + int(cfg["num_domains"])
        self.register_buffer("prototypes", torch.zeros(3, n_proto, w))
        self.register_buffer("prototype_ready", torch.zeros(3, n_proto, dtype=torch.bool))
        if pretrained:
            self.load_pretrained(pretrained)
        self._freeze()

    def _freeze(self):
        cfg = self.config
        for blk in self.blocks[: cfg["frozen_blocks"]]:
            blk.requires_grad_(False)
        if cfg["freeze_patch_embed"]:
            self.patch_embed.requires_grad_(False)

    # ---- forward ------------------------------------------------------------------------------
    def _certainty(self, x_c):
        cfg = self.config
        kind = cfg["uem"] if self.training else cfg["uem_eval"]
        if kind == "mc":
            return mc_certainty(x_c, cfg["mc_p"], cfg["mc_samples"], cfg["exp_rate"])
        return analytic_certainty(x_c, cfg["mc_p"], cfg["exp_rate"])

    def encode(self, rgb, depth, ir, present=None) -> dict:
        """Per-modality class tokens after the final LN (B, D) and the last block's certainty
        maps (B, N, D); missing modalities are zeroed first."""
        images = {"rgb": rgb, "depth": depth, "ir": ir}
        b = rgb.shape[0]
        if present is None:
            p = torch.ones(b, 3, dtype=rgb.dtype, device=rgb.device)
        else:
            p = present.to(device=rgb.device, dtype=rgb.dtype).reshape(b, 3)
        if self.config["ir_channels"] == 3 and ir.shape[1] == 1:
            images["ir"] = ir_hog_plgf(ir)
        x = {}
        for i, m in enumerate(MODALITIES):
            img = images[m] * p[:, i].view(-1, 1, 1, 1)
            tok = self.patch_embed[m](img).flatten(2).transpose(1, 2)
            x[m] = torch.cat([self.cls_token[m].expand(b, -1, -1), tok], dim=1) + self.pos_embed[m]
        cert = {}
        for blk, adapters in zip(self.blocks, self.adapters):
            x_a, y, mlp = {}, {}, {}
            for m in MODALITIES:
                x_c = blk.attn(blk.norm1(x[m]))
                cert[m] = self._certainty(x_c)
                x_a[m] = x[m] + x_c
                y[m] = blk.norm2(x_a[m])
                mlp[m] = blk.mlp(y[m])
            x = {m: x_a[m] + mlp[m] for m in MODALITIES}
            for key, (tgt, src) in ADAPTERS.items():
                x[tgt] = x[tgt] + adapters[key](y[tgt], y[src], cert[src])
        feats = {m: self.norm(x[m])[:, 0] for m in MODALITIES}
        return {"features": feats, "certainty": cert, "present": p}

    def forward(self, rgb, depth, ir, present=None) -> dict:
        enc = self.encode(rgb, depth, ir, present)
        f = enc["features"]
        z = self.head(torch.cat([f["rgb"], f["depth"], f["ir"]], dim=1))
        b, g = rgb.shape[0], self.grid
        unc = torch.stack([1.0 - enc["certainty"][m][:, 1:].mean(dim=-1) for m in MODALITIES], dim=1)
        out = {"logits": z[:, 1] - z[:, 0], "score": torch.softmax(z, dim=1)[:, 1],
               "uncertainty": unc.reshape(b, 3, g, g)}
        if self.training:  # loss inputs, never in the exported graph
            out["z"] = z
            out["features"] = f
            out["present"] = enc["present"]
            out["certainties"] = [enc["certainty"][m][:, 0].mean() for m in MODALITIES]
        return out

    # ---- SSP loss -----------------------------------------------------------------------------
    def prototype_index(self, label: torch.Tensor, domain: Optional[torch.Tensor]) -> torch.Tensor:
        """0 for live samples, 1 + domain for attacks (domain 0 when the batch has none)."""
        label = label.long().reshape(-1)
        dom = torch.zeros_like(label) if domain is None else domain.long().reshape(-1).to(label.device)
        n_dom = int(self.config["num_domains"])
        if bool(((dom < 0) | (dom >= n_dom)).any()):
            raise ConfigError(f"mmdg: batch domain ids must be in 0..{n_dom - 1}; build with "
                              f"num_domains= the number of source domains (got ids {sorted(set(dom.tolist()))})")
        return torch.where(label == 1, 1 + dom, torch.zeros_like(dom))

    def ssp_losses(self, feats: dict, target: torch.Tensor, present: torch.Tensor) -> list:
        """Eq. 7 per modality (unweighted); only prototypes already set take part, only present
        samples whose own prototype is set count; a modality with no such sample gives 0."""
        losses = []
        for i, m in enumerate(MODALITIES):
            ready = self.prototype_ready[i]
            valid = (present[:, i] > 0) & ready[target]
            if not bool(valid.any()):
                losses.append(feats[m].sum() * 0.0)
                continue
            dist = torch.cdist(feats[m][valid], self.prototypes[i])  # Euclidean, (b, P)
            logits = (-dist).masked_fill(~ready, float("-inf"))
            losses.append(F.cross_entropy(logits, target[valid]))
        return losses

    def loss(self, batch: dict, out: dict) -> dict:
        if "features" not in out:  # an eval-mode output: recompute the features with gradients
            enc = self.encode(batch["rgb"], batch["depth"], batch["ir"], batch.get("present"))
            f = enc["features"]
            out = {**out, "features": f, "present": enc["present"],
                   "z": self.head(torch.cat([f["rgb"], f["depth"], f["ir"]], dim=1))}
        label = batch["label"].long().reshape(-1)
        target = self.prototype_index(label, batch.get("domain"))
        terms = {"ce": F.cross_entropy(out["z"], label)}
        w = self.config["ssp_weight"]
        for m, l in zip(MODALITIES, self.ssp_losses(out["features"], target, out["present"])):
            terms[f"ssp_{m}"] = w * l
        terms["total"] = terms["ce"] + sum(terms[f"ssp_{m}"] for m in MODALITIES)  # Eq. 8
        return terms

    @torch.no_grad()
    def _set_prototypes(self, sums: torch.Tensor, counts: torch.Tensor):
        """EMA update (momentum on the old value) of prototypes with count > 0; (3, P, D), (3, P)."""
        has = counts > 0
        mean = sums / counts.clamp(min=1).unsqueeze(-1)
        mom = self.config["proto_momentum"]
        blend = torch.where(self.prototype_ready.unsqueeze(-1), (1 - mom) * mean + mom * self.prototypes, mean)
        self.prototypes.copy_(torch.where(has.unsqueeze(-1), blend, self.prototypes))
        self.prototype_ready |= has

    @torch.no_grad()
    def update_prototypes(self, batches: Iterable[dict], sample_fraction: float = 1.0, seed: int = 0):
        """Per-epoch prototype refresh as the official code: eval-mode class tokens of (a random
        `sample_fraction` of) the batches, mean per prototype, EMA with the previous prototypes."""
        was_training = self.training
        self.eval()
        gen = torch.Generator().manual_seed(seed)
        sums = torch.zeros_like(self.prototypes)
        counts = torch.zeros(self.prototypes.shape[:2], device=self.prototypes.device)
        for batch in batches:
            if sample_fraction < 1.0 and float(torch.rand((), generator=gen)) > sample_fraction:
                continue
            self._accumulate(batch, self.encode(batch["rgb"], batch["depth"], batch["ir"],
                                                batch.get("present"))["features"], sums, counts)
        self._set_prototypes(sums, counts)
        self.train(was_training)

    def _accumulate(self, batch, feats, sums, counts):
        target = self.prototype_index(batch["label"], batch.get("domain")).to(sums.device)
        present = batch.get("present")
        for i, m in enumerate(MODALITIES):
            keep = torch.ones_like(target, dtype=torch.bool) if present is None else present[:, i].bool().to(sums.device)
            sums[i].index_add_(0, target[keep], feats[m].detach()[keep].to(sums.dtype))
            counts[i].index_add_(0, target[keep], torch.ones_like(target[keep], dtype=counts.dtype))

    # ---- training -----------------------------------------------------------------------------
    def trainable_owners(self) -> list:
        """(parameter, owner) for every trainable parameter: owner 0/1/2 for a modality's own
        patch projection, class token, position embedding and the adapters adding into its
        stream; None for shared ones (ViT blocks, final LN, head)."""
        owned = []
        for name, prm in self.named_parameters():
            if not prm.requires_grad:
                continue
            parts = name.split(".")
            owner = None
            if parts[0] in ("patch_embed", "cls_token", "pos_embed"):
                owner = MODALITIES.index(parts[1])
            elif parts[0] == "adapters":
                owner = MODALITIES.index(ADAPTERS[parts[2]][0])
            owned.append((prm, owner))
        return owned

    def make_optimisers(self, lr=None, weight_decay=None) -> dict:
        lr = self.paper_training["lr"] if lr is None else lr
        wd = self.paper_training["weight_decay"] if weight_decay is None else weight_decay
        params = [p for p in self.parameters() if p.requires_grad]
        return {"model": torch.optim.Adam(params, lr=lr, weight_decay=wd)}

    def train_step(self, batch: dict, optimisers: dict, scaler=None) -> dict:
        """CE gradient plus ReGrad-modulated SSP gradients (Eq. 5), one Adam step.

        With regrad=False it is a plain step on Eq. 8's total. ReGrad is linear in the gradients
        and its decisions are sign tests, so a GradScaler's positive scale passes through it.
        """
        self.train()
        opt = optimisers["model"]
        if not bool(self.prototype_ready.all()):  # seed empty prototypes from this batch
            with torch.no_grad():
                feats = self.encode(batch["rgb"], batch["depth"], batch["ir"], batch.get("present"))["features"]
                sums = torch.zeros_like(self.prototypes)
                counts = torch.zeros(self.prototypes.shape[:2], device=self.prototypes.device)
                self._accumulate(batch, feats, sums, counts)
                counts = counts * (~self.prototype_ready)  # only the empty ones
                self._set_prototypes(sums, counts)
        out = self(batch["rgb"], batch["depth"], batch["ir"], batch.get("present"))
        terms = self.loss(batch, out)
        scale = (lambda t: scaler.scale(t)) if scaler is not None else (lambda t: t)
        opt.zero_grad(set_to_none=True)
        if not self.config["regrad"]:
            scale(terms["total"]).backward()
        else:
            owned = self.trainable_owners()
            params = [p for p, _ in owned]
            ssp = [terms[f"ssp_{m}"] for m in MODALITIES]
            per_mod = [torch.autograd.grad(scale(l), params, retain_graph=True, allow_unused=True) for l in ssp]
            scale(terms["ce"]).backward()
            # a modality absent from the whole batch has SSP loss 0 and no gradient: it must not
            # count as the fast one, so its loss is +inf and its certainty 0
            has = [bool((out["present"][:, i] > 0).any()) for i in range(3)]
            values = [float(l.detach()) if h else float("inf") for l, h in zip(ssp, has)]
            certs = [float(c) if h else 0.0 for c, h in zip(out["certainties"], has)]
            for k, (prm, owner) in enumerate(owned):
                g = [per_mod[i][k] for i in range(3)]
                if all(gi is None for gi in g):
                    continue  # untouched by every SSP loss (e.g. the head): CE gradient only
                g = [torch.zeros_like(prm) if gi is None else gi for gi in g]
                extra = regrad(g, values, certs, owner)
                prm.grad = extra if prm.grad is None else prm.grad + extra
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        res = {k: float(v.detach()) for k, v in terms.items()}
        res.update({f"certainty_{m}": float(c) for m, c in zip(MODALITIES, out["certainties"])})
        return res

    # ---- pretrained ---------------------------------------------------------------------------
    def load_pretrained(self, source) -> dict:
        """Initialise from a timm (or torchvision) ViT-B/16 state dict (path or dict), by key:
        patch_embed.proj -> each modality's patch projection (summed over RGB for 1-channel
        inputs), cls_token -> each modality's class token, blocks.* and norm.* as is. pos_embed
        is NOT loaded (MMDG learns new position embeddings) and head.* is ignored.
        Returns {"loaded": [own keys], "skipped": [source keys]}."""
        if isinstance(source, dict):
            sd, name = source, "<state dict>"
        else:
            name = str(source)
            try:
                sd = torch.load(name, map_location="cpu", weights_only=True)
            except FileNotFoundError:
                raise ArtifactError(f"mmdg pretrained weights: {name} does not exist; pass the path of a "
                                    "local timm ViT-B/16 state dict") from None
        for key in ("state_dict", "model"):
            if isinstance(sd.get(key), dict):
                sd = sd[key]
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
        if "conv_proj.weight" in sd:  # torchvision vit_b_16 layout (the official code's start)
            sd = torchvision_vit_to_timm(sd)
        own = self.state_dict()
        new, used, loaded = dict(own), set(), []

        def take(src_key, own_key, adapt=None):
            if src_key not in sd:
                raise ArtifactError(f"mmdg pretrained weights: {name} lacks '{src_key}'; is it a timm "
                                    f"ViT state dict of width {self.config['width']}?")
            w = sd[src_key] if adapt is None else adapt(sd[src_key])
            if w.shape != own[own_key].shape:
                raise ArtifactError(f"mmdg pretrained weights: {name} '{src_key}' has shape {tuple(w.shape)}, "
                                    f"'{own_key}' needs {tuple(own[own_key].shape)}; use a ViT of the same "
                                    "width, depth and patch size")
            new[own_key] = w.to(own[own_key].dtype)
            used.add(src_key)
            loaded.append(own_key)

        for m in MODALITIES:
            c = self.patch_embed[m].in_channels
            take("patch_embed.proj.weight", f"patch_embed.{m}.weight",
                 lambda w, c=c: w if w.shape[1] == c else w.sum(dim=1, keepdim=True).repeat(1, c, 1, 1) / c)
            take("patch_embed.proj.bias", f"patch_embed.{m}.bias")
            take("cls_token", f"cls_token.{m}")
        for k in own:
            if k.startswith(("blocks.", "norm.")):
                take(k, k)
        self.load_state_dict(new)
        return {"loaded": loaded, "skipped": sorted(set(sd) - used)}


_TV_BLOCK = {"ln_1": "norm1", "ln_2": "norm2", "self_attention.in_proj_weight": "attn.qkv.weight",
             "self_attention.in_proj_bias": "attn.qkv.bias", "self_attention.out_proj": "attn.proj",
             "mlp.0": "mlp.fc1", "mlp.3": "mlp.fc2", "mlp.linear_1": "mlp.fc1", "mlp.linear_2": "mlp.fc2"}


def torchvision_vit_to_timm(sd: dict) -> dict:
    """Rename a torchvision VisionTransformer state dict to timm's keys (same tensors: torchvision's
    in_proj stacks q, k, v in timm's qkv order). Keys it does not know are kept as they are."""
    out = {}
    for k, v in sd.items():
        new = {"conv_proj.weight": "patch_embed.proj.weight", "conv_proj.bias": "patch_embed.proj.bias",
               "class_token": "cls_token", "encoder.pos_embedding": "pos_embed",
               "encoder.ln.weight": "norm.weight", "encoder.ln.bias": "norm.bias"}.get(k)
        if new is None and k.startswith("encoder.layers.encoder_layer_"):
            idx, rest = k[len("encoder.layers.encoder_layer_"):].split(".", 1)
            for tv, timm in _TV_BLOCK.items():
                if rest == tv or rest.startswith(tv + "."):
                    new = f"blocks.{idx}.{timm}{rest[len(tv):]}"
                    break
        if new is None and k.startswith("heads."):
            new = "head." + k.split(".")[-1]
        out[new or k] = v
    return out


def build(preset: str = "paper", **overrides) -> MMDG:
    return MMDG(preset=preset, **overrides)
