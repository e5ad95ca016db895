"""Lossless entropy coders for quantised split tensors.

Every coder maps a uint8 symbol array of shape ``(C, H, W)`` with values below ``levels`` to
bytes and back, exactly. Coders (their ``id`` is a wire-format field):

- ``none`` (0): symbols bit-packed at ``log2(levels)`` bits each.
- ``zstd`` (1): Zstandard level 3 over the symbol bytes: a fast generic fallback.
- ``memoryless`` (2): one histogram for the whole tensor + rANS (the paper's coding).
- ``per-channel`` (3): one histogram per channel + rANS.
- ``context`` (4): a pyramid of 2x2 lattices. The coarsest level (every 8th row and
  column at most) is coded with per-channel histograms; each finer level adds its three
  other phases, each symbol conditioned on four already-decoded neighbours (their middle
  values and their spread, at most 128 contexts; histograms shared by all phases and
  levels). Each phase is one vectorised pass per context, so speed does not depend on a
  per-symbol Python loop.

rANS coding uses ``constriction`` (``AnsCoder``); histograms travel in the payload as
varints, scaled to a total of at most 4096 so that they stay small.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import constriction
import numpy as np
import zstandard

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
    flat = keys.astype(np.int64).ravel() * levels + symbols.ravel()
    counts = np.bincount(flat, minlength=groups * levels).reshape(groups, levels)
    totals = counts.sum(axis=1, keepdims=True)
    scaled = counts * HIST_TOTAL // np.maximum(totals, 1)
    scaled = np.where(counts > 0, np.maximum(scaled, 1), 0)
    return np.where(totals > HIST_TOTAL, scaled, counts)


def scaled_histogram(symbols: np.ndarray, levels: int) -> np.ndarray:
    """Scaled counts of one group of symbols (see :func:`scaled_histograms`)."""
    return scaled_histograms(np.zeros(symbols.size, np.int64), symbols, 1, levels)[0]


def write_histograms(out: bytearray, counts: np.ndarray) -> None:
    """Append each row as ``varint(len)`` + ``len`` varints (trailing zeros dropped)."""
    nonzero = counts > 0
    lengths = np.where(nonzero.any(axis=1),
                       counts.shape[1] - np.argmax(nonzero[:, ::-1], axis=1), 0)
    values = np.concatenate([np.concatenate([[n], row[:n]])
                             for n, row in zip(lengths, counts, strict=True)])
    out += _varints(values)


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
            coder.encode_reverse(symbols.astype(np.int32), self.cat)

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


_ZSTD_C = zstandard.ZstdCompressor(level=3)


def encode_zstd(symbols: np.ndarray, levels: int) -> bytes:
    return _ZSTD_C.compress(symbols.tobytes())


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
    models = [Model(read_histogram(r, levels)) for _ in range(shape[0])]

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
_PHASES = ((0, 0), (1, 1), (0, 1), (1, 0))
_DIAG = ((-1, -1), (-1, 1), (1, -1), (1, 1))
_CROSS = ((-1, 0), (1, 0), (0, -1), (0, 1))
MAX_LEVELS = 3


def _phase_view(a: np.ndarray, phase: int, di: int = 0, dj: int = 0) -> np.ndarray:
    """Positions of ``phase`` (offset by ``di, dj``) in the zero-padded ``(C, H+2, W+2)``."""
    r0, c0 = _PHASES[phase]
    h, w = a.shape[1] - 2, a.shape[2] - 2
    nr, nc = len(range(r0, h, 2)), len(range(c0, w, 2))
    rs, cs = r0 + 1 + di, c0 + 1 + dj
    return a[:, rs: rs + 2 * nr - 1: 2, cs: cs + 2 * nc - 1: 2]


def _contexts(padded: np.ndarray, phase: int, levels: int) -> np.ndarray:
    """Context of every position of ``phase`` from its four decoded neighbours.

    With the neighbours sorted, ``m`` = the sum of the two middle ones (a robust local level)
    and ``d`` = max - min (local activity): context = ``4 * bucket(m) + bucket(d)``, where
    ``bucket(m)`` is ``m`` itself when it has at most 32 values, else
    ``floor(32 * sqrt(m / (2 L - 1)))``, and ``bucket(d)`` is 0, 1, 2 or 3 for d = 0, 1,
    2-3, >= 4.
    """
    a, b, c, d = (_phase_view(padded, phase, di, dj).astype(np.int16)
                  for di, dj in (_DIAG if phase == 1 else _CROSS))
    lo = np.minimum(np.minimum(a, b), np.minimum(c, d))
    hi = np.maximum(np.maximum(a, b), np.maximum(c, d))
    m = a + b + c + d - lo - hi  # the two middle values
    span = 2 * levels - 1
    level = m if span <= 32 else np.minimum(31, (32 * np.sqrt(m / span)).astype(np.int16))
    spread = hi - lo
    activity = np.minimum(3, np.ceil(np.log2(spread + 1))).astype(np.int32)
    return (4 * level + activity).astype(np.uint8).ravel()  # uint8: numpy radix-sorts it


def _pyramid(h: int, w: int) -> list[tuple[int, int]]:
    """Sizes of the lattice levels, finest first: each halves (ceil) the one before, down
    to a side of 4 or after ``MAX_LEVELS`` halvings."""
    sizes = [(h, w)]
    while len(sizes) <= MAX_LEVELS and min(sizes[-1]) > 4:
        sizes.append((-(-sizes[-1][0] // 2), -(-sizes[-1][1] // 2)))
    return sizes


def _num_contexts(levels: int) -> int:
    return 4 * min(32, 2 * levels - 1)


# Phase 1 needs only phase 0; phases 2 and 3 need only phases 0 and 1, not each other, so
# they are decoded together in one pass.
_PASSES = ((1,), (2, 3))


def _pass(padded: np.ndarray, phases: tuple[int, ...], levels: int, k: int
          ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Views of the pass's positions, their contexts, the stable order by context and the
    count of each context."""
    views = [_phase_view(padded, p) for p in phases]
    ctx = np.concatenate([_contexts(padded, p, levels) for p in phases])
    return views, ctx, np.argsort(ctx, kind="stable"), np.bincount(ctx, minlength=k)


