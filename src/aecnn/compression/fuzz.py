"""Mutation fuzzing of the packet parser and payload decoder.

Valid packets of many configurations are mutated (bit flips, byte overwrites, truncation,
extension, length-field tampering), half of them with the CRC recomputed so that the parser
and the payload decoders behind the checksum are exercised too. The only exceptions allowed
out of ``Packet.from_bytes`` and ``decode_packet`` are :class:`PacketError` subclasses.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

from aecnn.compression.codec import FeatureCodec, decode_packet, pick_prior
from aecnn.compression.entropy import CODERS, PRIOR_CODER_ID
from aecnn.compression.errors import PacketError
from aecnn.compression.prior import ContextPrior
from aecnn.compression.priors import Prior
from aecnn.compression.quantize import DType, QuantSpec
from aecnn.compression.raster import RasterPrior
from aecnn.compression.wire import Limits, Packet

_QUANTS = ("float32", "float16", "uint8", "uint4", "uint4c", "uint2")


def seed_packets(rng: np.random.Generator, count: int = 24) -> list[bytes]:
    """Valid packets over quantisations, coders and small shapes."""
    out = []
    for i in range(count):
        c, h, w = (int(v) for v in rng.integers(1, 7, 3))
        x = np.maximum(rng.normal(size=(c, h, w)), 0).astype(np.float32)
        quant = _QUANTS[i % len(_QUANTS)]
        coder = list(CODERS)[i % len(CODERS)]
        total = c + int(rng.integers(0, 4))
        idx = tuple(sorted(rng.choice(total, c, replace=False).tolist()))
        packet, _ = FeatureCodec(quant, coder).encode(x, idx, total, "resnet50", "stem")
        out.append(packet.to_bytes())
    # prior-coded packets (coder 5) of both models, decoded with the same priors
    # (:func:`fuzz_priors`)
    for (_, levels), prior in fuzz_priors().items():
        c = FUZZ_CHANNELS if getattr(prior, "per_channel", False) else int(rng.integers(1, 7))
        h, w = (int(v) for v in rng.integers(1, 7, 2))
        x = np.maximum(rng.normal(size=(c, h, w)), 0).astype(np.float32)
        spec = QuantSpec(DType.UINT, levels.bit_length() - 1)
        codec = FeatureCodec(spec, "prior", prior=prior)
        out.append(codec.encode(x, tuple(range(c)), c, "resnet50", "stem")[0].to_bytes())
    return out


FUZZ_CHANNELS = 3  # the channels of the tensors the fuzzer's priors are fitted on


def fuzz_priors() -> dict[tuple[str, int], Prior]:
    """Lattice and raster context priors of 256, 16, 4 and 2 levels, fitted on fixed random
    tensors of :data:`FUZZ_CHANNELS` channels, by ``(model, levels)``: what the fuzzer's
    prior-coded packets are coded and decoded with. The 256- and 16-level raster priors share
    their tables between channels (any tensor), the 4- and 2-level ones hold a set per
    channel (tensors of 3 channels only)."""
    rng = np.random.default_rng(1234)
    out: dict[tuple[str, int], Prior] = {}
    for bits in (8, 4, 2, 1):
        levels = 1 << bits
        tensors = [rng.integers(0, levels, (FUZZ_CHANNELS, 6, 6)).astype(np.uint8)
                   for _ in range(4)]
        out["lattice", levels] = ContextPrior.fit(tensors, levels)
        out["raster", levels] = RasterPrior.fit(tensors, levels, per_channel=bits <= 2)
    return out


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    kind = int(rng.integers(0, 6))
    if kind == 0 and b:  # flip bits
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(0, len(b)))
            b[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1 and b:  # overwrite bytes
        for _ in range(int(rng.integers(1, 6))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
    elif kind == 2:  # truncate
        b = b[: int(rng.integers(0, len(b) + 1))]
    elif kind == 3:  # extend
        b += rng.integers(0, 256, int(rng.integers(1, 16))).astype(np.uint8).tobytes()
    elif kind == 4 and len(b) > 12:  # big numbers into a 16- or 32-bit field
        i = int(rng.integers(4, len(b) - 4))
        b[i: i + 4] = struct.pack("<I", int(rng.choice([0, 1, 0xFFFF, 0xFFFFFFFF,
                                                         int(rng.integers(0, 2**32))])))
    else:  # random bytes behind a real magic
        b = bytearray(b"AECN" + rng.integers(0, 256, int(rng.integers(0, 64)))
                      .astype(np.uint8).tobytes())
    if rng.random() < 0.5 and len(b) >= 4:  # make the checksum agree
        b[-4:] = struct.pack("<I", zlib.crc32(bytes(b[:-4])))
    return bytes(b)


@dataclass
class FuzzReport:
    cases: int
    parsed: int
    decoded: int
    errors: dict[str, int]
    decoded_by_coder: dict[int, int]
    max_seconds: float
    escaped: list[str]
    decoded_by_prior_model: dict[str, int]


def run_fuzz(n: int, seed: int = 0, limits: Limits = Limits(max_elements=1 << 16)
             ) -> FuzzReport:
    """Feed ``n`` mutated packets through ``from_bytes`` and ``decode_packet``."""
    rng = np.random.default_rng(seed)
    seeds = seed_packets(rng)
    priors = list(fuzz_priors().values())
    errors: Counter[str] = Counter()
    by_coder: Counter[int] = Counter()
    by_model: Counter[str] = Counter()
    escaped: list[str] = []
    parsed = decoded = 0
    worst = 0.0
    for data in seeds:  # compile every decoder's kernels (numba) before anything is timed
        decode_packet(Packet.from_bytes(data, limits), priors)
    for i in range(n):
        data = mutate(seeds[i % len(seeds)], rng)
        if rng.random() < 0.2:
            data = mutate(data, rng)
        t0 = time.perf_counter()
        try:
            packet = Packet.from_bytes(data, limits)
            parsed += 1
            decode_packet(packet, priors)
            decoded += 1
            by_coder[packet.header.coder] += 1
            if packet.header.coder == PRIOR_CODER_ID:
                by_model[pick_prior(priors, 1 << packet.header.bits, packet.payload).model] += 1
        except PacketError as exc:
            errors[type(exc).__name__] += 1
        except Exception as exc:  # a bug: recorded, reported, and fails the test
            escaped.append(f"{type(exc).__name__}: {exc} for {data.hex()}")
        worst = max(worst, time.perf_counter() - t0)
    return FuzzReport(n, parsed, decoded, dict(errors), dict(sorted(by_coder.items())), worst,
                      escaped[:20], dict(sorted(by_model.items())))
