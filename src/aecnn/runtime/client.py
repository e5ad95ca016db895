"""The device side (``aecnn infer``): co-inference, local computing and full offloading,
all behind one interface, ``infer(image) -> InferenceResult``.

Timings follow the paper's eq. (3)-(4): ``t_iot`` (device head), ``t_enc`` (quantise +
entropy code), ``t_com`` (measured round trip minus the server's own time: uplink transfer,
propagation, the small reply, framing), ``t_dec``, ``t_fr``, ``t_es`` (server), plus ``t_pre``
(decoding and resizing the photo on the device), which the paper leaves out and we report.
``total`` is the wall clock from the photo's bytes to the answer.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aecnn.errors import AecnnError
from aecnn.runtime import protocol as P
from aecnn.runtime.preprocess import Preprocessor, read_image

# torch is imported when a torch network runs, so that Connection and InferenceResult serve
# the torch-free ONNX Runtime device (aecnn.runtime.onnx_head) too
if TYPE_CHECKING:
    from aecnn.compression.codec import FeatureCodec
    from aecnn.core.split import SplitNetwork


def _inference_mode(fn):
    """``fn`` under ``torch.inference_mode()``, torch imported at the call."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        import torch

        with torch.inference_mode():
            return fn(*args, **kwargs)
    return run


@dataclass(frozen=True)
class InferenceResult:
    """One request, end to end (seconds; bytes)."""

    mode: str
    variant: str
    cls: int
    label: str
    score: float
    bytes_up: int
    t_pre: float
    t_iot: float
    t_enc: float
    t_com: float
    t_dec: float
    t_fr: float
    t_es: float
    t_queue: float
    total: float
    coder: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


class _Refused(AecnnError):
    """Nothing listens at the address (yet)."""


class _ClosedBeforeReply(AecnnError):
    """The server closed the connection before the first byte of a reply, or evicted it
    (an ERROR frame answering an older request, then the close)."""


