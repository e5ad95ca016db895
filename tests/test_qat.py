"""Quantisation-aware fine-tuning: the simulated quantiser is the codec's, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from aecnn.compression.qat import FakeQuant, fake_quantize
from aecnn.compression.quantize import QuantSpec, dequantize, quantize
from aecnn.core.split import SplitNetwork
from aecnn.errors import AecnnError


def _codec_roundtrip(x: torch.Tensor, bits: int, clip: str = "") -> torch.Tensor:
    spec = QuantSpec.parse(f"uint{bits}{clip}")
    out = []
    for xi in x.numpy():
        sym, lo, step = quantize(xi, spec)
        out.append(dequantize(sym, spec, lo, step, xi.shape))
    return torch.from_numpy(np.stack(out))


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_fake_quantize_is_the_codec(bits):
    g = torch.Generator().manual_seed(bits)
    x = torch.relu(torch.randn(3, 5, 7, 6, generator=g) * 3)  # post-ReLU, many zeros
    x[1] = 0.0                                                # all zero
    x[2] = 1.25                                               # constant
    y = fake_quantize(x, bits)
    assert torch.equal(y, _codec_roundtrip(x, bits))
    assert y[0].unique().numel() <= 2**bits


@pytest.mark.parametrize(("bits", "grid", "clip"), [(2, 3, 1.0), (2, 3, 0.9), (4, 9, 1.0)])
def test_a_grid_of_fewer_levels_fake_quantizes_as_the_codec(bits, grid, clip):
    g = torch.Generator().manual_seed(grid)
    x = torch.relu(torch.randn(3, 5, 7, 6, generator=g) * 3)
    x[1] = 0.0
    x[2, 0, 0, 0] = 50.0                                      # an outlier
    text = f"l{grid}" + ("" if clip == 1.0 else f"@p{100 * clip:g}")
    y = fake_quantize(x, bits, clip, grid)
    assert torch.equal(y, _codec_roundtrip(x, bits, text))
    assert y[0].unique().numel() <= grid < 2**bits
    assert repr(FakeQuant(bits, clip, grid)).endswith(f"grid_levels={grid})")


@pytest.mark.parametrize(("bits", "clip"), [(2, 0.9), (4, 0.99), (1, 0.5), (8, 0.95)])
def test_clipped_fake_quantize_is_the_clipped_codec(bits, clip):
    g = torch.Generator().manual_seed(bits)
    x = torch.relu(torch.randn(4, 6, 7, 5, generator=g) * 3)
    x[1] = 0.0
    x[2] = 0.0
    x[2, 0, 0, :2] = torch.tensor([1.0, 4.0])                 # the quantile is the minimum
    x[3, 0, 0, 0] = 100.0                                    # an outlier
    y = fake_quantize(x, bits, clip)
    assert torch.equal(y, _codec_roundtrip(x, bits, f"@p{100 * clip:g}"))
    assert y[3].max() < 100.0                                 # the outlier saturated


def test_clipped_straight_through_gradient_stops_at_the_saturated_values():
    x = torch.rand(2, 4, 5, 5)
    x[0, 0, 0, 0] = 10.0
    x.requires_grad_(True)
    w = torch.randn(2, 4, 5, 5)
    (fake_quantize(x, 2, 0.9) * w).sum().backward()
    q90 = torch.quantile(x.detach().flatten(1).double(), 0.9, dim=1).float()
    top = q90.view(-1, 1, 1, 1) + (q90.view(-1, 1, 1, 1) - x.detach().amin((1, 2, 3),
                                                                           keepdim=True)) / 6
    saturated = x.detach() > top
    assert saturated[0, 0, 0, 0] and 0 < saturated.sum() < x.numel() // 5
    assert torch.equal(x.grad[~saturated], w[~saturated])
    assert x.grad[saturated].abs().sum() == 0


def test_straight_through_gradient():
    x = torch.rand(2, 4, 3, 3, requires_grad=True)
    w = torch.randn(2, 4, 3, 3)
    (fake_quantize(x, 2) * w).sum().backward()
    assert torch.equal(x.grad, w)


def test_fake_quant_keeps_checkpoints_and_rejects_bad_bits():
    net = SplitNetwork(nn.Conv2d(3, 4, 1), nn.Identity(), nn.Conv2d(4, 2, 1))
    keys = set(net.state_dict())
    net.quant = FakeQuant(4)
    assert set(net.state_dict()) == keys  # no state: QAT checkpoints load as plain ones
    x = torch.rand(2, 3, 5, 5)
    z = fake_quantize(net.head(x), 4)
    assert torch.allclose(net(x), net.tail(z))
    with pytest.raises(AecnnError):
        FakeQuant(0)
    with pytest.raises(AecnnError):
        fake_quantize(x, 9)
    with pytest.raises(AecnnError):
        FakeQuant(2, clip=0.3)
    assert "clip=0.9" in repr(FakeQuant(2, clip=0.9))


def test_qat_grids_parse_and_name_their_stages():
    from aecnn.config import load_config
    from aecnn.errors import ConfigError
    from aecnn.training.aecnn import AecnnConfig

    cfg = load_config(AecnnConfig, None, ["qat_grids=[uint2, uint2@p90, uint1@p90, uint2l3]"])
    assert [str(s) for s in cfg.qat_specs] == ["uint2", "uint2@p90", "uint1@p90", "uint2l3"]
    assert [s.tag for s in cfg.qat_specs] == ["2", "2p90", "1p90", "2l3"]  # aecnn-q1p90-xV
    assert [(s.bits, s.clip, s.top) for s in cfg.qat_specs] == [
        (2, 1.0, 3), (2, 0.9, 3), (1, 0.9, 1), (2, 1.0, 2)]
    assert load_config(AecnnConfig).qat_specs == ()
    for bad, message in (("[uint9]", "1 to 8 bits"), ("[uint2@p30]", r"\[0.5, 1\]"),
                         ("[int2]", "unknown quantisation"), ("[float16]", "per-tensor"),
                         ("[uint4c]", "per-tensor"), ("[uint2, uint2]", "twice")):
        with pytest.raises(ConfigError, match=message):
            load_config(AecnnConfig, None, [f"qat_grids={bad}"])


@pytest.mark.parametrize(("bits", "clip", "grid"), [(2, 1.0, 0), (2, 0.9, 0), (1, 1.0, 0),
                                                    (4, 1.0, 0), (2, 1.0, 3)])
def test_soft_rate_is_the_symbols_entropy_on_the_grid(bits, clip, grid):
    from aecnn.compression.qat import soft_rate

    g = torch.Generator().manual_seed(bits)
    x = torch.relu(torch.randn(3, 4, 6, 6, generator=g))
    x[0, 0, 0, 0] = 9.0  # an outlier: saturates under a clipped grid
    q = fake_quantize(x, bits, clip, grid)  # on the grid: every weight is 0 or 1
    symbols = []
    text = (f"uint{bits}" + (f"l{grid}" if grid else "")
            + ("" if clip == 1.0 else f"@p{100 * clip:g}"))
    for qi in q.numpy():
        sym, _, _ = quantize(qi, QuantSpec.parse(text))
        symbols.append(sym.ravel())
    counts = np.bincount(np.concatenate(symbols), minlength=2**bits) / q.numel()
    counts = counts[counts > 0]
    assert soft_rate(q, bits, clip, grid).item() == pytest.approx(
        -(counts * np.log2(counts)).sum(), abs=1e-5)
    assert 0 <= soft_rate(x, bits, clip).item() <= bits


def test_soft_rate_gradient_lowers_the_coded_entropy():
    """Descending the estimate alone makes the quantised symbols cheaper: their empirical
    entropy falls, so the penalty pulls in the direction the coder pays for."""
    from aecnn.compression.qat import soft_rate

    def entropy(z: torch.Tensor) -> float:
        levels = torch.round((z - z.amin((1, 2, 3), keepdim=True))
                             / ((z.amax((1, 2, 3), keepdim=True)
                                 - z.amin((1, 2, 3), keepdim=True)) / 3)).long()
        p = torch.bincount(levels.flatten(), minlength=4).double() / levels.numel()
        p = p[p > 0]
        return float(-(p * p.log2()).sum())

    x = torch.rand(4, 8, 6, 6, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    start = entropy(x.detach())
    opt = torch.optim.SGD([x], lr=200.0)
    for _ in range(30):
        opt.zero_grad()
        soft_rate(x, 2).backward()
        assert x.grad.abs().sum() > 0
        opt.step()
    assert start > 1.9 and entropy(x.detach()) < start - 0.3
