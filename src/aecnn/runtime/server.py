"""The edge server (``aecnn serve``): decode, recover, run the tail, answer.

asyncio over plain TCP with the framing of :mod:`aecnn.runtime.protocol`. Why not gRPC or
HTTP: one round trip of an empty request costs ~0.1 ms here on loopback (``aecnn bench
transport``), far below the milliseconds of the tail, and it keeps the dependency list and
the wire format ours, documented, and fuzzable.

Concurrency: every connection is one asyncio task; requests of the same variant that arrive
within ``batch_window`` seconds are stacked into one batch (dynamic batching, at most
``max_batch``) and run on one compute thread, so the model never competes with itself for
cores. Decoding runs on a second thread. Limits: frame size, concurrent connections,
per-request time. ``shutdown()`` stops accepting, answers every request already read, then
closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from aecnn.compression.codec import decode_packet
from aecnn.compression.wire import Limits, Packet
from aecnn.core.split import SplitNetwork
from aecnn.errors import AecnnError
from aecnn.runtime import protocol as P
from aecnn.runtime.preprocess import Preprocessor

log = logging.getLogger("aecnn.serve")


@dataclass(frozen=True)
class ServerConfig:
    """Where to listen and what to accept."""

    host: str = "127.0.0.1"
    port: int = 7070
    max_frame: int = P.DEFAULT_MAX_FRAME
    max_connections: int = 64
    request_timeout: float = 30.0
    idle_timeout: float = 600.0
    batch_window: float = 0.002
    max_batch: int = 16
    threads: int | None = None
    limits: Limits = field(default_factory=Limits)


@dataclass
class _Job:
    x: torch.Tensor
    full: bool
    arrived: float
    future: asyncio.Future


class _Batcher:
    """Collects jobs of one variant and mode; runs them as one batch on the compute thread."""

    def __init__(self, variant: SplitNetwork, full: bool, cfg: ServerConfig,
                 pool: ThreadPoolExecutor) -> None:
        self.variant, self.full, self.cfg, self.pool = variant, full, cfg, pool
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            deadline = loop.time() + self.cfg.batch_window
            while len(jobs) < self.cfg.max_batch:
                if not self.queue.empty():  # what already waits joins the batch
                    jobs.append(self.queue.get_nowait())
                    continue
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    jobs.append(await asyncio.wait_for(self.queue.get(), timeout))
                except TimeoutError:
                    break
            jobs = [j for j in jobs if not j.future.done()]
            groups: dict[tuple, list[_Job]] = {}
            for j in jobs:  # only same-shaped tensors stack
                groups.setdefault(tuple(j.x.shape), []).append(j)
            for group in groups.values():
                start = time.perf_counter()
                try:
                    out = await loop.run_in_executor(self.pool, self._compute, group)
                except Exception as exc:  # a bug in a model must not kill the server
                    log.exception("batch failed")
                    for j in group:
                        if not j.future.done():
                            j.future.set_exception(AecnnError(f"inference failed: {exc}"))
                    continue
                for j, res in zip(group, out, strict=True):
                    if not j.future.done():
                        j.future.set_result({**res, "t_queue": start - j.arrived,
                                             "batch": len(group)})

    @torch.inference_mode()
    def _compute(self, jobs: list[_Job]) -> list[dict]:
        x = torch.cat([j.x for j in jobs])
        v = self.variant
        t0 = time.perf_counter()
        z = v.head(x) if self.full else x
        t1 = time.perf_counter()
        r = v.bridge(z)
        t2 = time.perf_counter()
        probs = v.tail(r).softmax(1)
        t3 = time.perf_counter()
        score, cls = probs.max(1)
        n = len(jobs)
        return [{"class": int(c), "label": v.meta.classes[int(c)], "score": float(s),
                 "t_head": (t1 - t0) / n, "t_fr": (t2 - t1) / n, "t_es": (t3 - t2) / n,
                 "t_batch": t3 - t0} for c, s in zip(cls, score, strict=True)]

    def stop(self) -> None:
        self.task.cancel()


class EdgeServer:
    """Serves ``variants`` (name -> :class:`SplitNetwork`) over TCP."""

    def __init__(self, variants: dict[str, SplitNetwork], cfg: ServerConfig | None = None) -> None:
        if not variants:
            raise AecnnError("the server needs at least one variant")
        self.variants, self.cfg = variants, cfg or ServerConfig()
        self.prep = {n: Preprocessor(v.meta.input_size, v.meta.mean, v.meta.std)
                     for n, v in variants.items()}
        self.compute_pool = ThreadPoolExecutor(1, thread_name_prefix="aecnn-compute")
        self.decode_pool = ThreadPoolExecutor(1, thread_name_prefix="aecnn-decode")
        self.batchers: dict[tuple[str, bool], _Batcher] = {}
        with torch.inference_mode():  # the (K, H, W) each variant's head sends
            self.expect = {n: tuple(v.head(torch.zeros(1, 3, v.meta.input_size,
                                                       v.meta.input_size)).shape[1:])
                           for n, v in variants.items()}
        self.server: asyncio.base_events.Server | None = None
        self.closing = False
        self.connections: dict[asyncio.Task, bool] = {}  # task -> busy
        self.served = 0
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> tuple[str, int]:
        self.server = await asyncio.start_server(self._connection, self.cfg.host, self.cfg.port)
        host, port = self.server.sockets[0].getsockname()[:2]
        log.info("serving %s on %s:%d", ", ".join(self.variants), host, port)
        return host, port

    async def shutdown(self) -> None:
        """Stop accepting, answer what was already read, close every connection."""
        self.closing = True
        if self.server is not None:
            self.server.close()
        for task, busy in list(self.connections.items()):
            if not busy:
                task.cancel()
        if self.connections:
            await asyncio.gather(*self.connections, return_exceptions=True)
        for b in self.batchers.values():
            b.stop()
        self.compute_pool.shutdown(wait=True)
        self.decode_pool.shutdown(wait=True)

    # ------------------------------------------------------------------ requests
    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self.closing or len(self.connections) >= self.cfg.max_connections:
            writer.write(P.response(P.Status.ERROR, 0, {"error": "server busy or closing"}))
            with contextlib.suppress(OSError):
                await writer.drain()
            writer.close()
            return
        self.connections[task] = False
        try:
            while not self.closing:
                try:  # between requests a client may stay quiet up to idle_timeout ...
                    first = await asyncio.wait_for(reader.readexactly(1),
                                                   self.cfg.idle_timeout)
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    return
                self.connections[task] = True
                try:  # ... but once a frame has begun, all of it must come in request_timeout
                    rid = 0
                    raw = first + await asyncio.wait_for(
                        reader.readexactly(P.HEADER.size - 1), self.cfg.request_timeout)
                    kind, rid, length = P.parse_header(raw, P.REQUEST, self.cfg.max_frame)
                    body = await asyncio.wait_for(reader.readexactly(length),
                                                  self.cfg.request_timeout)
                except (P.ProtocolError, asyncio.IncompleteReadError, TimeoutError) as exc:
                    # framing is lost: answer once, then drop the connection
                    msg = str(exc) if isinstance(exc, P.ProtocolError) else "truncated frame"
                    writer.write(P.response(P.Status.ERROR, rid, {"error": msg}))
                    with contextlib.suppress(OSError):
                        await writer.drain()
                    return
                t_recv = time.perf_counter()
                try:
                    payload = await asyncio.wait_for(self._handle(kind, body),
                                                     self.cfg.request_timeout)
                    payload["t_server"] = time.perf_counter() - t_recv
                    frame = P.response(P.Status.OK, rid, payload)
                except AecnnError as exc:
                    frame = P.response(P.Status.ERROR, rid, {"error": str(exc)})
                except TimeoutError:
                    frame = P.response(P.Status.ERROR, rid, {"error": "request timed out"})
                writer.write(frame)
                await writer.drain()
                self.served += 1
                self.connections[task] = False
        except (ConnectionError, OSError):
            return
        finally:
            self.connections.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _handle(self, kind: int, body: bytes) -> dict:
        loop = asyncio.get_running_loop()
        if kind == P.Kind.PING:
            return {"echo": len(body)}
        if kind == P.Kind.INFO:
            return {"variants": {n: v.meta.to_dict() | {"classes": len(v.meta.classes)}
                                 for n, v in self.variants.items()}}
        t0 = time.perf_counter()
        if kind == P.Kind.FEATURE:
            name, x = await loop.run_in_executor(self.decode_pool, self._decode_feature, body)
            full = False
        else:
            name, data = P.split_image_body(body)
            self._variant(name)
            x = await loop.run_in_executor(self.decode_pool, self.prep[name], data)
            full = True
        t_dec = time.perf_counter() - t0
        job = _Job(x, full, time.perf_counter(), loop.create_future())
        await self._batcher(name, full).queue.put(job)
        res = await job.future
        return {"variant": name, "t_dec": t_dec, **res}

    def _variant(self, name: str) -> SplitNetwork:
        if name not in self.variants:
            raise AecnnError(f"unknown variant {name!r}; serving {', '.join(self.variants)}")
        return self.variants[name]

    def _decode_feature(self, body: bytes) -> tuple[str, torch.Tensor]:
        packet = Packet.from_bytes(body, self.cfg.limits)
        h = packet.header
        v = self._variant(h.model)
        if h.split != v.meta.point:
            raise AecnnError(f"packet is for split {h.split!r}, variant {h.model} cuts at "
                             f"{v.meta.point!r}")
        if v.meta.kept is not None and tuple(h.indices) != v.meta.kept:
            raise AecnnError("packet's kept channels differ from the variant's")
        if h.kept_shape != self.expect[h.model]:
            raise AecnnError(f"packet holds a {h.kept_shape} tensor, variant {h.model} "
                             f"expects {self.expect[h.model]}")
        return h.model, decode_packet(packet, v.priors.values())[None]

    def _batcher(self, name: str, full: bool) -> _Batcher:
        key = (name, full)
        if key not in self.batchers:
            self.batchers[key] = _Batcher(self.variants[name], full, self.cfg, self.compute_pool)
        return self.batchers[key]


async def serve(variants: dict[str, SplitNetwork], cfg: ServerConfig,
                ready: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM, then shut down gracefully."""
    import signal

    server = EdgeServer(variants, cfg)
    host, port = await server.start()
    print(f"aecnn serve: listening on {host}:{port} ({len(variants)} variants)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    await stop.wait()
    await server.shutdown()
    print(f"aecnn serve: stopped after {server.served} requests", flush=True)
