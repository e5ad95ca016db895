"""The edge server under attack (issue 37): each fault an independent client found, driven
against a live server on loopback, with the fixed behaviour asserted in numbers. Attackers
and devices use distinct loopback addresses (127.0.0.0/8 is all loopback on Linux) where
the per-peer cap would otherwise stand in for the rule under test. Limits and timeouts are
small so each test takes seconds."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import socket
import statistics
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from aecnn.compression.codec import FeatureCodec
from aecnn.compression.quantize import DType
from aecnn.compression.wire import Packet, PacketHeader
from aecnn.core.split import SplitMeta, SplitNetwork, load_network, save_network
from aecnn.errors import AecnnError
from aecnn.models import get_spec
from aecnn.runtime import protocol as P
from aecnn.runtime.client import Connection
from aecnn.runtime.server import EdgeServer, ServerConfig

SPEC = get_spec("resnet18")
NAME = "r18-fr-x8"
KEPT = tuple(range(0, 64, 8))
LINUX = Path("/proc/self/statm").exists()
pytestmark = pytest.mark.skipif(not LINUX, reason="needs Linux (/proc, 127.0.0.0/8)")


@pytest.fixture(scope="module")
def variant(tmp_path_factory) -> SplitNetwork:
    torch.manual_seed(0)
    meta = SplitMeta(name=NAME, model_name="resnet18", classes=tuple(f"c{i}" for i in range(5)),
                     point="stem", ratio=8, bridge="fr", kept=KEPT, channels=64,
                     input_size=32, mean=SPEC.mean, std=SPEC.std, fr_shape="1x1")
    path = save_network(SplitNetwork.from_meta(meta).eval(),
                        tmp_path_factory.mktemp("v") / "v.pt")
    return load_network(path)


class Running:
    """An EdgeServer on an event loop in a thread, on a free loopback port."""

    def __init__(self, variant: SplitNetwork, **cfg) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = EdgeServer({variant.meta.name: variant}, ServerConfig(port=0, **cfg))
        self.host, self.port = self.loop.run_until_complete(self.server.start())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def open_connections(self) -> int:
        return len(self.server.connections)

    def wait_for(self, cond, timeout: float = 5.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            time.sleep(0.01)
        return cond()


def strict_json(body: bytes) -> dict:
    """RFC 8259: no NaN, Infinity or -Infinity."""
    def refuse(name):
        raise AssertionError(f"reply holds {name}: {body[:200]!r}")
    return json.loads(body.decode(), parse_constant=refuse)


def reply(s: socket.socket) -> tuple[int, int, dict] | None:
    """``(status, request id, JSON body)`` of one response frame; None when closed."""
    raw = b""
    while len(raw) < P.HEADER.size:
        chunk = s.recv(P.HEADER.size - len(raw))
        if not chunk:
            return None
        raw += chunk
    status, rid, length = P.parse_header(raw, P.RESPONSE, 1 << 20)
    body = b""
    while len(body) < length:
        chunk = s.recv(length - len(body))
        assert chunk, "response cut short"
        body += chunk
    return status, rid, strict_json(body)


def raw_socket(run: Running, source: str = "127.0.0.1", timeout: float = 10) -> socket.socket:
    s = socket.create_connection((run.host, run.port), timeout=timeout,
                                 source_address=(source, 0))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def feature_wire(variant: SplitNetwork, fill: float | None = None) -> bytes:
    m = variant.meta
    with torch.inference_mode():
        z = variant.head(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)))[0]
    if fill is not None:
        z = torch.full_like(z, fill)
    packet, _ = FeatureCodec("float32", "none").encode(z, m.kept, m.channels, m.name, m.point)
    return packet.to_bytes()


def served_once(run: Running, wire: bytes, source: str = "127.0.0.1",
                timeout: float = 10) -> float:
    """One FEATURE request of a well-behaved device on a new connection; its seconds."""
    t0 = time.perf_counter()
    with Connection(run.host, run.port, timeout=timeout, source=source) as conn:
        rep, _ = conn.call(P.Kind.FEATURE, wire)
    assert rep["label"].startswith("c")
    return time.perf_counter() - t0


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()


# ---------------------------------------------------------------- 1. connection slots
def test_one_address_cannot_take_every_slot(variant):
    """64 silent connections from one address: 4 (the per-peer cap) are admitted, the other
    60 get an error reply at once; a device at another address is served immediately."""
    wire = feature_wire(variant)
    with Running(variant, max_per_peer=4, first_byte_timeout=30) as run:
        socks = [raw_socket(run, "127.0.0.2") for _ in range(64)]
        try:
            refused = 0
            for s in socks[4:]:
                status, rid, body = reply(s)
                assert status == P.Status.ERROR and "too many connections" in body["error"]
                refused += 1
            assert refused == 60 and run.wait_for(lambda: run.open_connections() == 4)
            assert served_once(run, wire) < 2.0
        finally:
            close_all(socks)


@pytest.mark.parametrize("stalled", [False, True], ids=["idle", "stalled"])
def test_a_device_is_served_with_every_slot_held(variant, stalled):
    """64 connections from 64 addresses fill all 64 slots, silent or stalled inside a frame
    (first-byte deadline 30 s, so it is eviction that makes room): a new device takes the
    slot of the quietest one and is served within 2 s; the evicted one is told why."""
    wire = feature_wire(variant)
    with Running(variant, max_connections=64, max_per_peer=4, first_byte_timeout=30) as run:
        socks = []
        try:
            for i in range(64):
                s = raw_socket(run, f"127.0.1.{i + 1}")
                if stalled:  # a header promising 1 MiB, then 100 bytes and silence
                    s.sendall(P.HEADER.pack(P.REQUEST, P.VERSION, P.Kind.FEATURE, 1000 + i,
                                            2**20) + bytes(100))
                socks.append(s)
            assert run.wait_for(lambda: run.open_connections() == 64)
            assert run.wait_for(lambda: run.server.admission.buffered == 6400 * stalled)
            times = [served_once(run, wire, "127.0.0.1") for _ in range(3)]
            assert max(times) < 2.0, times
            # the quietest (first) connection made room for the first device
            status, rid, body = reply(socks[0])
            assert status == P.Status.ERROR and "make room" in body["error"]
            assert rid == (1000 if stalled else 0)
            assert run.server.admission.evictions >= 1
        finally:
            close_all(socks)


def test_a_silent_connection_is_closed_after_the_first_byte_deadline(variant):
    with Running(variant, first_byte_timeout=0.5) as run:
        s = raw_socket(run)
        t0 = time.perf_counter()
        assert s.recv(1) == b""
        assert 0.4 < time.perf_counter() - t0 < 2.0
        s.close()
        assert run.wait_for(lambda: run.open_connections() == 0)


# ---------------------------------------------------------------- 2. memory
def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_stalled_frames_stay_within_the_buffer_budget(variant):
    """64 connections (64 addresses) each send the header of a 32 MiB - 1 frame and 4 MiB of
    it, 256 MiB in all, then stall. With a 16 MiB budget the process's RSS (server and
    attackers together) grows by less than 80 MiB at its peak (the budget, the join of one
    frame, per-connection read buffers), a device is served meanwhile, and the server holds
    at most the budget."""
    budget = 16 * 2**20
    wire = feature_wire(variant)
    junk = bytes(4 * 2**20)
    with Running(variant, buffer_budget=budget, max_per_peer=4, first_byte_timeout=30) as run:
        served_once(run, wire)  # warm up threads and allocator
        base, peak = _rss(), [0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], _rss())
                assert run.server.admission.buffered <= budget
                time.sleep(0.005)

        socks: list[socket.socket] = []

        def attack(i: int) -> None:
            s = raw_socket(run, f"127.0.2.{i + 1}", timeout=10)
            socks.append(s)
            with contextlib.suppress(OSError):  # cut by the server: the budget at work
                s.sendall(P.HEADER.pack(P.REQUEST, P.VERSION, P.Kind.IMAGE, i,
                                        P.DEFAULT_MAX_FRAME - 1))
                s.sendall(junk)  # one buffer shared by all attackers: no copy here

        sampler = threading.Thread(target=sample)
        sampler.start()
        attackers = [threading.Thread(target=attack, args=(i,)) for i in range(64)]
        t0 = time.perf_counter()
        try:
            for t in attackers:
                t.start()
            latency = served_once(run, wire)
            for t in attackers:
                t.join(30)
            elapsed = time.perf_counter() - t0
        finally:
            stop.set()
            sampler.join(5)
            close_all(socks)
        grown = (peak[0] - base) / 2**20
        assert grown < 80, f"RSS grew by {grown:.0f} MiB during the attack"
        assert latency < 5.0 and elapsed < 30
        assert run.server.admission.evictions > 0  # the largest frames were cut


# ---------------------------------------------------------------- 3. photo flood
def test_a_photo_flood_does_not_delay_feature_requests(variant):
    """Two connections send a 16-megapixel PNG (56 KB, ~0.3 s to decode) back to back
    while a device sends FEATURE requests: its median latency stays within 2x (+1 ms of
    timer noise) of the median without the flood."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4000, 4000), (120, 30, 200)).save(buf, "PNG")
    photo = P.image_body(NAME, buf.getvalue())
    wire = feature_wire(variant)
    with Running(variant, batch_window=0.0, threads=1) as run:
        def medians(n: int = 40) -> float:
            with Connection(run.host, run.port) as conn:
                conn.call(P.Kind.FEATURE, wire)
                return statistics.median(conn.call(P.Kind.FEATURE, wire)[1] for _ in range(n))

        idle = medians()
        stop, photos = threading.Event(), [0]

        def flood(i: int) -> None:
            with Connection(run.host, run.port, source=f"127.0.3.{i + 1}") as conn:
                while not stop.is_set():
                    conn.call(P.Kind.IMAGE, photo)
                    photos[0] += 1

        floods = [threading.Thread(target=flood, args=(i,)) for i in range(2)]
        for t in floods:
            t.start()
        try:
            time.sleep(0.3)
            busy = medians()
        finally:
            stop.set()
            for t in floods:
                t.join(10)
        assert photos[0] >= 2, "the flood did not run"
        assert busy <= 2 * idle + 0.001, (f"median {busy * 1e3:.1f} ms under the flood, "
                                          f"{idle * 1e3:.1f} ms idle")


