"""Fig. 4: attention weights of three random training batches at one split point, and how
consistent their channel rankings are (Spearman, Kendall, top-C/V overlap)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from aecnn.records import write_record


def _ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="stable")
    r = np.empty(len(v))
    r[order] = np.arange(len(v))
    return r


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties broken by position)."""
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def kendall(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-a over all channel pairs."""
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    n = len(a)
    return float((da * db).sum() / (n * (n - 1)))


def top_overlap(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Fraction of the top-k channels of ``a`` that are also top-k in ``b``."""
    return len(set(np.argsort(-a)[:k]) & set(np.argsort(-b)[:k])) / k


def batch_attention(net, dataset, batches: int, batch_size: int, seed: int,
                    device: torch.device) -> np.ndarray:
    """``(batches, C)``: the attention map averaged over each of ``batches`` random batches."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(dataset), generator=g)[: batches * batch_size].tolist()
    out = []
    with torch.no_grad():
        for b in range(batches):
            x = torch.stack([dataset[i][0] for i in perm[b * batch_size:(b + 1) * batch_size]])
            out.append(net.bridge.attention(net.head(x.to(device)))[:, :, 0, 0].mean(0).cpu())
    return torch.stack(out).numpy()


def fig4(weights: np.ndarray, importance: np.ndarray, point: str, ratios: tuple[int, ...],
         out: Path, extra: dict) -> dict:
    """Write ``fig4_<point>.json`` and ``.png``; returns the record."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = weights.shape[1]
    pairs = [(i, j) for i in range(len(weights)) for j in range(i + 1, len(weights))]
    stats = {
        "spearman": [spearman(weights[i], weights[j]) for i, j in pairs],
        "kendall": [kendall(weights[i], weights[j]) for i, j in pairs],
        "top_overlap": {str(v): [top_overlap(weights[i], weights[j], c // v) for i, j in pairs]
                        for v in ratios if c // v >= 1},
        "spearman_vs_importance": [spearman(w, importance) for w in weights],
    }
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=110)
    for i, w in enumerate(weights):
        ax.plot(np.arange(c), w, marker="o", ms=2.5, lw=0.8, label=f"batch {i + 1}")
    ax.set_xlabel(f"channel of the split tensor at {point}")
    ax.set_ylabel("attention weight")
    ax.set_title(f"Channel attention of three random batches (Spearman "
                 f"{np.mean(stats['spearman']):.2f}, Kendall {np.mean(stats['kendall']):.2f})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"fig4_{point}.png")
    plt.close(fig)
    return write_record(out / f"fig4_{point}.json", {
        "kind": "fig4", "point": point, "weights": weights.tolist(), **stats, **extra})
