"""Lossless entropy coders for quantised split tensors.

Every coder maps a uint8 symbol array of shape ``(C, H, W)`` with values below ``levels`` to
bytes and back, exactly. Coders (their ``id`` is a wire-format field):

- ``none`` (0): symbols bit-packed at ``log2(levels)`` bits each.
- ``zstd`` (1): Zstandard level 3 over the symbol bytes: a fast generic fallback.
- ``memoryless`` (2): one histogram for the whole tensor + rANS (the paper's coding).
- ``per-channel`` (3): one histogram per channel + rANS.
- ``context`` (4): a pyramid of 2x2 lattices. The coarsest level (every 8th row and
  column at most) is coded with one histogram; each finer level adds its three other
  phases, each symbol conditioned on four already-decoded neighbours (their middle values
  and their spread, at most 128 contexts; histograms shared by all phases and levels).
  The walk and its 32-bit rANS are compiled kernels (:mod:`aecnn.compression.lattice`).

``memoryless`` and ``per-channel`` use ``constriction``'s rANS (``AnsCoder``); their
histograms travel in the payload as varints, scaled to a total of at most 4096 so that they
stay small; ``context`` normalises its histograms to a total of exactly 4096 on both sides.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import constriction
import numpy as np
import zstandard

from aecnn.compression import lattice
from aecnn.compression.errors import PayloadError

HIST_TOTAL = 4096


# ---------------------------------------------------------------------------- varints
def put_varint(out: bytearray, value: int) -> None:
    """Append ``value`` (>= 0) as an LEB128 varint."""
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


class Reader:
    """Bounds-checked reading of a payload; every overrun is a :class:`PayloadError`."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = memoryview(data), 0

    def varint(self, limit: int) -> int:
        value = shift = 0
        while True:
            if self.pos >= len(self.data) or shift > 35:
                raise PayloadError("payload ends inside a varint")
            b = self.data[self.pos]
            self.pos += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if value > limit:
            raise PayloadError(f"payload value {value} exceeds {limit}")
        return value

    def rest(self) -> bytes:
        out = bytes(self.data[self.pos:])
        self.pos = len(self.data)
        return out


# ------------------------------------------------------------------------- histograms
def scaled_histograms(keys: np.ndarray, symbols: np.ndarray, groups: int,
                      levels: int) -> np.ndarray:
    """``(groups, levels)`` symbol counts per group (``keys`` gives each symbol's group),
    each row scaled to sum at most ``HIST_TOTAL`` with nonzero counts kept >= 1."""
    return _scale_rows(group_counts(keys, symbols, groups, levels))


def group_counts(keys: np.ndarray, symbols: np.ndarray, groups: int,
                 levels: int) -> np.ndarray:
    """``(groups, levels)`` raw symbol counts per group (``keys`` gives each symbol's group)."""
    flat = keys.astype(np.int64).ravel() * levels + symbols.ravel()
    return np.bincount(flat, minlength=groups * levels).reshape(groups, levels)


