"""Lossless entropy coders for quantised split tensors.

Every coder maps a uint8 symbol array of shape ``(C, H, W)`` with values below ``levels`` to
bytes and back, exactly. Coders (their ``id`` is a wire-format field):

- ``none`` (0): symbols bit-packed at ``log2(levels)`` bits each.
- ``zstd`` (1): Zstandard level 3 over the symbol bytes: a fast generic fallback.
- ``memoryless`` (2): one histogram for the whole tensor + rANS (the paper's coding).
- ``per-channel`` (3): one histogram per channel + rANS.
- ``context`` (4): a 2x2 lattice, coded in four phases; the first phase with per-channel
  histograms, the other three conditioned on the sum of four already-decoded neighbours
  (bucketed into at most 16 contexts, histograms shared by the three phases). Each phase is
  one vectorised pass, so speed does not depend on a per-symbol Python loop.

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
MAX_CONTEXTS = 16


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
def scaled_histogram(symbols: np.ndarray, levels: int) -> np.ndarray:
    """Counts of each symbol, scaled to sum at most ``HIST_TOTAL``; nonzero stays >= 1."""
    counts = np.bincount(symbols.ravel(), minlength=levels)[:levels].astype(np.int64)
    total = counts.sum()
    if total > HIST_TOTAL:
        scaled = counts * HIST_TOTAL // total
        counts = np.where(counts > 0, np.maximum(scaled, 1), 0)
    return counts


def write_histogram(out: bytearray, counts: np.ndarray) -> None:
    nz = np.flatnonzero(counts)
    length = int(nz[-1]) + 1 if len(nz) else 0
    put_varint(out, length)
    for c in counts[:length]:
        put_varint(out, int(c))


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
        self.cat = (constriction.stream.model.Categorical(
            self.counts.astype(np.float64) / self.counts.sum(), perfect=False)
            if len(nz) > 1 else None)

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
    models = []
    for c in range(symbols.shape[0]):
        counts = scaled_histogram(symbols[c], levels)
        write_histogram(head, counts)
        models.append(Model(counts))
    coder = constriction.stream.stack.AnsCoder()
    for c in reversed(range(symbols.shape[0])):
        models[c].encode(coder, symbols[c].ravel())
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


def _phase_view(a: np.ndarray, phase: int, di: int = 0, dj: int = 0) -> np.ndarray:
    """Positions of ``phase`` (offset by ``di, dj``) in the zero-padded ``(C, H+2, W+2)``."""
    r0, c0 = _PHASES[phase]
    h, w = a.shape[1] - 2, a.shape[2] - 2
    nr, nc = len(range(r0, h, 2)), len(range(c0, w, 2))
    rs, cs = r0 + 1 + di, c0 + 1 + dj
    return a[:, rs: rs + 2 * nr - 1: 2, cs: cs + 2 * nc - 1: 2]


def _contexts(padded: np.ndarray, phase: int, levels: int) -> tuple[np.ndarray, int]:
    """Context of every position of ``phase`` from four decoded neighbours, and the count."""
    s = sum(_phase_view(padded, phase, di, dj).astype(np.int32)
            for di, dj in (_DIAG if phase == 1 else _CROSS))
    span = 4 * (levels - 1) + 1
    k = min(MAX_CONTEXTS, span)
    return (s * k // span).astype(np.uint8).ravel(), k  # uint8: numpy radix-sorts it


def encode_context(symbols: np.ndarray, levels: int) -> bytes:
    c, h, w = symbols.shape
    padded = np.zeros((c, h + 2, w + 2), np.uint8)
    padded[:, 1:-1, 1:-1] = symbols
    head = bytearray()
    # Phase 0: one histogram per channel.
    anchors = _phase_view(padded, 0)
    models0 = []
    for ch in range(c):
        counts = scaled_histogram(anchors[ch], levels)
        write_histogram(head, counts)
        models0.append(Model(counts))
    # Phases 1-3: per-context histograms shared by the three phases.
    groups = []
    for phase in (1, 2, 3):
        ctx, k = _contexts(padded, phase, levels)
        sym = _phase_view(padded, phase).ravel()
        order = np.argsort(ctx, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(ctx, minlength=k))])
        groups.append([sym[order[bounds[i]: bounds[i + 1]]] for i in range(k)])
    k = len(groups[0])
    models = []
    for i in range(k):
        counts = scaled_histogram(np.concatenate([g[i] for g in groups]), levels)
        write_histogram(head, counts)
        models.append(Model(counts))
    coder = constriction.stream.stack.AnsCoder()
    for g in reversed(groups):
        for i in reversed(range(k)):
            models[i].encode(coder, g[i])
    for ch in reversed(range(c)):
        models0[ch].encode(coder, anchors[ch].ravel())
    return bytes(head) + _ans_bytes(coder)


def decode_context(data: bytes, shape: tuple[int, int, int], levels: int) -> np.ndarray:
    c, h, w = shape
    r = Reader(data)
    models0 = [Model(read_histogram(r, levels)) for _ in range(c)]
    k = min(MAX_CONTEXTS, 4 * (levels - 1) + 1)
    models = [Model(read_histogram(r, levels)) for _ in range(k)]

    def run() -> np.ndarray:
        coder = _ans_decoder(r.rest())
        padded = np.zeros((c, h + 2, w + 2), np.uint8)
        anchors = _phase_view(padded, 0)
        n0 = anchors.shape[1] * anchors.shape[2]
        for ch in range(c):
            anchors[ch] = models0[ch].decode(coder, n0).reshape(anchors.shape[1:])
            _check_range(anchors[ch], levels)
        for phase in (1, 2, 3):
            ctx, _ = _contexts(padded, phase, levels)
            order = np.argsort(ctx, kind="stable")
            counts = np.bincount(ctx, minlength=k)
            flat = np.empty(len(ctx), np.uint8)
            start = 0
            for i in range(k):
                flat[order[start: start + counts[i]]] = models[i].decode(coder, int(counts[i]))
                start += counts[i]
            _check_range(flat, levels)
            view = _phase_view(padded, phase)
            view[...] = flat.reshape(view.shape)
        return padded[:, 1:-1, 1:-1].copy()

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
