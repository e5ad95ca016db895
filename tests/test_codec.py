"""Quantisation bounds and bit-exact round trips of every coder (property-based)."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aecnn.compression import (
    AUTO_CANDIDATES,
    CODERS,
    CoderProfile,
    FeatureCodec,
    Packet,
    QuantSpec,
    decode_packet,
    dequantize,
    empirical_entropy,
    lattice,
    quantize,
    scatter_channels,
)
from aecnn.compression.errors import PayloadError
from aecnn.errors import AecnnError

QUANTS = ["float32", "float16", "uint8", "uint6", "uint4", "uint4c", "uint3", "uint2", "uint1"]


@st.composite
def symbol_arrays(draw):
    bits = draw(st.integers(1, 8))
    shape = draw(st.tuples(st.integers(1, 5), st.integers(1, 9), st.integers(1, 9)))
    kind = draw(st.sampled_from(["uniform", "skewed", "constant", "zeros"]))
    levels = 2**bits
    if kind == "constant":
        value = draw(st.integers(0, levels - 1))
        return np.full(shape, value, np.uint8), levels
    if kind == "zeros":
        return np.zeros(shape, np.uint8), levels
    data = draw(arrays(np.uint8, shape, elements=st.integers(0, levels - 1)))
    if kind == "skewed":
        data = np.where(data % 3 == 0, data, 0).astype(np.uint8)
    return data, levels


@pytest.mark.parametrize("name", list(CODERS))
@settings(max_examples=60, deadline=None)
@given(case=symbol_arrays())
def test_coders_round_trip_exactly(name, case):
    symbols, levels = case
    coder = CODERS[name]
    out = coder.decode(coder.encode(symbols, levels), symbols.shape, levels)
    assert out.dtype == np.uint8 and np.array_equal(out, symbols)


@pytest.mark.parametrize("name", list(CODERS))
def test_coders_are_safe_to_call_from_many_threads(name):
    """The server codes and decodes on one thread per connection: a coder that shares state
    between calls (a module-level zstd compressor did, and crashed CI) corrupts or crashes."""
    coder = CODERS[name]
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, 1 + i % 4, (16, 24, 24), dtype=np.uint8) for i in range(8)]

    def work(symbols: np.ndarray) -> bool:
        return all(np.array_equal(coder.decode(coder.encode(symbols, 16), symbols.shape, 16),
                                  symbols) for _ in range(40))

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, inputs))


@pytest.mark.parametrize("name", list(CODERS))
def test_single_element_and_real_like_tensors(name):
    coder = CODERS[name]
    one = np.array([[[5]]], np.uint8)
    assert np.array_equal(coder.decode(coder.encode(one, 16), (1, 1, 1), 16), one)
    rng = np.random.default_rng(0)
    feat = np.maximum(rng.normal(size=(16, 56, 56)).cumsum(axis=2), 0)
    symbols, _, _ = quantize(feat, QuantSpec.parse("uint4"))
    assert np.array_equal(coder.decode(coder.encode(symbols, 16), symbols.shape, 16), symbols)


@settings(max_examples=80, deadline=None)
@given(x=arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6)),
                elements=st.floats(-1e4, 1e4, width=32)),
       quant=st.sampled_from(QUANTS))
def test_dequantize_within_half_a_step(x, quant):
    spec = QuantSpec.parse(quant)
    symbols, lo, step = quantize(x, spec)
    y = dequantize(symbols, spec, lo, step, x.shape)
    if quant == "float32":
        assert np.array_equal(x, y)
    elif quant == "float16":
        assert np.allclose(x, y, rtol=1e-3, atol=1e-3 * np.abs(x).max() + 1e-6)
    else:
        bound = (step.reshape(-1, 1, 1) / 2) * (1 + 1e-4) + 1e-3 * np.abs(x).max() * 1e-3
        assert np.all(np.abs(y - x) <= bound + 1e-6)


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("coder", [*CODERS, "auto"])
def test_codec_round_trip_through_bytes(quant, coder):
    x = torch.relu(torch.randn(3, 10, 12, generator=torch.Generator().manual_seed(2)))
    packet, stats = FeatureCodec(quant, coder).encode(x, indices=(0, 4, 7), channels=8,
                                                      model="resnet50", split="stem")
    data = packet.to_bytes()
    assert stats.packet_bytes == len(data)
    again = Packet.from_bytes(data)
    assert again == packet
    y = decode_packet(again)
    assert y.shape == (3, 10, 12)
    if quant == "float32":
        assert torch.equal(y, x)
    full = scatter_channels(y, again.header)
    assert full.shape == (8, 10, 12)
    assert torch.equal(full[[0, 4, 7]], y) and full[[1, 2, 3, 5, 6]].abs().sum() == 0


def test_auto_skips_coding_on_fast_links_and_codes_on_slow_ones():
    rng = np.random.default_rng(1)
    feat = np.maximum(rng.normal(size=(8, 56, 56)), 0) ** 2
    symbols, _, _ = quantize(feat, QuantSpec.parse("uint4"))
    profile = CoderProfile()
    candidates = AUTO_CANDIDATES
    # Slow link: the fewest bits win; infinitely fast link: the least compute wins.
    assert profile.choose(symbols, 16, rate_bps=1e3) == min(
        candidates, key=lambda c: profile.estimate_bits(c, symbols, 16))
    assert profile.choose(symbols, 16, rate_bps=1e15) == min(
        candidates, key=lambda c: profile.compute_seconds(c, symbols.size))
    raw = CoderProfile(encode={**profile.encode, "none": 1e12},
                       decode={**profile.decode, "none": 1e12})
    assert raw.choose(symbols, 16, rate_bps=1e15) == "none"  # coding does not pay off


def test_empirical_entropy():
    s = np.array([0, 0, 1, 1], np.uint8).reshape(1, 2, 2)
    assert empirical_entropy(s, 4) == pytest.approx(1.0)
    assert empirical_entropy(np.zeros((1, 3, 3), np.uint8), 4) == 0.0


def test_bad_codec_arguments():
    with pytest.raises(AecnnError, match="unknown coder"):
        FeatureCodec("uint8", "gzip")
    with pytest.raises(AecnnError, match="unknown quantisation"):
        FeatureCodec("int7", "none")
    with pytest.raises(AecnnError, match="1 to 8 bits"):
        FeatureCodec("uint12", "none")
    for bad in ("uint2@90", "uint2@pxx", "uint2@p40", "uint2@p101"):
        with pytest.raises(AecnnError):
            FeatureCodec(bad, "none")
    with pytest.raises(AecnnError, match="NaN"):
        FeatureCodec().encode(torch.full((1, 2, 2), float("nan")))


@settings(max_examples=60, deadline=None)
@given(counts=arrays(np.int64, st.tuples(st.integers(1, 6), st.sampled_from([2, 16, 256])),
                     elements=st.one_of(st.just(0), st.integers(1, 3), st.integers(1, 4096))))
def test_context_frequencies_sum_exactly_and_keep_every_symbol(counts):
    freq = lattice.normalise(counts)
    nonzero = (counts > 0).sum(axis=1)
    assert np.array_equal(freq > 0, counts > 0)
    assert np.all(freq[nonzero >= 2].sum(axis=1) == lattice.TOTAL)
    assert np.all(freq[nonzero == 1].sum(axis=1) == 1)


def test_context_frequencies_many_rare_symbols():
    counts = np.zeros((1, 256), np.int64)
    counts[0, :200] = 1        # 200 symbols seen once, each raised to frequency 1: the
    counts[0, 200:] = 10000    # scaled total exceeds 4096 by more than the largest entry (73)
    freq = lattice.normalise(counts)
    assert freq.sum() == lattice.TOTAL and freq.min() >= 1
    assert freq[0, 200:].max() - freq[0, 200:].min() <= 1  # the excess taken evenly


@settings(max_examples=25, deadline=None)
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 70), st.integers(1, 70)),
       bits=st.sampled_from([1, 2, 4, 8]), seed=st.integers(0, 2**16))
def test_context_coder_round_trips_every_pyramid_depth(shape, bits, seed):
    rng = np.random.default_rng(seed)
    levels = 2**bits
    feat = np.maximum(rng.normal(size=shape).cumsum(axis=2), 0)
    symbols = np.minimum(feat * levels / 8, levels - 1).astype(np.uint8)
    coder = CODERS["context"]
    data = coder.encode(symbols, levels)
    assert np.array_equal(coder.decode(data, shape, levels), symbols)
    assert lattice.pyramid_depth(shape[1], shape[2]) <= lattice.MAX_HALVINGS


# (shape, levels) from a single position to every pyramid depth, binary to 8-bit symbols
FROZEN_CASES = [((1, 1, 1), 2), ((2, 4, 4), 3), ((3, 9, 7), 4), ((4, 16, 16), 3),
                ((2, 33, 70), 16), ((1, 70, 65), 256), ((8, 8, 8), 3)]
# sha256 of every case's stream, walk keys and counts, as the coder wrote them on 2026-12-07
FROZEN_SHA256 = "f67b4e44d5811204691ba5e5450353b78fa0dd321634758233475b6442f30d3e"


def _frozen_symbols(shape: tuple[int, int, int], levels: int) -> np.ndarray:
    """A deterministic, spatially structured ``(C, H, W)`` symbol array (integer
    arithmetic only, so that it is the same on every platform)."""
    c, i, j = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    v = (5 * c + i * j // 3 + (i // 2) ** 2 + 3 * j) % (2 * levels + 3)
    return np.minimum(v, levels - 1).astype(np.uint8)


def test_context_coder_streams_are_frozen():
    """The visiting order, contexts and rANS of docs/wire-format.md are a wire format: a
    refactoring that changes a single byte (even one that still round-trips) breaks
    every peer and every fitted prior, so the bytes are pinned. tests/golden pins one packet
    per coder; this pins the context coder at every pyramid depth and symbol width."""
    digest = hashlib.sha256()
    coder = CODERS["context"]
    for shape, levels in FROZEN_CASES:
        symbols = _frozen_symbols(shape, levels)
        data = coder.encode(symbols, levels)
        assert np.array_equal(coder.decode(data, shape, levels), symbols)
        keys, counts = lattice.walk(symbols, levels)
        digest.update(data)
        digest.update(keys.astype("<i4").tobytes())
        digest.update(counts.astype("<i8").tobytes())
    assert digest.hexdigest() == FROZEN_SHA256


def test_context_coder_rejects_corrupt_streams():
    rng = np.random.default_rng(3)
    feat = np.maximum(rng.normal(size=(4, 24, 24)).cumsum(axis=2), 0)
    symbols, _, _ = quantize(feat, QuantSpec.parse("uint4"))
    coder = CODERS["context"]
    data = coder.encode(symbols, 16)
    for bad in (data[:-1], data + b"\0", data[:10]):
        with pytest.raises(PayloadError):
            coder.decode(bad, symbols.shape, 16)
    for i in rng.integers(0, len(data), size=200):
        flipped = bytearray(data)
        flipped[i] ^= 1 << int(rng.integers(0, 8))
        try:
            out = coder.decode(bytes(flipped), symbols.shape, 16)
        except PayloadError:
            continue
        assert out.shape == symbols.shape and int(out.max()) < 16


def test_context_estimate_is_close_to_the_coded_size():
    rng = np.random.default_rng(4)
    feat = np.maximum(rng.normal(size=(16, 56, 56)).cumsum(axis=2), 0)
    symbols, _, _ = quantize(feat, QuantSpec.parse("uint4"))
    actual = 8 * len(CODERS["context"].encode(symbols, 16))
    assert abs(CoderProfile().estimate_bits("context", symbols, 16) - actual) < 0.02 * actual


def test_auto_skips_the_context_estimate_when_its_coding_time_cannot_pay_off(monkeypatch):
    symbols = np.zeros((8, 56, 56), np.uint8)
    symbols[:, ::3, ::2] = 3
    profile = CoderProfile()
    estimated = []
    real = CoderProfile.estimate_bits

    def spy(self, coder, sym, levels, prior=None):
        estimated.append(coder)
        return real(self, coder, sym, levels, prior)

    monkeypatch.setattr(CoderProfile, "estimate_bits", spy)
    profile.choose(symbols, 16, rate_bps=1e12)  # transmission is free: none wins on compute
    assert "context" not in estimated
    estimated.clear()
    assert profile.choose(symbols, 16, rate_bps=1e3) == "context"  # slow link: fewest bits
    assert "context" in estimated


@pytest.mark.parametrize(("text", "tag"), [("uint2@p90", "2p90"), ("uint4c@p99.5", "4cp99.5"),
                                           ("uint8", "8"), ("uint3c", "3c"),
                                           ("uint1@p75", "1p75"), ("float16", "float16"),
                                           ("uint2l3", "2l3"), ("uint4l5c@p99", "4l5cp99")])
def test_quant_spec_text_round_trips(text, tag):
    assert str(QuantSpec.parse(text)) == text
    assert QuantSpec.parse(text).tag == tag  # the name of a QAT stage: aecnn-q2p90-xV


def test_clipped_grid_spends_its_levels_below_the_outliers():
    rng = np.random.default_rng(3)
    x = np.maximum(rng.normal(size=(8, 12, 12)), 0).astype(np.float32)
    x[0, 0, 0] = 50.0                                           # one outlier
    full, clipped = QuantSpec.parse("uint2"), QuantSpec.parse("uint2@p95")
    sym_f, _, step_f = quantize(x, full)
    sym_c, lo, step_c = quantize(x, clipped)
    assert lo[0] == 0.0 and step_c[0] == pytest.approx(np.quantile(x, 0.95) / 3, rel=1e-6)
    assert sym_c[0, 0, 0] == 3                                  # the outlier saturates
    assert (sym_f > 0).mean() < 0.01 < 0.4 < (sym_c > 0).mean()
    y = dequantize(sym_c, clipped, lo, step_c, x.shape)
    inside = x <= lo[0] + 3 * step_c[0]
    assert np.all(np.abs(y - x)[inside] <= step_c[0] / 2 * (1 + 1e-5))
    assert np.mean((y - x)[inside] ** 2) < np.mean((dequantize(
        sym_f, full, lo, step_f, x.shape) - x)[inside] ** 2)


def test_clipped_grid_falls_back_to_the_maximum_when_the_quantile_is_the_minimum():
    x = np.zeros((4, 5, 5), np.float32)
    x[0, 0, :3] = [1.0, 2.0, 3.0]                               # 97 % zeros
    sym, lo, step = quantize(x, QuantSpec.parse("uint2@p90"))
    assert step[0] == pytest.approx(1.0) and sym.max() == 3


def test_clipped_grid_through_the_wire_needs_no_new_header_field():
    x = torch.relu(torch.randn(4, 9, 9, generator=torch.Generator().manual_seed(5)))
    packet, _ = FeatureCodec("uint2@p90", "context").encode(x)
    again = Packet.from_bytes(packet.to_bytes())
    y = decode_packet(again)
    sym, lo, step = quantize(x.numpy(), QuantSpec.parse("uint2@p90"))
    expect = dequantize(sym, QuantSpec.parse("uint2"), lo, step, tuple(x.shape))
    assert torch.equal(y, torch.from_numpy(expect))


def test_a_grid_of_fewer_levels_is_sent_in_its_symbol_width():
    """``uint2l3``: a ternary grid in 2-bit symbols. The packet says 2 bits, any decoder
    rebuilds ``lo + symbol * step``, and only three values (and symbols) occur."""
    x = torch.relu(torch.randn(6, 8, 8, generator=torch.Generator().manual_seed(6)))
    tern = QuantSpec.parse("uint2l3")
    assert (tern.bits, tern.levels, tern.top) == (2, 4, 2)
    sym, lo, step = quantize(x.numpy(), tern)
    assert set(np.unique(sym)) == {0, 1, 2} and step[0] == pytest.approx(x.max().item() / 2)
    packet, _ = FeatureCodec("uint2l3", "context").encode(x)
    again = Packet.from_bytes(packet.to_bytes())
    assert again.header.bits == 2
    y = decode_packet(again)
    assert torch.equal(y, torch.from_numpy(dequantize(sym, QuantSpec.parse("uint2"), lo, step,
                                                      tuple(x.shape))))
    assert y.unique().numel() == 3
    assert np.all(np.abs(y.numpy() - x.numpy()) <= step[0] / 2 * (1 + 1e-5))
    for bad, msg in (("uint1l3", "2 to 2 levels"), ("uint2l1", "2 to 4 levels"),
                     ("uint2l", "unknown quantisation"), ("uint2lx@p90", "unknown")):
        with pytest.raises(AecnnError, match=msg):
            QuantSpec.parse(bad)


def test_the_core_codec_imports_no_data_or_torchvision():
    """The core (compression, wire format) imports only torch, numpy and the entropy coder:
    a device or server that codes features does not load the dataset code or torchvision."""
    import subprocess
    import sys

    probe = ("import sys, aecnn.compression.codec, aecnn.compression.prior; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torchvision' "
             "or m.startswith('aecnn.data')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
