"""Model registry: ``register_model``, ``get_spec``, ``list_models`` and ``create_model``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from aecnn.errors import UnknownModelError
from aecnn.models.spec import ModelSpec

_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to the registry; a duplicate name is a programming error."""
    if spec.name in _REGISTRY:
        raise ValueError(f"a model called {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The spec of the model called ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; known models: {', '.join(list_models())}"
        ) from None


def create_model(name: str, num_classes: int = 1000, weights: str | None = "none") -> nn.Module:
    """Build a registered model, optionally loading weights.

    Args:
        name: registry name, see :func:`list_models`.
        num_classes: size of the classifier output.
        weights: ``"none"`` (random init), ``"imagenet"``, or a path to a state dict or an
            aecnn checkpoint. A classifier of another size than ``num_classes`` is replaced by
            a freshly initialised one; every other tensor must match exactly.
    """
    from aecnn.models.weights import load_weights

    spec = get_spec(name)
    model = spec.builder(num_classes)
    if weights not in (None, "none"):
        load_weights(model, spec, weights)
    return model


def model_builder(name: str) -> Callable[[int], nn.Module]:
    """The bare builder of a registered model (random init)."""
    return get_spec(name).builder
