"""The ``prior`` coder (wire coder 5): a context model fitted once and held by both ends."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aecnn.compression import (
    CODERS,
    CoderProfile,
    FeatureCodec,
    Packet,
    QuantSpec,
    decode_packet,
    lattice,
    quantize,
)
from aecnn.compression.errors import FieldError, PayloadError
from aecnn.compression.prior import ContextPrior, PriorError


def _features(n: int, shape=(4, 16, 16), seed: int = 0) -> list[np.ndarray]:
    """Smooth, sparse, nonnegative maps: what a split tensor after ReLU looks like."""
    rng = np.random.default_rng(seed)
    return [np.maximum(rng.normal(size=shape).cumsum(axis=2) - 1, 0) for _ in range(n)]


def _fit(levels: int = 4, n: int = 40) -> tuple[ContextPrior, QuantSpec]:
    spec = QuantSpec.parse(f"uint{levels.bit_length() - 1}")
    return ContextPrior.fit((quantize(z, spec)[0] for z in _features(n)), levels), spec


@settings(max_examples=80, deadline=None)
@given(bits=st.integers(1, 8), data=st.data())
def test_any_symbols_round_trip_under_a_prior_fitted_on_other_data(bits, data):
    levels = 2**bits
    prior, _ = _fit(levels, n=3)
    shape = data.draw(st.tuples(st.integers(1, 4), st.integers(1, 11), st.integers(1, 11)))
    symbols = data.draw(arrays(np.uint8, shape, elements=st.integers(0, levels - 1)))
    assert np.array_equal(prior.decode(prior.encode(symbols), shape), symbols)


def test_every_table_entry_is_positive_and_rows_sum_exactly():
    prior, _ = _fit(4)
    assert prior.freq.shape == (lattice.num_contexts(4) + 1, 4)
    assert prior.freq.min() >= 1 and np.all(prior.freq.sum(axis=1) == lattice.TOTAL)
    assert prior.images == 40


def test_a_fitted_prior_beats_every_adaptive_coder_on_small_tensors():
    prior, spec = _fit(4)
    profile = CoderProfile()
    for z in _features(10, seed=1):  # other tensors than the fit's, from the same source
        symbols = quantize(z, spec)[0]
        coded = 8 * len(prior.encode(symbols))
        best = min(8 * len(CODERS[c].encode(symbols, 4)) for c in CODERS)
        assert coded < 0.85 * best
        # the estimate auto uses is the coded size within the flush's rounding
        assert abs(profile.estimate_bits("prior", symbols, 4, prior) - coded) < 0.02 * coded + 16


def test_auto_weighs_the_prior_on_slow_links_only():
    prior, spec = _fit(4)
    symbols = quantize(_features(1, seed=2)[0], spec)[0]
    profile = CoderProfile()
    assert profile.choose(symbols, 4, rate_bps=1e3, prior=prior) == "prior"
    assert profile.choose(symbols, 4, rate_bps=1e3) != "prior"
    assert profile.choose(symbols, 16, rate_bps=1e3, prior=prior) != "prior"  # other levels


@pytest.mark.parametrize("coder", ["prior", "auto"])
def test_prior_coded_packet_round_trips_through_bytes(coder):
    prior, spec = _fit(4)
    x = torch.from_numpy(_features(1, seed=3)[0]).float()
    codec = FeatureCodec("uint2", coder, rate_bps=1e5, prior=prior)
    packet, stats = codec.encode(x, indices=(1, 2, 5, 7), channels=8, model="resnet50",
                                 split="stem")
    assert stats.coder == "prior" and packet.header.coder == 5
    again = Packet.from_bytes(packet.to_bytes())
    reference = decode_packet(FeatureCodec("uint2", "none").encode(x)[0])
    assert torch.equal(decode_packet(again, prior), reference)


def test_a_decoder_without_the_same_prior_refuses_the_packet():
    prior, _ = _fit(4)
    other, _ = _fit(4, n=5)
    x = torch.from_numpy(_features(1, seed=4)[0]).float()
    packet = Packet.from_bytes(FeatureCodec("uint2", "prior", prior=prior).encode(x)[0]
                               .to_bytes())
    with pytest.raises(PayloadError, match="holds none"):
        decode_packet(packet)
    with pytest.raises(PayloadError, match="coded with context prior"):
        decode_packet(packet, other)
    with pytest.raises(PayloadError, match="only 16-level ones"):
        decode_packet(packet, _fit(16)[0])
    # of several priors held (a variant's, one per grid), the one it was coded with decodes
    reference = decode_packet(packet, prior)
    assert torch.equal(decode_packet(packet, [_fit(16)[0], other, prior]), reference)
    assert torch.equal(decode_packet(packet, (p for p in (prior, _fit(16)[0]))), reference)
    with pytest.raises(PayloadError, match=f"holds {other.fingerprint_hex}, "):
        decode_packet(packet, [other, _fit(4, n=7)[0], _fit(16)[0]])


def test_corrupt_prior_payloads_raise_payload_errors_or_decode_in_range():
    prior, spec = _fit(4)
    symbols = quantize(_features(1, seed=5)[0], spec)[0]
    data = prior.encode(symbols)
    for bad in (data[:1], data[:-1], data + b"\0", data[:2]):
        with pytest.raises(PayloadError):
            prior.decode(bad, symbols.shape)
    rng = np.random.default_rng(6)
    for i in rng.integers(2, len(data), size=200):
        flipped = bytearray(data)
        flipped[i] ^= 1 << int(rng.integers(0, 8))
        try:
            out = prior.decode(bytes(flipped), symbols.shape)
        except PayloadError:
            continue
        assert out.shape == symbols.shape and int(out.max()) < 4


def test_bad_codec_and_header_combinations_are_clear_errors():
    prior, _ = _fit(4)
    with pytest.raises(PriorError, match="needs a context prior"):
        FeatureCodec("uint2", "prior")
    with pytest.raises(PriorError, match="does not suit"):
        FeatureCodec("uint4", "auto", prior=prior)
    with pytest.raises(PriorError, match="does not suit"):
        FeatureCodec("float32", "auto", prior=prior)
    with pytest.raises(PriorError, match="cannot code"):
        prior.encode(np.full((1, 3, 3), 7, np.uint8))
    packet = FeatureCodec("float16", "none").encode(torch.ones(1, 2, 2))[0]
    header = packet.header.__class__(**{**packet.header.__dict__, "coder": 5})
    with pytest.raises(FieldError, match="integer symbols only"):
        header.validate()
    with pytest.raises(PriorError, match="no tensors"):
        ContextPrior.fit([], 4)


def test_prior_files_round_trip_and_malformed_ones_are_refused(tmp_path):
    prior, _ = _fit(4)
    f = tmp_path / "prior.json"
    prior.save(f)
    again = ContextPrior.load(f)
    assert again.fingerprint == prior.fingerprint and np.array_equal(again.freq, prior.freq)
    d = json.loads(f.read_text())
    cases = [({**d, "format": "x"}, "not a context prior"),
             ({**d, "freq": d["freq"][:-1]}, "needs a table"),
             ({**d, "freq": [[r[0] + 1, *r[1:]] for r in d["freq"]]}, "sum to"),
             ({**d, "fingerprint": "0000" if d["fingerprint"] != "0000" else "0001"},
              "fingerprint"),
             ({**d, "levels": "four"}, "malformed")]
    for bad, message in cases:
        f.write_text(json.dumps(bad))
        with pytest.raises(PriorError, match=message):
            ContextPrior.load(f)
    f.write_text("{not json")
    with pytest.raises(PriorError, match="cannot read"):
        ContextPrior.load(f)
    with pytest.raises(PriorError, match="no context prior"):
        ContextPrior.load(tmp_path / "missing.json")
