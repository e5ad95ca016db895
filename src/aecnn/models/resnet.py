"""torchvision ResNets with their split-point tables (the paper's candidate points)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torchvision
from torch import nn

from aecnn.models.registry import register_model
from aecnn.models.spec import FLATTEN, ModelSpec, SplitPoint
from aecnn.models.weights import torchvision_imagenet

_BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3),
           "resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}
_EXPANSION = {"resnet18": 1, "resnet34": 1, "resnet50": 4, "resnet101": 4}
_LAST = {1: ("conv2", "bn2"), 4: ("conv3", "bn3")}  # last conv/BN of a BasicBlock / Bottleneck


def _table(name: str) -> tuple[tuple[str, ...], tuple[SplitPoint, ...]]:
    stages = ["conv1", "bn1", "relu", "maxpool"]
    points = [SplitPoint("stem", 1, 4, 64, 4, "conv1", (("conv1", "bn1"),))]
    expansion = _EXPANSION[name]
    for layer, (blocks, width, reduction) in enumerate(
        zip(_BLOCKS[name], (64, 128, 256, 512), (4, 8, 16, 32), strict=True), start=1
    ):
        for b in range(blocks):
            path = f"layer{layer}.{b}"
            stages.append(path)
            conv, bn = _LAST[expansion]
            # torchvision gives a block a projection shortcut when it changes the width or
            # stride: the first block of every layer but layer1 of ResNet-18/34.
            projected = b == 0 and (layer > 1 or expansion == 4)
            emitters = ((f"{path}.{conv}", f"{path}.{bn}"),
                        (f"{path}.downsample.0", f"{path}.downsample.1")) if projected else ()
            points.append(SplitPoint(path, len(points) + 1, len(stages), width * expansion,
                                     reduction, f"{path}.{conv}", emitters))
    stages += ["avgpool", FLATTEN, "fc"]
    return tuple(stages), tuple(points)


def _builder(name: str) -> Callable[[int], nn.Module]:
    fn = getattr(torchvision.models, name)
    return lambda num_classes: fn(weights=None, num_classes=num_classes)


for _name in _BLOCKS:
    _stages, _points = _table(_name)
    register_model(ModelSpec(
        name=_name,
        builder=_builder(_name),
        stages=_stages,
        split_points=_points,
        classifier="fc",
        imagenet=partial(torchvision_imagenet, _name),
    ))