def _scale_rows(counts: np.ndarray) -> np.ndarray:
    """Rows of ``counts`` summing to more than ``HIST_TOTAL`` scaled down to at most that,
    every nonzero count kept >= 1."""
    totals = counts.sum(axis=1, keepdims=True)
    scaled = np.where(counts > 0, np.maximum(counts * HIST_TOTAL // np.maximum(totals, 1), 1), 0)
    return np.where(totals > HIST_TOTAL, scaled, counts)


def scaled_histogram(symbols: np.ndarray, levels: int) -> np.ndarray:
    """Scaled counts of one group of symbols (see :func:`scaled_histograms`)."""
    return scaled_histograms(np.zeros(symbols.size, np.int64), symbols, 1, levels)[0]


def write_histograms(out: bytearray, counts: np.ndarray) -> None:
    """Append each row as ``varint(len)`` + ``len`` varints (trailing zeros dropped)."""
    levels = counts.shape[1]
    nonzero = counts > 0
    lengths = np.where(nonzero.any(axis=1), levels - np.argmax(nonzero[:, ::-1], axis=1), 0)
    table = np.concatenate([lengths[:, None], counts], axis=1)  # (rows, 1 + levels)
    keep = np.arange(levels + 1)[None, :] <= lengths[:, None]
    out += _varints(table[keep])


def _varints(values: np.ndarray) -> bytes:
    """LEB128 of many values below 2**14, vectorised (one or two bytes each)."""
    v = values.astype(np.int64)
    if v.size and (v.min() < 0 or v.max() >= 1 << 14):
        raise ValueError("vectorised varints take values in 0 .. 2**14 - 1")
    two = v >= 0x80
    out = np.empty((len(v), 2), np.uint8)
    out[:, 0] = np.where(two, (v & 0x7F) | 0x80, v)
    out[:, 1] = v >> 7
    keep = np.stack([np.ones(len(v), bool), two], axis=1)
    return out[keep].tobytes()


def write_histogram(out: bytearray, counts: np.ndarray) -> None:
    write_histograms(out, counts.reshape(1, -1))


def read_histogram(r: Reader, levels: int) -> np.ndarray:
    return read_histograms(r, 1, levels)[0]


def read_histograms(r: Reader, rows: int, levels: int) -> list[np.ndarray]:
    """Read ``rows`` histograms written by :func:`write_histograms`.

    Every varint of the longest possible header is decoded at once (the bytes after the
    header decode to values that are never used); a header with a varint longer than two
    bytes, which our encoder never writes, is read by the scalar :class:`Reader`.
    """
    start = r.pos
    raw = np.frombuffer(r.data[start: start + rows * (levels + 1) * 2], np.uint8)
    ends = np.flatnonzero(raw < 0x80)  # the last byte of every varint
    firsts = np.concatenate([ends[:1] * 0, ends[:-1] + 1])
    low = raw[firsts].astype(np.int64) & 0x7F
    values = np.where(ends > firsts, low | (raw[ends].astype(np.int64) << 7), low)
    out, i = [], 0
    for _ in range(rows):
        n = int(values[i]) if i < len(values) else -1
        if not 0 <= n <= levels or i + 1 + n > len(values):
            break
        out.append(values[i + 1: i + 1 + n])
        i += 1 + n
    if len(out) < rows or np.any(ends[:i] - firsts[:i] > 1):  # malformed, or long varints
        return [_read_histogram_scalar(r, levels) for _ in range(rows)]
    counts = np.concatenate(out) if out else values[:0]
    if counts.size and int(counts.max()) > HIST_TOTAL:
        raise PayloadError(f"payload value {int(counts.max())} exceeds {HIST_TOTAL}")
    r.pos = start + (int(ends[i - 1]) + 1 if i else 0)
    return out


def _read_histogram_scalar(r: Reader, levels: int) -> np.ndarray:
    length = r.varint(levels)
    return np.array([r.varint(HIST_TOTAL) for _ in range(length)], dtype=np.int64)


@dataclass
class Model:
    """A categorical model built identically by encoder and decoder from counts.

    ``constant`` is set when only one symbol occurs: nothing is coded for it.
    """

    counts: np.ndarray

    def __post_init__(self) -> None:
        nz = np.flatnonzero(self.counts)
        self.counts = self.counts[: int(nz[-1]) + 1 if len(nz) else 0]  # as it travels
        self.constant = int(nz[0]) if len(nz) == 1 else None
        self._coded = len(nz) > 1
        self._cat = None

    @property
    def cat(self):
        """The rANS model, built on first use (many context models are never used)."""
        if self._cat is None and self._coded:
            self._cat = constriction.stream.model.Categorical(
                self.counts.astype(np.float64) / self.counts.sum(), perfect=False)
        return self._cat

    def encode(self, coder, symbols: np.ndarray) -> None:
        if self.cat is not None and symbols.size:
            coder.encode_reverse(symbols.astype(np.int32, copy=False), self.cat)

    def decode(self, coder, n: int) -> np.ndarray:
        if n == 0:
            return np.zeros(0, np.uint8)
        if self.constant is not None:
            return np.full(n, self.constant, np.uint8)
        if self.cat is None:
            raise PayloadError("payload holds symbols for an empty histogram")
        out = coder.decode(self.cat, n)
        return out.astype(np.uint8)


def _ans_bytes(coder) -> bytes:
    return coder.get_compressed().astype("<u4").tobytes()


def _ans_decoder(data: bytes):
    if len(data) % 4:
        raise PayloadError("rANS stream length is not a multiple of 4 bytes")
    return constriction.stream.stack.AnsCoder(np.frombuffer(data, "<u4").astype(np.uint32))


def _bits(levels: int) -> int:
    return max(1, int(levels - 1).bit_length())


# ----------------------------------------------------------------------------- coders
def encode_none(symbols: np.ndarray, levels: int) -> bytes:
    n = _bits(levels)
    if n == 8:
        return symbols.tobytes()
    bits = np.unpackbits(symbols.reshape(-1, 1), axis=1)[:, 8 - n:]
    return np.packbits(bits.ravel()).tobytes()


def decode_none(data: bytes, shape: tuple[int, int, int], levels: int) -> np.ndarray:
    n, count = _bits(levels), int(np.prod(shape))
    if len(data) != (count * n + 7) // 8:
        raise PayloadError(f"raw payload has {len(data)} bytes, expected {(count * n + 7) // 8}")
    if n == 8:
        return np.frombuffer(data, np.uint8).reshape(shape).copy()
    bits = np.unpackbits(np.frombuffer(data, np.uint8))[: count * n].reshape(count, n)
    full = np.zeros((count, 8), np.uint8)
    full[:, 8 - n:] = bits
    return np.packbits(full, axis=1).reshape(shape)


_ZSTD = threading.local()  # a ZstdCompressor may not be shared between threads


def encode_zstd(symbols: np.ndarray, levels: int) -> bytes:
    compressor = getattr(_ZSTD, "compressor", None)
    if compressor is None:
        compressor = _ZSTD.compressor = zstandard.ZstdCompressor(level=3)
    return compressor.compress(symbols.tobytes())


def decode_zstd(data: bytes, shape: tuple[int, int, int], levels: int) -> np.ndarray:
    count = int(np.prod(shape))
    try:
        declared = zstandard.frame_content_size(data)
        if declared != count and declared != -1:  # -1: the frame does not say
            raise PayloadError(f"zstd frame declares {declared} bytes, expected {count}")
        raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=count)
    except (zstandard.ZstdError, MemoryError) as exc:
        raise PayloadError(f"zstd payload does not decode: {exc}") from None
    if len(raw) != count:
        raise PayloadError(f"zstd payload holds {len(raw)} symbols, expected {count}")
    out = np.frombuffer(raw, np.uint8).reshape(shape).copy()
    _check_range(out, levels)
    return out


def _check_range(symbols: np.ndarray, levels: int) -> None:
    if symbols.size and int(symbols.max()) >= levels:
        raise PayloadError(f"decoded symbol {int(symbols.max())} is outside 0..{levels - 1}")


def encode_memoryless(symbols: np.ndarray, levels: int) -> bytes:
    head = bytearray()
    counts = scaled_histogram(symbols, levels)
    write_histogram(head, counts)
    coder = constriction.stream.stack.AnsCoder()
    Model(counts).encode(coder, symbols.ravel())
    return bytes(head) + _ans_bytes(coder)


def decode_memoryless(data: bytes, shape: tuple[int, int, int], levels: int) -> np.ndarray:
    r = Reader(data)
    model = Model(read_histogram(r, levels))
    return _guarded(lambda: model.decode(_ans_decoder(r.rest()), int(np.prod(shape))), shape)


def encode_per_channel(symbols: np.ndarray, levels: int) -> bytes:
    head = bytearray()
    c = symbols.shape[0]
    keys = np.repeat(np.arange(c), symbols[0].size)
    counts = scaled_histograms(keys, symbols, c, levels)
    write_histograms(head, counts)
    models = [Model(row) for row in counts]
    coder = constriction.stream.stack.AnsCoder()
    for ch in reversed(range(c)):
        models[ch].encode(coder, symbols[ch].ravel())
    return bytes(head) + _ans_bytes(coder)


def decode_per_channel(data: bytes, shape: tuple[int, int, int], levels: int) -> np.ndarray:
    r = Reader(data)
    models = [Model(row) for row in read_histograms(r, shape[0], levels)]

    def run() -> np.ndarray:
        coder = _ans_decoder(r.rest())
        return np.stack([m.decode(coder, shape[1] * shape[2]) for m in models])

    return _guarded(run, shape)


def _guarded(fn: Callable[[], np.ndarray], shape: tuple[int, int, int]) -> np.ndarray:
    try:
        out = fn()
    except PayloadError:
        raise
    except Exception as exc:  # constriction reports corrupt streams as generic errors
        raise PayloadError(f"entropy-coded payload does not decode: {exc}") from None
    return out.reshape(shape)


# --------------------------------------------------------------------- context coder
def encode_context(symbols: np.ndarray, levels: int) -> bytes:
    """``K + 1`` histograms (the contexts' models, then the coarse level's; counts scaled as
    in :func:`scaled_histograms`) and the rANS stream of :mod:`aecnn.compression.lattice`
    under the histograms normalised by :func:`lattice.normalise`."""
    keys, counts = lattice.walk(symbols, levels)
    counts = _scale_rows(counts)
    head = bytearray()
    write_histograms(head, counts)
    return bytes(head) + lattice.rans_encode(keys, lattice.normalise(counts))


def decode_context(data: bytes, shape: tuple[int, int, int], levels: int) -> np.ndarray:
    r = Reader(data)
    rows = read_histograms(r, lattice.num_contexts(levels) + 1, levels)
    counts = np.zeros((len(rows), levels), np.int64)
    for i, row in enumerate(rows):
        counts[i, : len(row)] = row
    out, status = lattice.decode(r.rest(), shape, levels, lattice.normalise(counts))
    if status != lattice.OK:
        raise PayloadError(f"context-coded payload does not decode: {_STATUS[status]}")
    return out


def _info_bits(counts: np.ndarray) -> float:
    """Empirical information of every row of ``counts`` (``(rows, levels)``) in bits."""
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        info = np.where(counts > 0, counts * np.log2(totals / np.maximum(counts, 1)), 0.0)
    return float(info.sum())


def _header_bits(counts: np.ndarray) -> int:
    head = bytearray()
    write_histograms(head, counts)
    return 8 * len(head)


ANS_FLUSH_BITS = 32  # constriction's AnsCoder: the stream is whole 32-bit words
RANS_BYTE_FLUSH_BITS = 32  # the context coder's rANS: its 32-bit state, written at the end


def _estimate_bits(counts: np.ndarray, flush_bits: int) -> float:
    """Exact histogram header of ``counts`` (``(rows, levels)``) + entropy + flush."""
    return _header_bits(_scale_rows(counts)) + _info_bits(counts) + flush_bits


def memoryless_bits(symbols: np.ndarray, levels: int) -> float:
    """Size estimate of :func:`encode_memoryless` in bits: exact histogram, entropy, one
    word of flush."""
    return _estimate_bits(np.bincount(symbols.ravel(), minlength=levels)[None], ANS_FLUSH_BITS)


def per_channel_bits(symbols: np.ndarray, levels: int) -> float:
    """Size estimate of :func:`encode_per_channel` in bits (as :func:`memoryless_bits`)."""
    c = symbols.shape[0]
    keys = np.repeat(np.arange(c), symbols[0].size)
    return _estimate_bits(group_counts(keys, symbols, c, levels), ANS_FLUSH_BITS)


def context_bits(symbols: np.ndarray, levels: int) -> float:
    """Size estimate of :func:`encode_context` in bits without coding: the histograms'
    exact size plus the empirical entropy of each model's symbols (rANS comes within about
    1 % of it)."""
    _, counts = lattice.walk(symbols, levels)
    return _estimate_bits(counts, RANS_BYTE_FLUSH_BITS)


_STATUS = {lattice.TRUNCATED: "the rANS stream ends early",
           lattice.EMPTY_MODEL: "a symbol falls in a context with an empty histogram",
           lattice.TRAILING: "the rANS stream does not end in its initial state"}


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Coder:
    """A lossless coder of ``(C, H, W)`` uint8 symbol arrays."""

    id: int
    name: str
    encode: Callable[[np.ndarray, int], bytes]
    decode: Callable[[bytes, tuple[int, int, int], int], np.ndarray]


CODERS: dict[str, Coder] = {c.name: c for c in (
    Coder(0, "none", encode_none, decode_none),
    Coder(1, "zstd", encode_zstd, decode_zstd),
    Coder(2, "memoryless", encode_memoryless, decode_memoryless),
    Coder(3, "per-channel", encode_per_channel, decode_per_channel),
    Coder(4, "context", encode_context, decode_context),
)}
CODERS_BY_ID: dict[int, Coder] = {c.id: c for c in CODERS.values()}
PRIOR_CODER_ID = 5
"""Wire id of the ``prior`` coder (:mod:`aecnn.compression.prior`): coder 4's contexts and
rANS under tables both ends hold, so it is not in :data:`CODERS` (its calls need them)."""
FACTORIZED_CODER_ID = 6
"""Wire id of the ``factorized`` coder (:mod:`aecnn.compression.factorized`): a learned
bottleneck's latent under per-channel tables both ends hold (not in :data:`CODERS` either)."""
CODER_IDS: dict[int, str] = {**{c.id: c.name for c in CODERS.values()}, PRIOR_CODER_ID: "prior",
                             FACTORIZED_CODER_ID: "factorized"}


def get_coder(name: str) -> Coder:
    from aecnn.errors import AecnnError

    try:
        return CODERS[name]
    except KeyError:
        raise AecnnError(f"unknown coder {name!r}; choose from "
                         f"{', '.join(CODERS)} or auto") from None


def empirical_entropy(symbols: np.ndarray, levels: int) -> float:
    """Memoryless empirical entropy ``H`` in bits per symbol (the paper's measure)."""
    p = np.bincount(symbols.ravel(), minlength=levels) / symbols.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())
