"""``aecnn bench server``: the edge server with 64 concurrent devices, with and without
(mutual) TLS, and under each attack of issue 37, on loopback.

The server runs in a process of its own with its default limits (``ServerConfig``); the
devices are threads of this process, each on its own loopback address (127.0.1.N), sending
FEATURE requests back to back for ``seconds``; a device whose request fails reconnects and
counts an error. Attacks, each from one address (127.0.0.2) as the independent client ran
them, or from 64 where the name says so:

- ``idle-slots``: 64 connections that send nothing (re-opened when closed);
- ``idle-slots-64-addresses``: the same from 64 addresses, past the per-peer cap;
- ``stalled-frames``: 64 connections each sending the header of a 32 MiB - 1 frame and 4 MiB
  of it, then stalling (re-opened when cut);
- ``photo-flood``: 2 connections sending a 6 KB-class PNG of 49 megapixels back to back;
- ``dribble``: 16 connections sending a header a byte every 0.5 s.

Run: ``python -m aecnn.benchmarks.server_load --out results/runtime`` (or ``aecnn bench
server`` where registered). Needs Linux (127.0.0.0/8) and, for TLS, ``trustme``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing as mp
import shlex
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from aecnn.runtime import protocol as P
from aecnn.runtime.client import Connection

ATTACKS = ("idle-slots", "idle-slots-64-addresses", "stalled-frames", "photo-flood", "dribble")


def tiny_variant(folder: Path) -> Path:
    """A ResNet-18 cut at the stem, AECNN x8 with a 1x1 FR, 32 px, random weights."""
    import torch

    from aecnn.core.split import SplitMeta, SplitNetwork, save_network
    from aecnn.models import get_spec

    spec = get_spec("resnet18")
    torch.manual_seed(0)
    meta = SplitMeta(name="r18-stem-fr-x8", model_name="resnet18",
                     classes=tuple(f"c{i}" for i in range(10)), point="stem", ratio=8,
                     bridge="fr", kept=tuple(range(0, 64, 8)), channels=64, input_size=32,
                     mean=spec.mean, std=spec.std, fr_shape="1x1")
    return save_network(SplitNetwork.from_meta(meta).eval(), folder / "r18-stem-fr-x8.pt")


def _serve(path: str, input_size: int | None, threads: int, tls: tuple | None, conn,
           device: str = "cpu") -> None:
    import asyncio
    import logging
    import signal

    from aecnn.core.split import load_network
    from aecnn.runtime.server import EdgeServer, ServerConfig

    logging.getLogger("aecnn.serve").setLevel(logging.ERROR)  # rejections: thousands
    v = load_network(path, input_size)
    ctx = None
    if tls is not None:
        from aecnn.runtime.tls import server_context

        ctx = server_context(*tls)

    async def main() -> None:
        srv = EdgeServer({v.meta.name: v}, ServerConfig(port=0, threads=threads, tls=ctx,
                                                                 device=device))
        _, port = await srv.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        conn.send(port)
        await stop.wait()
        await srv.shutdown()

    asyncio.run(main())


class Server:
    def __init__(self, path: Path, input_size: int | None, threads: int,
                 tls: tuple | None = None, device: str = "cpu") -> None:
        ctx = mp.get_context("spawn")
        here, there = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(str(path), input_size, threads, tls, there,
                                                     device))
        self.proc.start()
        if not here.poll(120):
            self.proc.kill()
            raise RuntimeError("the server did not start")
        self.port = here.recv()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()


class Attack:
    """Threads that misbehave until stopped."""

    def __init__(self, name: str, port: int, photo: bytes) -> None:
        self.name, self.port, self.photo = name, port, photo
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.sent = 0

    def _sock(self, source: str, timeout: float = 5) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout,
                                        source_address=(source, 0))

    def _hold(self, source: str, first: bytes = b"", rest: bytes = b"") -> None:
        """Keep one connection open, re-opened when the server closes it."""
        while not self.stop.is_set():
            with contextlib.suppress(OSError), self._sock(source) as s:
                s.sendall(first)
                s.sendall(rest)
                self.sent += 1
                s.settimeout(0.2)
                while not self.stop.is_set():
                    try:
                        if not s.recv(4096):
                            break
                    except TimeoutError:
                        continue
            self.stop.wait(0.05)

    def _photos(self) -> None:
        with contextlib.suppress(Exception), Connection("127.0.0.1", self.port,
                                                        source="127.0.0.2") as conn:
            while not self.stop.is_set():
                with contextlib.suppress(P.RemoteError):
                    conn.call(P.Kind.IMAGE, self.photo)
                self.sent += 1

    def _dribble(self) -> None:
        frame = P.request(P.Kind.PING, 9, bytes(16))
        while not self.stop.is_set():
            with contextlib.suppress(OSError), self._sock("127.0.0.2") as s:
                for i in range(len(frame)):
                    if self.stop.wait(0.5):
                        break
                    s.send(frame[i:i + 1])
                    self.sent += 1

    def start(self) -> Attack:
        if self.name == "photo-flood":
            targets = [(self._photos, ()) for _ in range(2)]
        elif self.name == "dribble":
            targets = [(self._dribble, ()) for _ in range(16)]
        elif self.name == "stalled-frames":
            head = P.HEADER.pack(P.REQUEST, P.VERSION, P.Kind.IMAGE, 1, P.DEFAULT_MAX_FRAME - 1)
            rest = bytes(4 * 2**20)
            targets = [(self._hold, ("127.0.0.2", head, rest)) for _ in range(64)]
        elif self.name == "idle-slots":
            targets = [(self._hold, ("127.0.0.2",)) for _ in range(64)]
        else:  # idle-slots-64-addresses
            targets = [(self._hold, (f"127.0.2.{i + 1}",)) for i in range(64)]
        self.threads = [threading.Thread(target=f, args=a, daemon=True) for f, a in targets]
        for t in self.threads:
            t.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)


def devices(port: int, wire: bytes, n: int, seconds: float, tls=None) -> dict:
    """``n`` devices sending ``wire`` back to back for ``seconds``."""
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(n + 1)
    end = [0.0]

    def device(i: int) -> None:
        conn = Connection("127.0.0.1", port, timeout=30, tls=tls, source=f"127.0.1.{i + 1}")
        start.wait()
        while time.perf_counter() < end[0]:
            try:
                if conn.sock is None:
                    conn.connect()
                t0 = time.perf_counter()
                conn.call(P.Kind.FEATURE, wire)
                dt = time.perf_counter() - t0
                with lock:
                    lat.append(dt)
            except Exception as exc:  # counted, then the device reconnects
                conn.close()
                with lock:
                    errors.append(type(exc).__name__ + ": " + str(exc)[:80])
                time.sleep(0.05)
        conn.close()

    ts = [threading.Thread(target=device, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    end[0] = time.perf_counter() + seconds
    start.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join(seconds + 60)
    wall = time.perf_counter() - t0
    lat.sort()
    q = (lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]) if lat else (lambda p: None)
    kinds: dict[str, int] = {}
    for e in errors:
        kinds[e.split(":")[0] + ":" + e.split(":", 2)[-1][:60]] = kinds.get(e, 0) + 1
    return {"devices": n, "seconds": wall, "requests": len(lat), "rps": len(lat) / wall,
            "p50_s": statistics.median(lat) if lat else None, "p95_s": q(0.95),
            "errors": len(errors), "error_kinds": dict(sorted(kinds.items())[:5])}


def photo_body(name: str, megapixels: int = 49) -> bytes:
    from PIL import Image

    side = int((megapixels * 1e6) ** 0.5)
    buf = io.BytesIO()
    Image.new("L", (side, side), 128).save(buf, "PNG", optimize=True)
    return P.image_body(name, buf.getvalue())


def run_server_bench(variant_path: Path, input_size: int | None, n: int = 64,
                     seconds: float = 5.0, threads: int = 1, attacks=ATTACKS,
                     tls: bool = True, device: str = "cpu") -> dict:
    import torch

    from aecnn.compression.codec import FeatureCodec
    from aecnn.core.split import load_network

    v = load_network(variant_path, input_size)
    m = v.meta
    with torch.inference_mode():
        z = v.head(torch.rand(1, 3, m.input_size, m.input_size))[0]
    packet, _ = FeatureCodec("uint8", "per-channel").encode(z, m.kept, m.channels if m.kept
                                                            else None, m.name, m.point)
    wire = packet.to_bytes()
    photo = photo_body(m.name)
    rows = []

    def measure(label: str, attack: str | None, tls_files=None, client_tls=None) -> None:
        srv = Server(variant_path, input_size, threads, tls_files, device)
        att = None
        try:
            one = {}
            with Connection("127.0.0.1", srv.port, tls=client_tls) as conn:  # warm up
                for _ in range(3):
                    conn.call(P.Kind.FEATURE, wire)
                if attack is None:  # one device alone: what a request costs
                    one = {"one_device_ping_p50_s": statistics.median(
                               conn.call(P.Kind.PING)[1] for _ in range(300)),
                           "one_device_feature_p50_s": statistics.median(
                               conn.call(P.Kind.FEATURE, wire)[1] for _ in range(100))}
            if attack:
                att = Attack(attack, srv.port, photo).start()
                time.sleep(1.0)
            row = {"scenario": label, "tls": tls_files is not None, "attack": attack,
                   **one, **devices(srv.port, wire, n, seconds, client_tls)}
            if att:
                row["attack_actions"] = att.sent
        finally:
            if att:
                att.finish()
            srv.stop()
        rows.append(row)
        p50 = row["p50_s"] * 1e3 if row["p50_s"] else float("nan")
        print(f"{label}: {row['rps']:.0f} req/s, p50 {p50:.1f} ms, {row['errors']} errors",
              flush=True)

    measure("plain", None)
    if tls:
        import trustme

        from aecnn.runtime.tls import client_context

        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            ca = trustme.CA()
            ca.cert_pem.write_to_path(str(d / "ca.pem"))
            ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
                str(d / "server.pem"))
            ca.issue_cert("device").private_key_and_cert_chain_pem.write_to_path(
                str(d / "device.pem"))
            measure("mutual TLS", None, (str(d / "server.pem"), None, str(d / "ca.pem")),
                    client_context(d / "ca.pem", d / "device.pem"))
    for a in attacks:
        measure(f"under {a}", a)
    return {"kind": "server-load-bench", "variant": m.name, "input_size": m.input_size,
            "devices": n, "seconds_per_scenario": seconds, "server_threads": threads,
            "server_device": device, "packet_bytes": len(wire), "rows": rows}


def render(rec: dict) -> str:
    lines = ["# The edge server under load and under attack", "",
             f"Command: `{rec.get('command', '')}`  ",
             f"Machine: {rec.get('machine', {})}", "",
             f"Variant `{rec['variant']}` at {rec['input_size']} px (random weights), "
             f"{rec['packet_bytes']}-byte FEATURE packets, {rec['devices']} devices (one "
             f"loopback address each) for {rec['seconds_per_scenario']:g} s per row, the "
             f"server in its own process with default limits and {rec['server_threads']} "
             f"torch thread(s), on {rec.get('server_device', 'cpu')}.", "",
             "| scenario | requests/s | p50 (ms) | p95 (ms) | requests | device errors |",
             "|---|---|---|---|---|---|"]
    for r in rec["rows"]:
        p50 = f"{r['p50_s'] * 1e3:.1f}" if r["p50_s"] is not None else "-"
        p95 = f"{r['p95_s'] * 1e3:.1f}" if r["p95_s"] is not None else "-"
        lines.append(f"| {r['scenario']} | {r['rps']:.0f} | {p50} | {p95} | {r['requests']} "
                     f"| {r['errors']} |")
    lines.append("")
    for r in rec["rows"]:
        if "one_device_ping_p50_s" in r:
            lines.append(f"- {r['scenario']}, one device alone: median round trip "
                         f"{r['one_device_ping_p50_s'] * 1e3:.3f} ms for an empty PING, "
                         f"{r['one_device_feature_p50_s'] * 1e3:.2f} ms for a FEATURE request.")
    return "\n".join(lines) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variant", help="variant file served (default: a random-weight "
                                     "ResNet-18 stem x8 at 32 px)")
    p.add_argument("--input-size", type=int, help="run the variant at this input side")
    p.add_argument("--devices", type=int, default=64,
                   help="concurrent well-behaved devices, each on its own loopback address")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds per scenario")
    p.add_argument("--server-threads", type=int, default=1, help="server torch threads")
    p.add_argument("--device", default="cpu",
                   help="where the server runs the networks: cpu, auto, cuda, cuda:N")
    p.add_argument("--attacks", nargs="*", default=list(ATTACKS), choices=ATTACKS,
                   help="attacks to measure the devices under, one scenario each")
    p.add_argument("--no-tls", action="store_true",
                   help="skip the mutual-TLS scenario (it needs trustme)")
    p.add_argument("--out", default="results/runtime",
                   help="folder for server_load.json and server_load.md")


def run(args: argparse.Namespace, command: str | None = None) -> int:
    from aecnn.records import write_record

    with tempfile.TemporaryDirectory() as d:
        path = Path(args.variant) if args.variant else tiny_variant(Path(d))
        rec = run_server_bench(path, args.input_size, args.devices, args.seconds,
                               args.server_threads, tuple(args.attacks), not args.no_tls,
                               args.device)
    if command:
        rec["command"] = command
    out = Path(args.out)
    rec = write_record(out / "server_load.json", rec)
    text = render(rec)
    (out / "server_load.md").write_text(text)
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m aecnn.benchmarks.server_load",
                                description=__doc__.split("\n\n")[0])
    add_arguments(p)
    argv = sys.argv[1:] if argv is None else argv
    return run(p.parse_args(argv),
               shlex.join(["python", "-m", "aecnn.benchmarks.server_load", *argv]))


if __name__ == "__main__":
    sys.exit(main())
