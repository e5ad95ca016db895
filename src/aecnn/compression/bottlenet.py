"""BottleNet++ (Shao & Zhang, ICC Workshops 2020) without channel noise: a learned encoder on
the device shrinks the split tensor's channels by ``ratio``; a learned decoder on the server
restores them for the tail.

Follows the authors' public code (``compression_module.py``): encoder = 3x3 conv, BN,
sigmoid, so the transmitted feature lies in [0, 1] and quantises to 8 bits naturally;
decoder = 3x3 conv, BN, ReLU. Deliberate differences:

* Signed split tensors: the ReLU suits ResNet, whose stages end in one. A split tensor that
  can be negative (EfficientNet's blocks end in a linear projection: ``SplitPoint.signed``)
  is rebuilt by a decoder that ends in the batch norm (``signed=True``), whose scale and
  shift start at those of the norm that made the split tensor (:func:`match_norm`): a short
  module stage cannot move a frozen tail's input from zero mean and unit variance to the
  split tensor's own statistics (a 100-step stage at EfficientNet's blocks.3 ended at chance
  in eval mode without it). The ReLU decoder keeps the paper's initialisation.

* Noise-free: the public encoder also takes one constant input channel carrying the channel
  noise level, and a noise layer (AWGN or bit erasures) sits between encoder and decoder.
  We model an error-free link, so both are omitted: the encoder sees exactly ``C`` channels.
* The convolutions feed batch norm and so carry no bias (BN would cancel it).
* ``spatial=True``: the public code pairs its stride-2 spatial encoder (2x2 conv) with the
  stride-1 decoder conv, so the decoder's output keeps the halved size and does not fit the
  tail (its transposed conv is defined but never used). Here the encoder is a 3x3 stride-2
  conv (output ``ceil(H/2) x ceil(W/2)``, every pixel seen) and the decoder the matching 3x3
  stride-2 transposed conv, whose ``output_padding`` restores the exact size, odd or even.
"""

from __future__ import annotations

import torch
from torch import nn


def match_norm(out: nn.BatchNorm2d, norm: nn.Module | None) -> None:
    """Start ``out``'s scale and shift at ``norm``'s when ``norm`` is a batch norm of as
    many channels (the norm that made the split tensor), so that a decoder ending in ``out``
    first gives the split tensor's per-channel statistics; otherwise leave ``out`` as is."""
    if isinstance(norm, nn.BatchNorm2d) and norm.num_features == out.num_features:
        with torch.no_grad():
            out.weight.copy_(norm.weight)
            out.bias.copy_(norm.bias)


def compressed_channels(channels: int, ratio: int) -> int:
    """``C / V``: the encoder's output channels. ``ratio`` must divide ``channels``."""
    if ratio < 1 or channels % ratio:
        raise ValueError(f"ratio {ratio} does not divide the {channels} channels")
    return channels // ratio


class BottleNetEncoder(nn.Module):
    """Device side: ``(B, C, H, W) -> (B, C/V, H', W')`` with values in [0, 1].

    ``H' = H`` (``spatial=False``) or ``ceil(H / 2)`` (``spatial=True``), likewise ``W'``.
    Parameters: ``9 C C/V`` (conv) ``+ 2 C/V`` (BN).
    """

    def __init__(self, channels: int, ratio: int, spatial: bool = False) -> None:
        super().__init__()
        k = compressed_channels(channels, ratio)
        self.channels, self.ratio, self.spatial = channels, ratio, spatial
        self.conv = nn.Conv2d(channels, k, 3, stride=2 if spatial else 1, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.bn(self.conv(x)))


class BottleNetDecoder(nn.Module):
    """Server side: ``(B, C/V, H', W') -> (B, C, H, W)``, non-negative (ReLU), or signed
    (the batch norm's output) with ``signed=True`` for a split tensor that can be negative.

    With ``spatial=True`` the output is ``2H' - (H odd) x 2W' - (W odd)``: ``size``, the
    ``(H, W)`` the encoder saw, fixes that parity (only its parity matters); ``None`` means
    even sizes, ``(B, C/V, H', W') -> (B, C, 2H', 2W')``. Parameters: ``9 C C/V + 2 C``.
    """

    def __init__(self, channels: int, ratio: int, spatial: bool = False,
                 size: tuple[int, int] | None = None, signed: bool = False) -> None:
        super().__init__()
        k = compressed_channels(channels, ratio)
        self.channels, self.ratio, self.spatial, self.signed = channels, ratio, spatial, signed
        self.conv: nn.Module
        if spatial:
            h, w = size or (2, 2)
            self.conv = nn.ConvTranspose2d(k, channels, 3, stride=2, padding=1,
                                           output_padding=(1 - h % 2, 1 - w % 2), bias=False)
        else:
            self.conv = nn.Conv2d(k, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return y if self.signed else torch.relu(y)


class BottleNetHead(nn.Module):
    """The device half: the backbone's head, then the encoder.
    ``(B, 3, H_in, W_in) -> (B, C/V, H', W')``, the tensor that crosses the link.

    ``requires_grad_`` is passed on to each child rather than applied to every parameter,
    so a child that holds itself fixed (a frozen backbone) keeps its parameters frozen.
    """

    def __init__(self, backbone: nn.Module, encoder: BottleNetEncoder) -> None:
        super().__init__()
        self.backbone, self.encoder = backbone, encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.backbone(x))

    def requires_grad_(self, requires_grad: bool = True) -> BottleNetHead:
        for child in self.children():
            child.requires_grad_(requires_grad)
        return self


__all__ = ["BottleNetDecoder", "BottleNetEncoder", "BottleNetHead", "compressed_channels",
           "match_norm"]
