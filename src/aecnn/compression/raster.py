"""A raster context prior: per-channel tables conditioned on four causal neighbours.

The lattice prior (:class:`~aecnn.compression.prior.ContextPrior`) conditions each symbol
on the spread of four neighbours within its channel, with one set of tables for all
channels. On the small half-size codes of the stem (8 channels of 8 x 8 two-bit symbols)
most of what predicts a symbol lies elsewhere: in which channel it is (channels differ in
their statistics), and in the same position of the previous channel. A
:class:`RasterPrior` visits the symbols in C order (channel, row, column) and gives each the
context of its **left**, **upper**, **upper-right** neighbours and the **same position in
the previous channel**, each reduced to one of ``B = min(L, 4)`` buckets
(``bucket(s) = s * B // L``) or a fifth value ``B`` when it lies outside the tensor. With
``per_channel`` every channel has its own ``(B + 1)^4`` tables; without, all share them
(chosen at fitting time so that the tables hold at most :data:`MAX_ENTRIES` entries).

Like the lattice prior it is fitted once on training tensors of one network through one
grid, held by both ends, and coded as wire coder 5: a 2-byte fingerprint, then the rANS
stream (:mod:`aecnn.compression.lattice`'s coder) of the symbols in visiting order. Both
models are written out in ``docs/wire-format.md``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numba
import numpy as np

from aecnn.compression import lattice
from aecnn.compression.errors import PayloadError
from aecnn.compression.prior import (
    FINGERPRINT_BYTES,
    SMOOTHING,
    PriorError,
    check_status,
    from_stored,
    frozen_tables,
    stream_of,
)

FORMAT = "aecnn-raster-prior/1"
MAX_BUCKETS = 4
NEIGHBOURS = 4            # left, up, up-right, previous channel
MAX_ENTRIES = 1 << 18     # most table entries a fitted prior may hold


def buckets_of(levels: int) -> int:
    """Buckets ``B`` a neighbour's symbol is reduced to: ``min(levels, 4)``."""
    return min(levels, MAX_BUCKETS)


def contexts_per_table(levels: int) -> int:
    """``(B + 1) ** 4`` contexts of one channel's (or the shared) tables."""
    return (buckets_of(levels) + 1) ** NEIGHBOURS


@numba.njit(cache=True, nogil=True, inline="always")
def _context(buf, ch, i, j, h, w, levels, nb):
    """Context ``((left * K + up) * K + up_right) * K + previous_channel`` of position
    ``(ch, i, j)`` of the ``(C, H, W)`` array ``buf`` (``K = nb + 1``; a neighbour outside
    the tensor counts as bucket ``nb``)."""
    k = nb + 1
    left = np.int64(buf[ch, i, j - 1]) * nb // levels if j > 0 else nb
    up = np.int64(buf[ch, i - 1, j]) * nb // levels if i > 0 else nb
    ur = np.int64(buf[ch, i - 1, j + 1]) * nb // levels if i > 0 and j + 1 < w else nb
    pc = np.int64(buf[ch - 1, i, j]) * nb // levels if ch > 0 else nb
    return ((left * k + up) * k + ur) * k + pc


@numba.njit(cache=True, nogil=True)
def _walk(sym, levels, nb, per_channel, keys, counts):
    """``keys[n] = row * levels + symbol`` of every position in C order, with ``row`` the
    table of the position's channel (or table 0) and context, and the count of each key in
    ``counts`` (an empty ``counts``: not counted)."""
    count = len(counts) > 0
    c, h, w = sym.shape
    per_table = (nb + 1) ** 4
    n = 0
    for ch in range(c):
        base = ch * per_table if per_channel else 0
        for i in range(h):
            for j in range(w):
                key = (base + _context(sym, ch, i, j, h, w, levels, nb)) * levels + sym[ch, i, j]
                keys[n] = key
                if count:
                    counts[key] += 1
                n += 1


