"""JSON records: every result file carries its command, machine and time."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any


def machine_info() -> dict[str, Any]:
    """What ran a result: host, CPU count, Python, torch and accelerator (``torch`` None on a
    device that runs without it, e.g. the ONNX Runtime client)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        import torch
    except ImportError:
        return {**info, "torch": None}
    info.update(torch_threads=torch.get_num_threads(), torch=torch.__version__)
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def command_line() -> str:
    """The command that is running, as a user would retype it."""
    prog = Path(sys.argv[0]).name
    return shlex.join(["aecnn" if prog in ("aecnn", "__main__.py") else prog, *sys.argv[1:]])


def write_record(path: str | Path, record: dict[str, Any]) -> dict[str, Any]:
    """Write ``record`` plus ``command``, ``machine`` and ``created`` as indented JSON."""
    full = {
        **record,
        "command": record.get("command", command_line()),
        "machine": machine_info(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(full, indent=2) + "\n")
    return full
