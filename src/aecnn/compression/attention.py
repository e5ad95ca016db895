"""The channel-attention (CA) module of the paper (eqs. 5-7) and channel importance (eq. 8).

For a split tensor ``X`` of shape ``(B, C, H, W)``::

    A = AvgPool(X), M = MaxPool(X)                      (B, C)     eq. (5)
    Â = (A - mean_c A) / sqrt(var_c A + eps), same for M            eq. (6)
    Q = sigmoid(Â + M̂)                                  (B, C, 1, 1) eq. (7)
    CA(X) = Q * X

mean and variance are taken across the channels of each sample (population variance).
``affine=True`` adds a learnable per-channel scale and shift after each normalisation, as in
gated channel transformation (the paper's ref. [12]); the paper's form has none.
"""

from __future__ import annotations

import torch
from torch import nn


def _normalise(v: torch.Tensor, eps: float) -> torch.Tensor:
    """``(B, C)`` -> normalised across C, per sample."""
    mu = v.mean(dim=1, keepdim=True)
    var = v.var(dim=1, unbiased=False, keepdim=True)
    return (v - mu) / torch.sqrt(var + eps)


class ChannelAttention(nn.Module):
    """CA module: ``(B, C, H, W) -> (B, C, H, W)``, re-weighting channels by ``Q``."""

    def __init__(self, channels: int, eps: float = 1e-5, affine: bool = False) -> None:
        super().__init__()
        if eps <= 0:
            raise ValueError("eps must be > 0")
        self.channels, self.eps, self.affine = channels, eps, affine
        if affine:
            self.gamma = nn.Parameter(torch.ones(2, channels))
            self.beta = nn.Parameter(torch.zeros(2, channels))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The attention map ``Q`` of eq. (7), shape ``(B, C, 1, 1)``."""
        a = _normalise(x.mean(dim=(2, 3)), self.eps)
        m = _normalise(x.amax(dim=(2, 3)), self.eps)
        if self.affine:
            a = a * self.gamma[0] + self.beta[0]
            m = m * self.gamma[1] + self.beta[1]
        return torch.sigmoid(a + m)[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


@torch.no_grad()
def channel_importance(head: nn.Module, ca: ChannelAttention, batches) -> torch.Tensor:
    """Eq. (8): the attention map averaged over every sample of ``batches``.

    Args:
        head: the device head up to the split point (run in eval mode).
        ca: the trained CA module inserted after it.
        batches: iterable of input batches ``(B, 3, H, W)`` or ``(images, labels)`` pairs.
    Returns:
        ``(C,)`` importance, one value per channel.
    """
    was = head.training, ca.training
    head.eval()
    ca.eval()
    total, n = None, 0
    for batch in batches:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        device = next(head.parameters()).device
        q = ca.attention(head(x.to(device)))[:, :, 0, 0].double()
        total = q.sum(0) if total is None else total + q.sum(0)
        n += q.shape[0]
    head.train(was[0])
    ca.train(was[1])
    if n == 0:
        raise ValueError("no samples to average the attention over")
    return (total / n).float().cpu()


def keep_indices(importance: torch.Tensor, ratio: int) -> list[int]:
    """The ``C / ratio`` most important channels (ties broken by lower index), sorted."""
    c = importance.numel()
    if ratio < 1 or c % ratio:
        raise ValueError(f"ratio {ratio} does not divide the {c} channels")
    order = sorted(range(c), key=lambda i: (-float(importance[i]), i))
    return sorted(order[: c // ratio])
