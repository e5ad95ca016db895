"""``aecnn evaluate``: top-1/top-5 of a checkpoint on a split of its manifest."""

from __future__ import annotations

import dataclasses

from aecnn.config import load_config
from aecnn.models import get_spec
from aecnn.training.baseline import load_manifest, make_split, run_options
from aecnn.training.checkpoint import load_checkpoint
from aecnn.training.config import TrainConfig
from aecnn.training.loop import evaluate_model, make_loader


def evaluate_checkpoint(path: str, split: str = "test", data_root: str | None = None,
                        progress: bool = True) -> dict:
    """Evaluate the checkpoint at ``path`` on ``split`` of the manifest it was trained with."""
    ckpt = load_checkpoint(path, ("model", "config", "classes", "model_name"))
    cfg = load_config(TrainConfig, base=ckpt["config"])
    if data_root is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=data_root))
    from aecnn.models import create_model

    spec = get_spec(ckpt["model_name"])
    model = create_model(spec.name, len(ckpt["classes"]))
    model.load_state_dict(ckpt["model"])
    opts = run_options(cfg, progress)
    model.to(opts.device)
    root, manifest = load_manifest(cfg.data)
    ds = make_split(cfg.data, root, manifest, split, spec.mean, spec.std, progress=progress)
    metrics = evaluate_model(model, make_loader(ds, cfg.data.eval_batch_size, cfg.data.workers,
                                                device=opts.device, shard=True),
                             opts, desc=split)
    return {"checkpoint": str(path), "model": spec.name, "split": split,
            "input_size": cfg.data.input_size, **metrics}
