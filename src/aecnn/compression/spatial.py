"""Halving the split tensor's height and width for channel pruning (``spatial: true``).

Beyond the paper: AECNN sends the kept channels at the split point's full resolution, while
BottleNet++'s stride-2 variant also halves height and width. With ``spatial`` the device
averages each kept channel over 2x2 blocks (:func:`halved`) and the server first brings the
received channels back to the split point's size by nearest-neighbour upsampling
(:class:`Upsampled`), then runs the usual bridge (zero fill or FR). So the two methods can be
compared at the same number of elements sent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def halved(head: nn.Module) -> nn.Sequential:
    """``head`` followed by a 2x2 average pool: ``(B, 3, S, S) -> (B, K, ceil(H/2),
    ceil(W/2))`` where ``head`` gives ``(B, K, H, W)`` (a last odd row or column is averaged
    over what it has)."""
    return nn.Sequential(head, nn.AvgPool2d(2, ceil_mode=True))


class Upsampled(nn.Module):
    """``(B, K, h, w) -> bridge((B, K, H, W))``: nearest-neighbour upsampling to the split
    point's ``size = (H, W)``, then ``bridge`` (which puts channels back, or recovers them)."""

    def __init__(self, bridge: nn.Module, size: tuple[int, int]) -> None:
        super().__init__()
        self.bridge = bridge
        self.size = (int(size[0]), int(size[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bridge(F.interpolate(x, size=self.size, mode="nearest"))


__all__ = ["Upsampled", "halved"]
