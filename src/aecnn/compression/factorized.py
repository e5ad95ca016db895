"""Wire coder 6 (``factorized``): integer latents under per-channel tables both ends hold.

A learned entropy bottleneck (:mod:`aecnn.compression.learned`, the factorized prior of
Ballé et al. 2018 as in CompressAI's ``EntropyBottleneck``) quantises each channel ``c`` of
its latent to the grid ``lo_c + s``, ``s = 0 … L_c − 1`` (step 1), and codes ``s`` with a
frequency table fitted to its learned density. Those tables (:class:`FactorizedTables`) are
computed once by the bottleneck's ``update()`` and stored in the variant file, so both ends
hold them and the packet carries none of them: the payload is the tables' fingerprint and
constriction's rANS stream. The packet header says the grid as for any per-channel integer
grid (dtype 2, qmode 2, ``lo_c`` and step 1 per channel), so ``lo + symbol · step`` gives the
decoded latent; a decoder must refuse ``lo`` that are not its tables' own.

numpy and constriction only: a device that codes numpy arrays runs without torch.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import constriction
import numpy as np

from aecnn.compression.entropy import FACTORIZED_CODER_ID
from aecnn.compression.errors import PayloadError
from aecnn.compression.quantize import DType
from aecnn.compression.wire import Packet, PacketHeader
from aecnn.errors import AecnnError

PRECISION = 16
TOTAL = 1 << PRECISION
"""Each table row sums to exactly ``2**16``; every entry below ``L_c`` is >= 1."""
MAX_LEVELS = 256
FINGERPRINT_BYTES = 2
FORMAT = "aecnn-factorized-tables/1"


class TablesError(AecnnError):
    """Factorized-prior tables that are missing, malformed or do not suit a tensor."""


class FactorizedTables:
    """Per-channel grids and frequency tables of a learned factorized prior.

    ``lo``: float32 ``(C,)``, the value of symbol 0 of each channel; ``lengths``: int
    ``(C,)``, the symbols of each channel (``1 … 256``); ``freqs``: int ``(C, 256)``, row ``c``
    holding ``lengths[c]`` entries >= 1 that sum to ``2**16`` (the rest 0).

    Raises:
        TablesError: tables not of that form.
    """

    def __init__(self, lo: np.ndarray, lengths: np.ndarray, freqs: np.ndarray) -> None:
        lo = np.asarray(lo, np.float32).ravel()
        lengths = np.asarray(lengths, np.int64).ravel()
        freqs = np.asarray(freqs, np.int64)
        c = len(lo)
        if c == 0 or lengths.shape != (c,) or freqs.shape != (c, MAX_LEVELS):
            raise TablesError(f"tables of {c} channels need {c} lengths and a ({c}, "
                              f"{MAX_LEVELS}) frequency table")
        if not np.isfinite(lo).all():
            raise TablesError("a channel's grid starts at a non-finite value")
        if lengths.min() < 1 or lengths.max() > MAX_LEVELS:
            raise TablesError(f"a channel has a grid of {int(lengths.min())} to "
                              f"{int(lengths.max())} symbols, not 1 … {MAX_LEVELS}")
        inside = np.arange(MAX_LEVELS)[None, :] < lengths[:, None]
        if (freqs[inside] < 1).any() or (freqs[~inside] != 0).any():
            raise TablesError("a frequency table has a zero inside its grid or an entry "
                              "outside it")
        if (freqs.sum(1) != TOTAL).any():
            raise TablesError(f"a frequency table does not sum to {TOTAL}")
        self.lo, self.lengths, self.freqs = lo, lengths, freqs
        self.channels = c
        self.bits = max(1, int(lengths.max() - 1).bit_length())
        crc = zlib.crc32(b"factorized" + struct.pack("<H", c) + lo.astype("<f4").tobytes()
                         + lengths.astype("<u2").tobytes()
                         + freqs[inside].astype("<u4").tobytes())
        self.fingerprint = crc & 0xFFFF
        self._models: list | None = None

    @property
    def fingerprint_hex(self) -> str:
        return f"{self.fingerprint:04x}"

    def models(self) -> list:
        """One constriction categorical per channel (built on first use); None for a
        channel of one symbol, which is certain and not coded."""
        if self._models is None:
            self._models = [constriction.stream.model.Categorical(
                row[:n].astype(np.float64) / TOTAL, perfect=False) if n > 1 else None
                for row, n in zip(self.freqs, self.lengths, strict=True)]
        return self._models

    # ------------------------------------------------------------------ symbols
    def symbols(self, x: np.ndarray) -> np.ndarray:
        """The grid's symbols of a latent ``x (C, H, W)``: ``clip(round(x − lo), 0, L − 1)``
        per channel, uint8 (values beyond the grid saturate at its ends)."""
        x = np.asarray(x, np.float32)
        if x.ndim != 3 or x.shape[0] != self.channels:
            raise TablesError(f"tables of {self.channels} channels cannot code a tensor of "
                              f"shape {x.shape}")
        s = np.rint(x - self.lo[:, None, None])
        return np.clip(s, 0, (self.lengths - 1)[:, None, None]).astype(np.uint8)

    def values(self, symbols: np.ndarray) -> np.ndarray:
        """``lo + symbol`` (float32, as a decoder computes it from the header)."""
        return (symbols.astype(np.float32) * np.float32(1.0)
                + self.lo[:, None, None]).astype(np.float32)

    def bits_of(self, symbols: np.ndarray) -> float:
        """Information of ``symbols (C, H, W)`` under the tables, in bits."""
        p = np.take_along_axis(self.freqs, symbols.reshape(self.channels, -1).astype(np.int64),
                               axis=1) / TOTAL
        return float(-np.log2(p).sum())

    # ------------------------------------------------------------------ payload
    def encode(self, symbols: np.ndarray) -> bytes:
        """Payload of coder 6: the fingerprint (u16) and the rANS stream of ``symbols (C, H,
        W)``, channel after channel, each under its channel's table."""
        if symbols.ndim != 3 or symbols.shape[0] != self.channels:
            raise TablesError(f"tables of {self.channels} channels cannot code symbols of "
                              f"shape {symbols.shape}")
        coder = constriction.stream.stack.AnsCoder()
        models = self.models()
        for c in reversed(range(self.channels)):
            if models[c] is not None:  # a one-symbol channel is certain: nothing to send
                coder.encode_reverse(symbols[c].ravel().astype(np.int32), models[c])
        return (struct.pack("<H", self.fingerprint)
                + coder.get_compressed().astype("<u4").tobytes())

    def decode(self, payload: bytes, shape: tuple[int, int, int]) -> np.ndarray:
        """Symbols ``(C, H, W)`` uint8 of a coder-6 payload.

        Raises:
            PayloadError: another fingerprint, another channel count, or a stream that does
                not decode.
        """
        if shape[0] != self.channels:
            raise PayloadError(f"packet holds {shape[0]} channels; the factorized tables "
                               f"code {self.channels}")
        if len(payload) < FINGERPRINT_BYTES:
            raise PayloadError("factorized payload ends inside its fingerprint")
        got = int.from_bytes(bytes(payload[:FINGERPRINT_BYTES]), "little")
        if got != self.fingerprint:
            raise PayloadError(f"payload was coded with factorized tables {got:04x}; this end "
                               f"holds {self.fingerprint_hex}")
        rest = bytes(payload[FINGERPRINT_BYTES:])
        if len(rest) % 4:
            raise PayloadError("rANS stream length is not a multiple of 4 bytes")
        n = shape[1] * shape[2]
        try:
            coder = constriction.stream.stack.AnsCoder(np.frombuffer(rest, "<u4")
                                                       .astype(np.uint32))
            out = np.stack([coder.decode(m, n) if m is not None else np.zeros(n, np.int32)
                            for m in self.models()]).astype(np.uint8)
        except Exception as exc:  # constriction reports corrupt streams as generic errors
            raise PayloadError(f"factorized payload does not decode: {exc}") from None
        return out.reshape(shape)

    # -------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "lo": self.lo.tolist(), "lengths": self.lengths.tolist(),
                "freqs": [row[:n].tolist() for row, n in zip(self.freqs, self.lengths,
                                                             strict=True)]}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> FactorizedTables:
        try:
            if d.get("format") != FORMAT:
                raise TablesError(f"not factorized tables (format {FORMAT!r} expected)")
            lengths = np.asarray(d["lengths"], np.int64)
            freqs = np.zeros((len(lengths), MAX_LEVELS), np.int64)
            for i, row in enumerate(d["freqs"]):
                freqs[i, : len(row)] = row
            return FactorizedTables(np.asarray(d["lo"], np.float32), lengths, freqs)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise TablesError(f"factorized tables are malformed: {exc!r}") from None


