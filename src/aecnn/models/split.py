"""The generic splitter: cut any registered backbone at any of its split points."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from aecnn.models.spec import FLATTEN, ModelSpec, SplitPoint


def _stage_modules(model: nn.Module, stages: tuple[str, ...]) -> list[tuple[str, nn.Module]]:
    return [(path.replace(".", "_"),
             nn.Flatten(1) if path == FLATTEN else model.get_submodule(path))
            for path in stages]


def split_model(
    model: nn.Module, spec: ModelSpec, point: str | SplitPoint
) -> tuple[nn.Sequential, nn.Sequential]:
    """Cut ``model`` (built from ``spec``) into a device head and a server tail.

    The two halves share their modules (and so their parameters) with ``model``:
    ``tail(head(x))`` runs exactly the operations of ``model(x)``.

    Returns:
        ``head: (B, 3, H, W) -> (B, C_l, H_l, W_l)`` and
        ``tail: (B, C_l, H_l, W_l) -> (B, num_classes)``.
    """
    sp = point if isinstance(point, SplitPoint) else spec.split_point(point)
    modules = _stage_modules(model, spec.stages)
    return nn.Sequential(OrderedDict(modules[: sp.stages])), nn.Sequential(
        OrderedDict(modules[sp.stages:])
    )


@torch.no_grad()
def feature_shape(model: nn.Module, spec: ModelSpec, point: str, input_size: int) -> tuple:
    """Measured ``(C, H, W)`` of the split tensor for one image of ``input_size``."""
    head, _ = split_model(model, spec, point)
    was_training = model.training
    model.eval()
    shape = tuple(head(torch.zeros(1, 3, input_size, input_size)).shape[1:])
    model.train(was_training)
    return shape
