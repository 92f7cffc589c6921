"""Multi-process training under `torchrun`: process group, samplers and gathering predictions.

`torchrun --nproc_per_node N` sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything here
degrades to a single process. The backend is NCCL when the device is CUDA and gloo otherwise, so
the same code path runs (and is tested) on a CPU-only machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler, Sampler


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """'auto' -> this process's GPU when there is one, else the CPU."""
    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    return dev


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun process group if the environment names one (idempotent)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def train_sampler(dataset: Dataset, info: DistInfo, seed: int, shuffle: bool = True) -> DistributedSampler:
    """Shuffled, rank-sharded sampler whose order depends only on (seed, epoch): resume replays it exactly.

    Used in single-process runs too (num_replicas=1), so the data order does not depend on how
    much global RNG earlier epochs consumed.
    """
    return DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=shuffle, seed=seed)


class ShardSampler(Sampler[int]):
    """Evaluation sampler: rank r takes items r, r+W, r+2W... with no padding (no duplicated rows)."""

    def __init__(self, dataset: Dataset, info: DistInfo):
        self.n = len(dataset)  # type: ignore[arg-type]
        self.rank, self.world = info.rank, info.world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


def all_reduce_mean(value: float, device: torch.device) -> float:
    """Mean of a scalar over all ranks (the value itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def gather_rows(local: torch.Tensor) -> torch.Tensor:
    """Concatenate per-rank row blocks produced with ShardSampler back into dataset order.

    Rank r holds rows r, r+W, ...; blocks are padded to one length for all_gather, then
    interleaved: row i of the dataset is block (i % W), position (i // W).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    world = dist.get_world_size()
    n_local = torch.tensor([local.shape[0]], device=local.device)
    sizes = [torch.zeros_like(n_local) for _ in range(world)]
    dist.all_gather(sizes, n_local)
    counts = [int(s.item()) for s in sizes]
    longest = max(counts)
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=local.device)
    padded[: local.shape[0]] = local
    blocks = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(blocks, padded)
    total = sum(counts)
    out = torch.empty((total, *local.shape[1:]), dtype=local.dtype, device=local.device)
    for r, (block, count) in enumerate(zip(blocks, counts)):
        out[r::world] = block[:count]
    return out


def gather_objects(obj: Any) -> list[Any]:
    """One picklable object from every rank (a one-element list when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