def test_photo_errors_name_no_python_object(variant):
    with Running(variant) as run, Connection(run.host, run.port) as conn:
        for junk in (b"not an image at all", b"\x89PNG\r\n\x1a\n" + bytes(40)):
            with pytest.raises(P.RemoteError) as err:
                conn.call(P.Kind.IMAGE, P.image_body(NAME, junk))
            assert "0x" not in str(err.value) and "object" not in str(err.value)


# ---------------------------------------------------------------- 4. strict JSON
def test_a_non_finite_output_is_an_error_in_strict_json(variant):
    """A finite float32 tensor full of 1e38 overflows the network: an error reply, never
    ``"score": NaN``; every reply of the test parses with a strict JSON parser."""
    with Running(variant) as run, raw_socket(run) as s:
        s.sendall(P.request(P.Kind.FEATURE, 41, feature_wire(variant, 1e38)))
        status, rid, body = reply(s)
        assert (status, rid) == (P.Status.ERROR, 41) and "not finite" in body["error"]
        s.sendall(P.request(P.Kind.FEATURE, 42, feature_wire(variant)))
        status, rid, body = reply(s)
        assert (status, rid) == (P.Status.OK, 42) and 0 <= body["score"] <= 1
        s.sendall(P.request(P.Kind.INFO, 43))
        status, rid, info = reply(s)
        assert status == P.Status.OK and info["variants"][NAME]["packet"]["height"] == 8