def pick_tables(held: Iterable[object] | None, payload: bytes) -> FactorizedTables:
    """Of the coding tables an end holds, the factorized ones a coder-6 ``payload`` names.

    Raises:
        PayloadError: none, or none with the payload's fingerprint.
    """
    tables = [t for t in (held or ()) if isinstance(t, FactorizedTables)]
    if not tables:
        raise PayloadError("packet is coded with factorized tables (coder 6) and this end "
                           "holds none")
    got = int.from_bytes(bytes(payload[:FINGERPRINT_BYTES]), "little")
    for t in tables:
        if t.fingerprint == got:
            return t
    return tables[0]  # its decode names the fingerprint mismatch


def decode_factorized(header: PacketHeader, payload: bytes,
                      held: Iterable[object] | None) -> np.ndarray:
    """Symbols ``(K, H, W)`` of a coder-6 packet, checked against the tables: the header's
    grid (bits, ``lo`` and step 1 per channel) must be theirs.

    Raises:
        PayloadError: no suiting tables, a grid that is not theirs, or a bad stream.
    """
    tables = pick_tables(held, payload)
    lo = np.asarray(header.lo, np.float32)
    if (header.qparams != 2 or lo.shape != tables.lo.shape or (lo != tables.lo).any()
            or any(s != 1.0 for s in header.step) or header.bits != tables.bits):
        raise PayloadError("packet's grid (bits, lo, step) is not that of the factorized "
                           f"tables {tables.fingerprint_hex}")
    return tables.decode(payload, header.kept_shape)


