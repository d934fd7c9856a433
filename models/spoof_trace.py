"""Multimodal spoof-trace disentanglement network (papers/spoof-trace-disentanglement.txt).

An input face of each modality is decomposed as I = I_hat + T (Eq. 1): a generator estimates the
spoof trace T, I_hat = I - T is the live reconstruction, and a small fully-convolutional classifier
phi on the concatenated traces gives the attack score.

Architecture (one stream per modality; RGB + depth in the paper, IR an optional third):
- Encoder: ResNet-50's stem and first three stages (models/resnet.py, torchvision layout, optional
  ImageNet weights via `pretrained=`; 1-channel streams average conv1 over RGB).
- Cross-modality fusion after each encoder stage (`CrossModalFusion`, Eqs. 2-5, SA-Gate-like but
  keeping every stream): W_m = sigmoid(MLP_m(GAP[F_1 || ... || F_M])), F'_m = W_m * F_m,
  F_m^rec = F_m + sum_{k != m} F'_k  (for two modalities exactly F_dep^rec = F'_rgb + F_dep),
  M = softmax over positions of a 1x1 conv on [F_1^rec || ... || F_M^rec] (one map per modality),
  F''_m = F_m^rec (.) M_m.  The fused features feed the next stage and the decoder's skips.
- Decoder per stream: 1x1 reduction, residual blocks, four 2x deconvolutions with skip connections
  from stages 2 and 1 after the first two; the third up-sampling layer's output (after all skips,
  as the paper specifies) feeds the center loss; a final 3x3 conv gives T with the modality's
  channels. That conv starts near zero so training starts from I_hat ~= I.
- Auxiliary head on each encoder bottleneck (GAP + linear, BCE, L_e, Eq. 11).
- phi: four stride-2 3x3 convs then a 1x1 conv to a one-channel map on [T_rgb || T_dep (|| T_ir)];
  Eq. 12 is an L1 between the sigmoid map and the label. score = mean of the sigmoid map,
  logits = its logit.
- Discriminators (training only): per modality, D_L (live vs reconstructed live) and D_S (spoof vs
  synthesised spoof I_live + T_spoof), each multi-scale (input and 2x-downsampled input) PatchGAN of
  7 convs with 3 stride-2 down-samplings.

Losses (weights alpha_1..8 = 0.25, 100, 1, 100, 1, 10, 1, 1; lambda_t = 1e-4):
- Eq. 6/7 least squares with the paper's label convention: the discriminator pushes real images
  to 0 and generated ones (I_hat, I_live + T_spoof) to 1; the generator pushes its images to 0.
- Eq. 9 intensity, Eq. 11 L_e, Eq. 12 L_cls, Eq. 10 center loss, Eq. 8 identity (pluggable
  face-recognition net on RGB; off with a warning when none is given), Eq. 14 consistency.
- `train_step` runs the paper's three steps per batch: generator (Eq. 13), discriminator
  (alpha_7 L_D), consistency (alpha_8 Eq. 14, with two spoofs' traces randomly mixed half the time).

Interpretations / departures (the paper leaves these open):
- ||.||_2 in Eqs. 6, 7 and 14 is taken as the mean squared error (LSGAN); ||.||_1 in Eqs. 9 and 12
  as the per-pixel mean, so losses do not scale with image size; Eq. 8 as the L2 distance between
  L2-normalised embeddings (ArcFace embeddings are compared by angle).
- The spatial gate is softmax over positions times the number of positions, so a uniform gate is
  the identity and feature magnitudes do not shrink by 1/(H*W).
- Center loss on the globally pooled third up-sampling feature (a per-image vector); centers are
  buffers updated by Wen et al.'s rule (rate `center_alpha`) after each generator step.
- Missing modalities (present=False) enter as zeros, their F' does not reach other streams, their
  trace is zeroed, and every per-modality loss term ignores them.
- Decoder widths and the discriminators' width are not given by the paper; `dec_channels`,
  `n_res`, `disc_width` are options.

Not in the paper (off unless `family_head`): an attack-family head, a linear layer on the three
streams' pooled last encoder stage (after fusion) and, with `family_pixels: N`, each stream's input
average-pooled to N x N cells, over bona fide and the rig's six attack families
(edge_fas.data.species.FAMILIES), trained by cross-entropy (weight `alpha_family`; with
`family_class_weights: {rigid_mask: 2.0}` a class-weighted one, PyTorch's weighted mean) with the
generator, or alone on the frozen network (train.fit: head, edge_fas.training.head_fit, which stays
unweighted). The
score's logit becomes the mean of phi's logit and the head's attack logit, log P(any attack) -
log P(bona fide), weighted by `family_weight` (the head's share; 0.5 by default, 1 the head alone). Why: linear probes on a trained edge model's own features
separate silicone masks better than its trace-based score does (benchmarks/bench_silicone_probe.py);
the binary losses let phi ignore one hard family once the others are caught.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from edge_fas.data.species import FAMILIES
from edge_fas.errors import ConfigError
from edge_fas.models.resnet import RESNET50_LAYERS, ResNet, iresnet18

MODALITY_CHANNELS = {"rgb": 3, "depth": 1, "ir": 1}
MODALITY_INDEX = {"rgb": 0, "depth": 1, "ir": 2}
ALPHAS = (0.25, 100.0, 1.0, 100.0, 1.0, 10.0, 1.0, 1.0)
PHI_LOGIT_MAX = 13.82  # just above the float32 logit of phi's clamp, ln((1 - 1e-6) / 1e-6) = 13.8155

PRESETS = {
    "paper": dict(
        modalities=("rgb", "depth"), input_size=256, layers=RESNET50_LAYERS[:3], width=64,
        dec_channels=(256, 128, 64, 32), n_res=2, cls_width=32, disc_width=64, disc_scales=2,
        fusion_reduction=16, alphas=ALPHAS, lambda_t=1e-4, center_alpha=0.5, mix_prob=0.5,
        family_head=False, alpha_family=1.0, family_pixels=0, family_weight=0.5, family_class_weights={},
    ),
    "edge": dict(
        modalities=("rgb", "depth", "ir"), input_size=128, layers=(1, 1, 1), width=16,
        dec_channels=(64, 32, 16, 8), n_res=1, cls_width=16, disc_width=16, disc_scales=2,
        fusion_reduction=8, alphas=ALPHAS, lambda_t=1e-4, center_alpha=0.5, mix_prob=0.5,
        family_head=False, alpha_family=1.0, family_pixels=0, family_weight=0.5, family_class_weights={},
    ),
}

PAPER_TRAINING = dict(
    optimiser="Adam", lr=5e-5, betas=(0.9, 0.999), weight_decay=0.0, schedule="constant",
    iterations=40_000, batch_size=4, input_size=256, steps_per_batch=("generator", "discriminator", "consistency"),
)


def _checked_class_weights(weights) -> dict:
    """family_class_weights as a plain {family: weight} (each name in FAMILIES, each weight a number > 0)."""
    if weights is None:
        return {}
    if not isinstance(weights, dict):
        raise ConfigError(f"spoof_trace: family_class_weights is a mapping of attack families to loss weights, e.g. "
                          f"{{rigid_mask: 2.0}} (families: {', '.join(FAMILIES)}); got {weights!r}")
    unknown = sorted(str(k) for k in weights if k not in FAMILIES)
    if unknown:
        raise ConfigError(f"spoof_trace: family_class_weights names unknown families {unknown}; use some of "
                          f"{', '.join(FAMILIES)}")
    bad = {k: v for k, v in weights.items()
           if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0}
    if bad:
        raise ConfigError(f"spoof_trace: family_class_weights {bad}: each weight must be a number > 0 "
                          "(leave a family out for weight 1)")
    return {str(k): float(v) for k, v in weights.items()}


def _cbr(cin, cout, k=3, s=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _up(cin, cout):
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class CrossModalFusion(nn.Module):
    """Eqs. 2-5 for M >= 1 streams; returns the reinforced features and the spatial gates (B, M, H, W)."""

    def __init__(self, channels: int, n_modalities: int, reduction: int = 16):
        super().__init__()
        m, hid = n_modalities, max(channels // reduction, 4)
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(m * channels, hid), nn.ReLU(inplace=True), nn.Linear(hid, channels)) for _ in range(m)
        )
        self.spatial = nn.Conv2d(m * channels, m, 1)

    def forward(self, feats: list[torch.Tensor], present: torch.Tensor):
        m = len(feats)
        pooled = torch.cat([f.mean(dim=(2, 3)) for f in feats], dim=1)
        filtered = []
        for i, f in enumerate(feats):
            w = torch.sigmoid(self.mlps[i](pooled))[:, :, None, None]  # Eq. 2
            filtered.append(w * f * present[:, i, None, None, None])  # Eq. 3; absent streams give nothing
        total = sum(filtered)
        rec = [f + (total - filtered[i]) for i, f in enumerate(feats)]  # Eq. 4, symmetric
        logits = self.spatial(torch.cat(rec, dim=1))  # (B, M, H, W)
        b, _, h, w = logits.shape
        gates = torch.softmax(logits.flatten(2), dim=2).view_as(logits) * (h * w)  # mean gate 1
        return [r * gates[:, i : i + 1] for i, r in enumerate(rec)], gates  # Eq. 5


class ResBlock(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.body = nn.Sequential(_cbr(ch, ch), nn.Conv2d(ch, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch))

    def forward(self, x):
        return F.relu(x + self.body(x))


class TraceDecoder(nn.Module):
    def __init__(self, stage_channels, dec_channels, n_res, out_channels):
        super().__init__()
        c1, c2, c3 = stage_channels
        d0, d1, d2, d3 = dec_channels
        self.reduce = _cbr(c3, d0, k=1)
        self.res = nn.Sequential(*[ResBlock(d0) for _ in range(n_res)])
        self.up1, self.merge1 = _up(d0, d1), _cbr(d1 + c2, d1)
        self.up2, self.merge2 = _up(d1, d2), _cbr(d2 + c1, d2)
        self.up3 = _up(d2, d3)  # after all skips: its output feeds the center loss
        self.up4 = _up(d3, d3)
        self.out = nn.Conv2d(d3, out_channels, 3, 1, 1)
        nn.init.normal_(self.out.weight, std=1e-3)
        nn.init.zeros_(self.out.bias)

    def forward(self, s1, s2, s3):
        x = self.res(self.reduce(s3))
        x = self.merge1(torch.cat([self.up1(x), s2], dim=1))
        x = self.merge2(torch.cat([self.up2(x), s1], dim=1))
        mid = self.up3(x)
        return self.out(self.up4(mid)), mid


class PatchDiscriminator(nn.Module):
    """PatchGAN: 7 convs, 3 of them stride-2 down-samplings; output a map of patch scores."""

    def __init__(self, in_ch, width):
        super().__init__()
        w = width
        spec = [(in_ch, w, 3, 1), (w, 2 * w, 4, 2), (2 * w, 2 * w, 3, 1), (2 * w, 4 * w, 4, 2),
                (4 * w, 4 * w, 3, 1), (4 * w, 8 * w, 4, 2), (8 * w, 1, 3, 1)]
        layers = []
        for i, (ci, co, k, s) in enumerate(spec):
            layers.append(nn.Conv2d(ci, co, k, s, 1 if k == 4 else k // 2))
            if i < len(spec) - 1:
                layers.append(nn.LeakyReLU(0.2, inplace=True))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class MultiScaleDiscriminator(nn.Module):
    def __init__(self, in_ch, width, scales):
        super().__init__()
        self.scales = nn.ModuleList(PatchDiscriminator(in_ch, width) for _ in range(scales))

    def forward(self, x) -> list[torch.Tensor]:
        outs = []
        for i, d in enumerate(self.scales):
            outs.append(d(x if i == 0 else F.avg_pool2d(x, 2 ** i)))
        return outs


def _ls(outs: list[torch.Tensor], target: float, weight: torch.Tensor) -> torch.Tensor:
    """Least-squares distance of every scale's patch map to target, averaged per sample then weighted."""
    per = sum(((o - target) ** 2).flatten(1).mean(1) for o in outs) / len(outs)
    return _wmean(per, weight)


