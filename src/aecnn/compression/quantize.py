"""Quantisation of split tensors: float32, float16, or uniform n-bit integers.

Integer quantisation maps each value to ``q = round((x - lo) / step)`` with
``step = (hi - lo) / (2**bits - 1)``, per tensor or per channel; ``lo`` and ``step`` travel in
the packet, so ``|dequantize(quantize(x)) - x| <= step / 2`` for values in ``[lo, hi]``.
Post-ReLU features are non-negative, so ``lo`` is usually 0.

``hi`` is the maximum by default. A *clipped* grid (``uint2@p90``) puts ``hi`` at a quantile
of the values instead: the few outliers saturate at the top level and the levels are spent
where most values lie. Clipping is the encoder's choice alone: the decoder reads ``lo`` and
``step`` from the packet, so the wire format does not change.

A grid may also use fewer levels than its symbols can hold: ``uint2l3`` is a *ternary* grid
(``step = (hi - lo) / 2``, symbols 0, 1, 2) sent as 2-bit symbols. That too is the encoder's
choice alone (the decoder computes ``lo + symbol * step`` whatever the symbols are), so the
packet says ``bits = 2`` and the entropy coders see a 4-symbol alphabet of which one symbol
never occurs; what it buys is fewer distinct values, so fewer bytes after coding.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from aecnn.errors import AecnnError


class DType(IntEnum):
    """How elements are represented before entropy coding (a wire-format field)."""

    FLOAT32 = 0
    FLOAT16 = 1
    UINT = 2


@dataclass(frozen=True)
class QuantSpec:
    """What quantisation to apply: ``dtype`` and, for ``UINT``, ``bits``, granularity,
    ``clip``, the quantile of the values (per tensor or per channel) at which the grid tops
    out (1.0: the maximum), and ``grid_levels``, the levels of the grid (0: all ``2**bits``;
    e.g. 3 with 2 bits, a ternary grid)."""

    dtype: DType = DType.UINT
    bits: int = 8
    per_channel: bool = False
    clip: float = 1.0
    grid_levels: int = 0

    def __post_init__(self) -> None:
        if self.dtype == DType.UINT and not 1 <= self.bits <= 8:
            raise AecnnError(f"integer quantisation takes 1 to 8 bits, not {self.bits}")
        if not 0.5 <= self.clip <= 1.0:
            raise AecnnError(f"the grid's top quantile must lie in [0.5, 1], not {self.clip}")
        if self.clip < 1.0 and self.dtype != DType.UINT:
            raise AecnnError("only integer grids can be clipped")
        if self.grid_levels and (self.dtype != DType.UINT
                                 or not 2 <= self.grid_levels <= 2**self.bits):
            raise AecnnError(f"a {self.bits}-bit grid holds 2 to {2**self.bits} levels, not "
                             f"{self.grid_levels}" if self.dtype == DType.UINT
                             else "only integer grids have a number of levels")

    @property
    def levels(self) -> int:
        """Alphabet size of the symbols handed to the entropy coder."""
        return 2**self.bits if self.dtype == DType.UINT else 256

    @property
    def top(self) -> int:
        """The grid's highest symbol: ``grid_levels - 1`` (``2**bits - 1`` by default)."""
        return (self.grid_levels or 2**self.bits) - 1

    @staticmethod
    def parse(text: str) -> QuantSpec:
        """``"float32"``, ``"float16"``, ``"uint8"``, ``"uint4"``, ``"uint4c"`` (per channel),
        ``"uint2@p90"`` (grid clipped at the 90th percentile), ``"uint2c@p99.5"``,
        ``"uint2l3"`` (3 levels in 2-bit symbols), ``"uint2l3@p90"``."""
        if text in ("float32", "float16"):
            return QuantSpec(DType.FLOAT32 if text == "float32" else DType.FLOAT16, 0)
        if text.startswith("uint"):
            body, _, pct = text[4:].partition("@")
            per_channel = body.endswith("c")
            bits, has_grid, grid = body.removesuffix("c").partition("l")
            try:
                clip = 1.0
                if pct:
                    if not pct.startswith("p"):
                        raise ValueError(pct)
                    clip = float(pct[1:]) / 100
                if has_grid and not grid.isdigit():
                    raise ValueError(grid)
                return QuantSpec(DType.UINT, int(bits), per_channel, clip,
                                 int(grid) if grid else 0)
            except ValueError:
                pass
        raise AecnnError(f"unknown quantisation {text!r}: float32, float16, uintN, uintNc, "
                         "uintNlK (K levels in N-bit symbols), or any of the integer ones "
                         "with @pNN (grid clipped at the NN-th percentile)")

    @staticmethod
    def parse_tensor_grid(text: str) -> QuantSpec:
        """:meth:`parse`, for a per-tensor integer grid only (``uint2``, ``uint1@p90``,
        ``uint2l3``):
        what fake quantisation simulates and context priors are fitted for.

        Raises:
            AecnnError: not a quantisation, or a float or per-channel one.
        """
        spec = QuantSpec.parse(str(text))
        if spec.dtype != DType.UINT or spec.per_channel:
            raise AecnnError(f"{text!r} is not a per-tensor integer grid (uintB or uintB@pNN)")
        return spec

    @property
    def tag(self) -> str:
        """The spec in a file or stage name: ``"2"`` (``uint2``), ``"2p90"`` (``uint2@p90``),
        ``"4c"`` (``uint4c``), ``"2l3"`` (``uint2l3``); ``"float32"`` and ``"float16"`` for
        float dtypes."""
        if self.dtype != DType.UINT:
            return self.dtype.name.lower()
        pct = f"p{100 * self.clip:g}" if self.clip < 1.0 else ""
        return f"{self._body}{pct}"

    @property
    def _body(self) -> str:
        grid = f"l{self.grid_levels}" if self.grid_levels else ""
        return f"{self.bits}{grid}{'c' if self.per_channel else ''}"

    def __str__(self) -> str:
        if self.dtype != DType.UINT:
            return self.tag
        pct = f"@p{100 * self.clip:g}" if self.clip < 1.0 else ""
        return f"uint{self._body}{pct}"


