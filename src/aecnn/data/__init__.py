"""Datasets, deterministic splits and transforms.

Names are imported on first use, so that a device which only reads photos and split
manifests (the ONNX Runtime client) never loads torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_NAMES = {
    "resolve_root": "caltech101", "scan": "caltech101", "ImageFolderSplit": "dataset",
    "load_image": "images", "Manifest": "splits", "load_or_make": "splits",
    "make_manifest": "splits", "spread_indices": "splits", "eval_transform": "transforms",
    "resize_size": "transforms", "train_transform": "transforms",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'aecnn.data' has no attribute {name!r}")
    value = getattr(import_module(f"aecnn.data.{module}"), name)
    globals()[name] = value
    return value