class Connection:
    """A blocking TCP connection to an edge server (one request at a time).

    ``tls``: a client context (:func:`aecnn.runtime.tls.client_context`) to speak TLS, the
    server's certificate checked for ``server_hostname`` (default ``host``); ``source``: the
    local address to connect from. ``timeout``: seconds for connecting and for each reply;
    ``connect_wait``: for that many seconds a refused connection is tried again (a server that
    is still starting), every 0.25 s.

    A request on a connection that was already open (the server may have closed it while it
    was quiet: its first-byte or idle deadline) and that is closed or reset before any byte of
    the reply is sent once more on a new connection. Every request kind is idempotent."""

    def __init__(self, host: str, port: int, timeout: float = 60.0,
                 max_frame: int = P.DEFAULT_MAX_FRAME, tls: ssl.SSLContext | None = None,
                 server_hostname: str | None = None, source: str | None = None,
                 connect_wait: float = 0.0) -> None:
        self.addr, self.timeout, self.max_frame = (host, port), timeout, max_frame
        self.connect_wait = connect_wait
        self.tls, self.server_hostname, self.source = tls, server_hostname or host, source
        self.sock: socket.socket | None = None
        self.next_id = 1

    def connect(self) -> Connection:
        deadline = time.monotonic() + self.connect_wait
        while True:
            try:
                return self._connect()
            except _Refused as exc:
                if time.monotonic() >= deadline:
                    raise AecnnError(str(exc)) from None
                time.sleep(0.25)

    def _connect(self) -> Connection:
        sock = None
        try:
            sock = socket.create_connection(
                self.addr, timeout=self.timeout,
                source_address=None if self.source is None else (self.source, 0))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.server_hostname)
        except (OSError, ssl.SSLError) as exc:
            if sock is not None:
                sock.close()
            kind = _Refused if isinstance(exc, ConnectionRefusedError) else AecnnError
            raise kind(f"cannot connect to the edge server at {self.addr[0]}:"
                       f"{self.addr[1]}: {getattr(exc, 'strerror', None) or exc}") from None
        self.sock = sock
        return self

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

    def __enter__(self) -> Connection:
        return self.connect() if self.sock is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    def _recv(self, n: int, first: bool = False) -> bytes:
        """``n`` bytes; ``first``: the reply's first bytes (a close before any of them raises
        :class:`_ClosedBeforeReply`)."""
        assert self.sock is not None
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            except ConnectionResetError:
                if first and not buf:
                    raise _ClosedBeforeReply(
                        "the edge server closed the connection (reset)") from None
                raise
            if not chunk:
                kind = _ClosedBeforeReply if first and not buf else AecnnError
                raise kind("the edge server closed the connection")
            buf += chunk
        return bytes(buf)

    def call(self, kind: P.Kind, body: bytes = b"") -> tuple[dict, float]:
        """Send one request; ``(reply, round-trip seconds)``.

        Raises:
            RemoteError: the server answered with an error.
            AecnnError: the connection failed or timed out.
        """
        retry = self.sock is not None  # closed while quiet: once more on a fresh connection
        while True:
            if self.sock is None:
                self.connect()
            try:
                status, reply, rtt = self._exchange(kind, body)
                break
            except _ClosedBeforeReply as exc:
                self.close()
                if not retry:
                    raise AecnnError(str(exc)) from None
                retry = False
        if status == P.Status.ERROR:
            raise P.RemoteError(f"edge server: {reply.get('error', 'unknown error')}")
        return reply, rtt

    def _exchange(self, kind: P.Kind, body: bytes) -> tuple[P.Status, dict, float]:
        """One frame out, its reply in: ``(status, reply, seconds)``."""
        assert self.sock is not None
        rid, self.next_id = self.next_id, self.next_id + 1
        frame = P.request(kind, rid, body)
        t0 = time.perf_counter()
        try:
            try:
                self.sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                raise _ClosedBeforeReply("the edge server closed the connection") from None
            status, got, length = P.parse_header(self._recv(P.HEADER.size, first=True),
                                                 P.RESPONSE, self.max_frame)
            reply = P.parse_json(self._recv(length))
        except (TimeoutError, OSError) as exc:
            self.close()
            raise AecnnError(f"edge server connection failed: {exc}") from None
        if got != rid:
            if status == P.Status.ERROR:  # an older frame's: the server evicted the
                raise _ClosedBeforeReply(  # connection while it was quiet, then closed it
                    f"the edge server closed the connection: {reply.get('error', '')}")
            raise P.ProtocolError(f"reply to request {got}, expected {rid}")
        return status, reply, time.perf_counter() - t0

    def info(self) -> dict:
        return self.call(P.Kind.INFO)[0]["variants"]


class CoInference:
    """Device head + feature codec; the server runs bridge and tail (AECNN, CA_Pruned,
    BottleNet++ or the uncompressed split)."""

    mode = "co-inference"

    def __init__(self, variant: SplitNetwork, codec: FeatureCodec, conn: Connection) -> None:
        self.variant, self.codec, self.conn = variant, codec, conn
        m = variant.meta
        self.prep = Preprocessor(m.input_size, m.mean, m.std)

    @_inference_mode
    def infer(self, image: bytes | str | Path) -> InferenceResult:
        data = read_image(image)
        m = self.variant.meta
        t0 = time.perf_counter()
        x = self.prep(data)
        t1 = time.perf_counter()
        z = self.variant.head(x)[0]
        t2 = time.perf_counter()
        packet, stats = self.codec.encode(z, m.kept, m.channels if m.kept else None,
                                          m.name, m.point)
        wire = packet.to_bytes()
        t3 = time.perf_counter()
        reply, rtt = self.conn.call(P.Kind.FEATURE, wire)
        t4 = time.perf_counter()
        return InferenceResult(
            self.mode, m.name, reply["class"], reply["label"], reply["score"], len(wire),
            t1 - t0, t2 - t1, t3 - t2, max(rtt - reply["t_server"], 0.0), reply["t_dec"],
            reply["t_fr"], reply["t_es"], reply["t_queue"], t4 - t0, stats.coder)


