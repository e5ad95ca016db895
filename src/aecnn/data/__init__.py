"""Datasets, deterministic splits and transforms."""

from aecnn.data.caltech101 import resolve_root, scan
from aecnn.data.dataset import ImageFolderSplit
from aecnn.data.images import load_image
from aecnn.data.splits import Manifest, load_or_make, make_manifest, spread_indices
from aecnn.data.transforms import eval_transform, resize_size, train_transform

__all__ = ["ImageFolderSplit", "Manifest", "eval_transform", "load_image", "load_or_make",
           "make_manifest", "resize_size", "resolve_root", "scan", "spread_indices",
           "train_transform"]
