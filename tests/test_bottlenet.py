"""BottleNet++ baseline: module shapes and parameter counts, freezing, stages end to end."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from torch import nn

from aecnn.cli.bottlenet import add_parser, render_bottlenet_table
from aecnn.cli.main import main as aecnn_main
from aecnn.compression.bottlenet import (
    BottleNetDecoder,
    BottleNetEncoder,
    BottleNetHead,
    compressed_channels,
    match_norm,
)
from aecnn.config import load_config
from aecnn.models import get_spec, split_model
from aecnn.training.aecnn import StageBudget
from aecnn.training.bottlenet import (
    BottleNetConfig,
    BottleNetPipeline,
    Fixed,
    ModuleBudget,
    train_bottlenet,
)
from aecnn.training.checkpoint import load_checkpoint

# ------------------------------------------------------------------------------- modules


@pytest.mark.parametrize("spatial", [False, True])
@pytest.mark.parametrize("hw", [(8, 8), (7, 9), (1, 1)])
def test_shapes_round_trip(spatial, hw):
    c, v = 16, 4
    x = torch.randn(2, c, *hw)
    enc, dec = BottleNetEncoder(c, v, spatial), BottleNetDecoder(c, v, spatial, size=hw)
    z = enc(x)
    expect = tuple(-(-s // 2) for s in hw) if spatial else hw
    assert z.shape == (2, c // v, *expect)
    y = dec(z)
    assert y.shape == x.shape and (y >= 0).all()


def test_signed_decoder_keeps_negative_values():
    """A split tensor that can be negative (EfficientNet's blocks) is rebuilt without the
    final ReLU; the registered specs say which split points are signed."""
    z = torch.rand(2, 4, 5, 5)
    relu, signed = BottleNetDecoder(16, 4), BottleNetDecoder(16, 4, signed=True)
    signed.load_state_dict(relu.state_dict())  # same parameters, only the activation differs
    assert (relu(z) >= 0).all() and (signed(z) < 0).any()
    assert torch.equal(relu(z), signed(z).clamp_min(0))
    eff, res = get_spec("efficientnet_lite0"), get_spec("resnet50")
    assert not eff.split_point("stem").signed and eff.split_point("blocks.3").signed
    assert not any(sp.signed for sp in res.split_points)


def test_match_norm_starts_a_decoder_at_the_split_norm():
    """A signed decoder's output norm starts at the norm that made the split tensor, so its
    first outputs carry that tensor's per-channel scale and shift (in eval mode, a decoder
    whose norm has unit running variance returns the norm's shift plus scale times input)."""
    src = nn.BatchNorm2d(16)
    with torch.no_grad():
        src.weight.uniform_(2.0, 3.0)
        src.bias.uniform_(-1.0, 1.0)
    dec = BottleNetDecoder(16, 4, signed=True)
    match_norm(dec.bn, src)
    assert torch.equal(dec.bn.weight, src.weight) and torch.equal(dec.bn.bias, src.bias)
    other = BottleNetDecoder(8, 4, signed=True)
    before = other.bn.weight.clone()
    match_norm(other.bn, src)  # another channel count: left as it was
    match_norm(other.bn, None)
    assert torch.equal(other.bn.weight, before)


def test_spatial_decoder_defaults_to_even_sizes():
    z = torch.rand(1, 2, 5, 3)
    assert BottleNetDecoder(8, 4, spatial=True)(z).shape == (1, 8, 10, 6)


def test_encoder_output_in_unit_interval():
    enc = BottleNetEncoder(8, 2).train()
    z = enc(100 * torch.randn(4, 8, 6, 6))
    assert z.min() >= 0 and z.max() <= 1
    assert z.min() < 0.5 < z.max()


@pytest.mark.parametrize("spatial", [False, True])
@pytest.mark.parametrize("c,v", [(64, 2), (64, 64), (256, 8)])
def test_parameter_counts(c, v, spatial):
    k = c // v

    def count(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    assert count(BottleNetEncoder(c, v, spatial)) == 9 * c * k + 2 * k
    assert count(BottleNetDecoder(c, v, spatial)) == 9 * k * c + 2 * c


def test_bad_ratio():
    assert compressed_channels(64, 64) == 1
    for v in (0, 3, 128):
        with pytest.raises(ValueError, match="does not divide"):
            BottleNetEncoder(64, v)


def test_fixed_and_head_keep_the_backbone_frozen():
    seq = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    keys = set(seq.state_dict())
    fixed = Fixed(seq, frozen=True)
    assert set(fixed.state_dict()) == keys
    head = BottleNetHead(fixed, BottleNetEncoder(4, 2))
    head.requires_grad_(True).train()
    assert not any(p.requires_grad for p in fixed.parameters())
    assert all(p.requires_grad for p in head.encoder.parameters())
    assert not fixed.training and not fixed[1].training and head.encoder.training
    stats = fixed[1].running_mean.clone()
    head(torch.randn(2, 3, 4, 4)).sum().backward()
    assert torch.equal(fixed[1].running_mean, stats) and fixed[0].weight.grad is None
    head.requires_grad_(False)
    assert not any(p.requires_grad for p in head.parameters())
    free = Fixed(nn.Sequential(nn.Conv2d(3, 4, 1)), frozen=False)
    free.requires_grad_(True).train()
    assert free.training and free[0].weight.requires_grad


# -------------------------------------------------------------------------- config, CLI


def test_config_file_and_partial_overrides():
    cfg = load_config(BottleNetConfig, "configs/bottlenet/resnet50_cpu.yaml")
    assert cfg.points == ("stem", "layer1.0") and cfg.ratios == (2, 4, 8, 16, 32, 64)
    assert cfg.module.epochs == 1 and cfg.module.name == "adamw"
    assert cfg.joint.epochs == 1 and cfg.joint.name == "sgd" and cfg.joint.lr == 0.01
    assert cfg.out == "runs/bottlenet/resnet50_cpu64"
    # a partial override keeps the module stage's own defaults (AdamW, encoder + decoder)
    cfg = load_config(BottleNetConfig, overrides=["module.epochs=3", "joint.epochs=0"])
    assert isinstance(cfg.module, ModuleBudget)
    assert (cfg.module.epochs, cfg.module.name, cfg.module.lr) == (3, "adamw", 1e-4)
    assert cfg.module.trains == ("head", "bridge") and cfg.joint.epochs == 0


def test_parser():
    parser = argparse.ArgumentParser(prog="aecnn")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train-bottlenet", "--config", "c.yaml", "--set", "spatial=true",
                              "--set", "ratios=[4]", "--no-progress"])
    assert args.command == "train-bottlenet" and args.config == "c.yaml"
    assert args.overrides == ["spatial=true", "ratios=[4]"] and args.no_progress
    assert callable(args.func)


