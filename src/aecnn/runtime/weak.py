"""Making this machine play a weaker device: a CPU quota by cgroup (v2 or v1 ``cpu``).

``limit_cpu(0.5)`` moves the calling process into a fresh cgroup whose CFS quota is half a
CPU. Combined with one torch thread this is a stated, reproducible stand-in for the paper's
Raspberry Pi 4B (which it is not: the point is a fixed, reported device speed).
"""

from __future__ import annotations

import atexit
import contextlib
import os
from pathlib import Path

from aecnn.errors import AecnnError

PERIOD_US = 100_000


class CpuLimitError(AecnnError):
    """The CPU quota cannot be set here (no writable cgroup, not root)."""


def _v2_root() -> Path | None:
    for p in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        if (p / "cgroup.controllers").is_file() and "cpu" in (
                p / "cgroup.controllers").read_text().split():
            return p
    return None


def limit_cpu(cpus: float, name: str | None = None) -> Path:
    """Cap this process (and its threads) at ``cpus`` CPUs; returns the cgroup folder."""
    if not 0.01 <= cpus <= os.cpu_count():
        raise CpuLimitError(f"CPU quota {cpus} outside 0.01..{os.cpu_count()}")
    name = name or f"aecnn-device-{os.getpid()}"
    quota = int(cpus * PERIOD_US)
    try:
        v2 = _v2_root()
        if v2 is not None:
            group = v2 / name
            group.mkdir(exist_ok=True)
            (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        else:
            group = Path("/sys/fs/cgroup/cpu") / name
            group.mkdir(exist_ok=True)
            (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        (group / "cgroup.procs").write_text(str(os.getpid()))
    except OSError as exc:
        raise CpuLimitError(f"cannot set a CPU quota ({exc.strerror or exc}); it needs root "
                            "and a writable cgroup cpu controller") from None

    def _remove() -> None:  # the group can only go once we have left it
        with contextlib.suppress(OSError):
            (group.parent / "cgroup.procs").write_text(str(os.getpid()))
            group.rmdir()

    atexit.register(_remove)
    return group
