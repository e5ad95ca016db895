"""aecnn: device-edge co-inference of CNNs with attention-based feature compression.

The public API, by job (each name is imported on first use, so ``import aecnn`` is cheap and a
device that only deploys never loads the training code):

* Backbones and split points: :func:`list_models`, :func:`get_spec`, :func:`create_model`,
  :func:`split_model`.
* Training: :class:`TrainConfig` + :func:`train_baseline`; Algorithm 1 (CA, importance,
  pruning, feature recovery) with :class:`AecnnConfig` + :func:`train_aecnn`; BottleNet++ with
  :class:`BottleNetConfig` + :func:`train_bottlenet`; :func:`load_config` reads any of these
  from YAML and ``key=value`` overrides.
* The deployable network: :class:`SplitNetwork` (``head`` on the device, ``server`` on the
  edge, ``encode``/``decode`` for one image), :class:`SplitMeta`, :func:`export_network`
  (training record -> file), :func:`save_network`, :func:`load_network`.
* The codec and wire format: :class:`FeatureCodec`, :class:`Packet`, :func:`decode_packet`,
  :class:`QuantSpec`.
* Runtime: :class:`EdgeServer` / :class:`ServerConfig` (asyncio), :class:`BackgroundServer`
  (a server on a thread), :class:`Connection` and :class:`CoInference` (the device client),
  :class:`LocalComputing`, :class:`FullOffloading`.
* :class:`AecnnError`: the base of every error a user can cause.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from aecnn.errors import AecnnError
from aecnn.version import __version__

_API = {
    "list_models": "aecnn.models", "get_spec": "aecnn.models", "create_model": "aecnn.models",
    "split_model": "aecnn.models",
    "load_config": "aecnn.config",
    "TrainConfig": "aecnn.training", "train_baseline": "aecnn.training",
    "AecnnConfig": "aecnn.training.aecnn", "StageBudget": "aecnn.training.aecnn",
    "train_aecnn": "aecnn.training.aecnn",
    "BottleNetConfig": "aecnn.training.bottlenet", "train_bottlenet": "aecnn.training.bottlenet",
    "export_network": ("aecnn.training.export", "export_from"),
    "SplitNetwork": "aecnn.core", "SplitMeta": "aecnn.core", "save_network": "aecnn.core",
    "load_network": "aecnn.core",
    "FeatureCodec": "aecnn.compression", "Packet": "aecnn.compression",
    "decode_packet": "aecnn.compression", "QuantSpec": "aecnn.compression",
    "EdgeServer": "aecnn.runtime.server", "ServerConfig": "aecnn.runtime.server",
    "BackgroundServer": "aecnn.runtime.background",
    "Connection": "aecnn.runtime.client", "CoInference": "aecnn.runtime.client",
    "LocalComputing": "aecnn.runtime.client", "FullOffloading": "aecnn.runtime.client",
}

__all__ = ["AecnnError", "__version__", *_API]


_PACKAGES = ("models", "data", "compression", "core", "training", "runtime", "netem",
             "evaluation", "benchmarks", "cli")


def __getattr__(name: str) -> Any:
    """Import a public name, or one of the subpackages, on first use (PEP 562)."""
    if name in _PACKAGES:
        return import_module(f"aecnn.{name}")
    where = _API.get(name)
    if where is None:
        raise AttributeError(f"module 'aecnn' has no attribute {name!r}")
    module, attr = (where, name) if isinstance(where, str) else where
    value = getattr(import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
