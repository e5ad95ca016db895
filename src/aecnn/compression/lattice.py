"""Compiled kernels of the ``context`` coder: a lattice context model and a byte-wise rANS.

The context model visits a ``(C, H, W)`` symbol array level by level of a pyramid of 2x2
lattices (coarsest first) and gives every symbol a context from four already-decoded
neighbours; the coder is a plain 32-bit-state rANS with byte renormalisation (as in
Giesen's ``ryg_rans``) over 12-bit frequency tables. Both are written out in
``docs/wire-format.md`` so that another implementation can be written from that text alone.

Every kernel is compiled with numba (cached on disk); decoding never reads past its input
and reports a corrupt stream with a status code instead of raising.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

PREC = 12                 # frequency tables sum to 2**PREC
TOTAL = 1 << PREC
RANS_L = 1 << 23          # lower bound of the normalised state interval [L, 256 L)
MAX_HALVINGS = 3

# Decode status codes (0 = fine).
OK, TRUNCATED, EMPTY_MODEL, TRAILING = 0, 1, 2, 3


def pyramid_depth(h: int, w: int) -> int:
    """Number of halvings ``D``: halve (ceil) while fewer than 3 were made and the smaller
    side exceeds 4."""
    d = 0
    while d < MAX_HALVINGS and min(h, w) > 4:
        h, w, d = -(-h // 2), -(-w // 2), d + 1
    return d


def num_contexts(levels: int) -> int:
    """Context models besides the coarse one: ``4 * min(32, 2 L - 1)``."""
    return 4 * min(32, 2 * levels - 1)


@functools.lru_cache(maxsize=16)
def context_table(levels: int) -> np.ndarray:
    """``table[m * levels + d]``: the context of middle sum ``m`` (``0 .. 2L-2``) and spread
    ``d`` (``0 .. L-1``): ``4 * a + b`` with ``a = m`` if ``2L - 1 <= 32``, else
    ``min(31, floor(32 sqrt(m / (2L - 1))))``, and ``b = min(3, ceil(log2(d + 1)))``."""
    m, d = np.meshgrid(np.arange(2 * levels - 1), np.arange(levels), indexing="ij")
    span = 2 * levels - 1
    a = m if span <= 32 else np.minimum(31, np.floor(32 * np.sqrt(m / span)).astype(np.int64))
    b = np.minimum(3, np.ceil(np.log2(d + 1))).astype(np.int64)
    table = (4 * a + b).astype(np.int32).ravel()
    table.flags.writeable = False
    return table


def padding(depth: int) -> int:
    """Zero border of the working array: the farthest neighbour, ``2 ** (depth - 1)`` (the
    step of the coarsest level that uses contexts), so that no neighbour is out of bounds;
    the array is at most ~2.2x the tensor."""
    return 1 << (depth - 1) if depth else 0


@numba.njit(cache=True, nogil=True, inline="always")
def _ctx(buf, p, o1, o2, o3, o4, table, levels):
    """Context of flat position ``p`` of the padded array from its neighbours at offsets
    ``o1 .. o4``: ``table[(a + b + c + d - lo - hi) * levels + hi - lo]``."""
    a, b = np.int64(buf[p + o1]), np.int64(buf[p + o2])
    c, d = np.int64(buf[p + o3]), np.int64(buf[p + o4])
    lo = min(min(a, b), min(c, d))
    hi = max(max(a, b), max(c, d))
    return table[(a + b + c + d - lo - hi) * levels + hi - lo]


@numba.njit(cache=True, nogil=True, inline="always")
def _phase(phase, step, pw):
    """Geometry of one phase of a level with grid step ``step`` in a padded array of row
    length ``pw``: first row ``r0`` and column ``c0`` (in level-grid units), the stride
    between visited positions (in level-grid units), and the flat offsets ``o1 .. o4`` of
    the four context neighbours (phase 1: the diagonal ones; phases 2 and 3: the ones above,
    below, left and right; phase 0, the coarse level, uses none)."""
    r0 = 1 if phase == 1 or phase == 3 else 0
    c0 = 1 if phase == 1 or phase == 2 else 0
    stride = 1 if phase == 0 else 2
    v, u = step * pw, step  # one level-grid row, one level-grid column
    if phase == 1:
        return r0, c0, stride, -v - u, -v + u, v - u, v + u
    return r0, c0, stride, -v, v, -u, u


@numba.njit(cache=True, nogil=True)
def _order(c, h, w, pad, depth):
    """The decoding order of a ``(C, H, W)`` tensor in its zero-padded working array:
    ``(pos, group, offs)``. Position ``n`` is flat index ``pos[n]`` of the padded array,
    visited level by level (coarsest first), phase by phase, channel by channel, row by
    row; ``group[n]`` is its (level, phase), and ``offs[group[n]]`` the flat offsets of its
    four context neighbours. Group 0, the coarsest level, codes without context."""
    pw = w + 2 * pad
    plane = (h + 2 * pad) * pw
    offs = np.zeros((1 + 3 * depth, 4), np.int64)
    pos = np.empty(c * h * w, np.int32)  # _layout keeps the array below 2**31
    group = np.empty(c * h * w, np.uint8)  # at most 1 + 3 * MAX_HALVINGS groups
    n, g = 0, 0
    for level in range(depth, -1, -1):
        step = 1 << level
        first = 0 if level == depth else 1
        last = 0 if level == depth else 3
        for phase in range(first, last + 1):
            r0, c0, stride, o1, o2, o3, o4 = _phase(phase, step, pw)
            offs[g, 0], offs[g, 1], offs[g, 2], offs[g, 3] = o1, o2, o3, o4
            for ch in range(c):
                for i in range(r0 * step, h, stride * step):
                    row = ch * plane + (i + pad) * pw + pad
                    for j in range(c0 * step, w, stride * step):
                        pos[n] = row + j
                        group[n] = g
                        n += 1
            g += 1
    return pos[:n], group[:n], offs


@numba.njit(cache=True, nogil=True, inline="always")
def _model(buf, p, g, offs, table, levels, coarse_model):
    """The model of flat position ``p`` in group ``g`` of :func:`_order`."""
    if g == 0:
        return coarse_model
    return _ctx(buf, p, offs[g, 0], offs[g, 1], offs[g, 2], offs[g, 3], table, levels)


@numba.njit(cache=True, nogil=True)
def _walk(buf, pos, group, offs, table, levels, coarse_model, keys, counts):
    """Every position of :func:`_order` as ``keys[n] = model * levels + symbol`` (model
    ``coarse_model`` for the coarsest level), and the count of each key in ``counts``.
    ``buf`` is the ``(C, H + 2 pad, W + 2 pad)`` zero-padded symbol array, flattened."""
    for n in range(len(pos)):
        p = pos[n]
        m = _model(buf, p, group[n], offs, table, levels, coarse_model)
        key = m * levels + np.int64(buf[p])
        keys[n] = key
        counts[key] += 1


@numba.njit(cache=True, nogil=True)
def _normalise(counts, freq):
    """Scale every row of ``counts`` with at least two nonzero entries to sum exactly
    ``TOTAL``: ``max(1, floor(c * TOTAL / total))`` for each nonzero ``c``, then the
    difference is added to the largest entry (the first of equal ones); if that would
    leave it below 1, the excess is taken from the largest entries in turn, one unit at a
    time. Rows with one nonzero entry become ``1`` there (a constant model); empty rows
    stay empty."""
    rows, levels = counts.shape
    for r in range(rows):
        total, nz = 0, 0
        for s in range(levels):
            total += counts[r, s]
            nz += counts[r, s] > 0
        if nz == 0:
            continue
        if nz == 1:
            for s in range(levels):
                freq[r, s] = 1 if counts[r, s] > 0 else 0
            continue
        acc, big = 0, 0
        for s in range(levels):
            c = counts[r, s]
            f = 0
            if c > 0:
                f = max(1, (c * TOTAL) // total)
            freq[r, s] = f
            acc += f
            if f > freq[r, big]:
                big = s
        diff = TOTAL - acc
        if freq[r, big] + diff >= 1:
            freq[r, big] += diff
            continue
        while diff < 0:  # rare: many rare symbols each raised to 1
            big = 0
            for s in range(levels):
                if freq[r, s] > freq[r, big]:
                    big = s
            freq[r, big] -= 1
            diff += 1


@numba.njit(cache=True, nogil=True)
def _encoder_tables(freq, cum):
    """Per ``key = model * levels + symbol``: ``(x_max, rcp, shift, bias, cmpl)`` of the
    encoder's step (``x_max`` 0: a constant model, not coded). Models with fewer than two
    nonzero frequencies are constant.

    ``x = (x // f) * TOTAL + x % f + start`` is computed with Giesen's exact reciprocal
    (``rans_byte.h``) instead of a division."""
    rows, levels = freq.shape
    x_max = np.zeros(rows * levels, np.int64)  # 0: not coded
    rcp = np.zeros(rows * levels, np.int64)
    shift = np.zeros(rows * levels, np.int64)
    bias = np.zeros(rows * levels, np.int64)
    cmpl = np.zeros(rows * levels, np.int64)
    for m in range(rows):
        nonzero = 0
        for s in range(levels):
            nonzero += freq[m, s] > 0
        if nonzero < 2:
            continue
        for s in range(levels):
            f, key = freq[m, s], m * levels + s
            if f == 0:
                continue
            x_max[key] = ((RANS_L >> PREC) << 8) * f
            cmpl[key] = TOTAL - f
            if f == 1:
                rcp[key], shift[key], bias[key] = 0xFFFFFFFF, 0, cum[m, s] + TOTAL - 1
            else:
                k = 0
                while f > (1 << k):
                    k += 1
                rcp[key], shift[key], bias[key] = ((1 << (k + 31)) + f - 1) // f, k - 1, cum[m, s]
    return x_max, rcp, shift, bias, cmpl


@numba.njit(cache=True, nogil=True)
def _rans_encode(keys, x_max, rcp, shift, bias, cmpl, out):
    """rANS-encode the positions ``keys`` (``model * levels + symbol``) with the tables of
    :func:`_encoder_tables`, last first, skipping constant models; returns the start of the
    stream in ``out`` (it is ``out[start:]``)."""
    pos = len(out)
    x = np.int64(RANS_L)
    for k in range(len(keys) - 1, -1, -1):
        key = keys[k]
        limit = x_max[key]
        if limit == 0:
            continue
        while x >= limit:
            pos -= 1
            out[pos] = x & 0xFF
            x >>= 8
        x += bias[key] + (((x * rcp[key]) >> 32) >> shift[key]) * cmpl[key]
    for _ in range(4):
        pos -= 1
        out[pos] = x & 0xFF
        x >>= 8
    return pos


@numba.njit(cache=True, nogil=True)
def _decode(data, buf, pos, group, offs, table, levels, freq, cum, coded, constant,
            coarse_model):
    """Decode into ``buf`` (the zero-padded flat array of :func:`_walk`) in the order of
    :func:`_order`; returns a status code. Never reads outside ``data``."""
    n_data = len(data)
    if n_data < 4:
        return TRUNCATED
    x = np.int64(0)
    for at in range(4):
        x = (x << 8) | np.int64(data[at])
    at = 4
    for n in range(len(pos)):
        p = pos[n]
        m = _model(buf, p, group[n], offs, table, levels, coarse_model)
        if not coded[m]:
            if constant[m] < 0:
                return EMPTY_MODEL
            buf[p] = constant[m]
            continue
        slot = x & (TOTAL - 1)
        s = 0
        while cum[m, s + 1] <= slot:
            s += 1
        x = freq[m, s] * (x >> PREC) + slot - cum[m, s]
        while x < RANS_L:
            if at >= n_data:
                return TRUNCATED
            x = (x << 8) | np.int64(data[at])
            at += 1
        buf[p] = s
    if x != RANS_L or at != n_data:
        return TRAILING
    return OK


@functools.lru_cache(maxsize=32)
def _layout(shape: tuple[int, int, int]) -> tuple[int, tuple[np.ndarray, ...]]:
    """``(pad, (pos, group, offs))``: the border and the :func:`_order` of a ``(C, H, W)``
    tensor, computed once per shape (read-only)."""
    c, h, w = shape
    depth = pyramid_depth(h, w)
    pad = padding(depth)
    if c * (h + 2 * pad) * (w + 2 * pad) >= 2**31:
        raise ValueError(f"a {c}x{h}x{w} tensor is too large for the context coder")
    order = _order(c, h, w, pad, depth)
    for a in order:
        a.flags.writeable = False
    return pad, order


def _padded(shape: tuple[int, int, int]) -> tuple[np.ndarray, int, tuple[np.ndarray, ...]]:
    """``(buffer, pad, order)``: the zero working array of a ``(C, H, W)`` tensor, its
    border and its :func:`_layout` order."""
    c, h, w = shape
    pad, order = _layout(tuple(int(n) for n in shape))
    return np.zeros((c, h + 2 * pad, w + 2 * pad), np.uint8), pad, order


def walk(symbols: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """``(keys, counts)``: ``model * levels + symbol`` of every position in decoding order
    (model ``K`` = :func:`num_contexts` is the coarse level) and the ``(K + 1, levels)``
    count of each (model, symbol)."""
    c, h, w = symbols.shape
    n, k = symbols.size, num_contexts(levels)
    keys = np.empty(n, np.int32)
    counts = np.zeros((k + 1) * levels, np.int64)
    buf, pad, order = _padded(symbols.shape)
    buf[:, pad: pad + h, pad: pad + w] = symbols
    if len(order[0]) != n:  # pragma: no cover - a bug in the order, not bad input
        raise AssertionError(f"lattice order visits {len(order[0])} of {n} positions")
    _walk(buf.ravel(), *order, context_table(levels), levels, k, keys, counts)
    return keys, counts.reshape(k + 1, levels)


def normalise(counts: np.ndarray) -> np.ndarray:
    """Frequencies (int64, same shape) for :func:`rans_encode`; see :func:`_normalise`."""
    freq = np.zeros_like(counts, np.int64)
    _normalise(counts.astype(np.int64, copy=False), freq)
    return freq


def encoder_tables(freq: np.ndarray) -> tuple[np.ndarray, ...]:
    """What :func:`rans_encode` needs of ``freq`` beyond the keys: compute it once for tables
    that code many tensors (a context prior's)."""
    freq = freq.astype(np.int64, copy=False)
    return _encoder_tables(freq, cumulative(freq))


def rans_encode(keys: np.ndarray, freq: np.ndarray,
                tables: tuple[np.ndarray, ...] | None = None) -> bytes:
    """The rANS stream of the positions ``keys`` under ``freq``: models with fewer than two
    nonzero frequencies are constant and code nothing, the others sum to ``TOTAL``.
    ``tables``: :func:`encoder_tables` of ``freq``, if the caller keeps them."""
    tables = encoder_tables(freq) if tables is None else tables
    out = np.empty(2 * len(keys) + 8, np.uint8)
    start = _rans_encode(keys, *tables, out)
    return out[start:].tobytes()


def decode(data: bytes, shape: tuple[int, int, int], levels: int, freq: np.ndarray
           ) -> tuple[np.ndarray, int]:
    """Symbols of ``shape`` and a status code (:data:`OK` when the stream was exact).
    ``freq`` must be checked first: rows with two or more nonzero entries sum to
    ``TOTAL``."""
    freq = freq.astype(np.int64, copy=False)
    nonzero = (freq > 0).sum(axis=1)
    coded = nonzero >= 2
    constant = np.where(nonzero == 1, np.argmax(freq > 0, axis=1), -1).astype(np.int64)
    c, h, w = shape
    buf, pad, order = _padded(shape)
    status = _decode(np.frombuffer(data, np.uint8), buf.ravel(), *order,
                     context_table(levels), levels, freq, cumulative(freq), coded, constant,
                     num_contexts(levels))
    return np.ascontiguousarray(buf[:, pad: pad + h, pad: pad + w]), status


def cumulative(freq: np.ndarray) -> np.ndarray:
    """``cum[m, s]`` = sum of ``freq[m, :s]``, with a last column equal to the row total."""
    cum = np.zeros((freq.shape[0], freq.shape[1] + 1), np.int64)
    np.cumsum(freq, axis=1, out=cum[:, 1:])
    return cum
