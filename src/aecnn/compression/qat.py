"""Quantisation-aware fine-tuning: the codec's integer quantisation, simulated in the graph.

:func:`fake_quantize` rounds each sample of a split tensor to the same grid as
:func:`aecnn.compression.quantize.quantize` with a per-tensor ``QuantSpec`` (``lo`` = the
sample's minimum, ``step`` = its range / (2**bits - 1), round half to even), so a network
fine-tuned through :class:`FakeQuant` sees in training exactly the values the server will
decode. The rounding has no useful gradient; the straight-through estimator passes the
gradient of the output unchanged to the input (Bengio et al., 2013).
"""

from __future__ import annotations

import torch
from torch import nn

from aecnn.errors import AecnnError


def fake_quantize(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Quantise and dequantise every sample of ``x (B, C, H, W)`` to ``bits`` bits, per
    tensor, as the codec does; the gradient flows straight through. Returns ``(B, C, H, W)``.
    """
    if not 1 <= bits <= 8:
        raise AecnnError(f"integer quantisation takes 1 to 8 bits, not {bits}")
    levels = 2**bits - 1
    flat = x.detach().float().flatten(1)
    lo = flat.amin(dim=1)
    step = (flat.amax(dim=1) - lo) / levels
    step = torch.where(step > 0, step, torch.ones_like(step))
    shape = (-1,) + (1,) * (x.dim() - 1)
    lo, step = lo.view(shape), step.view(shape)
    q = torch.clamp(torch.round((x.detach().float() - lo) / step), 0, levels)
    deq = (q * step + lo).to(x.dtype)
    return x + (deq - x).detach()


class FakeQuant(nn.Module):
    """:func:`fake_quantize` as a module (no parameters, no state): ``(B, C, H, W)`` in and
    out."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        if not 1 <= bits <= 8:
            raise AecnnError(f"integer quantisation takes 1 to 8 bits, not {bits}")
        self.bits = bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quantize(x, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


__all__ = ["FakeQuant", "fake_quantize"]
