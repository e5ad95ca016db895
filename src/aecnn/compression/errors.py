"""Errors of the codec and the wire format. All derive from :class:`PacketError`."""

from aecnn.errors import AecnnError


class PacketError(AecnnError):
    """A packet or payload is malformed. Base of every error ``from_bytes`` may raise."""


class BadMagicError(PacketError):
    """The bytes do not start with the packet magic."""


class UnsupportedVersionError(PacketError):
    """The packet's format version is not one this decoder reads."""


class TruncatedError(PacketError):
    """The packet ends before a field it declares, or has bytes after its end."""


class ChecksumError(PacketError):
    """The CRC32 does not match the packet's bytes."""


class LimitError(PacketError):
    """A declared size is beyond the decoder's configured limits."""


class FieldError(PacketError):
    """A header field holds an invalid value (unknown coder, repeated channel, ...)."""


class PayloadError(PacketError):
    """The entropy-coded payload does not decode to the declared tensor."""