def quantize(x: np.ndarray, spec: QuantSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantise ``x`` of shape ``(C, H, W)``.

    Returns:
        ``symbols``: uint8 array; ``(C, H, W)`` for ``UINT``, or the raw little-endian bytes of
        the floats reshaped to ``(C, H, W * itemsize)`` for float dtypes.
        ``lo``, ``step``: float32 arrays of shape ``(C,)`` (per channel), ``(1,)`` (per
        tensor) or ``(0,)`` (float dtypes).
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3:
        raise AecnnError(f"expected a (C, H, W) tensor, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise AecnnError("tensor holds NaN or infinite values")
    empty = np.zeros(0, np.float32)
    if spec.dtype != DType.UINT:
        dt = "<f4" if spec.dtype == DType.FLOAT32 else "<f2"
        raw = np.ascontiguousarray(x.astype(dt)).view(np.uint8)
        return raw.reshape(x.shape[0], x.shape[1], -1), empty, empty
    axes = (1, 2) if spec.per_channel else None
    lo = x.min(axis=axes).reshape(-1).astype(np.float32)
    hi = x.max(axis=axes).reshape(-1).astype(np.float32)
    if spec.clip < 1.0:  # top of the grid at a quantile, unless that leaves no range at all
        top = np.quantile(x.astype(np.float64), spec.clip, axis=axes).reshape(-1)
        hi = np.where(top.astype(np.float32) > lo, top, hi).astype(np.float32)
    step = ((hi - lo) / spec.top).astype(np.float32)
    step = np.where(step > 0, step, np.float32(1.0)).astype(np.float32)
    shape = (-1, 1, 1)
    q = np.rint((x - lo.reshape(shape)) / step.reshape(shape))
    return np.clip(q, 0, spec.top).astype(np.uint8), lo, step


def dequantize(symbols: np.ndarray, spec: QuantSpec, lo: np.ndarray, step: np.ndarray,
               shape: tuple[int, int, int]) -> np.ndarray:
    """Inverse of :func:`quantize`: float32 array of ``shape`` ``(C, H, W)``."""
    if spec.dtype != DType.UINT:
        dt = "<f4" if spec.dtype == DType.FLOAT32 else "<f2"
        return np.ascontiguousarray(symbols).view(dt).astype(np.float32).reshape(shape)
    with np.errstate(over="ignore", invalid="ignore"):  # hostile parameters: caller checks
        out = symbols.astype(np.float32) * step.reshape(-1, 1, 1) + lo.reshape(-1, 1, 1)
    return out.reshape(shape).astype(np.float32)
