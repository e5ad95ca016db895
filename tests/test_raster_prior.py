"""The raster context prior: per-channel tables over causal neighbours (wire coder 5)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aecnn.compression import (
    CoderProfile,
    FeatureCodec,
    Packet,
    QuantSpec,
    decode_packet,
    lattice,
    quantize,
)
from aecnn.compression.errors import PayloadError
from aecnn.compression.prior import ContextPrior, PriorError
from aecnn.compression.priors import fit_prior, prior_from_dict
from aecnn.compression.raster import MAX_ENTRIES, RasterPrior, contexts_per_table


def _correlated(n: int, shape=(6, 8, 8), seed: int = 0) -> list[np.ndarray]:
    """Smooth nonnegative maps whose channels follow each other, as a learned code's do:
    channel k is channel k - 1 plus a little noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        base = rng.normal(size=shape[1:]).cumsum(axis=1)
        chans = [base + 0.3 * k + 0.2 * rng.normal(size=shape[1:]) for k in range(shape[0])]
        out.append(np.maximum(np.stack(chans), 0))
    return out


def _fit(levels: int = 4, n: int = 60, per_channel: bool | None = None
         ) -> tuple[RasterPrior, QuantSpec]:
    spec = QuantSpec.parse(f"uint{levels.bit_length() - 1}")
    symbols = [quantize(z, spec)[0] for z in _correlated(n)]
    return RasterPrior.fit(symbols, levels, per_channel), spec


@settings(max_examples=80, deadline=None)
@given(bits=st.integers(1, 8), shared=st.booleans(), data=st.data())
def test_any_symbols_round_trip_under_a_prior_fitted_on_other_data(bits, shared, data):
    levels = 2**bits
    prior, _ = _fit(levels, n=3, per_channel=False if shared else None)
    channels = data.draw(st.integers(1, 9)) if not prior.per_channel else prior.channels
    shape = (channels, data.draw(st.integers(1, 11)), data.draw(st.integers(1, 11)))
    symbols = data.draw(arrays(np.uint8, shape, elements=st.integers(0, levels - 1)))
    payload = prior.encode(symbols)
    assert np.array_equal(prior.decode(payload, shape), symbols)
    assert abs(8 * len(payload) - prior.bits(symbols)) <= 0.02 * prior.bits(symbols) + 16


def test_tables_are_per_channel_while_they_stay_small():
    prior, _ = _fit(4)
    assert prior.per_channel and prior.channels == 6 and prior.images == 60
    assert prior.freq.shape == (6 * contexts_per_table(4), 4) == (6 * 625, 4)
    assert prior.freq.min() >= 1 and np.all(prior.freq.sum(axis=1) == lattice.TOTAL)
    wide, _ = _fit(256, n=2)  # 6 x 625 x 256 entries would exceed the limit: one shared set
    assert not wide.per_channel and wide.freq.shape == (625, 256)
    assert 6 * 625 * 256 > MAX_ENTRIES >= 6 * 625 * 4


def test_raster_beats_the_lattice_prior_when_channels_follow_each_other():
    train = _correlated(200)
    test = _correlated(20, seed=1)
    spec = QuantSpec.parse("uint2")
    raster = fit_prior((quantize(z, spec)[0] for z in train), 4, "raster")
    lat = fit_prior((quantize(z, spec)[0] for z in train), 4, "lattice")
    assert isinstance(raster, RasterPrior) and isinstance(lat, ContextPrior)
    r = np.mean([len(raster.encode(quantize(z, spec)[0])) for z in test])
    b = np.mean([len(lat.encode(quantize(z, spec)[0])) for z in test])
    assert r < 0.8 * b, (r, b)