def encode_context(symbols: np.ndarray, levels: int) -> bytes:
    c, h, w = symbols.shape
    k = _num_contexts(levels)
    sizes = _pyramid(h, w)
    coarse = symbols[:, :: 2 ** (len(sizes) - 1), :: 2 ** (len(sizes) - 1)]
    # Decode order: the coarsest level, then for each finer level its two passes, and
    # within a pass the contexts in increasing order.
    plan: list[tuple[int, np.ndarray]] = [(-1, coarse.ravel())]  # (context, symbols)
    keys, syms = [], []
    for level in reversed(range(len(sizes) - 1)):
        step = 2**level
        sub = symbols[:, ::step, ::step]
        padded = np.zeros((c, sub.shape[1] + 2, sub.shape[2] + 2), np.uint8)
        padded[:, 1:-1, 1:-1] = sub
        for phases in _PASSES:
            views, ctx, order, counts = _pass(padded, phases, levels, k)
            sym = np.concatenate([v.ravel() for v in views])
            bounds = np.concatenate([[0], np.cumsum(counts)])
            plan += [(i, sym[order[bounds[i]: bounds[i + 1]]]) for i in np.flatnonzero(counts)]
            keys.append(ctx)
            syms.append(sym)
    counts = (scaled_histograms(np.concatenate(keys), np.concatenate(syms), k, levels)
              if keys else np.zeros((k, levels), np.int64))
    head = bytearray()
    write_histograms(head, np.stack([scaled_histogram(coarse, levels), *counts]))
    model0 = Model(scaled_histogram(coarse, levels))
    models = [Model(row) for row in counts]
    coder = constriction.stream.stack.AnsCoder()
    for i, group in reversed(plan):
        (models[i] if i >= 0 else model0).encode(coder, group)
    return bytes(head) + _ans_bytes(coder)


def decode_context(data: bytes, shape: tuple[int, int, int], levels: int) -> np.ndarray:
    c, h, w = shape
    k = _num_contexts(levels)
    sizes = _pyramid(h, w)
    r = Reader(data)
    model0 = Model(read_histogram(r, levels))
    models = [Model(read_histogram(r, levels)) for _ in range(k)]

    def run() -> np.ndarray:
        coder = _ans_decoder(r.rest())
        current = model0.decode(coder, c * sizes[-1][0] * sizes[-1][1]).reshape(c, *sizes[-1])
        _check_range(current, levels)
        for level in reversed(range(len(sizes) - 1)):
            lh, lw = sizes[level]
            padded = np.zeros((c, lh + 2, lw + 2), np.uint8)
            _phase_view(padded, 0)[...] = current
            for phases in _PASSES:
                views, ctx, order, counts = _pass(padded, phases, levels, k)
                bounds = np.concatenate([[0], np.cumsum(counts)])
                flat = np.empty(len(ctx), np.uint8)
                for i in np.flatnonzero(counts):
                    flat[order[bounds[i]: bounds[i + 1]]] = models[i].decode(
                        coder, int(counts[i]))
                _check_range(flat, levels)
                start = 0
                for v in views:
                    v[...] = flat[start: start + v.size].reshape(v.shape)
                    start += v.size
            current = padded[:, 1:-1, 1:-1]
        return np.ascontiguousarray(current)

    return _guarded(run, shape)


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
