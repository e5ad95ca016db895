"""A fixed context model for tiny payloads: the ``prior`` coder (wire coder 5).

The ``context`` coder (4) sends its ``Kc + 1`` histograms in every payload. At the ratios
where compression matters most (a few hundred 2-bit symbols per image), those histograms
cost more than the context modelling saves, so ``auto`` rarely picks it. A
:class:`ContextPrior` is the same lattice context model with its frequency tables fitted
once, on training-set tensors of one network through one quantisation grid, and held by
both ends (in the variant file, next to the weights) instead of travelling: the payload is
a 2-byte fingerprint of the tables and the rANS stream of coder 4, nothing else.

Every entry of a prior's tables is at least 1 (counts are smoothed before they are
normalised), so any symbol array of its number of levels can be coded, whatever it holds;
a tensor unlike the training data only costs more bytes.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from aecnn.compression import lattice
from aecnn.compression.errors import PayloadError
from aecnn.errors import AecnnError

FORMAT = "aecnn-context-prior/1"
FINGERPRINT_BYTES = 2
SMOOTHING = 1  # added to every (context, symbol) count before normalisation


class PriorError(AecnnError):
    """A context prior's file or table is malformed, or does not suit the tensor."""


def stream_of(data: bytes, fingerprint: int) -> bytes:
    """The rANS stream of a prior-coded payload (the bytes after its fingerprint).

    Raises:
        PayloadError: the payload is too short, or was coded with a prior whose fingerprint
            is not ``fingerprint``.
    """
    if len(data) < FINGERPRINT_BYTES:
        raise PayloadError("prior-coded payload ends before its fingerprint")
    got = int.from_bytes(data[:FINGERPRINT_BYTES], "little")
    if got != fingerprint:
        raise PayloadError(f"payload was coded with context prior {got:04x}; this end "
                           f"holds prior {fingerprint:04x}")
    return bytes(data[FINGERPRINT_BYTES:])


def check_status(status: int) -> None:
    """Raise a :class:`PayloadError` for a decoder status other than ``lattice.OK``."""
    if status != lattice.OK:
        raise PayloadError("prior-coded payload does not decode: "
                           + {lattice.TRUNCATED: "the rANS stream ends early",
                              lattice.TRAILING: "the rANS stream does not end in its "
                                                "initial state"}.get(status, "corrupt"))


def frozen_tables(freq: np.ndarray, what: str) -> np.ndarray:
    """``freq`` as a read-only int64 array, after checking that every entry is at least 1
    and every row sums to :data:`lattice.TOTAL` (what the rANS coder needs of a prior's
    tables); otherwise a :class:`PriorError` that names ``what`` (e.g. "raster prior")."""
    f = np.asarray(freq)
    if f.min() < 1 or np.any(f.sum(axis=1) != lattice.TOTAL):
        raise PriorError(f"every row of a {what} must hold entries >= 1 that sum "
                         f"to {lattice.TOTAL}")
    f = f.astype(np.int64)
    f.flags.writeable = False
    return f


P = TypeVar("P")


def from_stored(d: object, fmt: str, what: str, build: Callable[[dict], P]) -> P:
    """The prior ``build(d)`` makes of ``d``, a prior's stored form (``to_dict``) of format
    ``fmt``. A ``d`` of another format, one that ``build`` cannot read (a key missing, a
    value of the wrong type) and one whose tables do not match its fingerprint are each a
    :class:`PriorError` that names ``what`` (e.g. "raster prior")."""
    if not isinstance(d, dict) or d.get("format") != fmt:
        raise PriorError(f"not a {what} (format {fmt!r} expected)")
    try:
        prior = build(d)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise PriorError(f"{what} is malformed: {exc!r}") from None
    if "fingerprint" in d and d["fingerprint"] != prior.fingerprint_hex:
        raise PriorError(f"{what}'s tables do not match its fingerprint")
    return prior