# ---------------------------------------------------------------- 5. deadline
def test_the_deadline_counts_from_the_first_byte_of_the_header(variant):
    """Timeout 1 s: a header dribbled over 0.55 s, then the body dribbled on. The reply
    comes 1 s after the first byte (not 1 s after the header) and echoes the request id."""
    wire = feature_wire(variant)
    frame = P.request(P.Kind.FEATURE, 77, wire)
    with Running(variant, request_timeout=1.0) as run, raw_socket(run) as s:
        got: list = []
        t0 = time.perf_counter()
        reader = threading.Thread(target=lambda: got.append((reply(s), time.perf_counter())))
        reader.start()
        try:
            for i in range(12):  # the header, a byte every 50 ms
                s.send(frame[i:i + 1])
                time.sleep(0.05)
            for i in range(12, 60):  # then the body, as slowly
                s.send(frame[i:i + 1])
                time.sleep(0.05)
                if got:
                    break
        except OSError:
            pass
        reader.join(5)
        (status, rid, body), t1 = got[0]
        assert (status, rid) == (P.Status.ERROR, 77) and "first byte" in body["error"]
        assert 0.9 < t1 - t0 < 1.4, t1 - t0


# ---------------------------------------------------------------- 6-7. fields and ids
def _packet(variant, **change) -> bytes:
    h = Packet.from_bytes(feature_wire(variant)).header
    fields = {**h.__dict__, **change}
    k, hh, ww = len(fields["indices"]), fields["height"], fields["width"]
    payload = np.zeros(k * hh * ww, "<f4").tobytes()
    return Packet(PacketHeader(**fields), payload).to_bytes()


