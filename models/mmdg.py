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
  still-empty prototype from the current batch's class tokens (those of its own forward, detached),
  so the SSP loss is defined from the first step. Prototypes are buffers and travel in checkpoints.
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
from edge_fas.models.pretrained import load_pretrained, read_weights, torchvision_vit_to_timm  # noqa: F401 (re-exported)
from edge_fas.models.vit import Mlp, _block_index

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



# ReGrad works on the Gram matrix of the three modalities' gradients of each parameter: every case of
# Eq. 5 is a combination w_rgb g_rgb + w_depth g_depth + w_ir g_ir whose weights depend only on the
# dot products, the SSP losses and the certainties. The weights are computed with tensor operations
# for all parameters at once, so no value ever travels to the host (no float()/item(): on a GPU the
# step never waits), and the gradients are combined per group of equally shaped parameters.
_REL = torch.finfo(torch.float32).eps  # a reference this much smaller than the gradient counts as zero
_TINY = torch.finfo(torch.float32).tiny


def _modulation(dot, rr, gg):
    """Coefficient and agreement of M(g, r) from g.r, |r|^2 and |g|^2 (tensors of one shape).

    M(g, r) = coef * r when g and r agree (g.r > 0), else g - coef * r, coef = g.r / |r|^2. A
    reference that is zero relative to g (|r| <= eps |g|, or |r|^2 below float32's smallest normal)
    counts as the zero vector: coef 0 and no agreement, so M(g, 0) = g. The test is relative, so a
    GradScaler's scale (applied to g and r alike) never changes a decision.
    """
    zero = (rr <= (_REL * _REL) * gg) | (rr < _TINY)
    coef = torch.where(zero, torch.zeros_like(dot), dot / torch.where(zero, torch.ones_like(rr), rr))
    return coef, (dot > 0) & ~zero


def regrad_weights(gram: torch.Tensor, owner: torch.Tensor, ssp_losses: torch.Tensor,
                   certainties: torch.Tensor) -> torch.Tensor:
    """(P, 3) weights of (g_rgb, g_depth, g_ir) giving Eq. 5's extra gradient of each parameter.

    gram: (P, 3, 3) dot products of the three gradients of each parameter; owner: (P,) long, 0/1/2
    or -1 for a parameter shared by all three; ssp_losses, certainties: (3,). See `regrad`.
    """
    p = gram.shape[0]
    rows = torch.arange(p, device=gram.device)
    fast = torch.argmin(ssp_losses)  # the first of equal minima, as min() over a list
    o = torch.where(owner < 0, fast, owner)
    a, b = (o + 1) % 3, (o + 2) % 3

    def d(i, j):
        return gram[rows, i, j]

    c = certainties.to(gram.dtype)
    c_o, c_a, c_b = c[o], c[a], c[b]
    # slow owner: g_o + sum_j c_j M(g_j, g_o)
    coef_a, agree_a = _modulation(d(a, o), d(o, o), d(a, a))
    coef_b, agree_b = _modulation(d(b, o), d(o, o), d(b, b))
    slow_o = 1 + c_a * torch.where(agree_a, coef_a, -coef_a) + c_b * torch.where(agree_b, coef_b, -coef_b)
    slow_a, slow_b = c_a * (~agree_a), c_b * (~agree_b)
    # fast owner: c_o M(g_o, s) + s, s = g_a + g_b
    coef_s, agree_s = _modulation(d(o, a) + d(o, b), d(a, a) + d(b, b) + 2 * d(a, b), d(o, o))
    fast_o = c_o * (~agree_s)
    fast_s = 1 + c_o * torch.where(agree_s, coef_s, -coef_s)
    is_fast = o == fast
    w = torch.zeros(p, 3, dtype=gram.dtype, device=gram.device)
    w.scatter_(1, o[:, None], torch.where(is_fast, fast_o, slow_o)[:, None])
    w.scatter_(1, a[:, None], torch.where(is_fast, fast_s, slow_a)[:, None])
    w.scatter_(1, b[:, None], torch.where(is_fast, fast_s, slow_b)[:, None])
    return w