@dataclass(frozen=True)
class FactorizedStats:
    """What one encode cost (the fields of :class:`~aecnn.compression.codec.EncodeStats`)."""

    quantize_s: float
    code_s: float
    payload_bytes: int
    packet_bytes: int
    coder: str = "factorized"


class FactorizedCodec:
    """The device codec of a learned-bottleneck network: latent -> symbols of the tables'
    grid -> coder-6 :class:`Packet`. Same ``encode`` as
    :class:`~aecnn.compression.codec.FeatureCodec`, so the runtime's clients use either."""

    coder = "factorized"

    def __init__(self, tables: FactorizedTables) -> None:
        self.tables = tables

    def encode(self, x: Any, indices: tuple[int, ...] | None = None,
               channels: int | None = None, model: str = "", split: str = ""
               ) -> tuple[Packet, FactorizedStats]:
        """Encode the latent ``x (K, H, W)`` or ``(1, K, H, W)`` (torch or numpy); every
        channel travels, so ``indices`` must be ``None`` or ``0 … K − 1``."""
        t0 = time.perf_counter()
        arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        if arr.ndim == 4 and arr.shape[0] == 1:
            arr = arr[0]
        symbols = self.tables.symbols(arr)
        t1 = time.perf_counter()
        payload = self.tables.encode(symbols)
        t2 = time.perf_counter()
        k, h, w = symbols.shape
        if indices is not None and tuple(indices) != tuple(range(k)):
            raise TablesError("a learned bottleneck sends every latent channel")
        header = PacketHeader(
            model=model, split=split, channels=channels or k, height=h, width=w,
            indices=tuple(range(k)), dtype=DType.UINT, bits=self.tables.bits,
            coder=FACTORIZED_CODER_ID, qparams=2,
            lo=tuple(float(v) for v in self.tables.lo), step=(1.0,) * k)
        packet = Packet(header, payload)
        return packet, FactorizedStats(t1 - t0, t2 - t1, len(payload),
                                       len(packet.to_bytes()))


__all__ = ["FACTORIZED_CODER_ID", "FactorizedCodec", "FactorizedStats", "FactorizedTables",
           "PRECISION", "TablesError", "decode_factorized", "pick_tables"]
