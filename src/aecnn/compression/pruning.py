"""Pruning the split tensor's channels at the device (the paper's CA_Pruned encoder).

Where the split point's table lists *emitters* (the conv + BN pairs whose outputs add up to
the split tensor), pruned channels are removed physically: their filters and BN entries go,
so the device computes only the kept channels. Where an identity shortcut also adds into the
tensor, that is impossible; the head then computes every channel and selects the kept ones.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from aecnn.models.spec import ModelSpec, SplitPoint
from aecnn.models.split import split_model


class ChannelSelect(nn.Module):
    """``(B, C, H, W) -> (B, K, H, W)``: keep channels ``indices`` (no compute saved)."""

    def __init__(self, indices: list[int]) -> None:
        super().__init__()
        self.register_buffer("kept", torch.tensor(indices, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.kept]


def _set(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def _prune_conv(conv: nn.Conv2d, idx: torch.Tensor) -> nn.Conv2d:
    if conv.groups != 1:
        raise ValueError("cannot prune the outputs of a grouped convolution")
    new = nn.Conv2d(conv.in_channels, len(idx), conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, 1, conv.bias is not None, conv.padding_mode)
    with torch.no_grad():
        new.weight.copy_(conv.weight[idx])
        if conv.bias is not None:
            new.bias.copy_(conv.bias[idx])
    return new.to(conv.weight.device)


def _prune_bn(bn: nn.BatchNorm2d, idx: torch.Tensor) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(len(idx), bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(bn.weight[idx])
            new.bias.copy_(bn.bias[idx])
        if bn.track_running_stats:
            new.running_mean.copy_(bn.running_mean[idx])
            new.running_var.copy_(bn.running_var[idx])
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new.to(bn.weight.device if bn.affine else bn.running_mean.device)


def pruned_head(model: nn.Module, spec: ModelSpec, point: str | SplitPoint,
                indices: list[int]) -> tuple[nn.Sequential, bool]:
    """A device head that outputs only the channels ``indices`` of the split tensor.

    Works on a deep copy: ``model`` is unchanged.

    Returns:
        ``(head, physical)``: ``head: (B, 3, H, W) -> (B, K, H_l, W_l)``; ``physical`` is
        False when the channels are selected after computing all of them.
    """
    sp = point if isinstance(point, SplitPoint) else spec.split_point(point)
    if sorted(set(indices)) != list(indices) or not indices or indices[-1] >= sp.channels:
        raise ValueError("indices must be increasing, unique and below the channel count")
    work = copy.deepcopy(model)
    idx = torch.tensor(indices, dtype=torch.long)
    if sp.emitters:
        for conv_path, bn_path in sp.emitters:
            _set(work, conv_path, _prune_conv(work.get_submodule(conv_path), idx))
            _set(work, bn_path, _prune_bn(work.get_submodule(bn_path), idx))
        head, _ = split_model(work, spec, sp)
        return head, True
    head, _ = split_model(work, spec, sp)
    head.add_module("select", ChannelSelect(list(indices)))
    return head, False
