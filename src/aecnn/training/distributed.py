"""Data-parallel training under ``torchrun``: one process per device, ``DistributedDataParallel``.

Nothing here is active in a single process: every helper then does nothing (or returns its
argument), so a plain run is exactly what it was. Under ``torchrun`` (``WORLD_SIZE`` > 1 in
the environment) :func:`setup` joins the process group from torchrun's variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): NCCL when training on CUDA
(each process on ``cuda:LOCAL_RANK``), gloo on the CPU.

The rules the training code follows:

- ``data.batch_size`` is the global batch: each of the W ranks takes ``batch_size / W`` of it
  from a :class:`~torch.utils.data.distributed.DistributedSampler` (seeded per epoch, pads the
  last partial round as usual), so the steps per epoch, the learning-rate schedule and the
  averaged gradient are those of one process with the whole batch.
- Evaluation splits the indices without padding (:class:`Shard`: rank r takes r, r + W, ...)
  and sums correct / total / loss over ranks, so it counts every image exactly once.
- Batch norm stays per rank (no SyncBatchNorm: it has no CPU kernel): each rank normalises
  with its own part of the batch; DDP copies rank 0's running statistics to every rank at each
  forward pass, and :func:`sync_state` does so before each evaluation and checkpoint, so all
  ranks evaluate and save one identical set of weights and statistics.
- Rank 0 alone writes checkpoints, records and configs and shows progress; the others wait at
  a :func:`barrier` before they read what it wrote.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.distributed import DistributedSampler

from aecnn import records
from aecnn.errors import ConfigError


def launched() -> bool:
    """True in a process that torchrun started as one of several (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """True once this process is one rank of a process group of two or more."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """True in the process that writes files and prints (rank 0, or the only process)."""
    return rank() == 0


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group (once) and return the device this rank trains on.

    In a single process: ``device`` itself. Under torchrun: a CUDA device without an index
    becomes ``cuda:LOCAL_RANK``; the backend is NCCL for CUDA, gloo for the CPU.

    Raises:
        ConfigError: torchrun started more processes on this node than it has GPUs.
    """
    if not launched():
        return device
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device.index is None:
            if local >= torch.cuda.device_count():
                raise ConfigError(f"torchrun: local rank {local}, but only "
                                  f"{torch.cuda.device_count()} GPU(s) on this node")
            device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_teardown)
    return device


def _teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (nothing in a single process)."""
    if active():
        dist.barrier()


def local_rank() -> int:
    """This process's rank on its node (torchrun's ``LOCAL_RANK``; 0 in a single process)."""
    return int(os.environ.get("LOCAL_RANK", "0")) if active() else 0


@contextmanager
def main_first() -> Iterator[None]:
    """Run the block in three waves: rank 0, then the first rank of every other node, then
    the rest. The block may create files (a manifest, the decoded-image cache): on a shared
    file system rank 0 makes them for all; on node-local ones (``$AECNN_CACHE``) each node's
    first rank makes its own copy; never do two ranks write one file at once."""
    wave = 0 if is_main() else 1 if local_rank() == 0 else 2
    for _ in range(wave):
        barrier()
    yield
    for _ in range(wave, 2):
        barrier()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` (gradients averaged
    over ranks; only parameters with ``requires_grad`` take part, so frozen parts of a stage
    are left alone), or ``model`` itself in a single process."""
    if not active() or not any(p.requires_grad for p in model.parameters()):
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def local_batch(batch_size: int) -> int:
    """Each rank's part of the global batch.

    Raises:
        ConfigError: the batch does not divide among the ranks.
    """
    w = world()
    if batch_size % w:
        raise ConfigError(f"batch size {batch_size} does not divide among {w} ranks")
    return batch_size // w


def train_loader(ds: Dataset, batch_size: int, workers: int, seed: int, epoch: int,
                 pin: bool) -> DataLoader:
    """This rank's loader for one training epoch: its ``batch_size / W`` of each global
    batch, drawn by a :class:`DistributedSampler` from ``seed`` and ``epoch``."""
    sampler = DistributedSampler(ds, num_replicas=world(), rank=rank(), shuffle=True,
                                 seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    return DataLoader(ds, batch_size=local_batch(batch_size), sampler=sampler,
                      num_workers=workers, generator=torch.Generator().manual_seed(seed),
                      drop_last=False, pin_memory=pin)


class Shard(Subset):
    """This rank's part of an evaluation set, without padding: indices ``rank, rank + W,
    ...``. :func:`aecnn.training.loop.evaluate_model` sums its counts over ranks."""

    def __init__(self, ds: Dataset) -> None:
        super().__init__(ds, range(rank(), len(ds), world()))  # type: ignore[arg-type]


def shard(ds: Dataset) -> Dataset:
    """:class:`Shard` of ``ds`` under torchrun, ``ds`` itself in a single process."""
    return Shard(ds) if active() else ds


def all_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """Element-wise sums of ``values`` over ranks (float64; the values themselves in a
    single process)."""
    if not active():
        return list(values)
    on = device if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor(list(values), dtype=torch.float64, device=on)
    dist.all_reduce(t)
    return t.tolist()


def sync_state(model: nn.Module) -> None:
    """Copy rank 0's parameters and buffers (batch-norm statistics) to every rank."""
    if not active():
        return
    for t in model.state_dict().values():
        if t.is_contiguous():
            dist.broadcast(t, 0)
        else:  # channels-last weights: send a contiguous copy, write it back
            c = t.contiguous()
            dist.broadcast(c, 0)
            t.copy_(c)


def write_record(path, record: dict) -> dict:
    """:func:`aecnn.records.write_record` on rank 0; ``record`` unwritten on the others."""
    if not active():
        return records.write_record(path, record)
    record = {**record, "distributed": {"world_size": world(), "backend": dist.get_backend()}}
    return records.write_record(path, record) if is_main() else record
