"""Context priors of either model, as one type: fit, read and name them.

A prior is a context model with frequency tables fitted once on training tensors of one
network through one grid and held by both ends (wire coder 5). Two models exist:
``lattice`` (:class:`~aecnn.compression.prior.ContextPrior`, coder 4's contexts) and
``raster`` (:class:`~aecnn.compression.raster.RasterPrior`, per-channel tables over causal
neighbours, the previous channel's included). A payload names its prior by fingerprint
only, so the decoder's copy says which model it is.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from aecnn.compression.prior import FORMAT as LATTICE_FORMAT
from aecnn.compression.prior import ContextPrior, PriorError
from aecnn.compression.raster import FORMAT as RASTER_FORMAT
from aecnn.compression.raster import RasterPrior

Prior = ContextPrior | RasterPrior
PRIOR_MODELS = ("lattice", "raster")


def check_model(model: str) -> str:
    """``model`` if it names a prior model; else a :class:`PriorError` listing them."""
    if model not in PRIOR_MODELS:
        raise PriorError(f"unknown context prior model {model!r}; choose "
                         + " or ".join(PRIOR_MODELS))
    return model


def fit_prior(symbols: Iterable[np.ndarray], levels: int, model: str = "lattice") -> Prior:
    """A ``model`` prior of ``levels`` levels fitted on uint8 symbol arrays ``(C, H, W)``."""
    if check_model(model) == "raster":
        return RasterPrior.fit(symbols, levels)
    return ContextPrior.fit(symbols, levels)


def prior_from_dict(d: dict) -> Prior:
    """A prior from its ``to_dict`` form, of whichever model its ``format`` names."""
    fmt = d.get("format") if isinstance(d, dict) else None
    if fmt == RASTER_FORMAT:
        return RasterPrior.from_dict(d)
    if fmt == LATTICE_FORMAT:
        return ContextPrior.from_dict(d)
    raise PriorError(f"not a context prior (format {LATTICE_FORMAT!r} or {RASTER_FORMAT!r} "
                     "expected)")
