"""Parse and format link rates and durations: ``"10Mbps"`` -> 1e7 bit/s, ``"5ms"`` -> 0.005 s.

Rates are decimal (``k`` = 1e3, ``M`` = 1e6, ``G`` = 1e9), as tc and network equipment use them.
Accepted units are bits per second (``bps``, ``bit``, ``bit/s``, ``b/s``) and bytes per second
(``Bps``, ``B/s``); note that ``B`` means bytes and ``b`` bits. ``mbit``/``kbit`` (tc's spelling)
are accepted. A bare number is bits per second.
"""

from __future__ import annotations

import math
import re

from aecnn.errors import AecnnError


class UnitError(AecnnError, ValueError):
    """A rate or duration string is malformed, or its value is out of range."""


_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_RATE_RE = re.compile(rf"^\s*{_NUMBER}\s*([kKmMgGtT]?)\s*([A-Za-z/]*)\s*$")
_DURATION_RE = re.compile(rf"^\s*{_NUMBER}\s*([A-Za-zµ]*)\s*$")
_PREFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_BIT_UNITS = {"", "bps", "bit", "bits", "bit/s", "b/s", "bitps"}
_BYTE_UNITS = {"Bps", "B/s", "Byte/s", "byte/s", "bytes/s"}
_DURATION_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "ms": 1e-3, "msec": 1e-3,
                   "us": 1e-6, "usec": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_rate(text: str | float | int) -> float:
    """Parse a rate such as ``"10Mbps"``, ``"500kbps"``, ``"1.5Gbps"``, ``"2e6"`` or ``"10mbit"``.

    Returns bits per second (> 0). Raises :class:`UnitError` for malformed or non-positive rates.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        if not isinstance(text, str):
            raise UnitError(f"rate must be a string or number, got {type(text).__name__}")
        m = _RATE_RE.match(text)
        if m is None:
            raise UnitError(f"cannot parse rate {text!r} (expected e.g. '10Mbps', '500kbps')")
        number, prefix, unit = m.groups()
        if unit in _BYTE_UNITS:
            scale = 8.0
        elif unit.lower() in _BIT_UNITS:
            scale = 1.0
        else:
            raise UnitError(f"unknown rate unit {unit!r} in {text!r} (use bps, kbps, Mbps, Gbps)")
        value = float(number) * _PREFIX[prefix.lower()] * scale
    if not math.isfinite(value) or value <= 0:
        raise UnitError(f"rate must be positive and finite, got {text!r}")
    return value


def parse_duration(text: str | float | int) -> float:
    """Parse a duration such as ``"5ms"``, ``"0.1s"`` or ``"100us"``; a bare number is seconds.

    Returns seconds (>= 0). Raises :class:`UnitError` for malformed or negative durations.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        if not isinstance(text, str):
            raise UnitError(f"duration must be a string or number, got {type(text).__name__}")
        m = _DURATION_RE.match(text)
        if m is None or m.group(2) not in _DURATION_UNITS:
            raise UnitError(f"cannot parse duration {text!r} (expected e.g. '5ms', '0.1s')")
        value = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if not math.isfinite(value) or value < 0:
        raise UnitError(f"duration must be non-negative and finite, got {text!r}")
    return value


def format_rate(bps: float) -> str:
    """Format bits per second with a decimal prefix: ``1e7`` -> ``"10 Mbps"``."""
    for scale, name in ((1e9, "Gbps"), (1e6, "Mbps"), (1e3, "kbps")):
        if abs(bps) >= scale:
            return f"{bps / scale:.4g} {name}"
    return f"{bps:.4g} bps"


def format_duration(seconds: float) -> str:
    """Format seconds with a convenient unit: ``0.0051`` -> ``"5.1 ms"``."""
    if abs(seconds) >= 1:
        return f"{seconds:.4g} s"
    if abs(seconds) >= 1e-3:
        return f"{seconds * 1e3:.4g} ms"
    return f"{seconds * 1e6:.4g} us"