class LocalComputing:
    """The whole model on the device; nothing is sent."""

    mode = "local"

    def __init__(self, variant: SplitNetwork) -> None:
        self.variant = variant
        m = variant.meta
        self.prep = Preprocessor(m.input_size, m.mean, m.std)

    @_inference_mode
    def infer(self, image: bytes | str | Path) -> InferenceResult:
        data = read_image(image)
        t0 = time.perf_counter()
        x = self.prep(data)
        t1 = time.perf_counter()
        probs = self.variant(x).softmax(1)[0]
        t2 = time.perf_counter()
        score, cls = probs.max(0)
        m = self.variant.meta
        return InferenceResult(self.mode, m.name, int(cls), m.classes[int(cls)], float(score),
                               0, t1 - t0, t2 - t1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, t2 - t0)


class FullOffloading:
    """The device sends the encoded photo as it is; the server decodes, resizes and runs
    the whole model of ``variant`` (a name the server serves).

    With ``jpeg_quality`` the device first makes the ``S x S`` crop the network sees
    (:func:`~aecnn.runtime.preprocess.device_crop`; ``t_pre``) and sends it as JPEG at that
    quality (``t_enc``); the server takes an ``S x S`` photo as the crop. ``input_size`` is
    S, by default the served variant's (from the server's INFO reply)."""

    mode = "full-offload"

    def __init__(self, variant: str, conn: Connection, jpeg_quality: int | None = None,
                 input_size: int | None = None) -> None:
        self.name, self.conn = variant, conn
        self.quality, self.input_size = jpeg_quality, input_size

    def _crop(self, data: bytes) -> tuple[bytes, float, float]:
        from aecnn.runtime.preprocess import device_crop, encode_rgb

        if self.input_size is None:
            info = self.conn.info()
            if self.name not in info:
                raise AecnnError(f"the edge server does not serve {self.name!r}")
            self.input_size = int(info[self.name]["input_size"])
        t0 = time.perf_counter()
        crop = device_crop(data, self.input_size)
        t1 = time.perf_counter()
        out = encode_rgb(crop, "jpeg", self.quality or 90)
        return out, t1 - t0, time.perf_counter() - t1

    def infer(self, image: bytes | str | Path) -> InferenceResult:
        data = read_image(image)
        if self.quality is not None and self.input_size is None:
            self._crop(data)  # learn S before the clock starts
        t0 = time.perf_counter()
        t_pre = t_enc = 0.0
        if self.quality is not None:
            data, t_pre, t_enc = self._crop(data)
        body = P.image_body(self.name, data)
        reply, rtt = self.conn.call(P.Kind.IMAGE, body)
        t1 = time.perf_counter()
        t_es = reply["t_head"] + reply["t_fr"] + reply["t_es"]
        return InferenceResult(
            self.mode, self.name, reply["class"], reply["label"], reply["score"],
            len(body) + P.HEADER.size, t_pre, 0.0, t_enc, max(rtt - reply["t_server"], 0.0),
            reply["t_dec"], 0.0, t_es, reply["t_queue"], t1 - t0, "jpeg")


class AdaptiveCoInference:
    """Co-inference that switches candidate per request: the planner, run on the device with
    the uplink rate estimated from its own recent transfers
    (:class:`~aecnn.runtime.planner.AdaptivePolicy`). It plans over the profile's
    co-inference candidates whose variant it holds (``variants``: name -> network), each on
    its own grid (``quant`` for profiles written before candidates had one)."""

    mode = "adaptive"

    def __init__(self, variants: dict[str, SplitNetwork], policy, conn: Connection,
                 quant: str = "float32") -> None:
        self.policy, self.conn, self.quant = policy, conn, quant
        self.runners = {n: CoInference(v, v.codec(quant, "none"), conn)
                        for n, v in variants.items()}
        prof = policy.profile
        if policy.names is None:
            policy.names = [k for k, c in prof.variants.items()
                            if c.mode == "co" and c.served in variants]
        if not policy.names:
            raise AecnnError("the latency profile has no co-inference candidate of these "
                             "variants (" + ", ".join(variants) + ")")

    def infer(self, image: bytes | str | Path) -> InferenceResult:
        prof = self.policy.profile
        key = self.policy.choose()
        cand = prof.variant(key)
        runner = self.runners[cand.served]
        coder = cand.best_coder(self.policy.rate, prof.t_rtt)
        runner.codec = runner.variant.codec(cand.quant or self.quant, coder)
        result = runner.infer(image)
        self.policy.observe(result.bytes_up, result.t_com)
        return result
