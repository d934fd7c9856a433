"""mmFAS: multimodal alignment + switch-attention fusion (papers/mmfas.txt).

Architecture (paper preset; the edge preset shrinks sizes only):
- Three independent ViT encoders (patch 16, 224 x 224, depth 3, width 270, 6 heads of 45,
  models/vit.py) for RGB (3 channels), depth and IR (1 channel each); their token sequences
  (class token + patches, after the encoder's final norm) are the modality features.
- Two alignment modules, RGB as the bridge: RGB-depth and RGB-IR. Each owns a token-wise linear
  projection of the RGB features and one of the other modality's features (giving the two
  "aligned RGB features" F'_rgb(1), F'_rgb(2) and F'_depth, F'_ir), a learnable temperature tau
  and the class-matching predictor. The losses act on the projected class tokens:
  * ICL (Eqs. 1-3): s_ij = f_rgb(i)^T f_x(j) on L2-normalised vectors, p = softmax_j(s / tau),
    cross-entropy with the matching instance as target, mean of both directions, summed over
    the two modules (CLIP-style).
  * CM (Eq. 4): the matching predictor, a 540-wide FC module on the concatenation [f_rgb ; f_x]
    (Linear 540->540, ReLU, Linear 540->2; a hidden layer is needed: "same class" is an XOR of
    the two features' classes, which no single linear layer on the concatenation can express),
    predicts whether a pair shares the class; pairs by hard negative mining (per RGB sample i, the
    other-modality sample of the other class with the HIGHEST similarity) and hard positive
    mining (same class, LOWEST similarity, i itself allowed so one always exists): up to 2N pairs.
- Shallow fusion: F_rgb = (F'_rgb(1) + F'_rgb(2)) / 2.
- Deep switch-attention fusion: 6 pre-norm blocks (6 heads of 45, FFN 270x1080x270). At block l
  the (Q, K, V) sources are the `order` string left-shifted by l % 3: "RDI" gives (R, D, I),
  (D, I, R), (I, R, D). The block output replaces the RGB stream; depth and IR stay unchanged.
  The Q/K/V projections are the block's ordinary `qkv` weights, so no parameters are added.
- Head: mean of the three streams' class tokens -> LayerNorm -> two 270-wide FC layers with ReLU
  -> a linear output to 1 logit; score = sigmoid(logit) = P(attack).
- Loss = BCE + alpha * L_ICL + beta * L_CM with alpha = beta = 1.

Interpretations / departures (the paper leaves these open):
- Residual base stream of a switch block (`residual`): "query" (default) adds the attention
  output to the stream that supplied the queries, as in any pre-norm transformer where output
  rows belong to the query tokens; "rgb" adds it to the RGB stream. The block's norm1 is shared by
  the three sources.
- "At test the alignment modules are disabled": the projections stay in the inference path
  (they produce the features the fusion consumes); only the loss heads (tau, CM predictor)
  are unused at test.
- The head has a LayerNorm on the pooled class token (the ViT final norm; not in the paper text).
- `fusion="merge"` (one stream over the concatenated tokens of the three modalities, split back
  afterwards) and `fusion="cross"` (each stream queries the concatenated tokens of the other two,
  its own block per stream, so 3x the fusion parameters) are the paper's comparison baselines.
- Missing modalities (present=False) enter as zero images; ICL/CM use only samples whose RGB and
  the paired modality are both present.
- The paper says Adam with weight decay 1e-2; we record AdamW (decoupled decay) as issue 4 asks.

Ablation switches (the paper's Table 2 and 3):
- `mining`: "hnm+hpm" (default, the paper's CM + HNM + HPM), "hnm" (hard negatives, with each
  sample's own instance pair as its positive, as ALBEF which the paper contrasts with) or "none"
  (CM over all N x N pairs, the table's plain "CM"). ICL / CM alone: alpha=0 or beta=0.
- `modalities`: any subset of ["rgb", "depth", "ir"] (Table 2's modality rows). Only the chosen
  modalities get an encoder; an alignment module exists for each chosen modality paired with RGB
  (RGB is the bridge: depth + IR alone have none, and their streams are the encoders' features);
  the head pools the chosen streams' class tokens. Switch-attention needs all three (its Q, K, V
  cycle through R, D, I); "cross" needs two or more; "merge" and `fusion="none"` (no fusion
  blocks: encoders, alignment and head, the parameter budget of Table 2's modality and alignment
  rows) take any subset. Inputs keep their three slots; unused modalities are ignored.
- `order` (Table 3's six switch orders) and `fusion` "merge"/"cross" (Table 2's attention rows)
  as above.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edge_fas.errors import ConfigError
from edge_fas.models.steps import (MODALITY_CHANNELS, MODALITY_ORDER, adamw_optimisers, bce, masked_inputs, merge_config,
                                   modality_subset, scores, single_train_step)
from edge_fas.models.pretrained import load_pretrained
from edge_fas.models.vit import Block, VisionTransformer, load_timm_vit

PRESETS = {
    "paper": dict(input_size=224, patch_size=16, width=270, heads=6, mlp_ratio=4.0, enc_depth=3,
                  fusion_depth=6, fusion="switch", order="RDI", residual="query", head_width=270,
                  tau_init=0.07, alpha=1.0, beta=1.0, mining="hnm+hpm", modalities=("rgb", "depth", "ir")),
    "edge": dict(input_size=112, patch_size=16, width=192, heads=6, mlp_ratio=4.0, enc_depth=2,
                 fusion_depth=3, fusion="switch", order="RDI", residual="query", head_width=192,
                 tau_init=0.07, alpha=1.0, beta=1.0, mining="hnm+hpm", modalities=("rgb", "depth", "ir")),
}
PAPER_TRAINING = dict(optimiser="AdamW", lr=1e-4, weight_decay=1e-2, schedule="cosine", warmup_fraction=0.1,
                      epochs=30, batch_size=128, class_balanced_batches=True, input_size=224)
STREAMS = {"R": "rgb", "D": "depth", "I": "ir"}
FUSIONS = ("switch", "merge", "cross", "none")
MINING = ("hnm+hpm", "hnm", "none")  # Table 2: CM + HNM + HPM (ours), CM + HNM, CM on every pair


def switch_sources(order: str, layer: int) -> tuple[str, str, str]:
    """(Q, K, V) stream letters for block `layer`: `order` left-shifted by layer % 3."""
    s = layer % 3
    return tuple((order[s:] + order[:s])[:3])


class AlignmentModule(nn.Module):
    """RGB <-> one other modality: projections, learnable temperature, class-matching predictor."""

    def __init__(self, width: int, tau_init: float):
        super().__init__()
        self.proj_rgb = nn.Linear(width, width)
        self.proj_other = nn.Linear(width, width)
        self.log_inv_tau = nn.Parameter(torch.tensor(math.log(1.0 / tau_init)))
        # the paper's 540-wide FC matching predictor on [f_rgb ; f_x]
        self.matcher = nn.Sequential(nn.Linear(2 * width, 2 * width), nn.ReLU(inplace=True), nn.Linear(2 * width, 2))

    def similarity(self, f_rgb, f_other):
        """s_ij / tau for L2-normalised class tokens (B, D) x (B, D) -> (B, B)."""
        inv_tau = self.log_inv_tau.clamp(max=math.log(100.0)).exp()
        return inv_tau * F.normalize(f_rgb, dim=-1) @ F.normalize(f_other, dim=-1).t()


def icl_loss(logits: torch.Tensor) -> torch.Tensor:
    """Symmetric instance-contrastive cross-entropy; logits (N, N) with matches on the diagonal."""
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def mine_pairs(sim: torch.Tensor, label: torch.Tensor, mode: str = "hnm+hpm") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (RGB sample, other-modality sample) pairs the class-matching loss sees.

    Returns (rgb_index, other_index, same_class). `mode`:
    - "hnm+hpm" (the paper's): per RGB sample i the different-class j with the highest sim[i, j]
      (skipped when the batch has no other class) and the same-class j with the lowest sim[i, j];
      up to 2N pairs;
    - "hnm": the hard negatives as above, and as positives the matching instances (i, i), as ALBEF
      (Li et al. 2021), which mines negatives only;
    - "none": every one of the N x N pairs (plain CM, Table 2's "CM" column).
    """
    same = label.view(-1, 1) == label.view(1, -1)
    n = sim.shape[0]
    rows = torch.arange(n, device=sim.device)
    if mode == "none":
        return rows.repeat_interleave(n), rows.repeat(n), same.reshape(-1).long()
    if mode not in MINING:
        raise ValueError(f"mmfas: mining must be one of {MINING}; got {mode!r}")
    big = torch.finfo(sim.dtype).max
    neg = sim.masked_fill(same, -big).argmax(dim=1)
    has_neg = (~same).any(dim=1)
    pos = sim.masked_fill(~same, big).argmin(dim=1) if mode == "hnm+hpm" else rows
    rgb_idx = torch.cat([rows[has_neg], rows])
    other_idx = torch.cat([neg[has_neg], pos])
    same_cls = torch.cat([torch.zeros(int(has_neg.sum()), dtype=torch.long, device=sim.device),
                          torch.ones(n, dtype=torch.long, device=sim.device)])
    return rgb_idx, other_idx, same_cls


