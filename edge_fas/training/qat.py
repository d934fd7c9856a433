"""Quantisation-aware fine-tuning (`train.quantization_aware: true`): the model trains with int8 rounding
simulated where the export's int8 recipe (edge_fas.runtime.quantize, qdq-symmetric-v1) will round, so the
weights it learns are shaped by that rounding before post-training quantisation applies it.

Why: on the randomised-rig demo candidates every post-training recipe flipped the same decisions, through
rounding errors compounding across the network (benchmarks/bench_int8.py), which no calibration method
removes. On stage 2 this fine-tuning removes 40% of the flips but does not pass the int8 gate
(docs/demo-model.md says why).

What is simulated, per Conv2d / ConvTranspose2d / Linear of the exported network (a model's
`training_only_modules`, e.g. spoof_trace's discriminators, are left alone):
- weights: symmetric per-output-channel int8, scale max|w_c| / 127 (ONNX Runtime's symmetric range is
  [-127, 127]); recomputed from the current weights every forward pass;
- the input and the output activation: symmetric per-tensor int8, scale max|x| / 127 with max|x| a slowly
  decaying running maximum over the training batches (as coarse as MinMax calibration), frozen in eval mode. The
  output is rounded where the int8 graph rounds it: after a BatchNorm the export folds into the layer, over
  the range of a ReLU that follows (see _rounding_points).
All round with a straight-through gradient (torch.fake_quantize_*). Not simulated: a tensor feeding two
quantised layers is rounded once in the Q/DQ graph but once per layer here, and the ranges are the training
batches' rather than the calibration crops'; the export's gate measures the real int8 model. Under torchrun
each process keeps its own ranges (as it keeps its own BatchNorm statistics) until each epoch's validation,
where every process takes rank 0's (buffers, broadcast by TrainingData.evaluate); rank 0's are validated.

`train.quantization_consistency: W` adds a term to the model's own generator loss (consistency_loss; models
with `extra_losses`, i.e. spoof_trace): the simulated-int8 logits are pulled towards the float model's
(float_path(), detached) with weight W, since the export's gate compares exactly those two while the task
loss trains only the int8 path.

The fake quantisers are removed (`strip`) before the checkpoint is written: the checkpoint, the float
ONNX and `edge-fas export --int8` are exactly as for any model, and the int8 model is calibrated and
gated by the export as always."""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

QUANTISED_TYPES = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
QMAX = 127  # symmetric int8: [-127, 127]


class WeightFakeQuant(nn.Module):
    """Symmetric per-output-channel int8 rounding of a weight (a parametrization)."""

    def __init__(self, axis: int):
        super().__init__()
        self.axis = axis
        self.enabled = True  # False inside float_path()

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return w
        dims = [d for d in range(w.dim()) if d != self.axis]
        scale = w.detach().abs().amax(dim=dims).clamp_min(1e-8) / QMAX
        zero = torch.zeros(scale.shape, dtype=torch.int32, device=w.device)
        return torch.fake_quantize_per_channel_affine(w, scale.float(), zero, self.axis, -QMAX, QMAX)


class ActivationFakeQuant(nn.Module):
    """Symmetric per-tensor int8 rounding of an activation, its range a slowly decaying running maximum.

    The export's MinMax calibration takes the maximum over its calibration crops; the running maximum
    (forgetting `decay` of itself per batch, so a peak from early training fades) keeps training at least as
    coarse. A running average of batch maxima (PyTorch's default observer) was tried first: on the
    spoof-trace network's fusion-gated features, whose maxima are ~10x their 99.9th percentile, it trained
    for a rounding about half as coarse as the export's, and the int8 gate refused the model.
    positive_only: the tensor goes into a ReLU, which ONNX Runtime's Q/DQ pass folds into the rounding, so
    the range is the ReLU output's, [0, max]."""

    def __init__(self, decay: float = 0.01, positive_only: bool = False):
        super().__init__()
        self.decay, self.positive_only = decay, positive_only
        self.register_buffer("max_abs", torch.zeros(()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.bool))
        self.enabled = True  # False inside float_path(): no rounding and no range update

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        if self.training:  # tensors only: no host synchronisation per layer on a GPU
            batch_max = (x.detach() if self.positive_only else x.detach().abs()).amax().float()
            self.max_abs.copy_(torch.where(self.seen, torch.maximum(self.max_abs * (1 - self.decay), batch_max), batch_max))
            self.seen.fill_(True)
        elif not bool(self.seen):  # evaluated before any training batch: no range to round to yet
            return x
        scale = (self.max_abs.clamp_min(1e-8) / QMAX).reshape(1)
        zero = torch.zeros(1, dtype=torch.int32, device=x.device)
        # in float32: under CUDA autocast x may be float16 (rounded on the int8 grid, then cast back)
        return torch.fake_quantize_per_tensor_affine(x.float(), scale, zero, -QMAX, QMAX).to(x.dtype)


def _quantised_layers(model: nn.Module):
    skip = tuple(f"{name}." for name in getattr(model, "training_only_modules", ()))
    for name, module in model.named_modules():
        if isinstance(module, QUANTISED_TYPES) and not f"{name}.".startswith(skip):
            yield name, module


def _example_inputs(model: nn.Module):
    """One frame set of the inputs the exporter traces (export.random_batch), in the artifact's input order."""
    import numpy as np

    from edge_fas.artifact import INPUT_NAMES
    from edge_fas.export import random_batch
    batch = random_batch(int(model.input_size), 1, np.random.default_rng(1))
    return tuple(torch.from_numpy(batch[k]) for k in INPUT_NAMES)


