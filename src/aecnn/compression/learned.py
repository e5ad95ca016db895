"""A learned entropy bottleneck at the split (the "Entropic Student" of Matsubara et al.,
WACV 2022): a small encoder on the device, a factorized prior over its latent, a decoder on
the server.

:class:`EntropyBottleneck` is the factorized density of Ballé et al. (ICLR 2018, appendix
6.1), as CompressAI's ``EntropyBottleneck``: per channel, a monotone cumulative
``c(x) = sigmoid(f_K(… f_1(x)))`` with ``f_k(x) = softplus(H_k) x + b_k`` (plus
``tanh(a_k) ⊙ tanh(·)`` between layers), filters ``(1, 3, 3, 3, 1)``. The likelihood of a
quantised value ``v`` is ``c(v + 1/2) − c(v − 1/2)`` (computed on the side of the median
where it does not cancel), lower-bounded by ``1e-9``.

- Training (``forward`` in train mode): additive uniform noise ``y + U(−1/2, 1/2)``; the
  likelihoods give the rate ``−Σ log2 p``.
- Deployment (eval mode): each channel's grid ``lo_c + s``, ``s = 0 … L_c − 1``, around its
  median, spans the density's central ``1 − 1e-9`` mass (at most 256 points); ``y`` rounds to
  ``lo_c + clip(round(y − lo_c), 0, L_c − 1)``, exactly the value the server decodes.
- ``update()`` freezes what coding needs: the grids and per-channel frequency tables
  (:class:`~aecnn.compression.factorized.FactorizedTables`, ``2**16`` per row, tails folded
  into the end symbols) in buffers, so they travel with the weights. ``compress`` refuses to
  run before it; putting the module in train mode clears them.

Differences from CompressAI: the grid is found by bisection on the learned cumulative at
``update()`` (and, before it, at every eval forward) instead of by learned ``quantiles`` and
an auxiliary loss; values beyond the grid saturate at its ends (CompressAI codes them with an
escape code), which the grid's 1e-9 tail mass makes rare and the eval forward reproduces, so
device and server agree bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from aecnn.compression.bottlenet import match_norm
from aecnn.compression.factorized import MAX_LEVELS, TOTAL, FactorizedTables, TablesError

TAIL_MASS = 1e-9
LIKELIHOOD_BOUND = 1e-9


class _LowerBound(torch.autograd.Function):
    """``max(x, bound)`` whose gradient still flows where it would raise ``x`` (CompressAI's
    ``LowerBound``), so a likelihood stuck at the bound can recover."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * ((x >= ctx.bound) | (grad < 0)).to(grad.dtype), None


