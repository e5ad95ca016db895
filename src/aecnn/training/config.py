"""Configuration of a training run (baseline and, later, every Algorithm 1 stage)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are prepared.

    ``root`` None means ``$AECNN_DATA`` or the shared default. ``manifest`` None means the
    split of ``split_seed`` (the packaged file for seed 0,
    :func:`aecnn.data.splits.default_manifest`); a path names a manifest file, created from
    ``root`` and ``split_seed`` when it does not exist yet.
    """

    root: str | None = None
    manifest: str | None = None
    split_seed: int = 0
    input_size: int = 224
    subset: int | None = None
    cache: bool = True
    workers: int = 2
    batch_size: int = 64
    eval_batch_size: int = 128


@dataclass(frozen=True)
class ModelConfig:
    name: str = "resnet50"
    weights: str = "none"


@dataclass(frozen=True)
class OptimConfig:
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    epochs: int = 30
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    # at most this many optimiser steps per epoch (the first batches of the epoch's shuffled
    # order, so a fresh random part of the training split each epoch); None: all of it
    steps_per_epoch: int | None = None


@dataclass(frozen=True)
class TrainConfig:
    """A whole baseline run. ``amp`` and ``channels_last`` apply on CUDA (channels-last also
    on CPU, where it is faster for ResNets); ``threads`` caps torch's CPU threads."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0
    out: str = "runs/baseline"
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    threads: int | None = None
