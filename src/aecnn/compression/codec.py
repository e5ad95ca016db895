"""The feature codec: split tensor -> quantise -> entropy code -> :class:`Packet`, and back.

``auto`` picks, per tensor, the coder that minimises the latency model's
``t_enc + t_com + t_dec`` for a given uplink rate (the paper's rule "no entropy coding when
the communication time it saves is less than the coding time", generalised to several
coders). Sizes are estimated from the symbols' empirical entropies, times from a
:class:`CoderProfile` (throughputs measured by ``aecnn bench codec``).

A codec given a context prior (:mod:`aecnn.compression.priors`: a lattice or raster model
fitted on the network's training tensors through the codec's grid) can also code with
``prior`` (wire coder 5), and ``auto`` then weighs it with the others; the decoder needs the
same prior.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from aecnn.compression.entropy import (
    CODERS,
    CODERS_BY_ID,
    PRIOR_CODER_ID,
    context_bits,
    get_coder,
    memoryless_bits,
    per_channel_bits,
)
from aecnn.compression.errors import PayloadError
from aecnn.compression.factorized import FACTORIZED_CODER_ID, FactorizedTables, decode_factorized
from aecnn.compression.prior import FINGERPRINT_BYTES, PriorError
from aecnn.compression.priors import Prior
from aecnn.compression.quantize import DType, QuantSpec, dequantize, quantize
from aecnn.compression.wire import Packet, PacketHeader

# torch is imported only where a tensor is made, so a device that codes numpy arrays (an ONNX
# Runtime head, aecnn.runtime.onnx_head) runs without it
if TYPE_CHECKING:
    import torch

AUTO_CANDIDATES = ("none", "memoryless", "per-channel", "context")
PRIOR = "prior"


@dataclass(frozen=True)
class CoderProfile:
    """Encode and decode throughput (symbols per second) of each coder on the device and
    server. The defaults are rounded from this project's measurements at 4 bits, C' >= 16, on
    a 2-core x86 CPU, single thread (``results/codec/codec.md``); pass your own for other
    hardware."""

    encode: dict[str, float] = field(default_factory=lambda: {
        "none": 1e8, "zstd": 4e8, "memoryless": 1.2e8, "per-channel": 9e7, "context": 6e7,
        "prior": 6e7})
    decode: dict[str, float] = field(default_factory=lambda: {
        "none": 4e7, "zstd": 8e8, "memoryless": 7e7, "per-channel": 6e7, "context": 4e7,
        "prior": 4e7})

    def compute_seconds(self, coder: str, n: int) -> float:
        """Predicted encode + decode time of ``n`` symbols."""
        return n / self.encode[coder] + n / self.decode[coder]

    def estimate_bits(self, coder: str, symbols: np.ndarray, levels: int,
                      prior: Prior | None = None) -> float:
        """Payload size estimate: exact for ``none``; for the rANS coders, their exact
        histogram headers (``prior``: its fingerprint) plus the information of the symbols
        under their models (rANS comes within about 1 % of it) plus the stream's flush."""
        n = symbols.size
        if coder == PRIOR:
            return prior.bits(symbols) if prior is not None else float("inf")
        if coder == "none":
            return 8 * ((n * max(1, (levels - 1).bit_length()) + 7) // 8)
        if coder == "per-channel":
            return per_channel_bits(symbols, levels)
        if coder == "memoryless":
            return memoryless_bits(symbols, levels)
        if coder == "context":
            return context_bits(symbols, levels)
        return float("inf")  # zstd: no cheap estimate, not chosen by auto

    def choose(self, symbols: np.ndarray, levels: int, rate_bps: float,
               prior: Prior | None = None) -> str:
        """The coder with the least predicted ``t_enc + bits / rate + t_dec`` (``prior`` is
        a candidate, tried last, when a prior of ``levels`` levels is given).

        Candidates are tried in order; one whose coding time alone already exceeds the best
        cost so far is skipped without estimating its size (the context estimate runs the
        context model, which is worth it only when the link is slow)."""
        best, best_cost = "", float("inf")
        usable = (prior is not None and prior.levels == levels
                  and prior.suits(symbols.shape))
        for name in (*AUTO_CANDIDATES, PRIOR) if usable else AUTO_CANDIDATES:
            compute = self.compute_seconds(name, symbols.size)
            if compute >= best_cost:
                continue
            cost = compute + self.estimate_bits(name, symbols, levels, prior) / rate_bps
            if cost < best_cost:
                best, best_cost = name, cost
        return best


@dataclass(frozen=True)
class EncodeStats:
    """What one encode cost: seconds per step and the bytes produced."""

    quantize_s: float
    code_s: float
    payload_bytes: int
    packet_bytes: int
    coder: str


class FeatureCodec:
    """Encoder/decoder of the kept channels of one split tensor.

    Args:
        quant: e.g. ``"float32"``, ``"float16"``, ``"uint8"``, ``"uint4c"``.
        coder: a name from :data:`aecnn.compression.entropy.CODERS`, ``"prior"`` (needs
            ``prior``) or ``"auto"``.
        rate_bps: uplink rate that ``auto`` optimises for.
        prior: the context prior of this network and grid (its levels must be the grid's);
            ``auto`` weighs the ``prior`` coder too when it is given.

    Raises:
        PriorError: ``coder="prior"`` without a prior, or a prior of other levels.
    """

    def __init__(self, quant: str | QuantSpec = "uint8", coder: str = "memoryless",
                 rate_bps: float = 10e6, profile: CoderProfile | None = None,
                 prior: Prior | None = None) -> None:
        self.quant = quant if isinstance(quant, QuantSpec) else QuantSpec.parse(quant)
        if coder not in ("auto", PRIOR):
            get_coder(coder)
        if prior is not None and (self.quant.dtype != DType.UINT
                                  or prior.levels != self.quant.levels):
            raise PriorError(f"a {prior.levels}-level context prior does not suit the "
                             f"{self.quant} grid")
        if coder == PRIOR and prior is None:
            raise PriorError("coder 'prior' needs a context prior (fitted for this network "
                             "and grid)")
        self.coder, self.rate_bps, self.prior = coder, rate_bps, prior
        self.profile = profile or CoderProfile()

    def encode(self, x: torch.Tensor | np.ndarray, indices: tuple[int, ...] | None = None,
               channels: int | None = None, model: str = "", split: str = ""
               ) -> tuple[Packet, EncodeStats]:
        """Encode ``x`` of shape ``(K, H, W)`` or ``(1, K, H, W)``: the kept channels
        ``indices`` (default: all) of a split tensor with ``channels`` channels."""
        t0 = time.perf_counter()
        arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        if arr.ndim == 4 and arr.shape[0] == 1:
            arr = arr[0]
        symbols, lo, step = quantize(arr, self.quant)
        t1 = time.perf_counter()
        packet, stats = self.encode_symbols(symbols, lo, step, arr.shape, indices, channels,
                                            model, split)
        return packet, dataclasses.replace(stats, quantize_s=t1 - t0)

    def encode_symbols(self, symbols: np.ndarray, lo: np.ndarray, step: np.ndarray,
                       shape: tuple[int, ...], indices: tuple[int, ...] | None = None,
                       channels: int | None = None, model: str = "", split: str = ""
                       ) -> tuple[Packet, EncodeStats]:
        """Entropy code symbols that :func:`~aecnn.compression.quantize.quantize` gave for
        this codec's grid (or a device graph that computes the same, e.g. ONNX): ``symbols``
        uint8 of the kept ``shape`` ``(K, H, W)`` (for float grids, the raw bytes
        ``(K, H, W * itemsize)``), ``lo`` and ``step`` float32 ``(1,)`` or ``(K,)`` (empty for
        float grids). The rest as :meth:`encode`; ``quantize_s`` is 0."""
        t1 = time.perf_counter()
        k, h, w = (int(d) for d in shape[-3:])
        symbols = np.ascontiguousarray(symbols, dtype=np.uint8).reshape(k, h, -1)
        indices = tuple(range(k)) if indices is None else tuple(int(i) for i in indices)
        name = (self.profile.choose(symbols, self.quant.levels, self.rate_bps, self.prior)
                if self.coder == "auto" else self.coder)
        if name == PRIOR:
            payload, coder_id = self.prior.encode(symbols), PRIOR_CODER_ID
        else:
            payload, coder_id = CODERS[name].encode(symbols, self.quant.levels), CODERS[name].id
        t2 = time.perf_counter()
        uint = self.quant.dtype == DType.UINT
        header = PacketHeader(
            model=model, split=split, channels=channels or k, height=h, width=w,
            indices=indices, dtype=self.quant.dtype, bits=self.quant.bits if uint else 0,
            coder=coder_id, qparams=(2 if self.quant.per_channel else 1) if uint else 0,
            lo=tuple(float(v) for v in np.ravel(lo)),
            step=tuple(float(v) for v in np.ravel(step)))
        packet = Packet(header, payload)
        return packet, EncodeStats(0.0, t2 - t1, len(payload), len(packet.to_bytes()), name)


def pick_prior(priors: Prior | Iterable[Prior] | None, levels: int,
               payload: bytes) -> Prior:
    """Of ``priors``, the one a prior-coded ``payload`` of ``levels`` levels was coded with
    (its first two bytes are the prior's fingerprint).

    Raises:
        PayloadError: none has those levels (or that fingerprint).
    """
    held = ([] if priors is None else [priors] if hasattr(priors, "fingerprint")
            else list(priors))
    same = [p for p in held if p.levels == levels]
    if not same:
        have = ("none" if not held else
                "only " + ", ".join(sorted({f"{p.levels}-level" for p in held})) + " ones")
        raise PayloadError(f"packet is coded with a {levels}-level context prior and this "
                           f"end holds {have}")
    if len(same) == 1:
        return same[0]  # its decode names a fingerprint mismatch
    got = int.from_bytes(bytes(payload[:FINGERPRINT_BYTES]), "little")
    for p in same:
        if p.fingerprint == got:
            return p
    raise PayloadError(f"payload was coded with context prior {got:04x}; this end holds "
                       + ", ".join(p.fingerprint_hex for p in same))


def decode_packet(packet: Packet,
                  prior: Prior | FactorizedTables | Iterable[Prior | FactorizedTables] | None
                  = None) -> torch.Tensor:
    """Payload -> float32 tensor of the kept shape ``(K, H, W)``. ``prior``: the context
    prior a ``prior``-coded packet (coder 5) was coded with, or the priors this end holds
    (a variant's, one per grid), of which the one with the packet's levels and fingerprint
    decodes it; a ``factorized``-coded packet (coder 6) decodes with the
    :class:`~aecnn.compression.factorized.FactorizedTables` among them whose fingerprint it
    names (a learned-bottleneck variant's ``SplitNetwork.coding_tables()``).

    Raises:
        PayloadError: the payload does not decode to the declared shape, or it is
            prior-coded (factorized-coded) and this end holds no prior (tables) of its
            levels and fingerprint.
    """
    h = packet.header
    spec = QuantSpec(h.dtype, h.bits if h.dtype == DType.UINT else 0)
    shape = h.kept_shape
    sym_shape = shape if h.dtype == DType.UINT else (
        shape[0], shape[1], shape[2] * (4 if h.dtype == DType.FLOAT32 else 2))
    held = ([] if prior is None else [prior] if hasattr(prior, "fingerprint")
            else list(prior))
    if h.coder == FACTORIZED_CODER_ID:
        symbols = decode_factorized(h, packet.payload, held)
    elif h.coder == PRIOR_CODER_ID:
        chosen = pick_prior([p for p in held if not isinstance(p, FactorizedTables)],
                            spec.levels, packet.payload)
        symbols = chosen.decode(packet.payload, sym_shape)
    else:
        symbols = CODERS_BY_ID[h.coder].decode(packet.payload, sym_shape, spec.levels)
    if symbols.shape != sym_shape:
        raise PayloadError(f"payload decoded to {symbols.shape}, expected {sym_shape}")
    values = dequantize(symbols, spec, np.asarray(h.lo, np.float32),
                        np.asarray(h.step, np.float32), shape)
    if not np.isfinite(values).all():
        raise PayloadError("payload decodes to NaN or infinite values")
    import torch

    return torch.from_numpy(values)


def scatter_channels(kept: torch.Tensor, header: PacketHeader) -> torch.Tensor:
    """Place the kept channels ``(K, H, W)`` at their indices in a zero ``(C, H, W)``."""
    import torch

    full = torch.zeros(header.full_shape, dtype=kept.dtype)
    full[list(header.indices)] = kept
    return full