def _rounding_points(model: nn.Module, layers: list[nn.Module], example) -> dict:
    """{layer: (the module whose output the int8 model rounds, whether a ReLU reads it)}, found by one forward
    pass in eval mode. A BatchNorm reading the layer's output directly is folded into the layer by the export
    (torch for Conv, ONNX Runtime's pre-processing for ConvTranspose), so rounding happens after it; a ReLU
    module reading that output is folded into the rounding's range. (A functional relu is not seen: its
    range is then taken over negative values too, a coarser rounding than the int8 model's.)"""
    produced, points, hooks = {}, {}, []  # produced: id -> (tensor kept alive so ids stay unique, layer)

    def lookup(t):
        hit = produced.get(id(t))
        return hit[1] if hit is not None and hit[0] is t else None

    def record_layer(layer, _args, out):
        produced[id(out)] = (out, layer)
        points[layer] = (layer, False)

    def record_bn(bn, args, out):
        layer = lookup(args[0])
        if layer is not None:
            produced[id(out)] = (out, layer)
            points[layer] = (bn, False)

    def check_relu(_relu, args):
        layer = lookup(args[0])
        if layer is not None:
            points[layer] = (points[layer][0], True)

    hooks += [layer.register_forward_hook(record_layer) for layer in layers]
    hooks += [m.register_forward_hook(record_bn) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    hooks += [m.register_forward_pre_hook(check_relu) for m in model.modules() if isinstance(m, nn.ReLU)]
    mode = model.training
    device = next(model.parameters()).device
    try:
        model.eval()
        with torch.no_grad():
            model(*[x.to(device) for x in example])
    finally:
        model.train(mode)
        for h in hooks:
            h.remove()
    return points


def _quantise_input(module, args):
    return (module.input_fake_quant(args[0]), *args[1:])


def _quantise_output(module, _args, out):
    return module.output_fake_quant(out)


def prepare(model: nn.Module, example=None) -> int:
    """Add the fake quantisers in place; returns how many layers now train quantisation-aware.

    example: the inputs of one forward pass (default: the exporter's random frame set at model.input_size)."""
    layers = [m for _, m in _quantised_layers(model)]
    points = _rounding_points(model, layers, example if example is not None else _example_inputs(model))
    device = next(model.parameters()).device
    for module in layers:
        axis = 1 if isinstance(module, nn.ConvTranspose2d) else 0  # ConvTranspose weights are (in, out, kh, kw)
        parametrize.register_parametrization(module, "weight", WeightFakeQuant(axis))
        module.input_fake_quant = ActivationFakeQuant().to(device)
        rounds_output, into_relu = points.get(module, (module, False))  # a layer the pass never ran: its own output
        rounds_output.output_fake_quant = ActivationFakeQuant(positive_only=into_relu).to(device)
        module._edge_fas_qat_hooks = [module.register_forward_pre_hook(_quantise_input),
                                      rounds_output.register_forward_hook(_quantise_output)]
    return len(layers)


@contextmanager
def float_path(model: nn.Module):
    """Inside the block the prepared model computes in plain float (no rounding, no range updates)."""
    quantisers = [m for m in model.modules() if isinstance(m, (WeightFakeQuant, ActivationFakeQuant))]
    for q in quantisers:
        q.enabled = False
    try:
        yield
    finally:
        for q in quantisers:
            q.enabled = True


def consistency_loss(model: nn.Module, batch: dict, out: dict, weight: float) -> torch.Tensor:
    """weight x Huber (smooth L1, beta 1) between this step's simulated-int8 logits (`out`, with gradient) and
    the float model's logits on the same batch (float_path(), no gradient), for `train.quantization_consistency`.

    Why: the export's precision gate compares float and int8 decisions, and plain QAT trains only the int8
    path's task loss. On the spoof-trace network a bona fide score is phi of near-zero traces, so rounding
    error anywhere reads as a spoof; the task loss barely sees that while the gate sees every such flip.
    The float pass runs in the same (train) mode, so both use the batch's own BatchNorm statistics. Huber on
    logits: a flip moves a logit by 3-4, which an MSE would weigh like a diverging sample.
    It is a term of the model's own generator step (SpoofTraceNet.extra_losses), not a step of its own: an
    extra Adam step per batch takes as large a step as the task's whatever the weight and shares the task's
    momentum (and so doubles the generator's steps against the discriminator's). Tried first that way on
    stage 2, the simulated-int8 model's validation scores were inverted after one epoch (AUC 0.14); which of
    those did it was not isolated."""
    with torch.no_grad(), float_path(model):
        target = model(batch["rgb"], batch["depth"], batch["ir"], batch.get("present"))["logits"].float()
    return weight * F.smooth_l1_loss(out["logits"].float(), target, beta=1.0)


def is_prepared(model: nn.Module) -> bool:
    return any(hasattr(m, "_edge_fas_qat_hooks") for m in model.modules())


def strip(model: nn.Module) -> int:
    """Remove the fake quantisers in place, keeping the trained float weights; returns how many layers."""
    count = 0
    for module in model.modules():
        if hasattr(module, "_edge_fas_qat_hooks"):
            for h in module._edge_fas_qat_hooks:
                h.remove()
            del module._edge_fas_qat_hooks
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
            count += 1
    for module in model.modules():
        for name in ("input_fake_quant", "output_fake_quant"):
            if hasattr(module, name):
                delattr(module, name)
    return count
