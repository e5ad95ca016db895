"""The one type every other part shares: a split network (device head, encoder, server
decoder, tail) with its metadata, and how to save and load it."""

from aecnn.core.split import (
           BRIDGES,
           SplitMeta,
           SplitNetwork,
           VariantError,
           fit_head_priors,
           head_symbols,
           load_network,
           save_network,
)

__all__ = ["BRIDGES", "SplitMeta", "SplitNetwork", "VariantError", "fit_head_priors",
           "head_symbols", "load_network", "save_network"]
