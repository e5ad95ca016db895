"""The wire format: a frozen header plus payload bytes, with a CRC32 over both.

Byte layout (little-endian), version 2 — documented byte by byte in ``docs/wire-format.md``::

    magic        4   b"AECN"
    version      u8  2
    dtype        u8  0 float32, 1 float16, 2 unsigned integer
    bits         u8  1..8 for dtype 2, else 0
    coder        u8  0 none, 1 zstd, 2 memoryless, 3 per-channel, 4 context, 5 prior,
                     6 factorized
    model_len    u8  then model id, UTF-8, at most 64 bytes
    split_len    u8  then split id, UTF-8, at most 64 bytes
    channels     u16 C, the split tensor's channel count before pruning
    height       u16 H
    width        u16 W
    kept         u16 K, channels that travel (1..C)
    indices      K x u16, strictly increasing, each < C
    qparams      u8  0 none, 1 per tensor, 2 per channel
    lo, step     P x (f32, f32), P = 0, 1 or K
    payload_len  u32 then the payload
    crc32        u32 over every byte before it

``from_bytes`` never trusts a length before checking it against the bytes at hand and the
configured :class:`Limits`, so a hostile packet cannot drive an allocation.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from aecnn.compression.entropy import CODER_IDS, FACTORIZED_CODER_ID, PRIOR_CODER_ID
from aecnn.compression.errors import (
    BadMagicError,
    ChecksumError,
    FieldError,
    LimitError,
    PacketError,
    TruncatedError,
    UnsupportedVersionError,
)
from aecnn.compression.quantize import DType

MAGIC = b"AECN"
VERSION = 2
MAX_ID = 64
_FIXED = struct.Struct("<4sBBBB")


@dataclass(frozen=True)
class Limits:
    """What a decoder accepts: elements of the kept tensor and payload bytes."""

    max_elements: int = 64 * 2**20
    max_payload: int = 256 * 2**20


@dataclass(frozen=True)
class PacketHeader:
    """Everything needed to decode a payload back into the split tensor.

    Shapes: the device sends ``(K, H, W)`` = the kept channels ``indices`` of a
    ``(C, H, W)`` split tensor. ``lo`` and ``step`` hold 0, 1 or K float32 values.
    """

    model: str
    split: str
    channels: int
    height: int
    width: int
    indices: tuple[int, ...]
    dtype: DType
    bits: int
    coder: int
    qparams: int = 0
    lo: tuple[float, ...] = ()
    step: tuple[float, ...] = ()

    @property
    def kept_shape(self) -> tuple[int, int, int]:
        return (len(self.indices), self.height, self.width)

    @property
    def full_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def validate(self, limits: Limits = Limits()) -> None:
        """Raise a :class:`PacketError` subclass for any inconsistent field."""
        for name, text in (("model", self.model), ("split", self.split)):
            if len(text.encode()) > MAX_ID:
                raise FieldError(f"{name} id longer than {MAX_ID} bytes")
        for name, v in (("channels", self.channels), ("height", self.height),
                        ("width", self.width)):
            if not 1 <= v <= 0xFFFF:
                raise FieldError(f"{name} {v} outside 1..65535")
        k = len(self.indices)
        if not 1 <= k <= self.channels:
            raise FieldError(f"{k} kept channels for a tensor of {self.channels}")
        idx = np.asarray(self.indices)
        if idx.min() < 0 or idx.max() >= self.channels:
            raise FieldError("a kept channel index is out of range")
        if np.any(np.diff(idx) <= 0):
            raise FieldError("kept channel indices are repeated or not increasing")
        if k * self.height * self.width > limits.max_elements:
            raise LimitError(f"tensor of {k}x{self.height}x{self.width} elements exceeds the "
                             f"limit of {limits.max_elements}")
        if self.dtype not in tuple(DType):
            raise FieldError(f"unknown dtype {self.dtype}")
        if self.coder not in CODER_IDS:
            raise FieldError(f"unknown coder id {self.coder}")
        if self.coder == PRIOR_CODER_ID and self.dtype != DType.UINT:
            raise FieldError("the prior coder codes integer symbols only")
        if self.coder == FACTORIZED_CODER_ID and (self.dtype != DType.UINT
                                                  or self.qparams != 2):
            raise FieldError("the factorized coder codes integer symbols of a per-channel "
                             "grid only")
        if self.dtype == DType.UINT:
            if not 1 <= self.bits <= 8:
                raise FieldError(f"integer symbols of {self.bits} bits")
            expected = {1: 1, 2: k}.get(self.qparams)
            if expected is None:
                raise FieldError("integer symbols need quantisation parameters")
            if len(self.lo) != expected or len(self.step) != expected:
                raise FieldError("quantisation parameter count does not match")
            lo, step = np.asarray(self.lo), np.asarray(self.step)
            if not (np.isfinite(lo).all() and np.isfinite(step).all() and (step > 0).all()):
                raise FieldError("quantisation parameters must be finite with step > 0")
        elif self.bits != 0 or self.qparams != 0 or self.lo or self.step:
            raise FieldError("float symbols carry no bits or quantisation parameters")


@dataclass(frozen=True)
class Packet:
    """A header and its payload; ``to_bytes`` / ``from_bytes`` are exact inverses."""

    header: PacketHeader
    payload: bytes

    def to_bytes(self) -> bytes:
        h = self.header
        h.validate()
        model, split = h.model.encode(), h.split.encode()
        parts = [
            _FIXED.pack(MAGIC, VERSION, int(h.dtype), h.bits, h.coder),
            bytes([len(model)]), model, bytes([len(split)]), split,
            struct.pack("<HHHH", h.channels, h.height, h.width, len(h.indices)),
            np.asarray(h.indices, "<u2").tobytes(),
            bytes([h.qparams]),
            np.stack([np.asarray(h.lo, "<f4"), np.asarray(h.step, "<f4")], 1).tobytes(),
            struct.pack("<I", len(self.payload)), self.payload,
        ]
        body = b"".join(parts)
        return body + struct.pack("<I", zlib.crc32(body))

    @staticmethod
    def from_bytes(data: bytes, limits: Limits = Limits()) -> Packet:
        """Parse and check a packet. Raises only :class:`PacketError` subclasses."""
        try:
            return _parse(memoryview(bytes(data)), limits)
        except PacketError:
            raise
        except Exception as exc:  # defensive: no other exception type may escape
            raise FieldError(f"malformed packet: {exc}") from None


class _Cursor:
    def __init__(self, data: memoryview) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise TruncatedError(f"packet ends inside {what}")
        out = self.data[self.pos: self.pos + n]
        self.pos += n
        return out


def _parse(data: memoryview, limits: Limits) -> Packet:
    if len(data) < 4 or bytes(data[:4]) != MAGIC:
        raise BadMagicError("not an aecnn packet (bad magic)")
    if len(data) < _FIXED.size:
        raise TruncatedError("packet shorter than its fixed header")
    _, version, dtype, bits, coder = _FIXED.unpack(data[:_FIXED.size])
    if version != VERSION:
        raise UnsupportedVersionError(f"packet format version {version}; this decoder reads "
                                      f"{VERSION}")
    if len(data) < _FIXED.size + 4:
        raise TruncatedError("packet has no checksum")
    body, (crc,) = data[:-4], struct.unpack("<I", data[-4:])
    if zlib.crc32(body) != crc:
        raise ChecksumError("CRC32 mismatch: the packet was corrupted")
    cur = _Cursor(body)
    cur.pos = _FIXED.size
    ids = []
    for what in ("model id", "split id"):
        n = cur.take(1, what)[0]
        if n > MAX_ID:
            raise FieldError(f"{what} longer than {MAX_ID} bytes")
        try:
            ids.append(bytes(cur.take(n, what)).decode())
        except UnicodeDecodeError:
            raise FieldError(f"{what} is not UTF-8") from None
    c, h, w, k = struct.unpack("<HHHH", cur.take(8, "shape"))
    if k == 0 or k > c:
        raise FieldError(f"{k} kept channels for a tensor of {c}")
    indices = tuple(int(i) for i in np.frombuffer(cur.take(2 * k, "channel indices"), "<u2"))
    qparams = cur.take(1, "quantisation mode")[0]
    count = {0: 0, 1: 1, 2: k}.get(qparams)
    if count is None:
        raise FieldError(f"unknown quantisation mode {qparams}")
    params = np.frombuffer(cur.take(8 * count, "quantisation parameters"), "<f4").reshape(-1, 2)
    (length,) = struct.unpack("<I", cur.take(4, "payload length"))
    if length > limits.max_payload:
        raise LimitError(f"payload of {length} bytes exceeds the limit of {limits.max_payload}")
    if cur.pos + length != len(body):
        raise TruncatedError(f"payload length {length} disagrees with the packet size")
    if dtype not in tuple(DType):
        raise FieldError(f"unknown dtype {dtype}")
    header = PacketHeader(ids[0], ids[1], c, h, w, indices, DType(dtype), bits, coder,
                          qparams, tuple(float(v) for v in params[:, 0]),
                          tuple(float(v) for v in params[:, 1]))
    header.validate(limits)
    return Packet(header, bytes(cur.take(length, "payload")))