def _wmean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    weight = weight.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


class SpoofTraceNet(nn.Module):
    name = "spoof_trace"
    output_names = ("logits", "score", "trace")
    training_only_modules = ("disc_live", "disc_spoof", "aux_heads")  # not in the exported graph
    # options only the training losses read (from self.config, at each step): a fine-tune may change them
    # (train.init_options) without touching the network or what it scores
    loss_options = ("alphas", "lambda_t", "center_alpha", "mix_prob", "alpha_family", "family_class_weights")
    # {name: fn(batch, out) -> scalar tensor}: terms training adds to the generator's Eq. 13 total in the same
    # step (edge_fas.training.qat's float/int8 consistency); empty for the paper's training
    extra_losses: dict = {}

    def __init__(self, preset: str = "edge", pretrained=None, identity_net: nn.Module | None = None,
                 identity_weights=None, **overrides):
        super().__init__()
        if preset not in PRESETS:
            raise ConfigError(f"spoof_trace: unknown preset {preset!r}; use one of {sorted(PRESETS)}")
        unknown = set(overrides) - set(PRESETS[preset])
        if unknown:
            raise ConfigError(f"spoof_trace: unknown option(s) {sorted(unknown)}; known: {sorted(PRESETS[preset])}")
        cfg = {**PRESETS[preset], **overrides}
        cfg["modalities"] = tuple(cfg["modalities"])
        for k in ("layers", "dec_channels", "alphas"):
            cfg[k] = tuple(cfg[k])
        bad = [m for m in cfg["modalities"] if m not in MODALITY_CHANNELS]
        if bad or not cfg["modalities"] or len(set(cfg["modalities"])) != len(cfg["modalities"]):
            raise ConfigError(f"spoof_trace: modalities must be distinct names among {list(MODALITY_CHANNELS)}; got {cfg['modalities']}")
        cfg["modalities"] = tuple(sorted(cfg["modalities"], key=MODALITY_INDEX.get))
        if cfg["input_size"] % 16:
            raise ConfigError(f"spoof_trace: input_size must be a multiple of 16 (encoder stride); got {cfg['input_size']}")
        if len(cfg["layers"]) != 3 or len(cfg["dec_channels"]) != 4 or len(cfg["alphas"]) != 8:
            raise ConfigError("spoof_trace: layers needs 3 entries, dec_channels 4, alphas 8")
        cells = cfg["family_pixels"]
        if isinstance(cells, bool) or not isinstance(cells, int) or cells < 0 or (cells and cfg["input_size"] % cells):
            raise ConfigError(f"spoof_trace: family_pixels must be 0 (off) or a side that divides input_size "
                              f"{cfg['input_size']} (each stream pooled to that many cells a side); got {cells!r}")
        fw = cfg["family_weight"]
        if isinstance(fw, bool) or not isinstance(fw, (int, float)) or not 0.0 <= fw <= 1.0:
            raise ConfigError(f"spoof_trace: family_weight is the family head's share of the score's logit, a number "
                              f"from 0 to 1 (0.5: the mean with phi's; 1: the head alone); got {fw!r}")
        if cells and not cfg["family_head"]:
            raise ConfigError("spoof_trace: family_pixels feeds the family head; set family_head: true with it")
        cfg["family_class_weights"] = _checked_class_weights(cfg["family_class_weights"])
        if cfg["family_class_weights"] and not cfg["family_head"]:
            raise ConfigError("spoof_trace: family_class_weights weights the family head's loss; set family_head: true "
                              "with it")
        # config is plain (lists, not tuples) so it round-trips through YAML manifests and checkpoints
        self.preset = preset
        self.config = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}
        self.input_size = cfg["input_size"]
        self.modalities = cfg["modalities"]
        self.paper_training = dict(PAPER_TRAINING)
        self.trace_channels = tuple(
            f"{m}_{c}" if MODALITY_CHANNELS[m] > 1 else m for m in self.modalities
            for c in ("r", "g", "b")[: MODALITY_CHANNELS[m]]
        )

        self.encoders = nn.ModuleDict(
            {m: ResNet(cfg["layers"], width=cfg["width"], in_chans=MODALITY_CHANNELS[m], num_classes=0, num_stages=3)
             for m in self.modalities}
        )
        stage_ch = self.encoders[self.modalities[0]].stage_channels
        n = len(self.modalities)
        self.fusions = nn.ModuleList(CrossModalFusion(c, n, cfg["fusion_reduction"]) for c in stage_ch)
        self.decoders = nn.ModuleDict(
            {m: TraceDecoder(stage_ch, cfg["dec_channels"], cfg["n_res"], MODALITY_CHANNELS[m]) for m in self.modalities}
        )
        self.aux_heads = nn.ModuleDict({m: nn.Linear(stage_ch[2], 1) for m in self.modalities})
        self.family_head = None
        if cfg["family_head"]:  # zero-initialised: a head added to a trained network starts by scoring 0
            pixels = sum(MODALITY_CHANNELS[m] for m in self.modalities) * cfg["family_pixels"] ** 2
            self.family_head = nn.Linear(n * stage_ch[2] + pixels, len(FAMILIES))
            nn.init.zeros_(self.family_head.weight)
            nn.init.zeros_(self.family_head.bias)
        cw, tc = cfg["cls_width"], len(self.trace_channels)
        self.classifier = nn.Sequential(
            _cbr(tc, cw, s=2), _cbr(cw, cw, s=2), _cbr(cw, 2 * cw, s=2), _cbr(2 * cw, 2 * cw, s=2), nn.Conv2d(2 * cw, 1, 1)
        )
        self.disc_live = nn.ModuleDict(
            {m: MultiScaleDiscriminator(MODALITY_CHANNELS[m], cfg["disc_width"], cfg["disc_scales"]) for m in self.modalities}
        )
        self.disc_spoof = nn.ModuleDict(
            {m: MultiScaleDiscriminator(MODALITY_CHANNELS[m], cfg["disc_width"], cfg["disc_scales"]) for m in self.modalities}
        )
        d3 = cfg["dec_channels"][3]
        for m in self.modalities:  # Eq. 10 centers: row 0 live, row 1 spoof
            self.register_buffer(f"center_{m}", torch.zeros(2, d3))
        self.identity_net = None
        if identity_net is None and identity_weights:
            identity_net = iresnet18(identity_weights)  # the paper's ArcFace ResNet-18
        self.set_identity_net(identity_net)
        if pretrained:
            self.load_pretrained(pretrained)

    # ---- set-up -------------------------------------------------------------------------------
    def load_pretrained(self, path) -> None:
        """Initialise every encoder from a torchvision ResNet-50 state dict file (by key)."""
        for enc in self.encoders.values():
            enc.load_torchvision(path)

    def set_identity_net(self, net: nn.Module | None) -> None:
        """Plug the face-recognition net of Eq. 8: maps RGB in [-1, 1], (B, 3, 112, 112) -> (B, D).

        build("spoof_trace", identity_weights="r18.pth") loads an insightface arcface_torch
        IResNet-18 state dict (models/resnet.py) as the paper does.

        It is frozen (eval, no grad) and not saved in checkpoints. Without one L_id is 0.
        """
        if net is None:
            if self.identity_net is None:
                warnings.warn("spoof_trace: no face-recognition net given, identity loss L_id (Eq. 8) is off; "
                              "call set_identity_net(...) to enable it", stacklevel=3)
            object.__setattr__(self, "identity_net", None)
            return
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        object.__setattr__(self, "identity_net", net)  # kept out of state_dict / parameters()

    def generator_parameters(self):
        skip = ("disc_live.", "disc_spoof.")
        return [p for n, p in self.named_parameters() if not n.startswith(skip)]

    def discriminator_parameters(self):
        return list(self.disc_live.parameters()) + list(self.disc_spoof.parameters())

    def make_optimisers(self, lr=None, weight_decay=None) -> dict:
        lr = self.paper_training["lr"] if lr is None else lr
        wd = self.paper_training["weight_decay"] if weight_decay is None else weight_decay
        betas = self.paper_training["betas"]
        return {
            "generator": torch.optim.Adam(self.generator_parameters(), lr=lr, betas=betas, weight_decay=wd),
            "discriminator": torch.optim.Adam(self.discriminator_parameters(), lr=lr, betas=betas, weight_decay=wd),
        }

    # ---- forward ------------------------------------------------------------------------------
    def _present(self, rgb, present):
        if present is None:
            return torch.ones(rgb.shape[0], len(self.modalities), dtype=rgb.dtype, device=rgb.device)
        # basic slices, not a list index: a list becomes a CPU index tensor, which CUDA-graph capture refuses
        return torch.stack([present[:, MODALITY_INDEX[m]] for m in self.modalities], dim=1).to(rgb.dtype)

    def _encode(self, inputs: dict, present: torch.Tensor) -> tuple[list, list]:
        """(skips, gates): each fused encoder stage's per-stream features, and the fusion gates."""
        feats = [self.encoders[m].stem(inputs[m] * present[:, i, None, None, None]) for i, m in enumerate(self.modalities)]
        skips, gates = [], []
        for s, fusion in enumerate(self.fusions):
            feats = [getattr(self.encoders[m], f"layer{s + 1}")(f) for m, f in zip(self.modalities, feats)]
            feats, g = fusion(feats, present)
            skips.append(feats)
            gates.append(g)
        return skips, gates

    def generate(self, inputs: dict, present: torch.Tensor) -> dict:
        """Generator only: per-modality traces, aux logits, center features, fusion gates."""
        skips, gates = self._encode(inputs, present)
        traces, mids, aux = {}, {}, []
        for i, m in enumerate(self.modalities):
            t, mid = self.decoders[m](skips[0][i], skips[1][i], skips[2][i])
            traces[m] = t * present[:, i, None, None, None]
            mids[m] = mid.mean(dim=(2, 3))
            aux.append(self.aux_heads[m](skips[2][i].mean(dim=(2, 3)))[:, 0])
        gen = {"traces": traces, "center_feat": mids, "aux_logits": torch.stack(aux, dim=1), "gates": gates}
        if self.family_head is not None:
            gen["family_logits"] = self.family_head(self._family_input(inputs, skips[2], present))
        return gen

    def _family_input(self, inputs: dict, last_stage: list, present: torch.Tensor) -> torch.Tensor:
        """The family head's input: each stream's pooled last encoder stage and, with family_pixels, its
        input pooled to family_pixels cells a side (the coarse relief a linear read separates silicone by,
        benchmarks/bench_silicone_probe.py); a missing stream gives zeros."""
        parts = [last_stage[i].mean(dim=(2, 3)) * present[:, i, None] for i in range(len(self.modalities))]
        cells = self.config["family_pixels"]
        if cells:
            for i, m in enumerate(self.modalities):
                parts.append(F.adaptive_avg_pool2d(inputs[m], cells).flatten(1) * present[:, i, None])
        return torch.cat(parts, dim=1)

    @torch.no_grad()
    def family_features(self, rgb, depth, ir, present=None) -> torch.Tensor:
        """The family head's input for a batch, from the encoder and fusion alone (no decoder or phi):
        what edge_fas.training.head_fit fits the head on while the network stays frozen."""
        if self.family_head is None:
            raise ConfigError("spoof_trace: this model has no family head (family_head: false)")
        inputs = {"rgb": rgb, "depth": depth, "ir": ir}
        pres = self._present(rgb, present)
        skips, _ = self._encode(inputs, pres)
        return self._family_input(inputs, skips[2], pres)

    def classify(self, traces: dict, family_logits: torch.Tensor | None = None):
        """(phi's sigmoid map, score, logit). With a family head the logit is the weighted mean of phi's logit and
        the head's attack logit, log P(any attack family) - log P(bona fide), the head's weight family_weight."""
        cmap = torch.sigmoid(self.classifier(torch.cat([traces[m] for m in self.modalities], dim=1)))
        score = cmap.flatten(1).mean(1)
        p = score.clamp(1e-6, 1 - 1e-6)
        # the logit's own clamp changes nothing in float32 (|logit| <= 13.8155 there), but in float16 1 - 1e-6 rounds
        # to 1 and a saturated phi's logit is +inf: bounded, it stays a number the head's logit can outweigh
        logits = (torch.log(p) - torch.log1p(-p)).clamp(-PHI_LOGIT_MAX, PHI_LOGIT_MAX)
        if family_logits is not None:
            attack = torch.logsumexp(family_logits[:, 1:], dim=1) - family_logits[:, 0]
            w = float(self.config["family_weight"])
            # the head alone skips phi's term, so its graph has no phi arithmetic to round
            logits = attack if w == 1.0 else (1.0 - w) * logits + w * attack
            score = torch.sigmoid(logits)
        return cmap, score, logits

    def forward(self, rgb, depth, ir, present=None) -> dict:
        return self._forward(rgb, depth, ir, present, extras=self.training)

    def _forward(self, rgb, depth, ir, present, extras: bool) -> dict:
        if not torch.onnx.is_in_onnx_export():
            for name, x, c in (("rgb", rgb, 3), ("depth", depth, 1), ("ir", ir, 1)):
                if x.dim() != 4 or x.shape[1] != c or x.shape[2] % 16 or x.shape[3] % 16:
                    raise ValueError(f"spoof_trace: {name} must be (B, {c}, S, S) with S a multiple of 16 "
                                     f"(model input {self.input_size}); got {tuple(x.shape)}")
        inputs = {"rgb": rgb, "depth": depth, "ir": ir}
        pres = self._present(rgb, present)
        gen = self.generate(inputs, pres)
        cmap, score, logits = self.classify(gen["traces"], gen.get("family_logits"))
        for m in MODALITY_INDEX:  # keep unused inputs in the exported graph so every artifact takes rgb, depth, ir
            if m not in self.modalities:
                score = score + 0.0 * inputs[m].flatten(1)[:, 0]
        out = {"logits": logits, "score": score, "trace": torch.cat([gen["traces"][m] for m in self.modalities], dim=1)}
        if extras:  # what loss() needs; never in the exported graph
            out.update(_gen=gen, _cls_map=cmap, _present=pres)
        return out

    # ---- losses -------------------------------------------------------------------------------
    def _pairs(self, label: torch.Tensor, g: torch.Generator | None = None):
        """Random (live i, spoof j) index pairs for synthesised spoofs, one per live sample."""
        live = torch.nonzero(label == 0).flatten()
        spoof = torch.nonzero(label == 1).flatten()
        if len(live) == 0 or len(spoof) == 0:
            return None
        j = spoof[torch.randint(len(spoof), (len(live),), generator=g).to(spoof.device)]
        return live, j

    def _identity_loss(self, rgb, rgb_hat, weight):
        if self.identity_net is None:
            return rgb.new_zeros(())
        first = next(self.identity_net.parameters(), None)
        if first is not None and first.device != rgb.device:  # not a submodule, so .to() did not move it
            self.identity_net.to(rgb.device)
        mean = torch.tensor(self.rgb_mean, device=rgb.device).view(1, 3, 1, 1)
        std = torch.tensor(self.rgb_std, device=rgb.device).view(1, 3, 1, 1)

        def embed(x):  # preprocess's ImageNet normalisation -> ArcFace's [-1, 1] at 112 x 112
            x = F.interpolate((x * std + mean - 0.5) / 0.5, size=(112, 112), mode="bilinear", align_corners=False)
            return F.normalize(self.identity_net(x), dim=1)

        with torch.no_grad():
            e = embed(rgb)
        return _wmean((embed(rgb_hat) - e).norm(dim=1), weight)

    rgb_mean = (0.485, 0.456, 0.406)
    rgb_std = (0.229, 0.224, 0.225)

    def _ensure_train_out(self, batch, out):
        if "_gen" in out:
            return out
        # an eval-mode output (validation): recompute with the loss extras, in the current mode
        return self._forward(batch["rgb"], batch["depth"], batch["ir"], batch.get("present"), extras=True)

    def loss(self, batch: dict, out: dict, pairs=None) -> dict:
        """Generator-step terms (Eq. 13) and their weighted sum "total"."""
        out = self._ensure_train_out(batch, out)
        gen, pres = out["_gen"], out["_present"]
        y = batch["label"].to(pres.dtype)
        a = self.config["alphas"]
        live_w, spoof_w = 1.0 - y, y
        pairs = self._pairs(batch["label"]) if pairs is None else pairs
        zero = pres.new_zeros(())
        l_g, l_int, l_e, l_center = zero, zero, zero, zero
        for i, m in enumerate(self.modalities):
            x, t, p = batch[m], gen["traces"][m], pres[:, i]
            x_hat = x - t
            l_g = l_g + _ls(self.disc_live[m](x_hat), 0.0, p)  # Eq. 6, reconstructed live
            if pairs is not None:
                li, sj = pairs
                synth = x[li] + t[sj]
                l_g = l_g + _ls(self.disc_spoof[m](synth), 0.0, p[li] * p[sj])  # Eq. 6, synthesised spoof
            t_abs = t.abs().flatten(1).mean(1)
            l_int = l_int + _wmean(t_abs, live_w * p) + self.config["lambda_t"] * _wmean(t_abs, spoof_w * p)  # Eq. 9
            l_e = l_e + _wmean(F.binary_cross_entropy_with_logits(gen["aux_logits"][:, i], y, reduction="none"), p)  # Eq. 11
            c = getattr(self, f"center_{m}")[batch["label"].long()]
            l_center = l_center + _wmean(0.5 * ((gen["center_feat"][m] - c) ** 2).sum(1), p)  # Eq. 10
        if "rgb" in self.modalities:
            i = self.modalities.index("rgb")
            l_id = self._identity_loss(batch["rgb"], batch["rgb"] - gen["traces"]["rgb"], pres[:, i])  # Eq. 8
        else:
            l_id = zero
        l_cls = (out["_cls_map"] - y[:, None, None, None]).abs().flatten(1).mean(1).mean()  # Eq. 12
        terms = {"G": l_g, "intensity": l_int, "e": l_e, "id": l_id, "cls": l_cls, "center": l_center}
        terms["total"] = (a[0] * l_g + a[1] * l_int + a[2] * l_e + a[3] * l_id + a[4] * l_cls + a[5] * l_center)
        if self.family_head is not None:
            terms["family"] = self._family_loss(gen["family_logits"], batch.get("family"))
            terms["total"] = terms["total"] + self.config["alpha_family"] * terms["family"]
        return terms

    def _family_loss(self, family_logits: torch.Tensor, family) -> torch.Tensor:
        """Cross-entropy of the family head over the samples whose family the source names (-1: not named)."""
        if family is None:
            raise ValueError("spoof_trace: the family head needs each sample's attack family (batch['family'], "
                             "edge_fas.data.species.FAMILIES); this batch has none")
        family = family.to(family_logits.device).long()
        if not bool((family >= 0).any()):
            return family_logits.sum() * 0.0
        given = self.config["family_class_weights"]
        weight = None
        if given:  # a family not named keeps weight 1
            weight = family_logits.new_tensor([float(given.get(name, 1.0)) for name in FAMILIES])
        return F.cross_entropy(family_logits, family, weight=weight, ignore_index=-1)

    def extension_weights(self, options: dict) -> tuple[str, ...]:
        """The state-dict prefixes that config `options` add to a trained model, which start fresh when
        train.init_from fine-tunes a checkpoint without them (edge_fas.models.checkpoint.load_checkpoint)."""
        return ("family_head.",) if options.get("family_head") else ()

    def discriminator_loss(self, batch: dict, traces: dict, present: torch.Tensor, pairs) -> torch.Tensor:
        """Eq. 7 (generated -> 1, real -> 0) on detached traces, summed over modalities."""
        y = batch["label"]
        total = present.new_zeros(())
        for i, m in enumerate(self.modalities):
            x, t, p = batch[m], traces[m].detach(), present[:, i]
            n = x.shape[0]
            # each discriminator sees its two inputs as one batch: the discriminators have no batch
            # statistics, so this is the same loss with half the kernel launches (training on a GPU is
            # launch-bound at the edge preset)
            live = self.disc_live[m](torch.cat([x - t, x]))
            total = total + _ls([o[:n] for o in live], 1.0, p)
            total = total + _ls([o[n:] for o in live], 0.0, p * (y == 0).to(p.dtype))
            if pairs is None:
                total = total + _ls(self.disc_spoof[m](x), 0.0, p * (y == 1).to(p.dtype))
                continue
            li, sj = pairs
            spoof = self.disc_spoof[m](torch.cat([x, x[li] + t[sj]]))
            total = total + _ls([o[:n] for o in spoof], 0.0, p * (y == 1).to(p.dtype))
            total = total + _ls([o[n:] for o in spoof], 1.0, p[li] * p[sj])
        return total

    def consistency_loss(self, batch: dict, traces: dict, present: torch.Tensor, pairs, mix=None) -> torch.Tensor:
        """Eq. 14: the generator must re-estimate the (detached) trace T_j added to a live face.

        `mix` (B_pairs,) weights in [0, 1] blend each T_j with a second random spoof's trace
        (1 = no mixing); drawn by train_step with probability mix_prob.
        """
        if pairs is None:
            return present.new_zeros(())
        li, sj = pairs
        t_target = {m: traces[m].detach()[sj] for m in self.modalities}
        if mix is not None:
            spoof = torch.nonzero(batch["label"] == 1).flatten()
            sk = spoof[torch.randint(len(spoof), (len(sj),), device=spoof.device)]
            w = mix.view(-1, 1, 1, 1).to(present.dtype)
            t_target = {m: w * t_target[m] + (1 - w) * traces[m].detach()[sk] for m in self.modalities}
            p = present[li] * present[sj] * present[sk]
        else:
            p = present[li] * present[sj]
        synth = {m: batch[m][li] + t_target[m] for m in self.modalities}
        gen = self.generate(synth, p)
        err = sum(
            _wmean(((gen["traces"][m] - t_target[m] * p[:, i, None, None, None]) ** 2).flatten(1).mean(1), p[:, i])
            for i, m in enumerate(self.modalities)
        )
        return err

    # ---- training -----------------------------------------------------------------------------
    def _step(self, loss, opt, scaler):
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()

    def _set_disc_grad(self, flag: bool):
        for p in self.discriminator_parameters():
            p.requires_grad_(flag)

    @torch.no_grad()
    def _update_centers(self, feats: dict, label: torch.Tensor, present: torch.Tensor):
        """Wen et al. 2016: c_j -= alpha * sum_{y_i=j}(c_j - x_i) / (1 + n_j)."""
        for i, m in enumerate(self.modalities):
            c = getattr(self, f"center_{m}")
            for j in (0, 1):
                sel = (label == j) & (present[:, i] > 0)
                diff = (c[j] - feats[m].detach()[sel]).sum(0)
                c[j] -= self.config["center_alpha"] * diff / (1 + sel.sum())

    def train_step(self, batch: dict, optimisers: dict, scaler=None) -> dict:
        """The paper's three steps on one batch; returns the detached loss terms (floats)."""
        self.train()
        a = self.config["alphas"]
        pairs = self._pairs(batch["label"])
        # 1. generator (Eq. 13); discriminators frozen
        self._set_disc_grad(False)
        out = self.forward(batch["rgb"], batch["depth"], batch["ir"], batch.get("present"))
        terms = self.loss(batch, out, pairs=pairs)
        for name, fn in self.extra_losses.items():
            terms[name] = fn(batch, out)
            terms["total"] = terms["total"] + terms[name]
        self._step(terms["total"], optimisers["generator"], scaler)
        self._set_disc_grad(True)
        gen, pres = out["_gen"], out["_present"]
        self._update_centers(gen["center_feat"], batch["label"], pres)
        # 2. discriminator (alpha_7 L_D) on the detached generator outputs
        l_d = a[6] * self.discriminator_loss(batch, gen["traces"], pres, pairs)
        self._step(l_d, optimisers["discriminator"], scaler)
        # 3. consistency (alpha_8 Eq. 14), two spoofs' traces mixed with probability mix_prob
        mix = None
        if pairs is not None and float(torch.rand(())) < self.config["mix_prob"]:  # torch RNG: seedable with the rest
            mix = torch.rand(len(pairs[0]), device=batch["label"].device)
        self._set_disc_grad(False)
        l_c = a[7] * self.consistency_loss(batch, gen["traces"], pres, pairs, mix)
        if l_c.requires_grad:
            self._step(l_c, optimisers["generator"], scaler)
        self._set_disc_grad(True)
        terms.update(D=l_d, consistency=l_c)
        values = torch.stack([v.detach().float() for v in terms.values()]).tolist()  # one device sync, not one per term
        return dict(zip(terms, values))


def build(preset: str = "edge", **overrides) -> SpoofTraceNet:
    return SpoofTraceNet(preset=preset, **overrides)
