"""The training loop shared by every stage: deterministic epochs, checkpoints, exact resume.

Determinism: each epoch re-seeds the shuffling generator and the global RNGs from
``(seed, stream, epoch)`` (:func:`epoch_seed`), so a run resumed from the checkpoint of epoch
k replays epochs k+1... as an uninterrupted run would, with no RNG state kept in the
checkpoint. The ``stream`` (a stage's name) gives each fine-tuning stage its own order and
augmentations: without it every stage of a run would see, epoch for epoch, the very batches
and random crops of the baseline's first epochs, and learn them by heart.
"""

from __future__ import annotations

import json
import math
import random
import time
import zlib
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from aecnn.errors import CheckpointError, ConfigError
from aecnn.training import distributed
from aecnn.training.checkpoint import load_checkpoint, save_checkpoint
from aecnn.training.config import OptimConfig

# Keys that may differ between a run and its resumption (they do not change the result).
_RESUME_FREE = {"out", "device", "threads", "data.workers", "data.root", "data.cache"}


def resolve_device(name: str) -> torch.device:
    """``auto`` (a GPU if there is one, else the CPU) or a torch device name.

    Raises:
        ConfigError: not a device name.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: {name!r} is not a torch device (auto, cpu, cuda, "
                          "cuda:1, ...)") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, stream: str = "") -> int:
    """The seed of one training epoch (0-based ``epoch``): its shuffle order and, through the
    global RNGs, its random crops and flips. ``stream`` "" (the baseline) keeps the formula
    of the first releases, ``seed * 100_003 + epoch``; any other stream (a stage's name) is
    mixed in by CRC-32, so that stages of one run, and the baseline, draw different batches
    at the same epoch. Stable across processes and platforms (no ``hash``). Returns a
    non-negative integer below 2**63."""
    base = seed * 100_003 + epoch
    if not stream:
        return base
    return (base + (zlib.crc32(stream.encode()) + 1) * 1_000_000_007) % 2**63


def make_loader(ds: Dataset, batch_size: int, workers: int, shuffle: bool = False,
                seed: int = 0, device: torch.device | None = None,
                shard: bool = False) -> DataLoader:
    """A loader over ``ds``. With ``shard`` (evaluation), under torchrun, this rank's
    :class:`~aecnn.training.distributed.Shard` of it, whose counts :func:`evaluate_model`
    sums over ranks; in a single process ``shard`` changes nothing."""
    g = torch.Generator().manual_seed(seed)
    if shard:
        ds = distributed.shard(ds)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      generator=g, drop_last=False,
                      pin_memory=device is not None and device.type == "cuda")


@dataclass(frozen=True)
class Distillation:
    """Knowledge distillation (Hinton et al., 2015) from a fixed teacher network.

    The training loss becomes ``(1 - weight) * CE(labels) + weight * T**2 *
    KL(softmax(teacher / T) || softmax(student / T))``; ``teacher`` maps the same input
    batch ``(B, 3, H, W)`` to logits ``(B, K)`` and is never trained.
    """

    teacher: nn.Module
    weight: float
    temperature: float = 4.0

    def __post_init__(self) -> None:
        if not 0.0 < self.weight <= 1.0:
            raise ConfigError(f"distill: weight {self.weight} is not in (0, 1]")
        if not self.temperature > 0:
            raise ConfigError(f"distill: temperature {self.temperature} is not > 0")
        self.teacher.eval().requires_grad_(False)

    def loss(self, student: torch.Tensor, teacher: torch.Tensor,
             hard: torch.Tensor) -> torch.Tensor:
        """The mixed loss from the student's and teacher's logits ``(B, K)`` and the label
        loss ``hard`` (a scalar)."""
        t = self.temperature
        soft = nn.functional.kl_div(nn.functional.log_softmax(student.float() / t, dim=1),
                                    nn.functional.log_softmax(teacher.float() / t, dim=1),
                                    reduction="batchmean", log_target=True) * t * t
        return (1.0 - self.weight) * hard + self.weight * soft


@dataclass
class RunOptions:
    """How to run (not what): device, precision, memory format, progress."""

    device: torch.device
    amp: bool = True
    channels_last: bool = True
    progress: bool = True

    def autocast(self):
        if self.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


@torch.no_grad()
def evaluate_model(model: nn.Module, loader: DataLoader, opts: RunOptions,
                   desc: str = "eval") -> dict[str, float]:
    """Top-1, top-5 (in %) and mean cross-entropy of ``model`` over ``loader``; over the
    whole evaluation set when ``loader`` holds one rank's shard (``make_loader(shard=True)``
    under torchrun): counts and loss are summed over ranks."""
    model.eval()
    n = correct1 = correct5 = 0
    loss = 0.0
    for x, y in tqdm(loader, desc=desc, leave=False, disable=not opts.progress, unit="batch"):
        x, y = opts.to_device(x), y.to(opts.device)
        with opts.autocast():
            logits = model(x).float()
        loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top[:, 0] == y).sum().item()
        correct5 += (top == y[:, None]).any(dim=1).sum().item()
        n += len(y)
    if isinstance(loader.dataset, distributed.Shard):
        sums = distributed.all_sum([n, correct1, correct5, loss], opts.device)
        n, correct1, correct5, loss = int(sums[0]), int(sums[1]), int(sums[2]), sums[3]
    return {"top1": 100.0 * correct1 / max(n, 1), "top5": 100.0 * correct5 / max(n, 1),
            "loss": loss / max(n, 1), "n": n}


def make_optimizer(params, cfg: OptimConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, cfg: OptimConfig,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step linear warm-up then cosine decay to zero."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = cfg.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resumable(saved: dict, current: dict) -> None:
    """Refuse to resume a run under a config that would change its result."""
    a, b = _flat(saved), _flat(current)
    diff = sorted(k for k in set(a) | set(b) if k not in _RESUME_FREE and a.get(k) != b.get(k))
    if diff:
        k = diff[0]
        raise CheckpointError(f"cannot resume: config {k} was {a.get(k)!r}, now {b.get(k)!r}")


def fit(model: nn.Module, train_ds: Dataset, val_ds: Dataset, optim: OptimConfig,
        out: Path, opts: RunOptions, *, seed: int, batch_size: int, eval_batch_size: int,
        workers: int, config: dict, meta: dict, resume: bool = False,
        desc: str = "train", distill: Distillation | None = None,
        penalty: Callable[[], torch.Tensor] | None = None, stream: str = "",
        on_step: Callable[[nn.Module], None] | None = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
        ) -> list[dict]:
    """Train ``model`` for ``optim.epochs`` epochs, checkpointing every epoch.

    Writes ``out/last.pt`` (everything needed to resume), ``out/best.pt`` (weights with the
    best validation top-1) and ``out/metrics.json`` (per-epoch history). With ``resume`` the
    run continues after the last completed epoch; without it an existing run is an error.
    With ``distill`` the loss mixes the labels with the teacher's softened outputs;
    ``penalty``, called after each training forward pass, returns a scalar added to the loss
    (the weighted rate estimate of a rate-regularised stage). ``stream`` names the run's own
    stream of batches and augmentations (:func:`epoch_seed`; "" for the baseline, a stage's
    name for a fine-tuning stage). ``on_step``, if given, is called with the model after each
    optimiser step. ``loss_fn``, if given, replaces the labels' cross-entropy: it takes the
    model's training output and the labels (a stage that trains on another target, such as
    the learned bottleneck's feature distillation); training top-1 is then not counted.

    Under torchrun (:mod:`aecnn.training.distributed`) the model trains in
    ``DistributedDataParallel``, each rank on its share of every (global) batch; the history's
    metrics are summed over ranks, and rank 0 alone writes the files.

    Returns:
        The per-epoch history (dicts of train and validation metrics).
    """
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.pt"
    model.to(opts.device)
    if opts.channels_last:
        model.to(memory_format=torch.channels_last)
    if distill is not None:
        distill.teacher.to(opts.device)
        if opts.channels_last:
            distill.teacher.to(memory_format=torch.channels_last)
    criterion = nn.CrossEntropyLoss(label_smoothing=optim.label_smoothing)
    opt = make_optimizer(model.parameters(), optim)
    if distributed.active():  # each rank's share of the (padded) epoch, in local batches
        shard = math.ceil(len(train_ds) / distributed.world())
        steps = math.ceil(shard / distributed.local_batch(batch_size))
    else:
        steps = math.ceil(len(train_ds) / batch_size)
    if optim.steps_per_epoch is not None:
        if optim.steps_per_epoch < 1:
            raise ConfigError(f"steps_per_epoch: {optim.steps_per_epoch} is not >= 1")
        steps = min(steps, optim.steps_per_epoch)
    sched = make_scheduler(opt, optim, steps)
    history: list[dict] = []
    best = -1.0
    start = 0
    if last.exists():
        if not resume:
            raise CheckpointError(f"{out} already holds a run: pass --resume to continue it, "
                                  "or choose another output folder")
        ckpt = load_checkpoint(last, ("model", "optimizer", "scheduler", "epoch", "config"))
        check_resumable(ckpt["config"], config)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        start, history, best = ckpt["epoch"], list(ckpt["history"]), ckpt["best_top1"]
    val_loader = make_loader(val_ds, eval_batch_size, workers, device=opts.device, shard=True)
    trained = distributed.wrap(model, opts.device) if start < optim.epochs else model
    main = distributed.is_main()
    for epoch in range(start, optim.epochs):
        t0 = time.perf_counter()
        drawn = epoch_seed(seed, epoch, stream)
        if distributed.active():  # each rank its own crops; the sampler deals the images
            seed_everything((drawn + distributed.rank() * 1_000_003) % 2**63)
            loader = distributed.train_loader(train_ds, batch_size, workers, drawn, epoch,
                                              pin=opts.device.type == "cuda")
        else:
            seed_everything(drawn)
            loader = make_loader(train_ds, batch_size, workers, shuffle=True, seed=drawn,
                                 device=opts.device)
        model.train()
        n, correct, total_loss = 0, 0, 0.0
        bar = tqdm(loader, total=steps, desc=f"{desc} {epoch + 1}/{optim.epochs}", leave=False,
                   disable=not opts.progress, unit="batch")
        for step, (x, y) in enumerate(bar):
            if step == steps:  # steps_per_epoch reached
                break
            x, y = opts.to_device(x), y.to(opts.device)
            with opts.autocast():
                logits = trained(x)
                loss = (criterion(logits.float(), y) if loss_fn is None
                        else loss_fn(logits, y))
                if distill is not None:
                    with torch.no_grad():
                        target = distill.teacher(x)
                    loss = distill.loss(logits, target, loss)
                if penalty is not None:
                    loss = loss + penalty()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            n += len(y)
            total_loss += loss.item() * len(y)
            if loss_fn is None:
                correct += (logits.argmax(1) == y).sum().item()
            bar.set_postfix(loss=f"{total_loss / n:.3f}", acc=f"{100 * correct / n:.1f}")
            if on_step is not None:
                on_step(model)
        if distributed.active():
            sums = distributed.all_sum([n, correct, total_loss], opts.device)
            n, correct, total_loss = int(sums[0]), int(sums[1]), sums[2]
            distributed.sync_state(model)  # rank 0's batch-norm statistics everywhere
        val = evaluate_model(model, val_loader, opts, desc="val")
        row = {"epoch": epoch + 1, "train_loss": total_loss / max(n, 1),
               "train_top1": 100.0 * correct / max(n, 1) if loss_fn is None else None,
               "val_top1": val["top1"],
               "val_top5": val["top5"], "val_loss": val["loss"],
               "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
        history.append(row)
        improved = val["top1"] > best
        best = max(best, val["top1"])
        if main:
            if improved:
                save_checkpoint(out / "best.pt", {"model": model.state_dict(), "config": config,
                                                  "epoch": epoch + 1, "val": val, **meta})
            save_checkpoint(last, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                   "scheduler": sched.state_dict(), "epoch": epoch + 1,
                                   "history": history, "best_top1": best, "config": config,
                                   **meta})
            (out / "metrics.json").write_text(json.dumps({"history": history}, indent=1) + "\n")
        distributed.barrier()  # the checkpoints are on disk before any rank reads them
        if opts.progress:
            tqdm.write(f"{desc} epoch {epoch + 1}/{optim.epochs}: loss {row['train_loss']:.3f} "
                       f"train {100 * correct / max(n, 1):.1f}% val {val['top1']:.2f}% "
                       f"({row['seconds']:.0f}s)")
    return history