class MMFAS(nn.Module):
    name = "mmfas"
    output_names = ("logits", "score")
    pretrained_layouts = ("timm-vit", "torchvision-vit")
    supports_accumulation = True  # train_step(..., accumulate=k, apply=...): see the trainer

    def __init__(self, preset: str = "paper", pretrained=None, **overrides):
        super().__init__()
        cfg = merge_config("mmfas", PRESETS, preset, overrides)
        order, fusion = str(cfg["order"]).upper(), cfg["fusion"]
        mods = cfg["modalities"] = modality_subset("mmfas", cfg["modalities"])
        if cfg["mining"] not in MINING:
            raise ConfigError(f"mmfas: mining must be one of {MINING} (Table 2: CM + HNM + HPM, CM + HNM, "
                              f"CM on every pair); got {cfg['mining']!r}")
        if fusion == "switch" and len(mods) < 3:
            raise ConfigError(f"mmfas: fusion 'switch' cycles its queries, keys and values through RGB, depth and "
                              f"IR, so it needs all three; for modalities {list(mods)} use fusion 'none', 'merge' or 'cross'")
        if fusion == "cross" and len(mods) < 2:
            raise ConfigError(f"mmfas: fusion 'cross' lets each stream query the others, so it needs two or more "
                              f"modalities; for {list(mods)} use fusion 'none' or 'merge'")
        if sorted(order) != ["D", "I", "R"]:
            raise ConfigError(f"mmfas: order must be a permutation of 'RDI' (e.g. 'RDI', 'DIR'); got {cfg['order']!r}")
        if fusion not in FUSIONS:
            raise ConfigError(f"mmfas: fusion must be one of {FUSIONS}; got {fusion!r}")
        if cfg["residual"] not in ("query", "rgb"):
            raise ConfigError(f"mmfas: residual must be 'query' or 'rgb'; got {cfg['residual']!r}")
        cfg["order"] = order
        self.preset, self.config = preset, cfg
        self.input_size = cfg["input_size"]
        self.paper_training = dict(PAPER_TRAINING)
        w = cfg["width"]
        vit = dict(img_size=cfg["input_size"], patch_size=cfg["patch_size"], embed_dim=w, depth=cfg["enc_depth"],
                   num_heads=cfg["heads"], mlp_ratio=cfg["mlp_ratio"])
        self.modalities = mods
        self.encoders = nn.ModuleDict({m: VisionTransformer(in_chans=MODALITY_CHANNELS[m], **vit) for m in mods})
        # RGB is the bridge: one alignment module per other modality trained together with RGB
        self.align = nn.ModuleDict({m: AlignmentModule(w, cfg["tau_init"]) for m in mods if m != "rgb" and "rgb" in mods})
        if fusion == "cross":
            self.fusion = nn.ModuleList(
                nn.ModuleDict({s: Block(w, cfg["heads"], cfg["mlp_ratio"]) for s in mods})
                for _ in range(cfg["fusion_depth"]))
        elif fusion == "none":
            self.fusion = nn.ModuleList()
        else:
            self.fusion = nn.ModuleList(Block(w, cfg["heads"], cfg["mlp_ratio"]) for _ in range(cfg["fusion_depth"]))
        self.head = nn.Sequential(
            nn.LayerNorm(w, eps=1e-6),
            nn.Linear(w, cfg["head_width"]), nn.ReLU(inplace=True),
            nn.Linear(cfg["head_width"], cfg["head_width"]), nn.ReLU(inplace=True),
            nn.Linear(cfg["head_width"], 1),
        )
        if pretrained:
            load_pretrained(self, pretrained)

    def load_pretrained(self, path) -> dict:
        """Initialise the three encoders from one timm ViT state dict of the same width (rare at 270;
        blocks beyond the encoder depth are ignored, the patch embedding adapted to 1 channel)."""
        return {m: load_timm_vit(enc, path) for m, enc in self.encoders.items()}

    # ---- forward ------------------------------------------------------------------------------
    def _switch(self, streams: dict) -> dict:
        for layer, blk in enumerate(self.fusion):
            q, k, v = (streams[STREAMS[c]] for c in switch_sources(self.config["order"], layer))
            base = q if self.config["residual"] == "query" else streams["rgb"]
            x = base + blk.attn.attend(blk.norm1(q), blk.norm1(k), blk.norm1(v))
            streams = {**streams, "rgb": x + blk.mlp(blk.norm2(x))}
        return streams

    def _merge(self, streams: dict) -> dict:
        names = tuple(streams)
        x = torch.cat([streams[s] for s in names], dim=1)
        for blk in self.fusion:
            x = blk(x)
        return dict(zip(names, x.chunk(len(names), dim=1)))

    def _cross(self, streams: dict) -> dict:
        names = tuple(streams)
        for blocks in self.fusion:
            new = {}
            for s in names:
                blk, x = blocks[s], streams[s]
                ctx = blk.norm1(torch.cat([streams[o] for o in names if o != s], dim=1))
                x = x + blk.attn.attend(blk.norm1(x), ctx, ctx)
                new[s] = x + blk.mlp(blk.norm2(x))
            streams = new
        return streams

    def features(self, rgb, depth, ir, present=None) -> dict:
        """Encoder + alignment projections: token sequences and the class tokens the losses use.
        "aligned" holds "rgb_d"/"rgb_i" (RGB projected by the RGB-depth / RGB-IR module) and "depth"/
        "ir" (projected by their module); "streams" the fusion's inputs, one per modality used."""
        x, p = masked_inputs(rgb, depth, ir, present)
        enc = {m: self.encoders[m].forward_features(x[m]) for m in self.encoders}
        aligned = {}
        for other, mod in self.align.items():
            aligned[f"rgb_{other[0]}"] = mod.proj_rgb(enc["rgb"])
            aligned[other] = mod.proj_other(enc[other])
        streams = {m: aligned.get(m, enc[m]) for m in self.modalities}  # no module: the encoder's own features
        rgb_views = [v for k, v in aligned.items() if k.startswith("rgb_")]
        if rgb_views:  # shallow fusion: the mean of the aligned RGB features
            streams["rgb"] = sum(rgb_views) / len(rgb_views)
        return {"aligned": aligned, "streams": streams, "present": p}

    def forward(self, rgb, depth, ir, present=None) -> dict:
        f = self.features(rgb, depth, ir, present)
        fuse = {"switch": self._switch, "merge": self._merge, "cross": self._cross,
                "none": lambda s: s}[self.config["fusion"]]
        streams = fuse(f["streams"])
        pooled = sum(streams[m][:, 0] for m in self.modalities) / len(self.modalities)
        out = scores(self.head(pooled))
        if self.training:  # class tokens for the alignment losses (never in the exported graph)
            out["align"] = {k: v[:, 0] for k, v in f["aligned"].items()}
            out["present"] = f["present"]
        return out

    # ---- losses -------------------------------------------------------------------------------
    def alignment_losses(self, align: dict, present: torch.Tensor, label: torch.Tensor) -> dict:
        """L_ICL and L_CM summed over the RGB-depth and RGB-IR modules."""
        icl = cm = present.new_zeros(())
        for other, mod in self.align.items():
            col, rgb_key = MODALITY_ORDER.index(other), f"rgb_{other[0]}"
            valid = (present[:, 0] > 0) & (present[:, col] > 0)
            if int(valid.sum()) < 2:
                continue
            f_r, f_o, y = align[rgb_key][valid], align[other][valid], label[valid]
            sim = mod.similarity(f_r, f_o)
            icl = icl + icl_loss(sim)
            ri, oi, same = mine_pairs(sim.detach(), y, self.config["mining"])
            cm = cm + F.cross_entropy(mod.matcher(torch.cat([f_r[ri], f_o[oi]], dim=1)), same)
        return {"icl": icl, "cm": cm}

    def loss(self, batch: dict, out: dict) -> dict:
        if "align" not in out:  # an eval-mode output: recompute the class tokens with gradients
            f = self.features(batch["rgb"], batch["depth"], batch["ir"], batch.get("present"))
            out = {**out, "align": {k: v[:, 0] for k, v in f["aligned"].items()}, "present": f["present"]}
        terms = {"bce": bce(out["logits"], batch["label"])}
        terms.update(self.alignment_losses(out["align"], out["present"], batch["label"].long()))
        terms["total"] = terms["bce"] + self.config["alpha"] * terms["icl"] + self.config["beta"] * terms["cm"]
        return terms

    # ---- training -----------------------------------------------------------------------------
    def make_optimisers(self, lr=None, weight_decay=None) -> dict:
        return adamw_optimisers(self, lr, weight_decay)

    def train_step(self, batch: dict, optimisers: dict, scaler=None, accumulate: int = 1, apply: bool = True) -> dict:
        return single_train_step(self, batch, optimisers, scaler, accumulate, apply)


def build(preset: str = "paper", **overrides) -> MMFAS:
    return MMFAS(preset=preset, **overrides)
