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
        raise error(f"{what} {path} is corrupt or unreadable: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    """Why ``torch.load`` failed, in a few words: PyTorch's own message for a file that is
    not a torch archive, and for a weights-only refusal the object it refused (its long
    advice to set ``weights_only=False`` would run foreign code, so it is left out)."""
    text = str(exc)
    if isinstance(exc, OSError) and not text.startswith("Weights only"):
        return exc.strerror or type(exc).__name__
    if text.startswith("Weights only load failed"):
        detail = next((ln.strip() for ln in text.splitlines()
                       if ln.strip().startswith(("WeightsUnpickler error:", "Unsupported"))), "")
        detail = detail.removeprefix("WeightsUnpickler error:").strip()
        if detail.startswith("Unsupported global: GLOBAL "):
            code = detail.removeprefix("Unsupported global: GLOBAL ").split(" ")[0]
            return f"it refers to code ({code}), which is never loaded"
        return "not a PyTorch file (truncated or of another format)"
    first = (text.splitlines() or [type(exc).__name__])[0]
    if "failed finding central directory" in first or "invalid load key" in first:
        return "not a PyTorch file (truncated or of another format)"
    return first[:160]
