"""Compression: quantisation, lossless entropy coding, the feature codec and the wire format
(and, with the AECNN issue, channel attention, pruning and feature recovery)."""

from aecnn.compression.codec import (
    AUTO_CANDIDATES,
    CoderProfile,
    EncodeStats,
    FeatureCodec,
    decode_packet,
    scatter_channels,
)
from aecnn.compression.entropy import CODERS, empirical_entropy
from aecnn.compression.errors import PacketError, PayloadError
from aecnn.compression.quantize import DType, QuantSpec, dequantize, quantize
from aecnn.compression.wire import Limits, Packet, PacketHeader

__all__ = ["AUTO_CANDIDATES", "CODERS", "CoderProfile", "DType", "EncodeStats", "FeatureCodec",
           "Limits", "Packet", "PacketError", "PacketHeader", "PayloadError", "QuantSpec",
           "decode_packet", "dequantize", "empirical_entropy", "quantize", "scatter_channels"]
