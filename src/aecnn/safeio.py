"""Reading torch files safely: ``weights_only=True`` and one clear error for every failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def safe_torch_load(path: str | Path, error: type[Exception], what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; no pickled code is ever run.

    Raises:
        error: the file is missing, unreadable or corrupt (message names ``what``).
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise error(f"{what} {path} is corrupt or unreadable: {first}") from None