@dataclass(frozen=True, eq=False)
class ContextPrior:
    """Frequency tables ``freq`` of shape ``(Kc + 1, levels)`` (int64, every row summing to
    :data:`lattice.TOTAL`, every entry >= 1), rows ordered as coder 4's models: contexts
    ``0 .. Kc - 1``, then the coarse level.

    ``images`` is how many tensors it was fitted on (for the record; it plays no part in
    coding)."""

    levels: int
    freq: np.ndarray
    images: int = 0
    model = "lattice"

    def __post_init__(self) -> None:
        rows = lattice.num_contexts(self.levels) + 1 if 2 <= self.levels <= 256 else -1
        f = np.asarray(self.freq)
        if rows < 0 or f.shape != (rows, self.levels):
            raise PriorError(f"a {self.levels}-level context prior needs a table of "
                             f"{rows} x {self.levels}, not {'x'.join(map(str, f.shape))}")
        f = frozen_tables(f, "context prior")
        object.__setattr__(self, "freq", f)
        # what every encode and decode needs of the tables, computed once
        object.__setattr__(self, "_enc", lattice.encoder_tables(f))
        data = bytes([self.levels - 1]) + f.astype("<u2").tobytes()
        object.__setattr__(self, "_fingerprint", zlib.crc32(data) & 0xFFFF)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, symbols: Iterable[np.ndarray], levels: int) -> ContextPrior:
        """Fit on uint8 symbol arrays ``(C, H, W)`` with values below ``levels`` (their
        shapes may differ): every (context, symbol) pair counted over all of them, plus
        :data:`SMOOTHING`, normalised as coder 4 normalises a histogram."""
        if not 2 <= levels <= 256:
            raise PriorError(f"a context prior needs 2 to 256 levels, not {levels}")
        counts = np.full((lattice.num_contexts(levels) + 1, levels), SMOOTHING, np.int64)
        n = 0
        for s in symbols:
            if s.ndim != 3 or (s.size and int(s.max()) >= levels):
                raise PriorError(f"context prior fit: a symbol array of shape {s.shape} "
                                 f"is not (C, H, W) with values below {levels}")
            counts += lattice.walk(np.ascontiguousarray(s, np.uint8), levels)[1]
            n += 1
        if n == 0:
            raise PriorError("context prior fit: no tensors to fit on")
        return cls(levels, lattice.normalise(counts), n)

    @property
    def fingerprint(self) -> int:
        """16 bits of the CRC32 of the levels and the tables: what a payload carries so that
        a decoder holding another prior refuses it instead of decoding garbage."""
        return self._fingerprint

    @property
    def fingerprint_hex(self) -> str:
        return f"{self.fingerprint:04x}"

    def suits(self, shape: tuple[int, ...]) -> bool:
        """Whether it can code a symbol array of this shape: any ``(C, H, W)``."""
        return len(shape) == 3

    # ------------------------------------------------------------------ coding
    def bits(self, symbols: np.ndarray) -> float:
        """Size of :meth:`encode`'s payload in bits, without coding: the fingerprint, the
        symbols' information under the tables and the rANS flush (rANS comes within about
        1 % of it)."""
        keys, _ = lattice.walk(self._check(symbols), self.levels)
        info = -np.log2(self.freq.ravel()[keys] / lattice.TOTAL).sum()
        return 8 * FINGERPRINT_BYTES + float(info) + 32

    def encode(self, symbols: np.ndarray) -> bytes:
        """The fingerprint (u16, little-endian) and coder 4's rANS stream of ``symbols``
        ``(C, H, W)`` under these tables."""
        keys, _ = lattice.walk(self._check(symbols), self.levels)
        stream = lattice.rans_encode(keys, self.freq, self._enc)
        return self.fingerprint.to_bytes(2, "little") + stream

    def decode(self, data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
        """Symbols of ``shape`` from :meth:`encode`'s payload.

        Raises:
            PayloadError: the payload was coded with another prior, or does not decode.
        """
        out, status = lattice.decode(stream_of(data, self.fingerprint), shape, self.levels,
                                     self.freq)
        check_status(status)
        return out

    def _check(self, symbols: np.ndarray) -> np.ndarray:
        if symbols.ndim != 3 or (symbols.size and int(symbols.max()) >= self.levels):
            raise PriorError(f"a {self.levels}-level context prior cannot code symbols of "
                             f"shape {symbols.shape} up to {int(symbols.max(initial=0))}")
        return np.ascontiguousarray(symbols, np.uint8)

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict:
        """JSON-able form (what a variant file and a ``.json`` file hold)."""
        return {"format": FORMAT, "levels": self.levels, "images": self.images,
                "fingerprint": self.fingerprint_hex, "freq": self.freq.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> ContextPrior:
        """Read :meth:`to_dict`'s form back; a malformed one is a :class:`PriorError`."""
        return from_stored(d, FORMAT, "context prior", lambda d: cls(
            int(d["levels"]), np.asarray(d["freq"], dtype=np.int64), int(d.get("images", 0))))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), separators=(",", ":")))

    @classmethod
    def load(cls, path: Path) -> ContextPrior:
        """Raises :class:`PriorError` for a missing, unreadable or malformed file."""
        try:
            d = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise PriorError(f"no context prior at {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PriorError(f"cannot read context prior {path}: {exc}") from None
        return cls.from_dict(d)