def regrad_grads(grads: Sequence[Sequence[torch.Tensor]], owners: Sequence[Optional[int]],
                 ssp_losses: torch.Tensor, certainties: torch.Tensor) -> list:
    """Eq. 5's extra gradient of P parameters at once, without a host sync.

    grads: three lists (RGB, depth, IR) of P tensors, the k-th of each list the gradient of
    parameter k from that modality's SSP loss; owners: P entries 0/1/2/None (see `regrad`);
    ssp_losses, certainties: three values each (tensors stay on their device). Returns P tensors.
    """
    dev = grads[0][0].device
    losses = _vector(ssp_losses, dev)
    certs = _vector(certainties, dev)
    groups: dict = {}  # (shape, owner) -> parameter indices: one stacked tensor per group
    for k, (g, owner) in enumerate(zip(grads[0], owners)):
        groups.setdefault((tuple(g.shape), owner), []).append(k)
    stacked, grams, owner_ids = [], [], []
    for (_, owner), ks in groups.items():
        g = torch.stack([torch.stack([grads[i][k].reshape(-1) for k in ks]) for i in range(3)], dim=1)  # (n, 3, numel)
        stacked.append(g)
        # element-wise products and sums (not a matmul, which TF32 settings could round)
        dots = {(i, j): (g[:, i] * g[:, j]).sum(-1) for i in range(3) for j in range(i, 3)}
        grams.append(torch.stack([torch.stack([dots[min(i, j), max(i, j)] for j in range(3)], -1)
                                  for i in range(3)], -2))
        owner_ids.append(torch.full((len(ks),), -1 if owner is None else owner, dtype=torch.long, device=dev))
    weights = regrad_weights(torch.cat(grams), torch.cat(owner_ids), losses, certs)
    out: list = [None] * len(owners)
    for ((shape, _), ks), g, w in zip(groups.items(), stacked, weights.split([len(ks) for ks in groups.values()])):
        combined = w[:, 0, None] * g[:, 0] + w[:, 1, None] * g[:, 1] + w[:, 2, None] * g[:, 2]
        for k, row in zip(ks, combined.unbind(0)):
            out[k] = row.view(shape)
    return out


def _vector(values, device) -> torch.Tensor:
    """Three losses or certainties (floats or 0-d tensors) as a float32 (3,) tensor, without a sync."""
    if torch.is_tensor(values):
        return values.to(device=device, dtype=torch.float32).reshape(3)
    if all(torch.is_tensor(v) for v in values):
        return torch.stack([v.to(device=device, dtype=torch.float32).reshape(()) for v in values])
    return torch.tensor([float(v) for v in values], dtype=torch.float32, device=device)