def test_a_per_channel_prior_codes_only_its_channel_count():
    prior, spec = _fit(4)
    other = quantize(_correlated(1, shape=(5, 8, 8))[0], spec)[0]
    assert not prior.suits(other.shape) and prior.suits((6, 3, 3))
    with pytest.raises(PriorError, match="6 channels cannot code"):
        prior.encode(other)
    # auto never picks it for such a tensor; an explicit prior coder is a clear error
    assert CoderProfile().choose(other, 4, 1e3, prior) != "prior"
    codec = FeatureCodec(spec, "auto", 1e3, prior=prior)
    assert codec.encode(other)[1].coder != "prior"
    with pytest.raises(PriorError):
        FeatureCodec(spec, "prior", prior=prior).encode(other)
    same = quantize(_correlated(1, seed=3)[0], spec)[0]
    with pytest.raises(PayloadError, match="cannot decode a tensor of shape"):
        prior.decode(prior.encode(same), (5, 8, 8))


def test_packets_round_trip_and_pick_the_prior_by_fingerprint():
    prior, spec = _fit(4)
    lat = ContextPrior.fit([quantize(z, spec)[0] for z in _correlated(20)], 4)
    z = _correlated(1, seed=5)[0].astype(np.float32)
    packet, stats = FeatureCodec(spec, "prior", prior=prior).encode(z)
    assert stats.coder == "prior"
    wire = Packet.from_bytes(packet.to_bytes())
    plain = decode_packet(FeatureCodec(spec, "none").encode(z)[0])
    assert np.array_equal(decode_packet(wire, [lat, prior]).numpy(), plain.numpy())
    with pytest.raises(PayloadError, match=f"this end holds prior {lat.fingerprint_hex}"):
        decode_packet(wire, lat)
    assert prior.fingerprint != lat.fingerprint


def test_corrupt_payloads_raise_payload_errors_or_decode_in_range():
    prior, spec = _fit(4)
    symbols = quantize(_correlated(1, seed=7)[0], spec)[0]
    good = prior.encode(symbols)
    rng = np.random.default_rng(0)
    for _ in range(300):
        bad = bytearray(good)
        if rng.random() < 0.3:
            bad = bad[: rng.integers(0, len(bad))]
        else:
            bad[rng.integers(2, len(bad))] ^= 1 << int(rng.integers(0, 8))
        try:
            out = prior.decode(bytes(bad), symbols.shape)
        except PayloadError:
            continue
        assert out.shape == symbols.shape and out.max() < 4
    with pytest.raises(PayloadError, match="does not decode"):
        prior.decode(good + b"\x00", symbols.shape)
    with pytest.raises(PayloadError, match="before its fingerprint"):
        prior.decode(good[:1], symbols.shape)


def test_prior_dicts_round_trip_and_malformed_ones_are_refused():
    prior, _ = _fit(4)
    d = json.loads(json.dumps(prior.to_dict()))
    again = prior_from_dict(d)
    assert isinstance(again, RasterPrior) and again.fingerprint == prior.fingerprint
    assert np.array_equal(again.freq, prior.freq) and again.per_channel
    lat = ContextPrior.fit([np.zeros((2, 4, 4), np.uint8)], 4)
    assert isinstance(prior_from_dict(lat.to_dict()), ContextPrior)
    for bad, msg in (({**d, "format": "x"}, "not a context prior"),
                     ({**d, "per_channel": "yes"}, "malformed"),
                     ({**d, "channels": 5}, "needs a table of"),
                     ({**d, "levels": 1}, "2 to 256 levels"),
                     ({**d, "fingerprint": "0000" if d["fingerprint"] != "0000" else "0001"},
                      "do not match its fingerprint"),
                     ({k: v for k, v in d.items() if k != "freq"}, "malformed"),
                     ({**d, "freq": [[0, 4096, 0, 0]] * (6 * 625)}, "entries >= 1")):
        with pytest.raises(PriorError, match=msg):
            prior_from_dict(bad)
    with pytest.raises(PriorError, match="unknown context prior model"):
        fit_prior([], 4, "pixelcnn")
    with pytest.raises(PriorError, match="no tensors"):
        RasterPrior.fit([], 4)
    with pytest.raises(PriorError, match="tensors of 3 and 2 channels"):
        RasterPrior.fit([np.zeros((2, 4, 4), np.uint8), np.zeros((3, 4, 4), np.uint8)], 4)
