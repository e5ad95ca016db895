"""Split-point tables: what a backbone looks like to the splitter.

A backbone is described by the ordered list of its top-level *stages* (module paths, run one
after the other, with ``"flatten"`` standing for ``torch.flatten(x, 1)``) and by the split
points a user may cut it at. The generic splitter in :mod:`aecnn.models.split` needs nothing
else, so no backbone needs a subclass of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

FLATTEN = "flatten"


@dataclass(frozen=True)
class SplitPoint:
    """One place where a backbone may be cut.

    Attributes:
        name: the split point's name, the module path of the stage that emits the tensor
            (``"layer1.0"``), or ``"stem"`` for the stem.
        index: the paper's candidate index ``l`` (1 for the stem, 2 for the first block, ...).
        stages: how many stages run on the device (the head's length).
        channels: channel count ``C_l`` of the tensor that crosses the link.
        reduction: spatial stride of that tensor relative to the input image.
        module: module path of the layer that emits the tensor (the one pruning acts on).
        emitters: ``(conv, batch norm)`` module paths whose outputs add up to the split tensor
            (before a final activation or pooling that acts per channel). Pruning a channel
            physically removes its filter and BN entry from each. Empty when an identity
            shortcut also adds into the tensor: then channels can only be selected.
        signed: the tensor can be negative: no non-negative activation (ReLU) ends the stage
            that emits it (EfficientNet's blocks end in a linear projection). A decoder that
            rebuilds it (BottleNet++'s) then ends without ReLU.
    """

    name: str
    index: int
    stages: int
    channels: int
    reduction: int
    module: str
    emitters: tuple[tuple[str, str], ...] = ()
    signed: bool = False

    def spatial(self, input_size: int | tuple[int, int]) -> tuple[int, int]:
        """Height and width ``(H_l, W_l)`` of the split tensor for an input of that size.

        Every down-sampling layer of the registered backbones maps ``h`` to ``ceil(h / 2)``.
        """
        h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
        r = self.reduction
        while r > 1:
            h, w, r = -(-h // 2), -(-w // 2), r // 2
        return h, w

    def shape(self, input_size: int | tuple[int, int]) -> tuple[int, int, int]:
        """``(C_l, H_l, W_l)`` of the split tensor for one image of that input size."""
        return (self.channels, *self.spatial(input_size))

    def norm(self, model: nn.Module) -> nn.Module | None:
        """The batch norm of the first emitter in ``model``: the norm whose statistics the
        split tensor (before any final activation) follows, or ``None`` without emitters.
        Decoders that rebuild the tensor start their output norm from it."""
        return model.get_submodule(self.emitters[0][1]) if self.emitters else None


@dataclass(frozen=True)
class ModelSpec:
    """Everything the registry knows about one backbone.

    Attributes:
        name: registry name (``"resnet50"``).
        builder: ``builder(num_classes) -> nn.Module`` with randomly initialised weights.
        stages: module paths in execution order (``"flatten"`` is the flatten op).
        split_points: the candidate split points, in order.
        classifier: module path of the final linear layer (replaced when the class count
            differs from the weights').
        imagenet: loader of the ImageNet state dict (1000 classes), or ``None``.
        mean, std: input normalisation the weights expect.
    """

    name: str
    builder: Callable[[int], nn.Module]
    stages: tuple[str, ...]
    split_points: tuple[SplitPoint, ...]
    classifier: str
    imagenet: Callable[[], dict] | None = None
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def split_point(self, name: str) -> SplitPoint:
        """The split point called ``name`` (``"l1"``, ``"l2"``... name the paper's indices)."""
        from aecnn.errors import UnknownSplitPointError

        for p in self.split_points:
            if name in (p.name, f"l{p.index}"):
                return p
        known = ", ".join(p.name for p in self.split_points)
        raise UnknownSplitPointError(
            f"model {self.name!r} has no split point {name!r}; known: {known}"
        )
