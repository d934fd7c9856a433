"""Distributed training under torchrun (WORLD_SIZE > 1), CPU (gloo) or CUDA (NCCL).

Each process trains on its `batch_size` slice of every global batch (edge_fas.data.stream's
BalancedSampler: the same global batches as one process with batch_size x WORLD_SIZE). The models
step their own optimisers inside train_step, so instead of wrapping the forward in DDP the gradients
are averaged across processes right before every optimiser step (the same effect as DDP's
all-reduce); the logged losses are averaged too, so they are the global batch's. Rank 0 broadcasts
its initial weights, only rank 0 writes files, and at the end every replica must hold the same weights.
Each epoch's validation is shared out: every process scores its share of the set with rank 0's buffers
(TrainingData.evaluate) and the scores are gathered. The final calibration and tests still run whole on
every process.
"""

from __future__ import annotations

import os

import torch

__all__ = ["world", "start", "average_grads_before_step", "broadcast_params", "broadcast_buffers", "global_mean",
           "check_replicas"]


def world() -> tuple[int, int, int]:
    """(world size, rank, local rank) from torchrun's environment; (1, 0, 0) alone."""
    return (int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0")),
            int(os.environ.get("LOCAL_RANK", "0")))


def start(device: str) -> None:
    """Join the process group: NCCL when training on CUDA, else gloo."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() and device != "cpu" else "gloo")


def average_grads_before_step(optimiser, world_size: int) -> None:
    """Wrap optimiser.step so gradients are all-reduced (mean) over processes first."""
    import torch.distributed as dist

    inner = optimiser.step
    params = [p for g in optimiser.param_groups for p in g["params"]]

    def step(*a, **k):
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= world_size
        off = 0
        for p, g in zip(params, grads):
            n = g.numel()
            if p.grad is not None:
                p.grad.copy_(flat[off:off + n].view_as(g))
            off += n
        return inner(*a, **k)

    optimiser.step = step


def broadcast_params(model) -> None:
    """Every process starts from rank 0's weights."""
    import torch.distributed as dist

    for t in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(t.data, 0)


def broadcast_buffers(model) -> None:
    """Every process takes rank 0's buffers (BatchNorm's running statistics drift apart between processes,
    each seeing its own slice of the batch; the weights do not), as DDP's broadcast_buffers does: then the
    processes score a set as one model."""
    import torch.distributed as dist

    for t in model.buffers():
        dist.broadcast(t.data, 0)


def global_mean(terms: dict, world_size: int, device) -> dict:
    """Loss terms averaged over the processes: the global batch's, as one process would log them."""
    import torch.distributed as dist

    keys = sorted(terms)
    t = torch.tensor([float(terms[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / world_size for k, v in zip(keys, t.tolist())}


def check_replicas(model) -> None:
    """After distributed training every process must hold the same weights; fail loudly if not."""
    import torch.distributed as dist

    with torch.no_grad():  # on the model's device, so NCCL (CUDA tensors only) works as well as gloo
        own = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    all_sums = [torch.zeros_like(own) for _ in range(dist.get_world_size())]
    dist.all_gather(all_sums, own)
    if not all(torch.allclose(a, all_sums[0], rtol=1e-6, atol=1e-6) for a in all_sums):
        raise RuntimeError(f"distributed training: the model replicas diverged (weight sums {[float(a) for a in all_sums]})")
