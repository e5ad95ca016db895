"""``aecnn bench transport``: what the edge server's transport and batching cost.

1. Overhead: median round trip of PING requests (empty and 64 KB bodies) on loopback,
   through the real asyncio server and the blocking device client.
2. Dynamic batching: ``clients`` devices send FEATURE packets of one variant at once,
   without and with a batching window; requests per second and median latency.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from pathlib import Path

import torch

from aecnn.compression.codec import FeatureCodec
from aecnn.core.split import SplitNetwork
from aecnn.runtime import protocol as P
from aecnn.runtime.client import Connection
from aecnn.runtime.server import EdgeServer, ServerConfig


class _Served:
    def __init__(self, variants: dict[str, SplitNetwork], cfg: ServerConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = EdgeServer(variants, cfg)
        self.host, self.port = self.loop.run_until_complete(self.server.start())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def ping_overhead(variant: SplitNetwork, n: int = 500) -> dict:
    """Median and p90 round trip (s) of PING with empty and 64 KB bodies."""
    srv = _Served({variant.meta.name: variant}, ServerConfig(port=0))
    out = {}
    try:
        with Connection(srv.host, srv.port) as conn:
            for label, body in (("empty", b""), ("64KB", bytes(65536))):
                times = [conn.call(P.Kind.PING, body)[1] for _ in range(n)]
                times.sort()
                out[label] = {"median_s": statistics.median(times),
                              "p90_s": times[int(0.9 * len(times))]}
    finally:
        srv.stop()
    return out


@torch.inference_mode()
def batching(variant: SplitNetwork, clients: int, requests: int, window: float,
             threads: int | None) -> dict:
    """Throughput and latency of ``clients`` concurrent devices, ``requests`` each."""
    m = variant.meta
    z = variant.head(torch.rand(1, 3, m.input_size, m.input_size))[0]
    packet, _ = FeatureCodec("float16", "zstd").encode(z, m.kept, m.channels if m.kept else None,
                                                       m.name, m.point)
    wire = packet.to_bytes()
    srv = _Served({m.name: variant}, ServerConfig(port=0, batch_window=window, max_batch=16,
                                                  threads=threads))
    lat: list[float] = []
    batches: list[int] = []
    lock = threading.Lock()

    def device() -> None:
        with Connection(srv.host, srv.port) as conn:
            for _ in range(requests):
                reply, rtt = conn.call(P.Kind.FEATURE, wire)
                with lock:
                    lat.append(rtt)
                    batches.append(reply["batch"])

    try:
        with Connection(srv.host, srv.port) as conn:  # warm-up
            conn.call(P.Kind.FEATURE, wire)
        ts = [threading.Thread(target=device) for _ in range(clients)]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        srv.stop()
    return {"clients": clients, "window_s": window, "requests": len(lat),
            "throughput_rps": len(lat) / wall, "median_latency_s": statistics.median(lat),
            "mean_batch": statistics.mean(batches)}


def run_transport(variant: SplitNetwork, clients: int = 8, requests: int = 8,
                  windows: tuple[float, ...] = (0.0, 0.005), threads: int | None = None
                  ) -> dict:
    return {"kind": "transport-bench", "variant": variant.meta.name,
            "input_size": variant.meta.input_size, "ping": ping_overhead(variant),
            "batching": [batching(variant, 1, requests, 0.0, threads)]
            + [batching(variant, clients, requests, w, threads) for w in windows]}


def render_transport(rec: dict) -> str:
    lines = ["# Transport and batching of the edge server", "",
             f"Command: `{rec.get('command', '')}`  ",
             f"Machine: {rec.get('machine', {})}", "",
             f"SplitNetwork `{rec['variant']}` at {rec['input_size']} px, loopback.", "",
             "| PING body | median round trip (ms) | p90 (ms) |", "|---|---|---|"]
    for k, v in rec["ping"].items():
        lines.append(f"| {k} | {v['median_s'] * 1e3:.3f} | {v['p90_s'] * 1e3:.3f} |")
    lines += ["", "| devices | batch window (ms) | requests/s | median latency (ms) | "
              "mean batch |", "|---|---|---|---|---|"]
    for b in rec["batching"]:
        lines.append(f"| {b['clients']} | {b['window_s'] * 1e3:g} | {b['throughput_rps']:.1f} "
                     f"| {b['median_latency_s'] * 1e3:.1f} | {b['mean_batch']:.2f} |")
    return "\n".join(lines) + "\n"


def write_transport(rec: dict, out: Path) -> str:
    text = render_transport(rec)
    (out / "transport.md").write_text(text)
    return text