class EntropyBottleneck(nn.Module):
    """Factorized prior over ``channels`` latent channels.

    ``forward(y (B, C, H, W)) -> (y_hat, likelihoods)``, both ``(B, C, H, W)``;
    ``compress(y (C, H, W))`` -> payload bytes and ``decompress(bytes, (C, H, W))`` -> the
    ``y_hat`` of eval mode; ``rate_bits(y)``: ``−Σ log2`` likelihood at deployment rounding.
    """

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3),
                 init_scale: float = 10.0) -> None:
        super().__init__()
        self.channels = channels
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]),
                                                         init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))
        self.register_buffer("table_lo", torch.zeros(channels))
        self.register_buffer("table_lengths", torch.zeros(channels, dtype=torch.int32))
        self.register_buffer("table_freqs", torch.zeros(channels, MAX_LEVELS,
                                                        dtype=torch.int32))
        self._tables: FactorizedTables | None = None

    # --------------------------------------------------------------------- density
    def _logits_cumulative(self, x: torch.Tensor) -> torch.Tensor:
        """``(C, 1, N) -> (C, 1, N)``: the logit of each channel's cumulative at ``x``
        (in ``x``'s dtype)."""
        for i, (m, b) in enumerate(zip(self.matrices, self.biases, strict=True)):
            x = torch.matmul(F.softplus(m.to(x.dtype)), x) + b.to(x.dtype)
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i].to(x.dtype)) * torch.tanh(x)
        return x

    def _likelihood(self, v: torch.Tensor) -> torch.Tensor:
        """``(C, 1, N)`` values -> ``c(v + 1/2) − c(v − 1/2)``, unbounded."""
        lower = self._logits_cumulative(v - 0.5)
        upper = self._logits_cumulative(v + 0.5)
        sign = -torch.sign(lower + upper).detach()
        return (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()

    @torch.no_grad()
    def quantiles(self) -> torch.Tensor:
        """``(C, 3)`` float64: each channel's ``TAIL_MASS / 2`` quantile, median and
        ``1 − TAIL_MASS / 2`` quantile of the learned density (bisection)."""
        t = math.log(2 / TAIL_MASS - 1)
        targets = torch.tensor([-t, 0.0, t], dtype=torch.float64)
        c = self.channels

        def logits(x: torch.Tensor) -> torch.Tensor:  # (C, 3) -> (C, 3)
            return self._logits_cumulative(x[:, None, :]).view(c, 3)

        lo = torch.full((c, 3), -1.0, dtype=torch.float64)
        hi = torch.full((c, 3), 1.0, dtype=torch.float64)
        for _ in range(64):  # widen until every target is bracketed (|x| < 2**64)
            low, high = logits(lo) > targets, logits(hi) < targets
            if not (low.any() or high.any()):
                break
            lo = torch.where(low, 2 * lo, lo)
            hi = torch.where(high, 2 * hi, hi)
        for _ in range(60):
            mid = (lo + hi) / 2
            below = logits(mid) < targets
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return (lo + hi) / 2

    def _grid(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each channel's grid: ``lo (C,)`` float32 and ``lengths (C,)`` int64, from the
        tables after ``update()``, else computed from the density now."""
        if self.updated:
            return self.table_lo, self.table_lengths.long()
        q = self.quantiles()
        median = q[:, 1]
        below = torch.ceil(median - q[:, 0]).clamp(0, MAX_LEVELS // 2 - 1)
        above = torch.ceil(q[:, 2] - median).clamp(0, MAX_LEVELS // 2)
        lo = (median - below).float().to(self.table_lo.device)
        return lo, (below + above + 1).long().to(self.table_lo.device)

    # --------------------------------------------------------------- train / eval
    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``y (B, C, H, W)`` -> ``(y_hat, likelihoods)``: ``y`` plus uniform noise in
        train mode, rounded to the channels' grids in eval mode."""
        with torch.autocast(y.device.type, enabled=False):
            y = y.float()
            noise = torch.empty_like(y).uniform_(-0.5, 0.5) if self.training else None
            y_hat = y + noise if noise is not None else self.round(y)
            b, c, h, w = y_hat.shape
            v = y_hat.permute(1, 0, 2, 3).reshape(c, 1, -1)
            p = _LowerBound.apply(self._likelihood(v), LIKELIHOOD_BOUND)
            return y_hat, p.reshape(c, b, h, w).permute(1, 0, 2, 3)

    def round(self, y: torch.Tensor) -> torch.Tensor:
        """Deployment rounding of ``y (B, C, H, W)``: ``lo + clip(round(y − lo), 0, L − 1)``
        per channel (float32; the server's ``lo + symbol`` bit for bit)."""
        lo, n = self._grid()
        lo4 = lo.view(1, -1, 1, 1)
        s = torch.round(y.float().detach() - lo4)
        s = torch.minimum(s.clamp_min(0), (n - 1).view(1, -1, 1, 1).to(s.dtype))
        return s + lo4 + (y - y.detach())  # straight-through where a gradient is asked

    def train(self, mode: bool = True) -> EntropyBottleneck:
        if mode:  # the density will move: the tables no longer describe it
            self.table_lengths.zero_()
            self._tables = None
        return super().train(mode)

    # ------------------------------------------------------------------- coding
    @property
    def updated(self) -> bool:
        """Whether ``update()`` froze the tables since the density last trained."""
        return bool((self.table_lengths > 0).all())

    @torch.no_grad()
    def update(self) -> FactorizedTables:
        """Freeze the grids and frequency tables (in buffers, saved with the weights) from
        the density as it is now; returns them."""
        self.table_lengths.zero_()
        lo, lengths = self._grid()
        c = self.channels
        pos = torch.arange(MAX_LEVELS, dtype=torch.float64)
        v = lo.double().cpu()[:, None] + pos[None, :]  # (C, 256)
        lower = self._logits_cumulative((v - 0.5)[:, None, :]).view(c, -1)
        upper = self._logits_cumulative((v + 0.5)[:, None, :]).view(c, -1)
        lower[:, 0] = -math.inf  # the end symbols take the tails
        n = lengths.cpu()
        upper[torch.arange(c), n - 1] = math.inf
        sign = -torch.sign(lower + upper)
        sign[sign == 0] = 1.0
        pmf = (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()
        inside = pos[None, :] < n[:, None]
        pmf = torch.where(inside, pmf, torch.zeros_like(pmf)).numpy()
        pmf = pmf / pmf.sum(1, keepdims=True)
        free = TOTAL - n.numpy()[:, None]
        freqs = np.where(inside.numpy(), 1 + np.floor(pmf * free), 0).astype(np.int64)
        top = freqs.argmax(1)
        freqs[np.arange(c), top] += TOTAL - freqs.sum(1)
        tables = FactorizedTables(lo.cpu().numpy(), n.numpy(), freqs)
        self.table_lo.copy_(torch.from_numpy(tables.lo))
        self.table_freqs.copy_(torch.from_numpy(freqs.astype(np.int32)))
        self.table_lengths.copy_(n.to(torch.int32))
        self._tables = tables
        return tables

    def tables(self) -> FactorizedTables:
        """The frozen tables (checked).

        Raises:
            TablesError: ``update()`` was not called since the density last trained, or
                the buffers hold malformed tables.
        """
        if not self.updated:
            raise TablesError("the entropy bottleneck has no tables: call update() after "
                              "training (aecnn export does)")
        if self._tables is None:
            self._tables = FactorizedTables(self.table_lo.cpu().numpy(),
                                            self.table_lengths.cpu().numpy(),
                                            self.table_freqs.cpu().numpy())
        return self._tables

    def compress(self, y: torch.Tensor) -> bytes:
        """Coder-6 payload of one latent ``y (C, H, W)`` or ``(1, C, H, W)``."""
        y = y[0] if y.dim() == 4 else y
        t = self.tables()
        return t.encode(t.symbols(y.detach().float().cpu().numpy()))

    def decompress(self, payload: bytes, shape: tuple[int, int, int]) -> torch.Tensor:
        """``y_hat (C, H, W)`` float32 of a :meth:`compress` payload."""
        t = self.tables()
        return torch.from_numpy(t.values(t.decode(payload, shape)))

    @torch.no_grad()
    def rate_bits(self, y: torch.Tensor) -> float:
        """``−Σ log2`` likelihood of ``y (B, C, H, W)`` (or ``(C, H, W)``) at deployment
        rounding under the learned density: what the payload should cost, in bits."""
        was = self.training
        self.training = False  # eval forward without clearing the tables
        try:
            _, p = self.forward(y if y.dim() == 4 else y[None])
        finally:
            self.training = was
        return float(-torch.log2(p.double()).sum())


def bits_per_image(likelihoods: torch.Tensor) -> torch.Tensor:
    """``−Σ log2 p`` over a batch's likelihoods ``(B, C, H, W)``, divided by ``B``."""
    return -torch.log2(likelihoods).sum() / likelihoods.shape[0]


class EntropicEncoder(nn.Module):
    """Device side: split tensor ``(B, C, H, W) -> (B, k, H', W')``, the real-valued latent
    the bottleneck quantises (``H' = ceil(H / 2)`` with ``spatial``). Two 3x3 convs with a
    ReLU between, ``C -> max(k, C/2) -> k``."""

    def __init__(self, channels: int, latent: int, spatial: bool = False) -> None:
        super().__init__()
        mid = max(latent, channels // 2)
        self.body = nn.Sequential(
            nn.Conv2d(channels, mid, 3, stride=2 if spatial else 1, padding=1),
            nn.ReLU(inplace=True), nn.Conv2d(mid, latent, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class EntropicDecoder(nn.Module):
    """Server side: ``(B, k, H', W') -> (B, C, H, W)``, ending in a batch norm and no
    activation: split tensors may be signed (EfficientNet's block outputs are linear) or
    post-ReLU, and the norm's scale and shift can start as those of the layer that made the
    split tensor (:meth:`match`). With ``spatial`` a stride-2 transposed conv restores
    ``size`` = ``(H, W)``."""

    def __init__(self, channels: int, latent: int, spatial: bool = False,
                 size: tuple[int, int] | None = None) -> None:
        super().__init__()
        mid = max(latent, channels // 2)
        last: nn.Module
        if spatial:
            h, w = size or (2, 2)
            last = nn.ConvTranspose2d(mid, channels, 3, stride=2, padding=1,
                                      output_padding=(1 - h % 2, 1 - w % 2), bias=False)
        else:
            last = nn.Conv2d(mid, channels, 3, padding=1, bias=False)
        self.body = nn.Sequential(nn.Conv2d(latent, mid, 3, padding=1), nn.ReLU(inplace=True),
                                  last, nn.BatchNorm2d(channels))

    def match(self, norm: nn.Module) -> None:
        """Start the output norm's scale and shift at ``norm``'s (the batch norm that made
        the split tensor), so that the decoder's first outputs have the split tensor's
        per-channel statistics instead of zero mean and unit variance."""
        match_norm(self.body[-1], norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class EntropicHead(nn.Module):
    """The device half: backbone head, encoder, then the bottleneck's quantisation.
    ``(B, 3, S, S) -> (B, k, H', W')``: noisy latents in train mode (their likelihoods kept
    in ``likelihoods`` for the rate term), grid values in eval mode.

    ``requires_grad_`` is passed on to each child (a frozen backbone stays frozen). With
    ``frozen`` the whole head is held as deployed: no gradients, and ``train()`` leaves it in
    eval mode, so it sends grid values (what the Entropic Student's second stage tunes the
    server half on).
    """

    def __init__(self, backbone: nn.Module, encoder: EntropicEncoder,
                 bottleneck: EntropyBottleneck, frozen: bool = False) -> None:
        super().__init__()
        self.backbone, self.encoder, self.bottleneck = backbone, encoder, bottleneck
        self.likelihoods: torch.Tensor | None = None
        self.split: torch.Tensor | None = None  # the backbone's output, in training
        self.frozen = frozen
        if frozen:
            super().requires_grad_(False)

    def train(self, mode: bool = True) -> EntropicHead:
        return super().train(mode and not self.frozen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone(x)
        y_hat, p = self.bottleneck(self.encoder(f))
        self.likelihoods = p if self.training else None
        self.split = f.detach() if self.training else None
        return y_hat

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's output before quantisation ``(B, k, H', W')``."""
        return self.encoder(self.backbone(x))

    def requires_grad_(self, requires_grad: bool = True) -> EntropicHead:
        for child in self.children():
            child.requires_grad_(requires_grad and not self.frozen)
        return self


__all__ = ["EntropicDecoder", "EntropicEncoder", "EntropicHead", "EntropyBottleneck",
           "bits_per_image"]