def test_every_header_field_is_checked_and_the_id_echoed(variant):
    cases = {
        "C=": dict(channels=65535),  # the real C is 64: any other is refused
        "split": dict(split="layer1.0"),
        "expects": dict(height=4, width=4),
        "kept channels": dict(indices=tuple(range(1, 64, 8))),
        "K=": dict(indices=tuple(range(0, 64, 4))),
        "unknown variant": dict(model="resnet18"),  # the backbone is not the variant
    }
    with Running(variant) as run, raw_socket(run) as s:
        for i, (words, change) in enumerate(cases.items()):
            s.sendall(P.request(P.Kind.FEATURE, 100 + i, _packet(variant, **change)))
            status, rid, body = reply(s)
            assert (status, rid) == (P.Status.ERROR, 100 + i) and words in body["error"], body
        s.sendall(P.request(P.Kind.FEATURE, 200, _packet(variant, dtype=DType.FLOAT32)))
        assert reply(s)[:2] == (P.Status.OK, 200)  # the same connection still serves
    for header, words in (
            (P.HEADER.pack(P.REQUEST, P.VERSION, 9, 301, 0), "unknown frame kind"),
            (P.HEADER.pack(P.REQUEST, P.VERSION, 1, 302, 2**31), "over the limit")):
        with Running(variant) as run, raw_socket(run) as s:
            s.sendall(header)
            status, rid, body = reply(s)
            assert status == P.Status.ERROR and rid == struct.unpack("<I", header[4:8])[0]
            assert words in body["error"]


