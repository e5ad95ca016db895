"""The image-classification dataset over one split of a manifest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset

from aecnn.data.images import DecodedCache, load_image
from aecnn.data.splits import Sample


class ImageFolderSplit(Dataset):
    """``(image, label)`` pairs of one split; ``image`` is the transform of a uint8
    ``(3, H, W)`` tensor.

    Args:
        root: dataset root (paths in ``samples`` are relative to it).
        samples: ``(relative path, label)`` pairs.
        transform: applied to the uint8 tensor.
        shorter_side: decode at this shorter side; with ``cache`` the decoded images are
            kept in a :class:`DecodedCache` shared by every epoch and worker.
    """

    def __init__(self, root: Path, samples: tuple[Sample, ...], transform: Callable | None,
                 shorter_side: int | None = None, cache: bool = False,
                 progress: bool = True) -> None:
        self.root = root
        self.samples = samples
        self.transform = transform
        self.shorter_side = shorter_side
        self.cache = (DecodedCache(root, [p for p, _ in samples], shorter_side,
                                   progress=progress)
                      if cache and shorter_side else None)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        img = (self.cache[i] if self.cache is not None
               else load_image(self.root / path, self.shorter_side))
        return (self.transform(img) if self.transform else img), label
