"""The device side from an ONNX file alone (``aecnn infer --engine onnxruntime``): no torch.

``aecnn export --onnx`` (:mod:`aecnn.runtime.onnx_export`) writes the head and the
quantiser as one graph, ``image (1, 3, S, S) -> features, symbols, lo, step``, with the
variant's metadata and context prior in the file. Here ONNX Runtime runs it; preprocessing is
numpy and PIL (:class:`~aecnn.runtime.preprocess.ArrayPreprocessor`), the entropy coders and
the wire format are numpy (:meth:`~aecnn.compression.codec.FeatureCodec.encode_symbols`), and
the transport is :class:`~aecnn.runtime.client.Connection`. Nothing on this path imports
torch, torchvision or the training code (``tests/test_onnx.py`` runs it with torch blocked).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aecnn.compression.codec import EncodeStats, FeatureCodec
from aecnn.compression.priors import Prior, prior_from_dict
from aecnn.compression.quantize import QuantSpec
from aecnn.compression.wire import Packet
from aecnn.errors import AecnnError
from aecnn.runtime import protocol as P
from aecnn.runtime.client import Connection, InferenceResult
from aecnn.runtime.preprocess import ArrayPreprocessor, read_image

FORMAT = "aecnn-onnx-head/1"


class OnnxHeadError(AecnnError):
    """An ONNX file that is not an aecnn device head, or ONNX Runtime missing."""


@dataclass(frozen=True)
class HeadOutput:
    """One image through the device graph: ``features (K, H, W)`` float32 and, for an
    integer grid, ``symbols (K, H, W)`` uint8 with ``lo``, ``step`` float32 ``(1,)`` or
    ``(K,)`` (None for a float grid)."""

    features: np.ndarray
    symbols: np.ndarray | None
    lo: np.ndarray | None
    step: np.ndarray | None


class OnnxHead:
    """An exported device head (``aecnn export --onnx``) in an ONNX Runtime session.

    Attributes from the file: ``meta`` (the variant's metadata as a dict: ``name``,
    ``point``, ``kept``, ``channels``, ``input_size``, ``mean``, ``std``, ``classes``, ...),
    ``quant`` (its grid), ``prior`` (the variant's context prior for that grid, or None).

    Raises:
        OnnxHeadError: onnxruntime is not installed, or the file is not an aecnn head.
    """

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise OnnxHeadError("--engine onnxruntime needs the onnx extra: pip install "
                                "'aecnn[onnx]'") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise OnnxHeadError(f"{path}: not a readable ONNX model: {first}") from None
        props = self.session.get_modelmeta().custom_metadata_map
        if props.get("aecnn.format") != FORMAT:
            raise OnnxHeadError(f"{path} is not an aecnn device head (make one with aecnn "
                                "export --onnx)")
        try:
            self.meta = json.loads(props["aecnn.meta"])
            self.quant = QuantSpec.parse(props["aecnn.quant"])
            self.prior: Prior | None = (prior_from_dict(json.loads(props["aecnn.prior"]))
                                        if "aecnn.prior" in props else None)
        except (KeyError, TypeError, ValueError, AecnnError) as exc:
            raise OnnxHeadError(f"{path}: the head's metadata is unreadable: {exc}") from None
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.path = Path(path)

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def kept(self) -> tuple[int, ...] | None:
        return None if self.meta.get("kept") is None else tuple(self.meta["kept"])

    def run(self, x: np.ndarray) -> HeadOutput:
        """``x (1, 3, S, S)`` normalised float32 -> :class:`HeadOutput`."""
        got = dict(zip(self.outputs, self.session.run(None, {"image": x}), strict=True))
        if "symbols" not in got:
            return HeadOutput(got["features"][0], None, None, None)
        return HeadOutput(got["features"][0], got["symbols"][0], got["lo"], got["step"])

    def codec(self, coder: str = "auto", rate_bps: float = 10e6) -> FeatureCodec:
        """The codec of this head's grid (with its context prior, when the file holds one)."""
        return FeatureCodec(self.quant, coder, rate_bps, prior=self.prior)

    def encode(self, out: HeadOutput, codec: FeatureCodec) -> tuple[Packet, EncodeStats]:
        """A :class:`~aecnn.compression.wire.Packet` (and its encode stats) of ``out``:
        the graph's own symbols for an integer grid, else ``codec`` quantises the features."""
        m = self.meta
        if codec.quant != self.quant:
            raise OnnxHeadError(f"this head quantises to {self.quant}, not {codec.quant}")
        channels = int(m["channels"]) if self.kept else None
        if out.symbols is None:
            return codec.encode(out.features, self.kept, channels, self.name, m["point"])
        return codec.encode_symbols(out.symbols, out.lo, out.step, out.features.shape,
                                    self.kept, channels, self.name, m["point"])


class OnnxCoInference:
    """:class:`~aecnn.runtime.client.CoInference` with the head in ONNX Runtime: the same
    ``infer(image) -> InferenceResult``; ``t_iot`` is the graph (head and quantiser),
    ``t_enc`` the entropy coding and packing."""

    mode = "co-inference"

    def __init__(self, head: OnnxHead, codec: FeatureCodec, conn: Connection) -> None:
        if codec.quant != head.quant:
            raise OnnxHeadError(f"{head.path} quantises to {head.quant}, not {codec.quant}")
        self.head, self.codec, self.conn = head, codec, conn
        m = head.meta
        self.prep = ArrayPreprocessor(int(m["input_size"]), tuple(m["mean"]), tuple(m["std"]))

    def infer(self, image: bytes | str | Path) -> InferenceResult:
        data = read_image(image)
        t0 = time.perf_counter()
        x = self.prep(data)
        t1 = time.perf_counter()
        out = self.head.run(x)
        t2 = time.perf_counter()
        packet, stats = self.head.encode(out, self.codec)
        wire = packet.to_bytes()
        t3 = time.perf_counter()
        reply, rtt = self.conn.call(P.Kind.FEATURE, wire)
        t4 = time.perf_counter()
        return InferenceResult(
            self.mode, self.head.name, reply["class"], reply["label"], reply["score"],
            len(wire), t1 - t0, t2 - t1, t3 - t2, max(rtt - reply["t_server"], 0.0),
            reply["t_dec"], reply["t_fr"], reply["t_es"], reply["t_queue"], t4 - t0,
            stats.coder)



__all__ = ["FORMAT", "HeadOutput", "OnnxCoInference", "OnnxHead", "OnnxHeadError"]
