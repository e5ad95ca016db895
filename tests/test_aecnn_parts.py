"""Channel attention (eqs. 5-8), physical pruning and feature recovery."""

from __future__ import annotations

import math

import pytest
import torch

from aecnn.compression.attention import ChannelAttention, channel_importance, keep_indices
from aecnn.compression.pruning import pruned_head
from aecnn.compression.recovery import QUIET_SCALE, FeatureRecovery, ZeroFill
from aecnn.models import create_model, get_spec, split_model


def test_ca_matches_hand_computation():
    x = torch.tensor([[[[1.0, 3.0]], [[0.0, 0.0]], [[2.0, 8.0]]]])  # (1, 3, 1, 2)
    eps = 1e-5
    avg, mx = [2.0, 0.0, 5.0], [3.0, 0.0, 8.0]

    def norm(v):
        mu = sum(v) / 3
        var = sum((a - mu) ** 2 for a in v) / 3
        return [(a - mu) / math.sqrt(var + eps) for a in v]

    q = [1 / (1 + math.exp(-(a + m))) for a, m in zip(norm(avg), norm(mx), strict=True)]
    ca = ChannelAttention(3, eps)
    got = ca.attention(x)
    assert got.shape == (1, 3, 1, 1)
    torch.testing.assert_close(got.flatten(), torch.tensor(q), rtol=0, atol=1e-6)
    torch.testing.assert_close(ca(x), x * torch.tensor(q).view(1, 3, 1, 1))


def test_affine_variant_starts_as_paper_form_and_learns():
    x = torch.randn(4, 6, 5, 5)
    plain, affine = ChannelAttention(6), ChannelAttention(6, affine=True)
    torch.testing.assert_close(plain(x), affine(x))
    assert sum(p.numel() for p in affine.parameters()) == 24
    assert not list(plain.parameters())


def test_importance_is_the_average_attention():
    torch.manual_seed(0)
    head = torch.nn.Conv2d(3, 8, 3)
    ca = ChannelAttention(8)
    batches = [torch.randn(5, 3, 8, 8), torch.randn(3, 3, 8, 8)]
    with torch.no_grad():
        maps = torch.cat([ca.attention(head(b))[:, :, 0, 0] for b in batches])
    imp = channel_importance(head, ca, batches)
    torch.testing.assert_close(imp, maps.mean(0), rtol=0, atol=1e-6)
    assert keep_indices(torch.tensor([0.1, 0.9, 0.5, 0.9]), 2) == [1, 3]
    with pytest.raises(ValueError):
        keep_indices(imp, 3)


@pytest.mark.parametrize(("name", "point", "physical"), [
    ("resnet50", "stem", True), ("resnet50", "layer1.0", True), ("resnet50", "layer1.1", False),
    ("resnet18", "layer1.0", False), ("resnet18", "layer2.0", True),
    ("efficientnet_lite0", "blocks.1", True),
])
def test_pruned_head_gives_exactly_the_kept_channels(name, point, physical):
    torch.manual_seed(0)
    spec = get_spec(name)
    model = create_model(name, 10).eval()
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    c = spec.split_point(point).channels
    keep = sorted(torch.randperm(c)[: c // 4].tolist())
    head, _ = split_model(model, spec, point)
    phead, is_physical = pruned_head(model, spec, point, keep)
    assert is_physical == physical
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        full, part = head(x), phead.eval()(x)
    assert part.shape[1] == len(keep)
    # Fewer filters may change the convolution's summation order: float32 tolerance.
    torch.testing.assert_close(part, full[:, keep], rtol=1e-5, atol=1e-5)
    if physical:
        emit = spec.split_point(point).emitters[0][0]
        assert phead_param_count(phead) < phead_param_count(head)
        assert model.get_submodule(emit).out_channels == c  # the original is untouched


def phead_param_count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("shape", ["1x1", "3x3"])
def test_feature_recovery_keeps_received_channels_in_place(shape):
    keep = [1, 4, 6]
    fr = FeatureRecovery(keep, 8, shape)
    x = torch.randn(2, 3, 5, 5)
    out = fr(x)
    assert out.shape == (2, 8, 5, 5)
    assert torch.equal(out[:, keep], x)
    missing = [0, 2, 3, 5, 7]
    assert torch.equal(out[:, missing], fr.net(x))
    zf = ZeroFill(keep, 8)(x)
    assert torch.equal(zf[:, keep], x) and zf[:, missing].abs().sum() == 0


@pytest.mark.parametrize("shape", ["1x1", "3x3"])
def test_quiet_feature_recovery_starts_near_zero_fill_and_still_learns(shape):
    keep, missing = [1, 4, 6], [0, 2, 3, 5, 7]
    x = torch.randn(4, 3, 6, 6)
    torch.manual_seed(0)
    loud = FeatureRecovery(keep, 8, shape)
    torch.manual_seed(0)
    quiet = FeatureRecovery(keep, 8, shape, init="quiet")
    loud.eval(), quiet.eval()
    ref = loud(x)[:, missing]
    out = quiet(x)
    assert torch.equal(out[:, keep], x)
    # same draw, last layer scaled: the recovered channels are ~1/100 of the default ones
    assert 0 < out[:, missing].abs().max() <= QUIET_SCALE * ref.abs().max() * 1.001 + 1e-6
    out[:, missing].sum().backward()  # about half of the outputs pass the final ReLU
    grad = quiet.net[-2].weight.grad
    assert grad is not None and grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown FR init"):
        FeatureRecovery(keep, 8, shape, init="loud")  # type: ignore[arg-type]


@pytest.mark.parametrize("hw", [(16, 16), (7, 10)])
def test_half_size_head_and_upsampled_bridge(hw):
    """``spatial``: the device averages 2x2 blocks (a last odd row or column over what it
    has), the server upsamples to the split point's exact size before its bridge."""
    from torch import nn

    from aecnn.compression.spatial import Upsampled, halved

    x = torch.rand(2, 3, *hw)
    z = halved(nn.Identity())(x)
    assert z.shape == (2, 3, -(-hw[0] // 2), -(-hw[1] // 2))
    assert torch.allclose(z[:, :, 0, 0], x[:, :, :2, :2].mean(dim=(2, 3)))
    if hw[0] % 2:
        assert torch.allclose(z[:, :, -1, 0], x[:, :, -1, :2].mean(dim=2))
    bridge = ZeroFill([0, 2, 5], 6)
    full = Upsampled(bridge, hw)(z)
    assert full.shape == (2, 6, *hw)
    assert torch.equal(full[:, [0, 2, 5], :2, :2], z[:, :, :1, :1].expand(-1, -1, 2, 2))
    assert not full[:, [1, 3, 4]].any()
