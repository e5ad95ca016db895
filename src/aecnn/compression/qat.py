"""Quantisation-aware fine-tuning: the codec's integer quantisation, simulated in the graph.

:func:`fake_quantize` rounds each sample of a split tensor to the same grid as
:func:`aecnn.compression.quantize.quantize` with a per-tensor ``QuantSpec`` (``lo`` = the
sample's minimum, ``step`` = its range / (2**bits - 1), round half to even), so a network
fine-tuned through :class:`FakeQuant` sees in training exactly the values the server will
decode. The rounding has no useful gradient; the straight-through estimator passes the
gradient of the output unchanged to the input (Bengio et al., 2013).

With a clipped grid (``clip`` < 1: the top level at that quantile of the sample's values,
as ``QuantSpec.clip`` does in the codec) the values above the top saturate; their output
no longer depends on them, so their gradient is zero (the clipped straight-through estimator
of PACT, Choi et al., 2018).

:func:`soft_rate` is a differentiable estimate of what the quantised tensor costs to send:
the entropy (bits per element) of a batch's histogram over the grid's levels, each value
spread over its two nearest levels by linear interpolation, so the gradient reaches every
value inside the grid. Added to the loss with a weight (``qat.rate``), it trades accuracy
for bytes, as rate-distortion training does in learned compression (Ballé et al., 2017),
with the codec's fixed grid in place of a learned one.
"""

from __future__ import annotations

import torch
from torch import nn

from aecnn.compression.quantize import DType, QuantSpec


def _top(flat: torch.Tensor, lo: torch.Tensor, clip: float) -> torch.Tensor:
    """Top of each row's grid: the ``clip`` quantile of ``flat (B, N)`` (float64, linear
    interpolation, as ``numpy.quantile``), or the maximum where that is not above ``lo``."""
    hi = flat.amax(dim=1)
    if clip >= 1.0:
        return hi
    rows = max(1, 2**24 // max(1, flat.shape[1]))  # torch.quantile takes < 2**24 elements
    top = torch.cat([torch.quantile(chunk.double(), clip, dim=1)
                     for chunk in flat.split(rows)]).float()
    return torch.where(top > lo, top, hi)


def _grid(x: torch.Tensor, bits: int, clip: float, grid_levels: int = 0
          ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The codec's per-sample grid of ``x (B, ...)``: its bottom ``lo`` and ``step``, both
    ``(B, 1, ..., 1)`` (float32, no gradient), and its top symbol (``grid_levels - 1``;
    ``2**bits - 1`` when ``grid_levels`` is 0)."""
    top = QuantSpec(DType.UINT, bits, clip=clip, grid_levels=grid_levels).top  # its checks
    flat = x.detach().float().flatten(1)
    lo = flat.amin(dim=1)
    step = (_top(flat, lo, clip) - lo) / top
    step = torch.where(step > 0, step, torch.ones_like(step))
    shape = (-1,) + (1,) * (x.dim() - 1)
    return lo.view(shape), step.view(shape), top


def fake_quantize(x: torch.Tensor, bits: int, clip: float = 1.0,
                  grid_levels: int = 0) -> torch.Tensor:
    """Quantise and dequantise every sample of ``x (B, C, H, W)`` to ``bits`` bits, per
    tensor, as the codec does (grid top at the ``clip`` quantile; ``grid_levels`` levels, 0:
    all ``2**bits``); the gradient flows straight through the values inside the grid.
    Returns ``(B, C, H, W)``.
    """
    lo, step, levels = _grid(x, bits, clip, grid_levels)
    scaled = torch.round((x.detach().float() - lo) / step)
    q = torch.clamp(scaled, 0, levels)
    deq = (q * step + lo).to(x.dtype)
    inside = (scaled <= levels).to(x.dtype)  # saturated values (clipped grids) pass no gradient
    return x * inside + (deq - x * inside).detach()


def soft_rate(x: torch.Tensor, bits: int, clip: float = 1.0,
              grid_levels: int = 0) -> torch.Tensor:
    """Differentiable estimate of the bits per element that the codec's grid (``bits``,
    ``clip``, ``grid_levels``: as :func:`fake_quantize`) makes of ``x (B, C, H, W)``: the
    entropy of the
    batch's soft level histogram. Each value at grid position ``s`` (``(x - lo) / step``,
    clamped to the grid) gives weight ``1 - |s - k|`` to the levels ``k`` within one step of
    it; the histogram is the mean of those weights over every element of the batch. At
    values on the grid it is the entropy of the quantised symbols' histogram exactly; a
    context coder (``prior``, ``context``) needs fewer bits than this memoryless bound.
    Returns a scalar (float32, bits per element)."""
    lo, step, levels = _grid(x, bits, clip, grid_levels)
    s = ((x.float() - lo) / step).clamp(0, levels)
    k = torch.arange(levels + 1, device=x.device, dtype=s.dtype)
    weights = (1 - (s.unsqueeze(-1) - k).abs()).clamp(min=0)   # (B, C, H, W, levels + 1)
    hist = weights.flatten(0, -2).mean(dim=0)
    return -(hist * torch.log2(hist.clamp(min=1e-12))).sum()


class FakeQuant(nn.Module):
    """:func:`fake_quantize` as a module (no parameters, no state): ``(B, C, H, W)`` in and
    out."""

    def __init__(self, bits: int, clip: float = 1.0, grid_levels: int = 0) -> None:
        super().__init__()
        QuantSpec(DType.UINT, bits, clip=clip, grid_levels=grid_levels)  # the codec's checks
        self.bits, self.clip, self.grid_levels = bits, clip, grid_levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quantize(x, self.bits, self.clip, self.grid_levels)

    def extra_repr(self) -> str:
        return (f"bits={self.bits}" + (f", clip={self.clip:g}" if self.clip < 1.0 else "")
                + (f", grid_levels={self.grid_levels}" if self.grid_levels else ""))


__all__ = ["FakeQuant", "fake_quantize", "soft_rate"]