def test_cli_reports_config_errors(capsys):
    assert aecnn_main(["train-bottlenet", "--set", "nope=1"]) == 2
    assert "unknown config key nope" in capsys.readouterr().err


# ---------------------------------------------------------------------------- end to end

AECNN_KEYS = {"kind", "stage", "model", "input_size", "point", "ratio", "trains", "freezes",
              "val_top1", "test_top1", "test_top5", "n_test", "compressed_shape",
              "params_head", "params_bridge", "params_tail", "flops_head", "flops_bridge",
              "flops_tail", "manifest_digest", "budget", "seconds"}


@pytest.fixture()
def tiny_baseline(caltech_root, tmp_path):
    """A one-epoch ResNet-18 at 32 px on one training image per class."""
    from aecnn.cli.main import main

    base = tmp_path / "base"
    assert main(["train-baseline", "--data", str(caltech_root), "--model", "resnet18",
                 "--epochs", "1", "--input-size", "32", "--subset", "1", "--out", str(base),
                 "--no-progress", "--set", f"data.manifest={tmp_path / 'm.json'}",
                 "--set", "data.workers=0", "--set", "threads=1"]) == 0
    return base / "best.pt"


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stages_freeze_and_resume(tiny_baseline, tmp_path, capsys):
    out = tmp_path / "bottlenet"
    cfg = BottleNetConfig(baseline=str(tiny_baseline), points=("stem",), ratios=(2, 8),
                          module=ModuleBudget(epochs=1, lr=1e-3), joint=StageBudget(epochs=1),
                          out=str(out), threads=1)
    records = train_bottlenet(cfg, progress=False)
    by = {r["stage"]: r for r in records}
    assert list(by) == ["bottlenet-module-x2", "bottlenet-x2", "bottlenet-module-x8",
                        "bottlenet-x8"]
    for r in records:
        assert r.keys() >= AECNN_KEYS and r["method"] == "bottlenet++" and r["point"] == "stem"
        assert r["split_shape"] == [64, 8, 8] and not r["spatial"]
    mod, joint = by["bottlenet-module-x8"], by["bottlenet-x8"]
    assert mod["compressed_shape"] == joint["compressed_shape"] == [8, 8, 8]
    assert mod["params_bridge"] == 9 * 8 * 64 + 2 * 64
    assert mod["params_head"] == joint["params_head"]
    assert mod["trains"] == ["head", "bridge"] and mod["freezes"] == ["tail"]
    assert mod["backbone_frozen"] and not joint["backbone_frozen"]
    assert json.loads((out / "stem" / "bottlenet-x2" / "result.json").read_text())["ratio"] == 2

    # the module stage trained encoder and decoder only: the backbone head is exactly the
    # baseline's (weights and BN statistics), the tail's weights too (its BN statistics
    # follow the decoder); the joint stage moved everything
    pipe = BottleNetPipeline(cfg, progress=False)
    sp = pipe.spec.split_point("stem")
    head, tail = split_model(pipe.fresh_model(), pipe.spec, sp)
    tail_params = dict(tail.named_parameters())
    init = pipe.build(sp, 8, frozen=True).state_dict()
    for stage, moved in (("bottlenet-module-x8", False), ("bottlenet-x8", True)):
        trained = load_checkpoint(out / "stem" / stage / "best.pt")["model"]
        backbone = {k.removeprefix("head.backbone."): v for k, v in trained.items()
                    if k.startswith("head.backbone.")}
        assert _same(backbone, head.state_dict()) is not moved
        tail_state = {k.removeprefix("tail."): v for k, v in trained.items()
                      if k.startswith("tail.")}
        assert _same({k: tail_state[k] for k in tail_params}, tail_params) is not moved
        assert not _same(tail_state, tail.state_dict())  # BN statistics
        assert not torch.equal(trained["head.encoder.conv.weight"],
                               init["head.encoder.conv.weight"])
        assert not torch.equal(trained["bridge.conv.weight"], init["bridge.conv.weight"])

    # a rerun (through the command line) loads every finished stage instead of training it
    results = sorted(out.glob("*/*/result.json"))
    before = {p: p.read_text() for p in results}
    capsys.readouterr()
    assert aecnn_main(["train-bottlenet", "--no-progress", "--set",
                           f"baseline={tiny_baseline}", "--set", "points=[stem]",
                           "--set", "ratios=[2, 8]", "--set", "module.epochs=1",
                           "--set", "module.lr=0.001", "--set", "joint.epochs=1",
                           "--set", f"out={out}", "--set", "threads=1"]) == 0
    assert {p: p.read_text() for p in sorted(out.glob("*/*/result.json"))} == before
    table = capsys.readouterr().out
    assert f"| stem | 64 x 8 x 8 | 8x | {mod['test_top1']:.2f} | {joint['test_top1']:.2f} " \
           "| 8 x 8 x 8 |" in table
    assert table.strip() == render_bottlenet_table(records).strip()


def test_spatial_module_only(tiny_baseline, tmp_path):
    cfg = BottleNetConfig(baseline=str(tiny_baseline), points=("layer1.0",), ratios=(4,),
                          module=ModuleBudget(epochs=1), joint=StageBudget(epochs=0),
                          spatial=True, out=str(tmp_path / "sp"), threads=1)
    (rec,) = train_bottlenet(cfg, progress=False)
    assert rec["stage"] == "bottlenet-module-x4" and rec["spatial"]
    assert rec["split_shape"] == [64, 8, 8] and rec["compressed_shape"] == [16, 4, 4]
    assert not (tmp_path / "sp" / "layer1.0" / "bottlenet-x4").exists()
