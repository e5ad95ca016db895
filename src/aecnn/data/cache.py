"""Where aecnn keeps what it can make again (decoded images, split manifests of other seeds)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$AECNN_CACHE`` or ``~/.cache/aecnn``."""
    return Path(os.environ.get("AECNN_CACHE", Path.home() / ".cache" / "aecnn"))
