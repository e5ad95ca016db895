"""Standard transforms on uint8 ``(3, H, W)`` tensors: train (random-resized crop + flip)
and eval (resize + centre crop), at any input size."""

from __future__ import annotations

import torch
from torchvision.transforms import v2 as T


def resize_size(input_size: int) -> int:
    """Shorter side before the centre crop: the usual 256/224 ratio."""
    return round(input_size * 256 / 224)


def train_transform(input_size: int, mean: tuple, std: tuple) -> T.Compose:
    """``uint8 (3, H, W) -> float32 (3, input_size, input_size)``, augmented."""
    return T.Compose([
        T.RandomResizedCrop(input_size, antialias=True),
        T.RandomHorizontalFlip(),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize(mean, std),
    ])


def eval_transform(input_size: int, mean: tuple, std: tuple) -> T.Compose:
    """``uint8 (3, H, W) -> float32 (3, input_size, input_size)``, deterministic."""
    return T.Compose([
        T.Resize(resize_size(input_size), antialias=True),
        T.CenterCrop(input_size),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize(mean, std),
    ])
