"""Server side of the split: putting received channels back in place, with or without the
feature-recovery (FR) module (eq. 9)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

QUIET_SCALE = 1e-2
"""Factor on the last FR convolution's initial weights under ``init="quiet"``: small enough
that the recovered channels start near zero, large enough that about half of them pass the
final ReLU and carry a gradient."""


class ZeroFill(nn.Module):
    """``(B, K, H, W) -> (B, C, H, W)``: received channels at their indices, zeros elsewhere.
    Equivalent to pruning the tail's input weights of the missing channels (CA_Pruned)."""

    def __init__(self, indices: list[int], channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("kept", torch.tensor(indices, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(x.shape[0], self.channels, *x.shape[2:])
        out[:, self.kept] = x
        return out


class FeatureRecovery(nn.Module):
    """FR module: rebuilds the ``C - K`` pruned channels from all ``K`` received ones.

    ``shape="1x1"``: one 1x1 convolution. ``shape="3x3"``: 3x3 conv + BN + ReLU + 1x1 conv
    (``hidden`` channels in between). A final ReLU keeps post-ReLU statistics where the split
    tensor is non-negative. Output ``(B, C, H, W)`` holds the received channels unchanged at
    their indices and the recovered ones elsewhere.

    ``init="quiet"`` scales the last convolution's initial weights and bias by
    :data:`QUIET_SCALE`, so that the recovered channels start near zero and the network
    starts near the CA_Pruned network it is built on (which sees zeros there); ``"default"``
    keeps PyTorch's initialisation, whose random recovered channels the tail must first
    learn to ignore.
    """

    def __init__(self, indices: list[int], channels: int, shape: str = "3x3",
                 hidden: int | None = None, relu: bool = True,
                 init: Literal["default", "quiet"] = "default") -> None:
        super().__init__()
        k = len(indices)
        if not 0 < k < channels:
            raise ValueError(f"FR needs 0 < kept ({k}) < channels ({channels})")
        missing = sorted(set(range(channels)) - set(indices))
        self.channels = channels
        self.register_buffer("kept", torch.tensor(indices, dtype=torch.long), persistent=False)
        self.register_buffer("missing", torch.tensor(missing, dtype=torch.long),
                             persistent=False)
        out = channels - k
        if shape == "1x1":
            layers: list[nn.Module] = [nn.Conv2d(k, out, 1)]
        elif shape == "3x3":
            mid = hidden or max(out, k)
            layers = [nn.Conv2d(k, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid),
                      nn.ReLU(inplace=True), nn.Conv2d(mid, out, 1)]
        else:
            raise ValueError(f"unknown FR shape {shape!r}: 1x1 or 3x3")
        if init == "quiet":
            last = layers[-1]
            assert isinstance(last, nn.Conv2d)
            with torch.no_grad():
                last.weight.mul_(QUIET_SCALE)
                if last.bias is not None:
                    last.bias.mul_(QUIET_SCALE)
        elif init != "default":
            raise ValueError(f"unknown FR init {init!r}: default or quiet")
        if relu:
            layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.new_empty(x.shape[0], self.channels, *x.shape[2:])
        out[:, self.kept] = x
        out[:, self.missing] = self.net(x)
        return out
