"""Backbones, their split-point tables, the registry and the generic splitter."""

from aecnn.models import efficientnet_lite as _efficientnet_lite  # noqa: F401  (registers)
from aecnn.models import resnet as _resnet  # noqa: F401  (registers)
from aecnn.models.registry import create_model, get_spec, list_models, register_model
from aecnn.models.spec import ModelSpec, SplitPoint
from aecnn.models.split import feature_shape, split_model

__all__ = ["ModelSpec", "SplitPoint", "create_model", "feature_shape", "get_spec",
           "list_models", "register_model", "split_model"]
