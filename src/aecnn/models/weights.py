"""Loading weights: torchvision's ImageNet weights, local files and aecnn checkpoints.

Loading is always strict. The one tensor family allowed to differ is the classifier, and
only in its class count: it is then re-initialised, and the caller is told so.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from aecnn.errors import WeightsError
from aecnn.safeio import safe_torch_load

if TYPE_CHECKING:
    from aecnn.models.spec import ModelSpec

log = logging.getLogger(__name__)


def torchvision_imagenet(name: str) -> dict[str, torch.Tensor]:
    """ImageNet state dict of torchvision model ``name``, from torch hub's cache or downloaded.

    Raises:
        WeightsError: not cached and the download failed (for example, no network).
    """
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if cache.is_file():
        return read_state_dict(cache)
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:  # urllib, ssl, hash and socket errors all end here
        raise WeightsError(
            f"ImageNet weights for {name} are not cached at {cache} and could not be "
            f"downloaded ({type(exc).__name__}: {exc}). Download {weights.url} on a machine "
            f"with network access, copy it to {cache}, or pass --weights PATH."
        ) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict, or the model weights of an aecnn checkpoint, safely.

    Uses ``torch.load(weights_only=True)``: no pickled code is ever run.
    """
    obj = safe_torch_load(path, WeightsError, "weights file")
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} holds no state dict (a mapping of names to tensors)")
    return obj


def load_state_dict_adapting_classifier(
    model: nn.Module, state: dict[str, torch.Tensor], classifier: str
) -> bool:
    """Load ``state`` strictly, replacing a classifier whose class count differs.

    Returns:
        True when the classifier was re-initialised instead of loaded.
    Raises:
        WeightsError: any other key or shape mismatch.
    """
    own = model.state_dict()
    state = dict(state)
    replaced = False
    for key in (f"{classifier}.weight", f"{classifier}.bias"):
        if key in state and key in own and state[key].shape != own[key].shape:
            state[key] = own[key]
            replaced = True
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (" ..." if len(keys) > 5 else "")

        raise WeightsError(
            "weights do not match the model: "
            + "; ".join(f"{what}: {show(keys)}" for what, keys in
                        (("missing", missing), ("unexpected", unexpected), ("shape", wrong))
                        if keys)
        )
    model.load_state_dict(state, strict=True)
    return replaced


def load_weights(model: nn.Module, spec: ModelSpec, weights: str) -> None:
    """Load ``weights`` (``"imagenet"`` or a file path) into ``model`` of ``spec``."""
    if weights == "imagenet":
        if spec.imagenet is None:
            raise WeightsError(f"no ImageNet weights are known for {spec.name}")
        state = spec.imagenet()
    else:
        state = read_state_dict(weights)
    if load_state_dict_adapting_classifier(model, state, spec.classifier):
        log.info("%s: classifier re-initialised for the new class count", spec.name)
