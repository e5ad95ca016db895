"""``aecnn train-baseline``: train a backbone on Caltech-101 and evaluate it on the test split."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from aecnn.config import save_config, to_dict
from aecnn.data import (
    ImageFolderSplit,
    Manifest,
    eval_transform,
    load_or_make,
    resize_size,
    resolve_root,
    train_transform,
)
from aecnn.models import create_model, get_spec
from aecnn.training import distributed
from aecnn.training.checkpoint import load_checkpoint
from aecnn.training.config import DataConfig, TrainConfig
from aecnn.training.loop import RunOptions, evaluate_model, fit, make_loader, resolve_device


def load_manifest(cfg: DataConfig) -> tuple[Path, Manifest]:
    """Dataset root and the (possibly subset) manifest that ``cfg`` names."""
    root = resolve_root(cfg.root)
    return root, load_or_make(cfg.manifest, root, cfg.split_seed).subset(cfg.subset)


def make_split(cfg: DataConfig, root: Path, manifest: Manifest, split: str,
               mean: tuple, std: tuple, train: bool = False,
               progress: bool = True) -> ImageFolderSplit:
    """One split as a dataset, with train or eval transforms at ``cfg.input_size``."""
    tf = (train_transform if train else eval_transform)(cfg.input_size, mean, std)
    return ImageFolderSplit(root, manifest.split(split), tf, resize_size(cfg.input_size),
                            cache=cfg.cache, progress=progress)


def baseline_split(checkpoint: str | Path, split: str, train: bool = False) -> ImageFolderSplit:
    """The ``split`` (eval transforms; ``train``: the augmenting train transforms) of the data
    a baseline checkpoint was trained on.

    Raises:
        CheckpointError: the checkpoint is missing or lacks its config.
    """
    from aecnn.config import load_config

    ckpt = load_checkpoint(checkpoint, ("config", "model_name"))
    bcfg = load_config(TrainConfig, base=ckpt["config"])
    spec = get_spec(ckpt["model_name"])
    root, manifest = load_manifest(bcfg.data)
    return make_split(bcfg.data, root, manifest, split, spec.mean, spec.std, train=train,
                      progress=False)


def run_options(cfg: TrainConfig, progress: bool) -> RunOptions:
    """How to run ``cfg``; under torchrun this joins the process group
    (:func:`aecnn.training.distributed.setup`), and only rank 0 shows progress."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = distributed.setup(resolve_device(cfg.device))
    return RunOptions(device, cfg.amp, cfg.channels_last, progress and distributed.is_main())


def train_baseline(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train, then evaluate the best-validation weights on the test split.

    Writes into ``cfg.out``: ``config.yaml``, the checkpoints, ``metrics.json`` and
    ``result.json`` (the record returned). Under torchrun every rank trains and evaluates
    its share; rank 0 writes the files.
    """
    t0 = time.perf_counter()
    opts = run_options(cfg, progress)
    out = Path(cfg.out)
    spec = get_spec(cfg.model.name)  # a bad model name fails before any data is read
    with distributed.main_first():  # rank 0 makes the manifest and image cache, if missing
        root, manifest = load_manifest(cfg.data)
        splits = {s: make_split(cfg.data, root, manifest, s, spec.mean, spec.std,
                                s == "train", opts.progress) for s in ("train", "val", "test")}
    torch.manual_seed(cfg.seed)
    model = create_model(spec.name, len(manifest.classes), cfg.model.weights)
    out.mkdir(parents=True, exist_ok=True)
    if distributed.is_main():
        save_config(cfg, out / "config.yaml")
    meta = {"model_name": spec.name, "classes": list(manifest.classes),
            "input_size": cfg.data.input_size, "manifest_digest": manifest.digest()}
    history = fit(model, splits["train"], splits["val"], cfg.optim, out, opts,
                  seed=cfg.seed, batch_size=cfg.data.batch_size,
                  eval_batch_size=cfg.data.eval_batch_size, workers=cfg.data.workers,
                  config=to_dict(cfg), meta=meta, resume=resume)
    best = load_checkpoint(out / "best.pt")
    model.load_state_dict(best["model"])
    test = evaluate_model(model, make_loader(splits["test"], cfg.data.eval_batch_size,
                                             cfg.data.workers, device=opts.device,
                                             shard=True),
                          opts, desc="test")
    record = {
        "kind": "baseline",
        "model": spec.name,
        "weights": cfg.model.weights,
        "input_size": cfg.data.input_size,
        "epochs": cfg.optim.epochs,
        "best_epoch": best["epoch"],
        "val_top1": best["val"]["top1"],
        "test_top1": test["top1"],
        "test_top5": test["top5"],
        "test_loss": test["loss"],
        "n_train": len(splits["train"]),
        "n_test": test["n"],
        "manifest_digest": manifest.digest(),
        "subset": cfg.data.subset,
        "seconds": time.perf_counter() - t0,
        "history": history,
        "config": to_dict(cfg),
    }
    record = distributed.write_record(out / "result.json", record)
    distributed.barrier()  # the record is on disk when train_baseline returns on any rank
    return record