@numba.njit(cache=True, nogil=True)
def _decode(data, out, levels, nb, per_channel, freq, cum):
    """Decode ``data`` (the rANS stream) into ``out`` ``(C, H, W)`` in C order; returns a
    status code of :mod:`~aecnn.compression.lattice`. Every row of ``freq`` is coded
    (entries >= 1). Never reads outside ``data``."""
    c, h, w = out.shape
    per_table = (nb + 1) ** 4
    n_data = len(data)
    if n_data < 4:
        return lattice.TRUNCATED
    x = np.int64(0)
    for pos in range(4):
        x = (x << 8) | np.int64(data[pos])
    pos = 4
    for ch in range(c):
        base = ch * per_table if per_channel else 0
        for i in range(h):
            for j in range(w):
                m = base + _context(out, ch, i, j, h, w, levels, nb)
                slot = x & (lattice.TOTAL - 1)
                s = 0
                while cum[m, s + 1] <= slot:
                    s += 1
                x = freq[m, s] * (x >> lattice.PREC) + slot - cum[m, s]
                while x < lattice.RANS_L:
                    if pos >= n_data:
                        return lattice.TRUNCATED
                    x = (x << 8) | np.int64(data[pos])
                    pos += 1
                out[ch, i, j] = s
    if x != lattice.RANS_L or pos != n_data:
        return lattice.TRAILING
    return lattice.OK


