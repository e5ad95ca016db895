"""Framing between device and edge server, over one TCP connection.

Every message is a 12-byte frame header followed by its body (little-endian)::

    magic       2   b"AQ" (request) or b"AR" (response)
    version     u8  1
    kind        u8  request: 1 FEATURE, 2 IMAGE, 3 PING, 4 INFO; response: 0 OK, 1 ERROR
    request_id  u32 chosen by the client, echoed by the server
    length      u32 body bytes (at most the receiver's ``max_frame``)

Bodies: FEATURE = a :class:`aecnn.compression.wire.Packet` (its ``model`` field names the
variant); IMAGE = u8 name length, the variant name (UTF-8), then the encoded image file
(JPEG/PNG); PING = any bytes, echoed; INFO = empty. Responses carry UTF-8 strict JSON (no
NaN or Infinity): for OK the prediction and server timings, for ERROR ``{"error": message}``.
No pickle anywhere. docs/runtime.md has every reply field by field.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from enum import IntEnum

from aecnn.errors import AecnnError

HEADER = struct.Struct("<2sBBII")
VERSION = 1
REQUEST, RESPONSE = b"AQ", b"AR"
DEFAULT_MAX_FRAME = 32 * 2**20


class ProtocolError(AecnnError):
    """A frame is malformed, too large, or of an unknown kind."""


class RemoteError(AecnnError):
    """The server answered a request with an error."""


class Kind(IntEnum):
    FEATURE = 1
    IMAGE = 2
    PING = 3
    INFO = 4


class Status(IntEnum):
    OK = 0
    ERROR = 1


@dataclass(frozen=True)
class Frame:
    magic: bytes
    kind: int
    request_id: int
    body: bytes

    def to_bytes(self) -> bytes:
        return HEADER.pack(self.magic, VERSION, self.kind, self.request_id,
                           len(self.body)) + self.body


def parse_header(raw: bytes, expect: bytes, max_frame: int) -> tuple[int, int, int]:
    """``(kind, request_id, length)`` of a 12-byte header, checked.

    Raises:
        ProtocolError: wrong magic or version, unknown kind, or a body over ``max_frame``.
    """
    if len(raw) != HEADER.size:
        raise ProtocolError(f"frame header is {len(raw)} bytes, expected {HEADER.size}")
    magic, version, kind, rid, length = HEADER.unpack(raw)
    if magic != expect:
        raise ProtocolError(f"bad frame magic {magic!r} (expected {expect!r})")
    if version != VERSION:
        raise ProtocolError(f"unsupported protocol version {version}")
    kinds = Kind if expect == REQUEST else Status
    if kind not in {int(k) for k in kinds}:
        raise ProtocolError(f"unknown frame kind {kind}")
    if length > max_frame:
        raise ProtocolError(f"frame of {length} bytes is over the limit of {max_frame}")
    return kind, rid, length


def request(kind: Kind, request_id: int, body: bytes = b"") -> bytes:
    return Frame(REQUEST, int(kind), request_id & 0xFFFFFFFF, body).to_bytes()


def response(status: Status, request_id: int, payload: dict) -> bytes:
    """A response frame; its body is strict JSON (RFC 8259).

    Raises:
        ValueError: ``payload`` holds NaN or an infinity, which JSON cannot carry.
    """
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    return Frame(RESPONSE, int(status), request_id, body).to_bytes()


def image_body(variant: str, data: bytes) -> bytes:
    name = variant.encode()
    if len(name) > 255:
        raise ProtocolError("variant name longer than 255 bytes")
    return bytes([len(name)]) + name + data


def split_image_body(body: bytes) -> tuple[str, bytes]:
    if not body:
        raise ProtocolError("empty IMAGE body")
    n = body[0]
    if len(body) < 1 + n:
        raise ProtocolError("IMAGE body shorter than its variant name")
    try:
        return body[1:1 + n].decode(), body[1 + n:]
    except UnicodeDecodeError:
        raise ProtocolError("variant name is not UTF-8") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> dict:
    """A response body, strictly: NaN and Infinity are refused as RFC 8259 refuses them."""
    try:
        out = json.loads(body.decode(), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("response body is not JSON") from None
    if not isinstance(out, dict):
        raise ProtocolError("response body is not a JSON object")
    return out