# ---------------------------------------------------------------- 8. logs and metrics
def test_every_rejection_is_one_log_line_and_counted(variant, caplog):
    import urllib.request

    pytest.importorskip("prometheus_client")
    from prometheus_client.parser import text_string_to_metric_families

    caplog.set_level(logging.WARNING, logger="aecnn.serve")
    with Running(variant, metrics_port=0, first_byte_timeout=0.3) as run:
        with raw_socket(run) as s:
            s.sendall(P.request(P.Kind.FEATURE, 5, feature_wire(variant)))
            assert reply(s)[0] == P.Status.OK
            s.sendall(P.request(P.Kind.FEATURE, 6, _packet(variant, channels=100)))
            assert reply(s)[0] == P.Status.ERROR
            s.sendall(P.HEADER.pack(P.REQUEST, P.VERSION, 9, 7, 0))
            assert reply(s)[:2] == (P.Status.ERROR, 7)
        with raw_socket(run) as s:  # says nothing
            assert s.recv(1) == b""
        url = f"http://127.0.0.1:{run.server.metrics.port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    lines = [r.getMessage() for r in caplog.records if r.name == "aecnn.serve"
             and r.levelno == logging.WARNING]
    assert len(lines) == 3, lines
    assert lines[0].startswith("reject peer=127.0.0.1:") and " id=6 kind=FEATURE " \
        "reason=field: " in lines[0]
    assert " id=7 kind=9 reason=frame: " in lines[1]
    assert " id=- kind=- reason=first-byte: " in lines[2]
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert samples[("aecnn_requests_total", (("kind", "FEATURE"),))] == 1
    assert samples[("aecnn_errors_total", (("kind", "FEATURE"), ("reason", "field")))] == 1
    assert samples[("aecnn_errors_total", (("kind", "-"), ("reason", "first-byte")))] == 1
    assert samples[("aecnn_request_seconds_count", (("kind", "FEATURE"),))] == 1
    assert ("aecnn_open_connections", ()) in samples


def test_info_tells_a_client_everything_a_packet_must_hold(variant):
    with Running(variant) as run, Connection(run.host, run.port) as conn:
        rep, _ = conn.call(P.Kind.INFO)
    v = rep["variants"][NAME]
    assert v["packet"] == {"model": NAME, "split": "stem", "channels": 64, "height": 8,
                           "width": 8, "kept": 8, "indices": list(KEPT)}
    assert v["classes"] == 5 and v["labels"] == [f"c{i}" for i in range(5)]
    assert rep["limits"]["request_timeout"] == 30.0 and rep["limits"]["max_per_peer"] == 16
    assert rep["limits"]["max_elements"] == 64 * 2**20


def test_a_client_sends_again_on_a_connection_evicted_while_quiet(variant):
    """With one slot, a second device evicts the first, quiet connection; the server told it
    why in an ERROR frame answering its last request. The first device's next request reads
    that frame, knows the connection is gone, and goes out once more on a new one."""
    with Running(variant, max_connections=1, max_per_peer=0, first_byte_timeout=30) as run:
        first = Connection(run.host, run.port, timeout=5.0).connect()
        second = Connection(run.host, run.port, timeout=5.0)
        try:
            assert variant.meta.name in first.info()
            assert variant.meta.name in second.info()  # takes the slot: first is evicted
            assert run.server.admission.evictions == 1
            assert variant.meta.name in first.info()  # the stale ERROR, then a new slot
            assert run.server.admission.evictions == 2
        finally:
            first.close()
            second.close()


def test_a_client_sends_again_on_a_connection_closed_while_quiet(variant):
    """The server closes a connection that stays silent past its first-byte deadline; the
    client's next request goes out once more on a fresh connection, and a fresh connection
    that is closed before the reply is an error, not a retry loop."""
    with Running(variant, first_byte_timeout=0.3) as run:
        conn = Connection(run.host, run.port, timeout=5.0).connect()
        try:
            assert run.wait_for(lambda: run.open_connections() == 0)  # closed by the server
            assert variant.meta.name in conn.info()
            assert run.open_connections() == 1
        finally:
            conn.close()
    with socket.create_server(("127.0.0.1", 0)) as listener:  # accepts, then hangs up
        def hang_up():
            c, _ = listener.accept()
            c.recv(1)
            c.close()
        t = threading.Thread(target=hang_up, daemon=True)
        t.start()
        with pytest.raises(AecnnError, match="closed the connection"):
            Connection(*listener.getsockname(), timeout=5.0).call(P.Kind.INFO)
        t.join(5)