def regrad(grads: Sequence[torch.Tensor], ssp_losses, certainties, owner: Optional[int]) -> torch.Tensor:
    """Re-weighted gradient of one parameter (paper Eq. 5), to be added to its CE-loss gradient.

    grads: the three modalities' (RGB, depth, IR) gradients of the parameter, each from that
    modality's SSP loss, all of one shape. ssp_losses, certainties: three values each (the
    modalities' SSP losses and mean certainties; floats or tensors). owner: 0/1/2 for the modality
    the parameter belongs to, or None for a parameter shared by all three.

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
    A reference direction that is zero relative to the gradient it modulates counts as zero
    (`_modulation`). Same computation as `regrad_grads` (which train_step uses), for one parameter.
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
    return regrad_grads([[g] for g in grads], [owner], ssp_losses, certainties)[0]


# ---- uncertainty estimation (UEM) ------------------------------------------------------------
_KEPT_CDF: dict = {}


def _kept_count_table(p: float, samples: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """CDF boundaries of K ~ Binomial(samples, 1 - p) (float32) and the std factor of each K."""
    key = (p, samples, str(device))
    if key not in _KEPT_CDF:
        k = torch.arange(samples + 1, dtype=torch.float64)
        pmf = torch.exp(torch.lgamma(torch.tensor(samples + 1.0, dtype=torch.float64)) - torch.lgamma(k + 1)
                        - torch.lgamma(samples - k + 1) + k * math.log(1 - p) + (samples - k) * math.log(p))
        cdf = pmf.cumsum(0)[:-1].float()
        factor = (torch.sqrt(k * (samples - k) / (samples * (samples - 1))) / (1 - p)).float()
        _KEPT_CDF[key] = (cdf.to(device), factor.to(device))
    return _KEPT_CDF[key]


def mc_certainty(x: torch.Tensor, p: float, samples: int, rate: float, generator=None) -> torch.Tensor:
    """exp(-rate * std) with the element-wise std over `samples` dropout(p) draws of x (always
    sampling, whatever the module mode, like the official MC dropout); no gradient.

    Drawn in closed form, with the same distribution as the draws themselves: dropout keeps an
    element (scaled by 1/(1-p)) in each draw independently, so over n draws the element is kept
    K ~ Binomial(n, 1-p) times, and the unbiased std of the n values is
    |x| / (1-p) * sqrt(K (n-K) / (n (n-1))). One uniform number per element (inverse CDF of K)
    replaces n dropout masks. (K below about 1e-7 probability is never drawn: float32 uniforms.)
    """
    if samples < 2:
        raise ConfigError(f"mmdg: mc_samples must be at least 2 for a standard deviation, got {samples}")
    with torch.no_grad():
        x = x.float()
        cdf, factor = _kept_count_table(float(p), int(samples), x.device)
        kept = torch.bucketize(torch.rand(x.shape, generator=generator, device=x.device), cdf)
        return torch.exp(-rate * x.abs() * factor[kept])


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
        # row i of the logits times certainty[i] == query i times certainty[i]: fused attention
        q = q * certainty[:, None, :, None].to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj(out.transpose(1, 2).flatten(2))


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
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)  # fused softmax(q k^T s) v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


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
    pretrained_layouts = ("timm-vit", "torchvision-vit")
    supports_accumulation = True  # train_step(..., accumulate=k, apply=...): see the trainer

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
        self._regrad_sums = None  # ReGrad inputs summed over the batches of one accumulated step
        self._pending_batches = 0  # batches backpropagated since the last optimiser step
        if pretrained:
            load_pretrained(self, pretrained)
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
        tokens = []
        for i, m in enumerate(MODALITIES):
            img = images[m] * p[:, i].view(-1, 1, 1, 1)
            tok = self.patch_embed[m](img).flatten(2).transpose(1, 2)
            tokens.append(torch.cat([self.cls_token[m].expand(b, -1, -1), tok], dim=1) + self.pos_embed[m])
        # the ViT blocks are shared: run them once on the modalities stacked along the batch
        # (RGB rows, then depth, then IR); only the adapters, which differ per pair, see them apart
        x = torch.cat(tokens)
        cert = {}
        for blk, adapters in zip(self.blocks, self.adapters):
            x_c = blk.attn(blk.norm1(x))
            cert = dict(zip(MODALITIES, self._certainty(x_c).chunk(3)))
            x_a = x + x_c
            y_all = blk.norm2(x_a)
            y = dict(zip(MODALITIES, y_all.chunk(3)))
            out = dict(zip(MODALITIES, (x_a + blk.mlp(y_all)).chunk(3)))
            for key, (tgt, src) in ADAPTERS.items():
                out[tgt] = out[tgt] + adapters[key](y[tgt], y[src], cert[src])
            x = torch.cat([out[m] for m in MODALITIES])
        feats = dict(zip(MODALITIES, self.norm(x[:, 0]).chunk(3)))
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
        bad = (dom < 0) | (dom >= n_dom)
        msg = (f"mmdg: batch domain ids must be in 0..{n_dom - 1}; build with num_domains= the number of "
               "source domains")
        if dom.device.type == "cpu":
            if bool(bad.any()):
                raise ConfigError(f"{msg} (got ids {sorted(set(dom.tolist()))})")
        else:  # checked on the device: a failing batch stops the run at the next sync, without a sync here
            torch._assert_async(~bad.any(), msg)
        return torch.where(label == 1, 1 + dom, torch.zeros_like(dom))

    def ssp_losses(self, feats: dict, target: torch.Tensor, present: torch.Tensor) -> list:
        """Eq. 7 per modality (unweighted); only prototypes already set take part, only present
        samples whose own prototype is set count; a modality with no such sample gives 0.
        Masked by weights rather than by selecting rows, so the step needs no host sync."""
        losses = []
        for i, m in enumerate(MODALITIES):
            ready = self.prototype_ready[i]
            valid = (present[:, i] > 0) & ready[target]
            dist = torch.cdist(feats[m], self.prototypes[i])  # Euclidean, (B, P)
            logits = (-dist).masked_fill(~ready, float("-inf"))
            # rows that do not count get finite dummy logits and target 0, then weight 0
            logits = torch.where(valid[:, None], logits, torch.zeros_like(logits))
            ce = F.cross_entropy(logits, torch.where(valid, target, torch.zeros_like(target)), reduction="none")
            w = valid.to(ce.dtype)
            losses.append((ce * w).sum() / w.sum().clamp(min=1))
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
        for i, m in enumerate(MODALITIES):  # weighted by presence, not selected: no host sync
            keep = torch.ones_like(target, dtype=sums.dtype) if present is None else present[:, i].to(sums.device, sums.dtype)
            sums[i].index_add_(0, target, feats[m].detach().to(sums.dtype) * keep[:, None])
            counts[i].index_add_(0, target, keep.to(counts.dtype))

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

    def train_step(self, batch: dict, optimisers: dict, scaler=None, accumulate: int = 1, apply: bool = True) -> dict:
        """CE gradient plus ReGrad-modulated SSP gradients (Eq. 5), one Adam step.

        With regrad=False it is a plain step on Eq. 8's total. ReGrad is linear in the gradients
        and its decisions are sign tests and relative zero tests, so a GradScaler's positive scale
        passes through it.

        Gradient accumulation (`accumulate` batches per optimiser step, `apply` True on the last):
        the CE gradients and each modality's SSP gradients are averaged over the batches, the SSP
        losses and certainties too (each over the batches where the modality is present), and
        ReGrad runs once on those averages before the step: the step a batch `accumulate` times as
        large would take (equal batch sizes, same prototypes). ReGrad is therefore never skipped.
        """
        if accumulate < 1:
            raise ValueError(f"mmdg: accumulate must be >= 1, got {accumulate}")
        self.train()
        opt = optimisers["model"]
        out = self(batch["rgb"], batch["depth"], batch["ir"], batch.get("present"))
        with torch.no_grad():  # seed still-empty prototypes from this batch's class tokens
            sums = torch.zeros_like(self.prototypes)
            counts = torch.zeros(self.prototypes.shape[:2], device=self.prototypes.device)
            self._accumulate(batch, out["features"], sums, counts)
            self._set_prototypes(sums, counts * (~self.prototype_ready))  # set ones keep their value
        terms = self.loss(batch, out)
        k = float(accumulate)
        scale = (lambda t: scaler.scale(t / k)) if scaler is not None else (lambda t: t / k)
        if self._pending_batches == 0:  # the first batch of an optimiser step
            opt.zero_grad(set_to_none=True)
        if not self.config["regrad"]:
            scale(terms["total"]).backward()
        else:
            owned = self.trainable_owners()
            params = [p for p, _ in owned]
            ssp = [terms[f"ssp_{m}"] for m in MODALITIES]
            per_mod = [torch.autograd.grad(scale(l), params, retain_graph=True, allow_unused=True) for l in ssp]
            scale(terms["ce"]).backward()
            self._add_regrad_inputs(per_mod, ssp, out)
        if apply:
            if self._regrad_sums is not None:
                self._apply_regrad()
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            self._pending_batches = 0
        else:
            self._pending_batches += 1
        names = list(terms) + [f"certainty_{m}" for m in MODALITIES]
        values = torch.stack([t.detach().float().reshape(()) for t in list(terms.values()) + out["certainties"]])
        return dict(zip(names, values.tolist()))  # the one host sync of the step: the logged numbers

    def _add_regrad_inputs(self, per_mod, ssp, out):
        """Accumulate this batch's per-modality SSP gradients (already divided by `accumulate`),
        SSP losses and certainties for ReGrad, summed over the batches of one optimiser step."""
        owned = self.trainable_owners()
        has = (out["present"] > 0).any(dim=0)  # a modality absent from the whole batch does not count
        loss = torch.stack([l.detach().float() for l in ssp])
        cert = torch.stack([c.detach().float() for c in out["certainties"]])
        st = self._regrad_sums
        if st is None:
            st = self._regrad_sums = {"grads": [None] * len(owned), "owners": [o for _, o in owned],
                                      "params": [p for p, _ in owned], "loss": torch.zeros_like(loss),
                                      "cert": torch.zeros_like(cert), "n": torch.zeros_like(loss)}
        for k in range(len(owned)):
            g = [per_mod[i][k] for i in range(3)]
            if all(gi is None for gi in g):
                continue  # untouched by every SSP loss (e.g. the head): CE gradient only
            ref = next(gi for gi in g if gi is not None)
            g = [torch.zeros_like(ref) if gi is None else gi for gi in g]
            if st["grads"][k] is None:
                st["grads"][k] = g
            else:
                st["grads"][k] = [a + b for a, b in zip(st["grads"][k], g)]
        st["loss"] += torch.where(has, loss, torch.zeros_like(loss))
        st["cert"] += torch.where(has, cert, torch.zeros_like(cert))
        st["n"] += has.float()

    def _apply_regrad(self):
        """Add Eq. 5's modulated SSP gradients to the CE gradients in .grad (no host sync)."""
        st, self._regrad_sums = self._regrad_sums, None
        seen = st["n"] > 0
        n = st["n"].clamp(min=1)
        # a modality absent from every batch must not count as the fast one: loss +inf, certainty 0
        losses = torch.where(seen, st["loss"] / n, torch.full_like(n, float("inf")))
        certs = torch.where(seen, st["cert"] / n, torch.zeros_like(n))
        idx = [k for k, g in enumerate(st["grads"]) if g is not None]
        if not idx:
            return
        extra = regrad_grads([[st["grads"][k][i] for k in idx] for i in range(3)],
                             [st["owners"][k] for k in idx], losses, certs)
        for k, e in zip(idx, extra):
            prm = st["params"][k]
            prm.grad = e if prm.grad is None else prm.grad.add_(e)

    # ---- pretrained ---------------------------------------------------------------------------
    def load_pretrained(self, source) -> dict:
        """Initialise from a timm (or torchvision) ViT-B/16 state dict (path or dict), by key:
        patch_embed.proj -> each modality's patch projection (summed over RGB for 1-channel
        inputs), cls_token -> each modality's class token, blocks.* and norm.* as is. pos_embed
        is NOT loaded (MMDG learns new position embeddings) and head.* is ignored; any other key
        means another architecture and is refused. Returns {"loaded": [own keys], "skipped":
        [source keys]}. models.pretrained.load_pretrained(model, path) (what `pretrained=` calls)
        also reads safetensors and records the file and its normalisation."""
        sd, name = read_weights(source, "mmdg pretrained weights")
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
        skipped = sorted(set(sd) - used)
        depth = len(self.blocks)
        foreign = [k for k in skipped if not (k == "pos_embed" or k.startswith("head.") or _block_index(k) >= depth)]
        if foreign:
            raise ArtifactError(f"mmdg pretrained weights: {name} has key(s) a plain ViT does not have "
                                f"({foreign[:4]}); it is another architecture, use timm's vit_base_patch16_224 "
                                "or torchvision's vit_b_16 weights")
        self.load_state_dict(new)
        return {"loaded": loaded, "skipped": skipped}


def build(preset: str = "paper", **overrides) -> MMDG:
    return MMDG(preset=preset, **overrides)
