"""The learned entropy bottleneck (Entropic Student): the factorized prior, wire coder 6,
the ``entropic`` bridge, the edge server, the training stages, and the core without
CompressAI."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from aecnn.compression.codec import decode_packet
from aecnn.compression.errors import FieldError, PayloadError
from aecnn.compression.factorized import (
    FACTORIZED_CODER_ID,
    FactorizedCodec,
    FactorizedTables,
    TablesError,
)
from aecnn.compression.learned import EntropyBottleneck, bits_per_image
from aecnn.compression.wire import Packet
from aecnn.core.split import SplitMeta, SplitNetwork, VariantError, load_network, save_network
from aecnn.models import get_spec

# The payload (fingerprint + 32-bit rANS words) against the prior's -sum(log2 p) / 8 at
# deployment rounding: within this fraction plus these bytes (the fingerprint, the final
# rANS state and word padding; the tables' 2**16 quantisation and folded tails).
RATE_TOLERANCE = (0.02, 8)


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core machine the tiny prior's ops run 50x slower
    with two threads spinning against other work."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _trained_bottleneck(channels: int = 8, steps: int = 60) -> tuple[EntropyBottleneck,
                                                                     torch.Tensor]:
    """A prior fitted for ``steps`` Adam steps on Gaussian latents of spread 0.5 … 6."""
    torch.manual_seed(0)
    eb = EntropyBottleneck(channels)
    data = (torch.randn(32, channels, 8, 8) * torch.linspace(0.5, 6, channels).view(1, -1, 1, 1)
            + 2.0)
    opt = torch.optim.Adam(eb.parameters(), 1e-2)
    for _ in range(steps):
        _, p = eb(data)
        loss = bits_per_image(p)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return eb.eval(), data


def test_bottleneck_round_trip_is_bit_exact_through_the_wire():
    eb, data = _trained_bottleneck()
    tables = eb.update()
    x = data[:1]
    y_hat, p = eb(x)
    assert p.shape == x.shape and (p > 0).all() and (p <= 1).all()
    packet, stats = FactorizedCodec(tables).encode(x, model="m", split="s")
    wire = packet.to_bytes()
    back = Packet.from_bytes(wire)
    h = back.header
    assert h.coder == FACTORIZED_CODER_ID and h.qparams == 2 and h.step == (1.0,) * 8
    assert h.bits == tables.bits and stats.payload_bytes == len(back.payload)
    decoded = decode_packet(back, [tables])
    assert torch.equal(decoded, y_hat[0])  # the server gets the eval forward, bit for bit
    assert torch.equal(eb.decompress(eb.compress(x), (8, 8, 8)), y_hat[0])
    # values beyond the grid saturate at its ends, identically on both sides
    far = x.clone()
    far[0, 0, 0, 0], far[0, 1, 0, 0] = 1e6, -1e6
    packet, _ = FactorizedCodec(tables).encode(far)
    assert torch.equal(decode_packet(Packet.from_bytes(packet.to_bytes()), tables),
                       eb(far)[0][0])


def test_a_channel_of_one_symbol_is_certain_and_not_coded():
    """A channel whose grid holds one symbol (a latent channel the rate term switched off)
    costs no bits: it is not in the stream, and the decoder fills it with that symbol."""
    freqs = np.zeros((3, 256), np.int64)
    freqs[0, 0] = freqs[2, 0] = 65536
    freqs[1, :3] = [65534, 1, 1]
    tables = FactorizedTables(np.array([-1.0, 0.0, 2.0]), np.array([1, 3, 1]), freqs)
    x = torch.zeros(3, 4, 4)
    x[0], x[1, 0, 0], x[1, 2, 3], x[2] = 5.0, 2.0, 1.0, -7.0  # channels 0, 2 saturate
    packet, _ = FactorizedCodec(tables).encode(x[None])
    back = decode_packet(Packet.from_bytes(packet.to_bytes()), tables)
    want = torch.zeros(3, 4, 4)
    want[0], want[1, 0, 0], want[1, 2, 3], want[2] = -1.0, 2.0, 1.0, 2.0
    assert torch.equal(back, want)
    only = np.zeros((1, 256), np.int64)
    only[0, :3] = freqs[1, :3]
    alone = FactorizedTables(np.array([0.0]), np.array([3]), only)
    # the stream is channel 1's alone (the fingerprints differ)
    assert tables.encode(tables.symbols(x.numpy()))[2:] == alone.encode(
        alone.symbols(x[1:2].numpy()))[2:]
    certain = np.zeros((2, 256), np.int64)
    certain[:, 0] = 65536
    none = FactorizedTables(np.zeros(2), np.ones(2), certain)
    assert len(none.encode(np.zeros((2, 4, 4), np.uint8))) == 2  # the fingerprint alone
    assert (none.decode(none.encode(np.zeros((2, 4, 4), np.uint8)), (2, 4, 4)) == 0).all()


def test_rate_estimate_matches_the_payload():
    eb, data = _trained_bottleneck()
    eb.update()
    frac, slack = RATE_TOLERANCE
    for i in range(4):
        x = data[i: i + 1]
        real = len(eb.compress(x))
        est = eb.rate_bits(x) / 8
        assert abs(real - est) <= frac * est + slack, (real, est)


def test_update_is_required_and_training_clears_the_tables():
    eb, data = _trained_bottleneck(steps=2)
    with pytest.raises(TablesError, match="update"):
        eb.compress(data[0])
    before = eb(data[:2])[0]
    eb.update()
    assert eb.updated and torch.equal(eb(data[:2])[0], before)  # same grid either way
    eb.train()
    assert not eb.updated
    with pytest.raises(TablesError):
        eb.tables()


def test_decoder_refuses_other_tables_and_grids():
    eb, data = _trained_bottleneck(steps=5)
    tables = eb.update()
    packet, _ = FactorizedCodec(tables).encode(data[0])
    with pytest.raises(PayloadError, match="holds none"):
        decode_packet(packet, [])
    other = EntropyBottleneck(8)
    other.eval()
    with pytest.raises(PayloadError, match="factorized tables"):
        decode_packet(packet, [other.update()])
    h = packet.header
    moved = dataclasses.replace(h, lo=(h.lo[0] + 1, *h.lo[1:]))
    with pytest.raises(PayloadError, match="grid"):
        decode_packet(Packet(moved, packet.payload), [tables])
    with pytest.raises(FieldError, match="per-channel"):
        Packet(dataclasses.replace(h, qparams=1, lo=h.lo[:1], step=(1.0,)),
               packet.payload).to_bytes()
    with pytest.raises(PayloadError):
        decode_packet(Packet(h, packet.payload[:2] + b"\x01\x02\x03"), [tables])


def test_tables_are_checked_and_serialise():
    eb, _ = _trained_bottleneck(steps=2)
    t = eb.update()
    again = FactorizedTables.from_dict(t.to_dict())
    assert again.fingerprint == t.fingerprint
    bad = t.freqs.copy()
    bad[0, 0] += 1
    with pytest.raises(TablesError, match="sum"):
        FactorizedTables(t.lo, t.lengths, bad)
    with pytest.raises(TablesError):
        FactorizedTables(t.lo, np.zeros_like(t.lengths), t.freqs)


# ---------------------------------------------------------------------- the network

def _meta(ratio: int = 8) -> SplitMeta:
    spec = get_spec("resnet18")
    return SplitMeta(name="r18-stem-entropic-x8", model_name="resnet18",
                     classes=tuple(f"c{i}" for i in range(5)), point="stem", ratio=ratio,
                     bridge="entropic", kept=None, channels=64, input_size=32,
                     mean=tuple(spec.mean), std=tuple(spec.std))


@pytest.fixture()
def entropic_net() -> SplitNetwork:
    torch.manual_seed(1)
    net = SplitNetwork.from_meta(_meta()).eval()
    net.head.bottleneck.update()
    return net


def test_network_save_load_encode_decode(entropic_net, tmp_path):
    net = entropic_net
    x = torch.rand(1, 3, 32, 32)
    wire = net.encode(x).to_bytes()
    h = Packet.from_bytes(wire).header
    assert h.kept_shape == (8, 8, 8) and h.coder == FACTORIZED_CODER_ID
    with torch.inference_mode():
        want = net(x)
    assert torch.equal(net.decode(wire), want)
    path = save_network(net, tmp_path / "e.pt")
    loaded = load_network(path)
    assert loaded.factorized_tables().fingerprint == net.factorized_tables().fingerprint
    assert torch.equal(loaded.decode(wire), want)
    assert loaded.encode(x).to_bytes() == wire

    fresh = SplitNetwork.from_meta(_meta())
    with pytest.raises(VariantError, match="update"):
        save_network(fresh, tmp_path / "f.pt")
    blob = torch.load(path, weights_only=True)
    blob["state"]["head.bottleneck.table_freqs"][0, 0] += 1
    torch.save(blob, tmp_path / "bad.pt")
    with pytest.raises(VariantError, match="bad.pt.*sum"):
        load_network(tmp_path / "bad.pt")


def test_live_server_decodes_with_its_own_tables(entropic_net):
    from aecnn.runtime import protocol as P
    from aecnn.runtime.background import BackgroundServer
    from aecnn.runtime.client import Connection

    net = entropic_net
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        want = int(net(x).argmax())
    wire = net.encode(x).to_bytes()
    with BackgroundServer({net.meta.name: net}) as (host, port), Connection(host, port) as conn:
        info, _ = conn.call(P.Kind.INFO)
        assert info["variants"][net.meta.name]["packet"]["kept"] == 8
        reply, _ = conn.call(P.Kind.FEATURE, wire)
    assert reply["class"] == want


# ---------------------------------------------------------------------- training

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


def test_stages_train_export_and_serve(tiny_baseline, tmp_path):
    from aecnn.cli.entropic import render_entropic_table
    from aecnn.training.entropic import (
        EntropicBudget,
        EntropicConfig,
        TailBudget,
        train_entropic,
    )
    from aecnn.training.export import export_from

    out = tmp_path / "ent"
    cfg = EntropicConfig(baseline=str(tiny_baseline), points=("stem",), ratios=(8,),
                         module=EntropicBudget(epochs=1), tail=TailBudget(epochs=1),
                         rate_images=4, out=str(out), threads=1)
    records = train_entropic(cfg, progress=False)
    assert [r["stage"] for r in records] == ["entropic-module-x8", "entropic-x8"]
    mod, tail = records
    assert mod["trains"] == ["head", "bridge"] and tail["trains"] == ["bridge", "tail"]
    assert mod["compressed_shape"] == [8, 8, 8] and mod["rate_weight"] == cfg.rate_weight
    frac, slack = RATE_TOLERANCE
    for r in records:
        rate = r["rate"]
        assert rate["images"] == 4 and rate["latent_shape"] == [8, 8, 8]
        assert abs(rate["payload_bytes"] - rate["estimate_bytes"]) <= (
            frac * rate["estimate_bytes"] + slack)
    assert "entropic-x8" in render_entropic_table(records)
    # the second stage kept the head (prior included) as the first left it
    a = torch.load(out / "stem" / "entropic-module-x8" / "best.pt", weights_only=True)["model"]
    b = torch.load(out / "stem" / "entropic-x8" / "best.pt", weights_only=True)["model"]
    for k in a:
        if k.startswith("head.") and "table_" not in k:
            assert torch.equal(a[k], b[k]), k
    # a rerun loads the finished stages
    assert train_entropic(cfg, progress=False)[1]["test_top1"] == tail["test_top1"]

    net = export_from(out / "stem" / "entropic-x8", tmp_path / "e.pt")
    assert net.meta.bridge == "entropic" and net.meta.kept is None
    loaded = load_network(tmp_path / "e.pt")
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(loaded.decode(loaded.encode(x).to_bytes()), loaded(x))


def test_feature_distillation_stage_trains_the_decoder_on_the_split_tensor(tiny_baseline,
                                                                          tmp_path):
    """``module.target: features``: the module stage's loss is the decoder's squared error
    against the backbone head's split tensor (plus the rate): its training forward stops at
    the decoder (no training top-1), its validation and test run the whole network, and
    its weights load into the plain network the second stage and export build."""
    from aecnn.core.split import SplitNetwork
    from aecnn.training.entropic import (
        EntropicBudget,
        EntropicConfig,
        EntropicPipeline,
        Mimic,
        TailBudget,
    )

    cfg = EntropicConfig(baseline=str(tiny_baseline), points=("stem",), ratios=(8,),
                         module=EntropicBudget(epochs=1, distill=0.0, target="features"),
                         tail=TailBudget(epochs=1), rate_images=2, out=str(tmp_path / "f"),
                         threads=1)
    pipe = EntropicPipeline(cfg, progress=False)
    sp = pipe.spec.split_point("stem")
    net = pipe.build(sp, 8)
    assert isinstance(net, Mimic)
    assert type(pipe.build(sp, 8, frozen_head=True)) is SplitNetwork
    x = torch.rand(2, 3, 32, 32)
    net.train()
    out = net(x)
    assert out.shape == net.head.split.shape == (2, 64, 8, 8)
    loss = pipe.loss_fn(net, cfg.module)(out, torch.zeros(2, dtype=torch.long))
    assert loss.item() == pytest.approx(((out - net.head.split) ** 2).mean().item())
    net.eval()
    assert net(x).shape == (2, len(pipe.classes))
    assert pipe.loss_fn(net, cfg.tail) is None
    records = pipe.run()
    mod = json.loads((tmp_path / "f" / "stem" / "entropic-module-x8" / "metrics.json")
                     .read_text())["history"][0]
    assert mod["train_top1"] is None and mod["val_top1"] is not None
    assert records[0]["budget"]["target"] == "features"
    assert [r["stage"] for r in records] == ["entropic-module-x8", "entropic-x8"]


def test_config_rejects_bad_values():
    from aecnn.errors import ConfigError
    from aecnn.training.entropic import EntropicConfig

    with pytest.raises(ConfigError, match="rate_weight"):
        EntropicConfig(rate_weight=-1.0)
    with pytest.raises(ConfigError, match="qat_grids"):
        EntropicConfig(qat_grids=("uint2",))
    from aecnn.training.entropic import EntropicBudget

    with pytest.raises(ConfigError, match="module.distill: 0.5 with target features"):
        EntropicBudget(target="features")


def test_parser():
    from aecnn.cli.entropic import add_parser

    parser = argparse.ArgumentParser(prog="aecnn")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train-entropic", "--config", "c.yaml", "--set",
                              "rate_weight=0.01", "--no-progress"])
    assert args.command == "train-entropic" and args.overrides == ["rate_weight=0.01"]
    assert callable(args.func)


def test_core_runs_without_compressai():
    """The learned bottleneck is our own code on constriction: with ``compressai`` made
    unimportable, the core builds, codes and decodes an entropic network."""
    code = """
import sys
sys.modules["compressai"] = None  # any import of it raises ImportError
import torch
from aecnn.core.split import SplitMeta, SplitNetwork
net = SplitNetwork.from_meta(SplitMeta("n", "resnet18", ("a", "b"), "stem", 8, "entropic",
                                       None, 64, 32, (0.5,) * 3, (0.5,) * 3)).eval()
net.head.bottleneck.update()
x = torch.rand(1, 3, 32, 32)
assert torch.equal(net.decode(net.encode(x).to_bytes()), net(x))
assert not any(m.startswith("compressai") for m in sys.modules if sys.modules[m] is not None)
print("ok")
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]
