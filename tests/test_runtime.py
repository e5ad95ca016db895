"""The runtime on loopback: variants, protocol, edge server, device client, latency model,
planner. Tiny ResNet-18 variants at 32 px on real Caltech-101 photos."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import struct
import threading
from pathlib import Path

import pytest
import torch

from aecnn.compression.codec import FeatureCodec
from aecnn.core.split import SplitMeta, SplitNetwork, VariantError, load_network, save_network
from aecnn.errors import AecnnError
from aecnn.models import get_spec
from aecnn.runtime import protocol as P
from aecnn.runtime.client import CoInference, Connection, FullOffloading, LocalComputing
from aecnn.runtime.latency import LatencyProfile, ProfileError
from aecnn.runtime.planner import AdaptivePolicy, plan, render_plan
from aecnn.runtime.profile import make_photo, profile_all
from aecnn.runtime.server import EdgeServer, ServerConfig

SPEC = get_spec("resnet18")
CLASSES = tuple(f"class{i}" for i in range(5))


def make_meta(name: str, bridge: str, ratio: int, kept=None, fr_shape=None,
              top1=None) -> SplitMeta:
    return SplitMeta(name=name, model_name="resnet18", classes=CLASSES, point="stem",
                       ratio=ratio, bridge=bridge, kept=kept, channels=64, input_size=32,
                       mean=SPEC.mean, std=SPEC.std, fr_shape=fr_shape, test_top1=top1)


@pytest.fixture(scope="module")
def variant_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("variants")
    torch.manual_seed(0)
    metas = [make_meta("r18-x1", "identity", 1, top1=70.0),
             make_meta("r18-fr-x8", "fr", 8, tuple(range(0, 64, 8)), "1x1", 65.0),
             make_meta("r18-zf-x16", "zerofill", 16, tuple(range(4)), None, 60.0)]
    out = {}
    for m in metas:
        v = SplitNetwork.from_meta(m).eval()  # torchvision's random initialisation
        out[m.name] = save_network(v, d / f"{m.name}.pt")
    return out


@pytest.fixture(scope="module")
def photos(caltech_root) -> list[bytes]:
    folder = caltech_root / "101_ObjectCategories"
    return [sorted((folder / c).iterdir())[0].read_bytes()
            for c in ("airplanes", "Motorbikes", "Faces_easy")]


class Running:
    """An EdgeServer on an event loop in a thread, on a free loopback port."""

    def __init__(self, variants: dict, **cfg) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = EdgeServer(variants, ServerConfig(port=0, **cfg))
        self.host, self.port = self.loop.run_until_complete(self.server.start())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def served(variant_files):
    variants = {n: load_network(p) for n, p in variant_files.items()}
    run = Running(variants)
    yield run, variants
    run.stop()


def test_variant_file_round_trip(variant_files, tmp_path):
    v = load_network(variant_files["r18-fr-x8"])
    assert v.meta.kept == tuple(range(0, 64, 8)) and v.meta.bridge == "fr"
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        z = v.head(x)
        assert z.shape == (2, 8, 8, 8)  # physically pruned head: only the kept channels
        full = v.bridge(z)
        assert torch.equal(full[:, list(v.meta.kept)], z)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a variant")
    with pytest.raises(VariantError, match="corrupt or unreadable"):
        load_network(bad)
    with pytest.raises(VariantError, match="does not exist"):
        load_network(tmp_path / "missing.pt")
    torch.save({"format": "something-else"}, bad)
    with pytest.raises(VariantError, match="not an aecnn variant"):
        load_network(bad)


def test_context_priors_travel_in_the_variant_file_and_decode_on_the_server(
        variant_files, photos, tmp_path):
    """A variant exported with context priors (wire coder 5): the device codes its head
    output with the prior, the server decodes it with the copy in its own file and answers
    what the same grid sent uncoded gives; a server whose file lacks the prior refuses the
    packet and goes on serving; a corrupt prior entry is a VariantError."""
    import json

    from aecnn.compression.quantize import QuantSpec
    from aecnn.core.split import fit_head_priors
    from aecnn.runtime.preprocess import Preprocessor

    plain = load_network(variant_files["r18-fr-x8"])
    m = plain.meta
    prep = Preprocessor(m.input_size, m.mean, m.std)
    train = [(prep(data)[0], 0) for data in photos]
    plain.priors = fit_head_priors(plain.head, train, {"uint2": QuantSpec.parse("uint2")}, 3)
    with_prior = save_network(plain, tmp_path / "prior.pt", m)
    var = load_network(with_prior)
    assert list(var.priors) == ["uint2"] and var.priors["uint2"].images == 3
    assert var.prior("uint2") is var.priors["uint2"] and var.prior("uint4") is None
    bare = load_network(variant_files["r18-fr-x8"])
    assert bare.priors == {} and bare.codec("uint2", "auto").prior is None
    run = Running({m.name: var})
    try:
        with Connection(run.host, run.port) as conn:
            coded = CoInference(var, var.codec("uint2", "prior"), conn)
            raw = CoInference(var, var.codec("uint2", "none"), conn)
            for data in photos:
                a, b = coded.infer(data), raw.infer(data)
                assert a.coder == "prior" and a.cls == b.cls
                assert a.score == pytest.approx(b.score, abs=1e-6)
                assert a.bytes_up < b.bytes_up
    finally:
        run.stop()
    run = Running({m.name: bare})
    try:
        with Connection(run.host, run.port) as conn:
            with torch.inference_mode():
                z = var.head(prep(photos[0]))[0]
            packet, _ = var.codec("uint2", "prior").encode(z, m.kept, 64, m.name, m.point)
            with pytest.raises(P.RemoteError, match="context prior"):
                conn.call(P.Kind.FEATURE, packet.to_bytes())
            assert CoInference(bare, bare.codec("uint2", "none"), conn).infer(photos[0])
    finally:
        run.stop()
    blob = torch.load(with_prior, weights_only=True)
    for bad, msg in (("not json", "unreadable"),
                     (json.dumps({"uint4": var.priors["uint2"].to_dict()}), "levels"),
                     (json.dumps({"uint2": {"format": "x"}}), "not a context prior")):
        torch.save({**blob, "priors": bad}, tmp_path / "bad.pt")
        with pytest.raises(VariantError, match=msg):
            load_network(tmp_path / "bad.pt")


def test_co_inference_matches_the_whole_model(served, photos):
    run, variants = served
    v = variants["r18-fr-x8"]
    with Connection(run.host, run.port) as conn:
        co = CoInference(v, FeatureCodec("float32", "memoryless"), conn)
        for data in photos:
            r = co.infer(data)
            with torch.inference_mode():
                logits = v(co.prep(data))
            assert r.cls == int(logits.argmax())  # float32 + lossless coding: exact
            assert r.score == pytest.approx(float(logits.softmax(1).max()), abs=1e-5)
            assert r.bytes_up > 0 and r.coder == "memoryless"
            assert all(getattr(r, t) >= 0 for t in ("t_pre", "t_iot", "t_enc", "t_com",
                                                     "t_dec", "t_fr", "t_es"))
            parts = r.t_pre + r.t_iot + r.t_enc + r.t_com + r.t_dec + r.t_fr + r.t_es
            assert parts <= r.total * 1.05 + 1e-3


def test_a_half_size_variant_is_served(tmp_path, photos):
    """``spatial``: the device sends the kept channels at half height and width, the server
    upsamples them before FR; co-inference over a real socket is exact in float32."""
    torch.manual_seed(0)
    meta = dataclasses.replace(make_meta("r18-fr-x8-half", "fr", 8, tuple(range(0, 64, 8)),
                                         "1x1", 64.0), spatial=True)
    v = load_network(save_network(SplitNetwork.from_meta(meta).eval(), tmp_path / "half.pt"))
    assert v.meta.spatial
    run = Running({meta.name: v})
    try:
        with Connection(run.host, run.port) as conn:
            co = CoInference(v, FeatureCodec("float32", "memoryless"), conn)
            for data in photos:
                r = co.infer(data)
                with torch.inference_mode():
                    x = co.prep(data)
                    assert v.head(x).shape == (1, 8, 4, 4)  # 32 px: stem 8 x 8, halved
                    logits = v(x)
                assert r.cls == int(logits.argmax())
                assert r.score == pytest.approx(float(logits.softmax(1).max()), abs=1e-5)
    finally:
        run.stop()


def test_full_offload_and_local_agree(served, photos):
    run, variants = served
    local = LocalComputing(variants["r18-x1"])
    with Connection(run.host, run.port) as conn:
        full = FullOffloading("r18-x1", conn)
        for data in photos:
            a, b = local.infer(data), full.infer(data)
            assert a.cls == b.cls and a.score == pytest.approx(b.score, abs=1e-5)
            assert b.bytes_up == len(data) + len(b"r18-x1") + 1 + P.HEADER.size
            assert a.bytes_up == 0 and a.t_com == 0


def test_full_offload_of_the_device_crop_as_jpeg(served, photos):
    """``FullOffloading(..., jpeg_quality)``: the device sends its S x S crop as JPEG (S from
    the server's INFO), and the server classifies that crop as local computing classifies
    the decoded JPEG."""
    from aecnn.runtime.preprocess import device_crop, encode_rgb

    run, variants = served
    local = LocalComputing(variants["r18-x1"])
    with Connection(run.host, run.port) as conn:
        full = FullOffloading("r18-x1", conn, jpeg_quality=90)
        for data in photos:
            b = full.infer(data)
            jpeg = encode_rgb(device_crop(data, 32), "jpeg", 90)
            a = local.infer(jpeg)
            assert a.cls == b.cls and a.score == pytest.approx(b.score, abs=1e-5)
            assert b.bytes_up == len(jpeg) + len(b"r18-x1") + 1 + P.HEADER.size
            assert b.t_pre > 0 and b.t_enc > 0 and b.bytes_up < len(data) / 4
        with pytest.raises(AecnnError, match="does not serve"):
            FullOffloading("nope", conn, jpeg_quality=90).infer(photos[0])


def test_server_rejects_bad_requests_and_survives(served, photos):
    run, variants = served
    with Connection(run.host, run.port) as conn:
        co = CoInference(variants["r18-fr-x8"], FeatureCodec("uint8", "none"), conn)
        packet, _ = co.codec.encode(torch.rand(8, 8, 8), tuple(range(0, 64, 8)), 64,
                                    "r18-fr-x8", "layer1.0")
        with pytest.raises(P.RemoteError, match="split"):
            conn.call(P.Kind.FEATURE, packet.to_bytes())
        packet, _ = co.codec.encode(torch.rand(8, 8, 8), tuple(range(8)), 64,
                                    "r18-fr-x8", "stem")
        with pytest.raises(P.RemoteError, match="kept channels"):
            conn.call(P.Kind.FEATURE, packet.to_bytes())
        packet, _ = co.codec.encode(torch.rand(8, 4, 4), tuple(range(0, 64, 8)), 64,
                                    "r18-fr-x8", "stem")
        with pytest.raises(P.RemoteError, match="expects"):
            conn.call(P.Kind.FEATURE, packet.to_bytes())
        with pytest.raises(P.RemoteError, match="magic"):
            conn.call(P.Kind.FEATURE, b"garbage that is not a packet")
        with pytest.raises(P.RemoteError, match="unknown variant"):
            conn.call(P.Kind.IMAGE, P.image_body("nope", photos[0]))
        with pytest.raises(P.RemoteError, match="cannot decode image"):
            conn.call(P.Kind.IMAGE, P.image_body("r18-x1", b"\xff\xd8 truncated jpeg"))
        assert co.infer(photos[0]).cls >= 0  # the same connection still works
    # a frame header that lies about its size: one error reply, then the connection closes
    with socket.create_connection((run.host, run.port)) as s:
        s.sendall(struct.pack("<2sBBII", b"AQ", 1, 1, 7, P.DEFAULT_MAX_FRAME + 1))
        kind, rid, length = P.parse_header(s.recv(12), P.RESPONSE, 1 << 20)
        assert kind == P.Status.ERROR and b"over the limit" in s.recv(length)
        assert s.recv(1) == b""
    with socket.create_connection((run.host, run.port)) as s:
        s.sendall(b"XX" + bytes(10))
        kind, _, length = P.parse_header(s.recv(12), P.RESPONSE, 1 << 20)
        assert kind == P.Status.ERROR and b"magic" in s.recv(length)


def test_concurrent_devices_are_batched(variant_files, photos):
    variants = {"r18-fr-x8": load_network(variant_files["r18-fr-x8"])}
    run = Running(variants, batch_window=0.05, max_batch=8)
    results: list = []
    errors: list = []

    def device() -> None:
        try:
            with Connection(run.host, run.port) as conn:
                co = CoInference(variants["r18-fr-x8"], FeatureCodec("float16", "zstd"), conn)
                results.append(co.infer(photos[0]))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=device) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    run.stop()
    assert not errors and len(results) == 6, errors
    # the same photo gives the same answer whatever batch it rode in; the net is randomly
    # initialised, so its top two classes may tie to within float noise and the argmax may
    # differ between batch sizes, but the top probability may not
    scores = [r.score for r in results]
    assert max(scores) - min(scores) < 1e-4, [(r.cls, r.score) for r in results]


def test_graceful_shutdown_answers_accepted_requests(variant_files, photos):
    variants = {"r18-x1": load_network(variant_files["r18-x1"])}
    run = Running(variants, batch_window=0.3)  # the request waits in the batcher
    out: list = []
    with Connection(run.host, run.port) as conn:
        t = threading.Thread(target=lambda: out.append(
            FullOffloading("r18-x1", conn).infer(photos[0])))
        t.start()
        import time

        time.sleep(0.1)
        run.stop()  # while the request is in flight
        t.join(10)
    assert len(out) == 1 and out[0].label in CLASSES
    with pytest.raises(AecnnError, match="cannot connect"):
        Connection(run.host, run.port, timeout=2).connect()


def test_profile_latency_model_and_planner(variant_files, photos, tmp_path):
    variants = {n: load_network(p) for n, p in variant_files.items()}
    prof = profile_all(variants, photos[:2], variants["r18-x1"], ("none", "memoryless"),
                       repeats=1, photo_sizes={"224x224": (224, 224)}, t_rtt=0.001,
                       progress=False)
    path = prof.save(tmp_path / "profile.json")
    prof = LatencyProfile.load(path)
    v = prof.variant("r18-fr-x8")
    assert v.shape == (8, 8, 8) and v.raw_bytes == 4 * 8 * 8 * 8
    slow, fast = prof.co_inference("r18-x1", 1e5, "none"), prof.co_inference("r18-x1", 1e9,
                                                                             "none")
    assert slow["total"] > fast["total"] and slow["t_cmp"] == pytest.approx(fast["t_cmp"])
    # eq. (2): transmit time is bytes / rate
    assert slow["t_com"] == pytest.approx(prof.variants["r18-x1"].coders["none"].bytes * 8 / 1e5)
    assert prof.full_offloading("224x224", 1e6)["bytes"] > 0
    assert prof.local()["t_com"] == 0
    # the planner: generous deadline -> the most accurate; at a slow link -> compression wins
    _, choice = plan(prof, 1e9, 10.0)
    assert choice is not None and choice.variant == "r18-x1"
    rows, _ = plan(prof, 2e4, 10.0)
    pred = {r.variant: r.predicted for r in rows}
    assert pred["r18-x1"] > pred["r18-fr-x8"] > pred["r18-zf-x16"]  # fewer bytes, faster
    # a deadline only the compressed variants meet: the more accurate of them (x8, 65 %)
    _, choice = plan(prof, 2e4, (pred["r18-x1"] + pred["r18-fr-x8"]) / 2)
    assert choice is not None and choice.variant == "r18-fr-x8"
    _, choice = plan(prof, 2e4, (pred["r18-fr-x8"] + pred["r18-zf-x16"]) / 2)
    assert choice is not None and choice.variant == "r18-zf-x16"
    _, none = plan(prof, 1e3, 1e-6)
    assert none is None and "no variant meets" in render_plan(rows, None, 1e3, 1e-6)
    policy = AdaptivePolicy(prof, 10.0, initial_rate=1e9)
    policy.observe(100_000, 1.0 + prof.t_rtt)
    assert policy.rate < 1e9 and policy.choose() in prof.variants
    with pytest.raises(ProfileError, match="no profile for variant"):
        prof.variant("missing")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ProfileError, match="malformed"):
        LatencyProfile.load(tmp_path / "bad.json")


def test_make_photo_sizes(photos):
    import io

    from PIL import Image

    jpg = make_photo(photos[0], 640, 480)
    with Image.open(io.BytesIO(jpg)) as img:
        assert img.size == (640, 480) and img.format == "JPEG"


def test_protocol_header_checks():
    frame = P.request(P.Kind.PING, 5, b"abc")
    assert P.parse_header(frame[:12], P.REQUEST, 10) == (P.Kind.PING, 5, 3)
    with pytest.raises(P.ProtocolError, match="over the limit"):
        P.parse_header(frame[:12], P.REQUEST, 2)
    with pytest.raises(P.ProtocolError, match="unknown frame kind"):
        P.parse_header(struct.pack("<2sBBII", b"AQ", 1, 9, 0, 0), P.REQUEST, 10)
    with pytest.raises(P.ProtocolError, match="version"):
        P.parse_header(struct.pack("<2sBBII", b"AQ", 2, 1, 0, 0), P.REQUEST, 10)
    with pytest.raises(P.ProtocolError):
        P.split_image_body(b"\x09ab")


def test_adaptive_client_switches_with_the_link(served, variant_files, photos, tmp_path):
    from aecnn.runtime.client import AdaptiveCoInference

    run, variants = served
    prof = profile_all(variants, photos[:1], None, ("none",), repeats=1, progress=False)
    pred = {n: prof.co_inference(n, 1e6, "none")["total"] for n in variants}
    # a deadline that x1 meets at 1 Gbit/s but not at 1 Mbit/s
    deadline = (pred["r18-x1"] + pred["r18-fr-x8"]) / 2
    policy = AdaptivePolicy(prof, deadline, initial_rate=1e9)
    with Connection(run.host, run.port) as conn:
        client = AdaptiveCoInference(variants, policy, conn)
        assert client.infer(photos[0]).variant == "r18-x1"  # fast link assumed: most accurate
        for _ in range(12):  # then the link turns out slow (1 Mbit/s)
            policy.observe(100_000, 0.8)
        assert policy.rate == pytest.approx(1e6, rel=0.3)
        assert client.infer(photos[0]).variant != "r18-x1"


def test_transport_bench_batches_concurrent_devices(variant_files):
    from aecnn.benchmarks.transport import render_transport, run_transport

    rec = run_transport(load_network(variant_files["r18-fr-x8"]), clients=4, requests=4,
                        windows=(0.05,))
    assert rec["ping"]["empty"]["median_s"] < 0.05
    single, batched = rec["batching"]
    assert single["mean_batch"] == 1 and single["requests"] == 4
    assert batched["requests"] == 16 and batched["mean_batch"] > 1  # a 50 ms window batches
    assert "| 4 | 50 |" in render_transport(rec)


def test_cpu_quota_slows_the_device(tmp_path):
    import os
    import subprocess
    import sys

    if os.geteuid() != 0:
        pytest.skip("a cgroup CPU quota needs root")
    script = ("import time\n"
              "from aecnn.runtime.weak import limit_cpu\n"
              "limit_cpu(0.25)\n"
              "t0, c0 = time.perf_counter(), time.process_time()\n"
              "while time.perf_counter() - t0 < 1.0: pass\n"
              "print((time.process_time() - c0) / (time.perf_counter() - t0))\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=30)
    if res.returncode != 0 and "cannot set a CPU quota" in res.stderr:
        pytest.skip(res.stderr.strip().splitlines()[-1])
    assert res.returncode == 0, res.stderr
    share = float(res.stdout)
    assert 0.15 < share < 0.4, share  # a quarter of a CPU, measured


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _reply(s: socket.socket) -> tuple[int, bytes] | None:
    """One response frame, or None when the server closed without one."""
    raw = b""
    while len(raw) < P.HEADER.size:
        chunk = s.recv(P.HEADER.size - len(raw))
        if not chunk:
            return None
        raw += chunk
    kind, _, length = P.parse_header(raw, P.RESPONSE, 1 << 20)
    body = b""
    while len(body) < length:
        chunk = s.recv(length - len(body))
        assert chunk, "response cut short"
        body += chunk
    return kind, body


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc for RSS")
def test_server_robustness_suite(variant_files, photos):
    """Truncated frames, bad CRCs, oversized lengths, unknown variants, silent clients,
    clients that hang up mid-frame and 1,000 random byte strings: the server answers each bad
    client with an error where the connection allows, keeps serving a well-formed client
    throughout, and does not grow (RSS before and after)."""
    import random

    variants = {"r18-fr-x8": load_network(variant_files["r18-fr-x8"])}
    run = Running(variants, request_timeout=0.5, idle_timeout=0.5)
    good_conn = Connection(run.host, run.port)
    good = CoInference(variants["r18-fr-x8"], FeatureCodec("uint8", "per-channel"), good_conn)
    expect = good.infer(photos[0]).cls
    good_conn.close()
    packet, _ = good.codec.encode(torch.rand(8, 8, 8), tuple(range(0, 64, 8)), 64,
                                  "r18-fr-x8", "stem")
    wire = packet.to_bytes()

    def still_serving() -> None:  # a well-formed device (idle ones are closed after 0.5 s)
        with Connection(run.host, run.port) as conn:
            good.conn = conn
            assert good.infer(photos[0]).cls == expect

    def bad(payload: bytes, hang_up: bool = False) -> tuple[int, bytes] | None:
        with socket.create_connection((run.host, run.port), timeout=10) as s:
            s.sendall(payload)
            if hang_up:
                return None
            return _reply(s)

    try:
        # a corrupted packet (CRC), a packet for an unknown variant, a lying length field
        flipped = bytearray(wire)
        flipped[len(wire) // 2] ^= 0x10
        kind, body = bad(P.request(P.Kind.FEATURE, 1, bytes(flipped)))
        assert kind == P.Status.ERROR and b"CRC" in body
        packet2, _ = good.codec.encode(torch.rand(8, 8, 8), tuple(range(0, 64, 8)), 64,
                                       "nope", "stem")
        kind, body = bad(P.request(P.Kind.FEATURE, 2, packet2.to_bytes()))
        assert kind == P.Status.ERROR and b"unknown variant" in body
        kind, body = bad(P.HEADER.pack(P.REQUEST, P.VERSION, P.Kind.FEATURE, 3, 2**31))
        assert kind == P.Status.ERROR and b"over the limit" in body
        still_serving()
        # truncated frames: the header promises more than comes, then silence
        kind, body = bad(P.request(P.Kind.FEATURE, 4, wire)[:-10])
        assert kind == P.Status.ERROR and b"truncated" in body
        kind, body = bad(P.request(P.Kind.FEATURE, 5, wire)[:7])  # half a header
        assert kind == P.Status.ERROR and b"truncated" in body
        # clients that connect and go silent, while the good client is served
        silent = [socket.create_connection((run.host, run.port)) for _ in range(5)]
        still_serving()
        for s in silent:
            s.settimeout(10)
            assert s.recv(1) == b""  # closed by the server after idle_timeout
            s.close()
        # clients that disconnect mid-frame
        for cut in (3, 12, 40, len(wire) // 2):
            bad(P.request(P.Kind.FEATURE, 6, wire)[:cut], hang_up=True)
        still_serving()

        # 1,000 random byte strings: half raw, half inside a valid frame header
        rng = random.Random(0)

        def fuzz(n: int) -> int:
            answered = 0
            for i in range(n):
                junk = rng.randbytes(rng.randrange(0, 600))
                if i % 2:
                    junk = P.request(rng.choice(list(P.Kind)), i, junk)
                elif junk[:2] == P.REQUEST:
                    junk = b"XX" + junk[2:]
                # raw junk shorter than a header gets no reply: the client hangs up
                hang_up = i % 2 == 0 and len(junk) < P.HEADER.size
                rep = bad(junk, hang_up=hang_up)
                if rep is not None:
                    answered += 1
                    assert rep[0] in (P.Status.OK, P.Status.ERROR)
            return answered

        fuzz(100)  # warm up allocator and caches before measuring
        rss0 = _rss_bytes()
        answered = fuzz(1000)
        still_serving()
        rss1 = _rss_bytes()
        assert answered > 900
        assert rss1 - rss0 < 32 * 2**20, f"RSS grew by {(rss1 - rss0) / 2**20:.1f} MiB"
        import time

        deadline = time.monotonic() + 5  # every connection is released once its client left
        while run.server.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not run.server.connections
    finally:
        run.stop()


def test_profile_and_planner_over_every_candidate(variant_files, photos, tmp_path):
    """Candidates: a float variant on two grids (``name:grid``), a QAT variant on its own grid
    with its context prior as a coder, a learned bottleneck on coder 6, local computing and
    the device's crop as JPEG; each with its accuracy and where it comes from. The planner
    weighs them all, and falls back to the fastest when none meets the deadline."""
    from aecnn.compression.quantize import QuantSpec
    from aecnn.core.split import fit_head_priors
    from aecnn.runtime.candidates import LEARNED
    from aecnn.runtime.latency import ACCURACY_SOURCES
    from aecnn.runtime.planner import choose
    from aecnn.runtime.preprocess import Preprocessor

    fr = load_network(variant_files["r18-fr-x8"])
    qat = SplitNetwork.from_meta(dataclasses.replace(
        make_meta("r18-fr-q2p90-x8", "fr", 8, tuple(range(0, 64, 8)), "1x1", 64.0),
        quant="uint2@p90", source="stages/aecnn-q2p90-x8")).eval()
    prep = Preprocessor(32, SPEC.mean, SPEC.std)
    qat.priors = fit_head_priors(qat.head, [(prep(d)[0], 0) for d in photos],
                                 {"uint2@p90": QuantSpec.parse("uint2@p90")}, 3)
    ent = SplitNetwork.from_meta(make_meta("r18-ent-x8", "entropic", 8, top1=62.0)).eval()
    ent.head.bottleneck.update()
    full = load_network(variant_files["r18-x1"])
    variants = {"r18-fr-x8": fr, "r18-fr-q2p90-x8": qat, "r18-ent-x8": ent}
    prof = profile_all(variants, photos[:1], full, ("none", "memoryless"), repeats=1,
                       progress=False, grids=("float32", "uint2@p90"), local=True, jpeg=(75,),
                       files={"r18-x1": "x1.pt"},
                       accuracy={"full-jpeg-q75": (69.0, "given: a test")})
    prof = LatencyProfile.load(prof.save(tmp_path / "profile.json"))
    assert {v.accuracy_source.split(":")[0] for v in prof.variants.values()} <= set(
        ACCURACY_SOURCES)
    assert set(prof.variants) == {"r18-fr-x8:float32", "r18-fr-x8:uint2@p90", "r18-fr-q2p90-x8",
                                  "r18-ent-x8", "local", "full-jpeg-q75"}
    f32, u2 = prof.variant("r18-fr-x8:float32"), prof.variant("r18-fr-x8:uint2@p90")
    assert f32.served == u2.served == "r18-fr-x8" and (f32.quant, u2.quant) == ("float32",
                                                                                "uint2@p90")
    assert f32.accuracy == 65.0 and f32.accuracy_source.startswith("recorded")
    assert u2.accuracy is None and u2.accuracy_source.startswith("none")  # not recorded
    assert u2.coders["none"].bytes < f32.coders["none"].bytes / 8
    q = prof.variant("r18-fr-q2p90-x8")
    assert q.quant == "uint2@p90" and set(q.coders) == {"none", "memoryless", "prior"}
    assert q.accuracy == 64.0 and "fine-tuned and tested through uint2@p90" in q.accuracy_source
    e = prof.variant("r18-ent-x8")
    assert e.quant == LEARNED and list(e.coders) == ["factorized"] and e.accuracy == 62.0
    loc, jpg = prof.variant("local"), prof.variant("full-jpeg-q75")
    assert (loc.mode, loc.served, loc.accuracy, loc.coders["none"].bytes) == ("local", "r18-x1",
                                                                               70.0, 0.0)
    assert loc.file == "x1.pt"
    assert jpg.mode == "full" and jpg.quant == "jpeg@q75" and jpg.accuracy == 69.0
    assert 0 < jpg.coders["jpeg"].bytes < 3 * 32 * 32 and jpg.t_es > 0
    # eq. (4) for every mode: local computing costs no transfer, JPEG its bytes at the rate
    assert prof.predict("local", 1e3)["total"] == pytest.approx(loc.t_pre + loc.t_iot)
    slow, fast = prof.predict("full-jpeg-q75", 1e5), prof.predict("full-jpeg-q75", 1e7)
    assert slow["total"] - fast["total"] == pytest.approx(
        jpg.coders["jpeg"].bytes * 8 * (1 / 1e5 - 1 / 1e7))
    # the planner: local computing is the most accurate (70 %) and meets a generous deadline
    rows, choice = plan(prof, 1e6, 10.0)
    assert {r.mode for r in rows} == {"co", "local", "full"} and choice.variant == "local"
    assert "r18-fr-x8:uint2@p90" in render_plan(rows, choice, 1e6, 10.0)
    # without local computing, JPEG offloading (69 %) is next
    _, choice = plan(prof, 1e6, 10.0, [k for k in prof.variants if k != "local"])
    assert choice.variant == "full-jpeg-q75"
    # nothing meets a microsecond: plan says so, choose takes the fastest
    rows, none = plan(prof, 1e6, 1e-6)
    assert none is None and choose(prof, 1e6, 1e-6).variant == min(
        rows, key=lambda r: r.predicted).variant
    assert "the fastest is" in render_plan(rows, None, 1e6, 1e-6)


def test_old_profiles_still_load_and_plan(variant_files, photos, tmp_path):
    """A profile written before candidates (no mode, variant, quant fields) loads; its
    entries are co-inference on the profile's one grid."""
    import json

    variants = {n: load_network(p) for n, p in variant_files.items()}
    prof = profile_all(variants, photos[:1], None, ("none",), quant="uint8", repeats=1,
                       progress=False)
    d = prof.to_dict()
    for v in d["variants"].values():
        for k in ("mode", "variant", "quant", "file", "accuracy_source"):
            del v[k]
    del d["machine"]["grids"]
    (tmp_path / "old.json").write_text(json.dumps(d))
    old = LatencyProfile.load(tmp_path / "old.json")
    assert old.variant("r18-fr-x8").served == "r18-fr-x8" and old.grid("r18-fr-x8") == "uint8"
    rows, choice = plan(old, 1e9, 10.0)
    assert choice.variant == "r18-x1" and {r.mode for r in rows} == {"co"}


def test_adaptive_client_plans_over_candidates_on_their_grids(served, variant_files, photos):
    """Candidates ``name:grid`` of the variants the device holds: the adaptive client codes
    each request on the chosen candidate's grid."""
    from aecnn.runtime.client import AdaptiveCoInference

    run, variants = served
    prof = profile_all(variants, photos[:1], None, ("none",), repeats=1, progress=False,
                       grids=("float32", "uint2"))
    assert "r18-fr-x8:uint2" in prof.variants
    names = ["r18-fr-x8:uint2"]
    policy = AdaptivePolicy(prof, 10.0, initial_rate=1e6, names=names)
    with Connection(run.host, run.port) as conn:
        client = AdaptiveCoInference(variants, policy, conn)
        r = client.infer(photos[0])
    assert r.variant == "r18-fr-x8" and r.bytes_up < 8 * 8 * 8  # 2-bit symbols, not floats
    policy = AdaptivePolicy(prof, 10.0, initial_rate=1e6)
    with Connection(run.host, run.port) as conn:
        AdaptiveCoInference(variants, policy, conn)
    assert set(policy.names) == set(prof.variants)  # every candidate is co-inference here