@dataclass(frozen=True, eq=False)
class RasterPrior:
    """Frequency tables ``freq`` of shape ``(T * (B + 1)^4, levels)`` (int64, every row
    summing to :data:`lattice.TOTAL`, every entry >= 1): ``T = channels`` tables when
    ``per_channel``, else one, rows ordered as ``table * (B + 1)^4 + context``.

    ``channels`` is the channel count of the tensors it was fitted on: a per-channel prior
    codes only tensors with that many channels, a shared one any. ``images`` is how many
    tensors it was fitted on (for the record)."""

    levels: int
    channels: int
    per_channel: bool
    freq: np.ndarray
    images: int = 0
    model = "raster"

    def __post_init__(self) -> None:
        if not 2 <= self.levels <= 256 or not 1 <= self.channels <= 65535:
            raise PriorError(f"a raster prior needs 2 to 256 levels and 1 to 65535 channels, "
                             f"not {self.levels} and {self.channels}")
        rows = (self.channels if self.per_channel else 1) * contexts_per_table(self.levels)
        f = np.asarray(self.freq)
        if f.shape != (rows, self.levels):
            raise PriorError(f"a {self.levels}-level raster prior of {self.channels} channels "
                             f"({'per-channel' if self.per_channel else 'shared'} tables) "
                             f"needs a table of {rows} x {self.levels}, not "
                             f"{'x'.join(map(str, f.shape))}")
        f = frozen_tables(f, "raster prior")
        object.__setattr__(self, "freq", f)
        # what coding needs of the tables, computed once: they may hold 2**18 entries
        object.__setattr__(self, "_cum", lattice.cumulative(f))
        object.__setattr__(self, "_enc", lattice.encoder_tables(f))
        data = (b"raster" + bytes([self.levels - 1, int(self.per_channel)])
                + self.channels.to_bytes(2, "little") + f.astype("<u2").tobytes())
        object.__setattr__(self, "_fingerprint", zlib.crc32(data) & 0xFFFF)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, symbols: Iterable[np.ndarray], levels: int,
            per_channel: bool | None = None) -> RasterPrior:
        """Fit on uint8 symbol arrays ``(C, H, W)`` with values below ``levels`` (the same
        ``C`` for all; ``H`` and ``W`` may differ): every (table, context, symbol) count,
        plus :data:`~aecnn.compression.prior.SMOOTHING`, normalised as coder 4 normalises a
        histogram. ``per_channel`` (default: when the tables stay within
        :data:`MAX_ENTRIES` entries) gives every channel its own tables."""
        if not 2 <= levels <= 256:
            raise PriorError(f"a raster prior needs 2 to 256 levels, not {levels}")
        per_table = contexts_per_table(levels)
        counts, channels, n = None, 0, 0
        for s in symbols:
            if s.ndim != 3 or (s.size and int(s.max()) >= levels):
                raise PriorError(f"raster prior fit: a symbol array of shape {s.shape} is "
                                 f"not (C, H, W) with values below {levels}")
            if counts is None:
                channels = s.shape[0]
                if per_channel is None:
                    per_channel = channels * per_table * levels <= MAX_ENTRIES
                tables = channels if per_channel else 1
                counts = np.full(tables * per_table * levels, SMOOTHING, np.int64)
            elif s.shape[0] != channels:
                raise PriorError(f"raster prior fit: tensors of {s.shape[0]} and {channels} "
                                 "channels")
            _walk(np.ascontiguousarray(s, np.uint8), levels, buckets_of(levels),
                  bool(per_channel), np.empty(s.size, np.int64), counts)
            n += 1
        if counts is None:
            raise PriorError("raster prior fit: no tensors to fit on")
        return cls(levels, channels, bool(per_channel),
                   lattice.normalise(counts.reshape(-1, levels)), n)

    # ------------------------------------------------------------------ identity
    @property
    def fingerprint(self) -> int:
        """16 bits of the CRC32 of ``b"raster"``, the levels, the per-channel flag, the
        channels (u16) and the tables (u16, row by row)."""
        return self._fingerprint

    @property
    def fingerprint_hex(self) -> str:
        return f"{self.fingerprint:04x}"

    def suits(self, shape: tuple[int, ...]) -> bool:
        """Whether it can code a ``(C, H, W)`` symbol array of this shape."""
        return len(shape) == 3 and (not self.per_channel or shape[0] == self.channels)

    # ------------------------------------------------------------------ coding
    def _keys(self, symbols: np.ndarray) -> np.ndarray:
        if (not self.suits(symbols.shape)
                or (symbols.size and int(symbols.max()) >= self.levels)):
            raise PriorError(f"a {self.levels}-level raster prior of {self.channels} channels "
                             f"cannot code symbols of shape {symbols.shape} up to "
                             f"{int(symbols.max(initial=0))}")
        keys = np.empty(symbols.size, np.int64)
        _walk(np.ascontiguousarray(symbols, np.uint8), self.levels, buckets_of(self.levels),
              self.per_channel, keys, np.zeros(0, np.int64))
        return keys

    def bits(self, symbols: np.ndarray) -> float:
        """Size of :meth:`encode`'s payload in bits, without coding: the fingerprint, the
        symbols' information under the tables and the rANS flush."""
        info = -np.log2(self.freq.ravel()[self._keys(symbols)] / lattice.TOTAL).sum()
        return 8 * FINGERPRINT_BYTES + float(info) + 32

    def encode(self, symbols: np.ndarray) -> bytes:
        """The fingerprint (u16, little-endian) and the rANS stream of ``symbols``
        ``(C, H, W)`` under these tables, in C order."""
        return (self.fingerprint.to_bytes(2, "little")
                + lattice.rans_encode(self._keys(symbols), self.freq, self._enc))

    def decode(self, data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
        """Symbols of ``shape`` from :meth:`encode`'s payload.

        Raises:
            PayloadError: the payload was coded with another prior, does not decode, or
                has a shape this prior cannot code.
        """
        stream = stream_of(data, self.fingerprint)
        if not self.suits(shape):
            raise PayloadError(f"a raster prior of {self.channels} channels cannot decode a "
                               f"tensor of shape {shape}")
        out = np.zeros(shape, np.uint8)
        check_status(_decode(np.frombuffer(stream, np.uint8), out, self.levels,
                             buckets_of(self.levels), self.per_channel, self.freq, self._cum))
        return out

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict:
        """JSON-able form (what a variant file and a ``.json`` file hold)."""
        return {"format": FORMAT, "levels": self.levels, "channels": self.channels,
                "per_channel": self.per_channel, "images": self.images,
                "fingerprint": self.fingerprint_hex, "freq": self.freq.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> RasterPrior:
        """Read :meth:`to_dict`'s form back; a malformed one is a :class:`PriorError`."""

        def build(d: dict) -> RasterPrior:
            if not isinstance(d["per_channel"], bool):
                raise TypeError("per_channel is not a boolean")
            return cls(int(d["levels"]), int(d["channels"]), d["per_channel"],
                       np.asarray(d["freq"], dtype=np.int64), int(d.get("images", 0)))

        return from_stored(d, FORMAT, "raster prior", build)
