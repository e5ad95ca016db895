"""The edge server (``aecnn serve``): decode, recover, run the tail, answer.

asyncio over TCP (optionally TLS, optionally with client certificates) with the framing of
:mod:`aecnn.runtime.protocol`. Why not gRPC or HTTP: one round trip of an empty request costs
~0.1 ms here on loopback (``aecnn bench transport``), far below the milliseconds of the tail,
and it keeps the dependency list and the wire format ours, documented, and fuzzable.

Concurrency: every connection is one asyncio task; requests of the same variant that arrive
within ``batch_window`` seconds are stacked into one batch (dynamic batching, at most
``max_batch``) and run on one compute thread, so the model never competes with itself for
cores. Packets are decoded on a thread of their own, photos on a bounded pool of their own
(``decode_workers`` threads, at most ``decode_queue`` photos admitted at once), so a photo
flood cannot delay feature requests.

Device (``device``: ``cpu``, the default, ``auto`` or ``cuda[:N]``): on a GPU the variants are
copied there; the compute thread stacks each batch into pinned host memory, copies it to the
GPU without blocking, runs head (photos), recovery and tail there, and synchronises before it
reads the clock and the answers, so ``t_head``/``t_fr``/``t_es`` are GPU times.

Admission (:mod:`aecnn.runtime.admission` holds the bookkeeping): a new connection must send
its first byte within ``first_byte_timeout``; one address may hold ``max_per_peer``
connections; when all ``max_connections`` slots are taken, the connection that has been
quiet longest (and is not being answered) is evicted to make room. The bytes of request
frames held in memory, partial or being answered, share one server-wide ``buffer_budget``:
a chunk that would exceed it cuts the connection holding the most. A request's deadline
(``request_timeout``) counts from its frame's first byte to its reply.

Every refusal is one log line (``aecnn.serve``: peer, request id, kind, reason) and, with
``metrics_port``, a Prometheus counter. ``shutdown()`` stops accepting, answers every request
already read, then closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import math
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from aecnn.compression.codec import decode_packet
from aecnn.compression.errors import PacketError
from aecnn.compression.wire import Limits, Packet
from aecnn.core.split import SplitNetwork
from aecnn.errors import AecnnError, ConfigError, ImageReadError
from aecnn.runtime import protocol as P
from aecnn.runtime.admission import Admission, Peer, Rejected
from aecnn.runtime.metrics import Metrics
from aecnn.runtime.preprocess import MAX_PIXELS, Preprocessor

log = logging.getLogger("aecnn.serve")
PHOTO_NICE = 10  # the photo threads' nice value, this much above the server's
CHUNK = 64 * 2**10  # a frame's body is read (and charged to the budget) this much at a time


@dataclass(frozen=True)
class ServerConfig:
    """Where to listen and what to accept (seconds, bytes). docs/runtime.md lists them."""

    host: str = "127.0.0.1"
    port: int = 7070
    max_frame: int = P.DEFAULT_MAX_FRAME
    max_connections: int = 64
    max_per_peer: int = 16  # 0: no cap
    first_byte_timeout: float = 5.0
    request_timeout: float = 30.0
    idle_timeout: float = 600.0
    buffer_budget: int = 128 * 2**20
    batch_window: float = 0.002
    max_batch: int = 16
    threads: int | None = None
    decode_workers: int = 1
    decode_queue: int = 4
    max_pixels: int = MAX_PIXELS
    limits: Limits = field(default_factory=Limits)
    tls: ssl.SSLContext | None = None
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    device: str = "cpu"

    def describe(self) -> dict:
        """The limits a client may need to know (the INFO reply's ``limits``)."""
        return {"max_frame": self.max_frame, "max_connections": self.max_connections,
                "max_per_peer": self.max_per_peer,
                "first_byte_timeout": self.first_byte_timeout,
                "request_timeout": self.request_timeout, "idle_timeout": self.idle_timeout,
                "buffer_budget": self.buffer_budget, "decode_queue": self.decode_queue,
                "max_pixels": self.max_pixels, "max_elements": self.limits.max_elements,
                "max_payload": self.limits.max_payload, "tls": self.tls is not None}


@dataclass
class _Job:
    x: torch.Tensor
    full: bool
    arrived: float
    future: asyncio.Future


def server_device(name: str) -> torch.device:
    """``auto`` (the current GPU if CUDA is available, else the CPU), ``cpu`` or ``cuda[:N]``.

    Raises:
        ConfigError: not one of those, or a GPU that this machine does not have.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device: {name!r} is not auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} asked for, but CUDA is not available here "
                              "(use --device cpu or auto)")
        if (dev.index or 0) >= torch.cuda.device_count():
            raise ConfigError(f"device: {name!r}, but this machine has "
                              f"{torch.cuda.device_count()} GPU(s)")
        if dev.index is None:  # named, so that logs say which GPU
            dev = torch.device("cuda", torch.cuda.current_device())
    return dev


class _Batcher:
    """Collects jobs of one variant and mode; runs them as one batch on the compute thread
    (on ``device``, where the variant lives)."""

    def __init__(self, variant: SplitNetwork, full: bool, cfg: ServerConfig,
                 pool: ThreadPoolExecutor, device: torch.device) -> None:
        self.variant, self.full, self.cfg, self.pool = variant, full, cfg, pool
        self.device = device
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
                            j.future.set_exception(Rejected(f"inference failed: {exc}",
                                                            "inference"))
                    continue
                for j, res in zip(group, out, strict=True):
                    if j.future.done():
                        continue
                    if res is None:  # NaN or infinity would not be valid JSON either
                        j.future.set_exception(Rejected(
                            "the network's output is not finite (inputs out of range?)",
                            "output"))
                    else:
                        j.future.set_result({**res, "t_queue": start - j.arrived,
                                             "batch": len(group)})

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _stack(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """The batch ``(B, ...)`` on the device: on a GPU through one pinned host buffer and
        a non-blocking copy."""
        if self.device.type != "cuda":
            return torch.cat(xs)
        host = torch.empty((sum(len(x) for x in xs), *xs[0].shape[1:]), dtype=xs[0].dtype,
                           pin_memory=True)
        torch.cat(xs, out=host)
        return host.to(self.device, non_blocking=True)

    @torch.inference_mode()
    def _compute(self, jobs: list[_Job]) -> list[dict | None]:
        x = self._stack([j.x for j in jobs])
        v = self.variant
        self._sync()
        t0 = time.perf_counter()
        z = v.head(x) if self.full else x
        self._sync()
        t1 = time.perf_counter()
        r = v.bridge(z)
        self._sync()
        t2 = time.perf_counter()
        logits = v.tail(r)
        probs = logits.softmax(1)
        self._sync()
        t3 = time.perf_counter()
        score, cls = (t.cpu() for t in probs.max(1))
        finite = torch.isfinite(logits).all(1).cpu()
        n = len(jobs)
        return [{"class": int(c), "label": v.meta.classes[int(c)], "score": float(s),
                 "t_head": (t1 - t0) / n, "t_fr": (t2 - t1) / n, "t_es": (t3 - t2) / n,
                 "t_batch": t3 - t0} if ok and math.isfinite(float(s)) else None
                for c, s, ok in zip(cls, score, finite, strict=True)]

    def stop(self) -> None:
        self.task.cancel()


class EdgeServer:
    """Serves ``variants`` (name -> :class:`SplitNetwork`) over TCP."""

    def __init__(self, variants: dict[str, SplitNetwork], cfg: ServerConfig | None = None) -> None:
        if not variants:
            raise AecnnError("the server needs at least one variant")
        self.variants, self.cfg = variants, cfg or ServerConfig()
        if self.cfg.buffer_budget < 2 * CHUNK:
            raise AecnnError(f"buffer budget of {self.cfg.buffer_budget} bytes is below "
                             f"{2 * CHUNK}")
        self.prep = {n: Preprocessor(v.meta.input_size, v.meta.mean, v.meta.std,
                                     self.cfg.max_pixels) for n, v in variants.items()}
        self.compute_pool = ThreadPoolExecutor(1, thread_name_prefix="aecnn-compute")
        self.packet_pool = ThreadPoolExecutor(1, thread_name_prefix="aecnn-packet")
        self.photo_pool = ThreadPoolExecutor(max(1, self.cfg.decode_workers),
                                             thread_name_prefix="aecnn-photo",
                                             initializer=_lower_priority)
        self.photos = 0  # photos admitted to the photo pool and not yet decoded
        self.batchers: dict[tuple[str, bool], _Batcher] = {}
        with torch.inference_mode():  # the (K, H, W) each variant's head sends
            self.expect = {n: tuple(v.head(torch.zeros(1, 3, v.meta.input_size,
                                                       v.meta.input_size)).shape[1:])
                           for n, v in variants.items()}
        self.device = server_device(self.cfg.device)
        # what the compute thread runs: on a GPU, copies (the caller's networks, which also
        # decode packets on the CPU, stay where they are)
        self.on_device = variants if self.device.type == "cpu" else {
            n: copy.deepcopy(v).to(self.device).eval() for n, v in variants.items()}
        self.server: asyncio.base_events.Server | None = None
        self.closing = False
        self.admission = Admission(self.cfg.max_connections, self.cfg.max_per_peer,
                                   self.cfg.buffer_budget)
        self.metrics = Metrics(self.cfg.metrics_port, self.cfg.metrics_host)
        self.served = 0
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)

    @property
    def connections(self) -> dict:
        """Open connections (task -> :class:`~aecnn.runtime.admission.Peer`)."""
        return self.admission.peers

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> tuple[str, int]:
        tls = {} if self.cfg.tls is None else {
            "ssl": self.cfg.tls, "ssl_handshake_timeout": self.cfg.first_byte_timeout}
        self.server = await asyncio.start_server(self._connection, self.cfg.host,
                                                 self.cfg.port, **tls)
        self.metrics.start()
        host, port = self.server.sockets[0].getsockname()[:2]
        log.info("serving %s on %s:%d%s", ", ".join(self.variants), host, port,
                 " (TLS)" if self.cfg.tls else "")
        return host, port

    async def shutdown(self) -> None:
        """Stop accepting, answer what was already read, close every connection."""
        self.closing = True
        if self.server is not None:
            self.server.close()
        for task, peer in list(self.connections.items()):
            if not peer.working:
                task.cancel()
        if self.connections:
            await asyncio.gather(*self.connections, return_exceptions=True)
        for b in self.batchers.values():
            b.stop()
        self.compute_pool.shutdown(wait=True)
        self.packet_pool.shutdown(wait=True)
        self.photo_pool.shutdown(wait=True)
        self.metrics.stop()

    # ------------------------------------------------------------------ connections
    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        addr = writer.get_extra_info("peername") or ("?", 0)
        peer = Peer(str(addr[0]), int(addr[1]), task, loop.time())
        try:
            if self.closing:
                raise Rejected("server closing", "closing")
            self.admission.admit(peer)  # may evict the quietest connection
        except Rejected as exc:
            self._refuse(peer, 0, None, exc.reason, str(exc))
            writer.write(P.response(P.Status.ERROR, 0, {"error": str(exc)}))
            await self._close(writer)
            return
        self.metrics.connections(len(self.connections))
        try:
            await self._serve_connection(peer, reader, writer)
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            if peer.evicted is None:
                raise
            with contextlib.suppress(AttributeError):
                task.uncancel()
            self._refuse(peer, peer.rid, peer.kind, "evicted", peer.evicted)
            with contextlib.suppress(Exception):
                writer.write(P.response(P.Status.ERROR, peer.rid or 0,
                                        {"error": peer.evicted}))
        finally:
            self.admission.release(peer)
            self.metrics.connections(len(self.connections))
            await self._close(writer)

    async def _close(self, writer: asyncio.StreamWriter) -> None:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 1.0)
        except Exception:  # a peer that does not read: drop it
            writer.transport.abort()

    async def _serve_connection(self, peer: Peer, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        while not self.closing:
            # a new connection must speak within first_byte_timeout; between requests a
            # client may stay quiet up to idle_timeout
            quiet = cfg.first_byte_timeout if peer.requests == 0 else cfg.idle_timeout
            try:
                first = await asyncio.wait_for(reader.read(1), quiet)
            except TimeoutError:
                if peer.requests == 0:
                    self._refuse(peer, None, None, "first-byte",
                                 f"no request within {quiet:g} s of connecting")
                return
            if not first:
                return
            # from the frame's first byte, header included, the whole request has
            # request_timeout until its reply is written
            deadline = loop.time() + cfg.request_timeout
            peer.touch(loop.time())
            peer.rid, peer.kind = None, None
            try:
                body = await asyncio.wait_for(self._read_frame(peer, reader, first),
                                              cfg.request_timeout)
            except (P.ProtocolError, Rejected, asyncio.IncompleteReadError,
                    TimeoutError) as exc:
                # framing is lost: answer once, then drop the connection
                if isinstance(exc, asyncio.IncompleteReadError):
                    reason, msg = "truncated", "truncated frame (the client hung up)"
                elif isinstance(exc, TimeoutError):
                    reason, msg = "deadline", (f"truncated frame: not complete within "
                                               f"{cfg.request_timeout:g} s of its first byte")
                else:
                    reason, msg = _reason(exc), str(exc)
                self.admission.uncharge(peer)
                self._refuse(peer, peer.rid, peer.kind, reason, msg)
                writer.write(P.response(P.Status.ERROR, peer.rid or 0, {"error": msg}))
                with contextlib.suppress(OSError, TimeoutError):
                    await asyncio.wait_for(writer.drain(), 1.0)
                return
            peer.working = True
            t_recv = time.perf_counter()
            kind, rid = peer.kind, peer.rid
            try:
                payload = await asyncio.wait_for(self._handle(kind, body),
                                                 max(deadline - loop.time(), 0.0))
                payload["t_server"] = time.perf_counter() - t_recv
                frame = P.response(P.Status.OK, rid, payload)
                self.metrics.request(kind, time.perf_counter() - t_recv)
            except (AecnnError, TimeoutError, ValueError) as exc:
                if isinstance(exc, TimeoutError):
                    reason, msg = "deadline", (f"request not answered within "
                                               f"{cfg.request_timeout:g} s of its first byte")
                elif isinstance(exc, ValueError):  # e.g. NaN refused by the strict encoder
                    reason, msg = "output", f"reply is not valid JSON: {exc}"
                else:
                    reason, msg = _reason(exc), str(exc)
                self._refuse(peer, rid, kind, reason, msg)
                frame = P.response(P.Status.ERROR, rid, {"error": msg})
            del body
            self.admission.uncharge(peer)
            writer.write(frame)
            try:
                await asyncio.wait_for(writer.drain(), cfg.request_timeout)
            except TimeoutError:
                self._refuse(peer, rid, kind, "slow-reader", "the client does not read "
                             "its replies")
                return
            self.served += 1
            peer.requests += 1
            peer.working = False
            peer.touch(loop.time())

    async def _read_frame(self, peer: Peer, reader: asyncio.StreamReader,
                          first: bytes) -> bytes:
        """The rest of a frame whose first byte came; sets ``peer.rid`` and ``peer.kind``
        once the header is complete; every chunk of the body is charged to the budget."""
        loop = asyncio.get_running_loop()
        raw = first + await reader.readexactly(P.HEADER.size - 1)
        peer.touch(loop.time())
        peer.rid = P.HEADER.unpack(raw)[3]  # echoed from here on, whatever else is wrong
        peer.kind = raw[3]
        kind, _, length = P.parse_header(raw, P.REQUEST, self.cfg.max_frame)
        chunks, got = [], 0
        while got < length:
            chunk = await reader.read(min(length - got, CHUNK))
            if not chunk:
                raise asyncio.IncompleteReadError(b"", length - got)
            self.admission.charge(peer, len(chunk))  # may cut the largest holder (or us)
            chunks.append(chunk)
            got += len(chunk)
            peer.touch(loop.time())
        return b"".join(chunks)

    def _refuse(self, peer: Peer, rid: int | None, kind: int | None, reason: str,
                message: str) -> None:
        name = _kind_name(kind)
        log.warning("reject peer=%s:%d id=%s kind=%s reason=%s: %s", peer.host, peer.port,
                    "-" if rid is None else rid, name, reason, message)
        self.metrics.error(name, reason)

    # ------------------------------------------------------------------ requests
    async def _handle(self, kind: int, body: bytes) -> dict:
        loop = asyncio.get_running_loop()
        if kind == P.Kind.PING:
            return {"echo": len(body)}
        if kind == P.Kind.INFO:
            return self.info()
        t0 = time.perf_counter()
        if kind == P.Kind.FEATURE:
            name, x = await loop.run_in_executor(self.packet_pool, self._decode_feature, body)
            full = False
        else:
            name, data = P.split_image_body(body)
            self._variant(name)
            if self.photos >= self.cfg.decode_queue:
                raise Rejected(f"photo decoder busy ({self.cfg.decode_queue} photos queued); "
                               "retry later", "photo-busy")
            self.photos += 1
            try:
                x = await loop.run_in_executor(self.photo_pool, self.prep[name], data)
            finally:
                self.photos -= 1
            full = True
        t_dec = time.perf_counter() - t0
        job = _Job(x, full, time.perf_counter(), loop.create_future())
        await self._batcher(name, full).queue.put(job)
        res = await job.future
        return {"variant": name, "t_dec": t_dec, **res}

    def info(self) -> dict:
        """The INFO reply: every variant, what its packets must hold, and the limits."""
        out = {}
        for n, v in self.variants.items():
            m = v.meta
            k, h, w = self.expect[n]
            c = m.channels if m.kept is not None else k
            out[n] = m.to_dict() | {
                "classes": len(m.classes), "labels": list(m.classes),
                "packet": {"model": n, "split": m.point, "channels": c, "height": h,
                           "width": w, "kept": k,
                           "indices": list(m.kept) if m.kept is not None else list(range(k))},
                "priors": [{"grid": g, "levels": p.levels, "fingerprint": p.fingerprint_hex}
                           for g, p in v.priors.items()]}
        return {"variants": out, "limits": self.cfg.describe()}

    def _variant(self, name: str) -> SplitNetwork:
        if name not in self.variants:
            raise Rejected(f"unknown variant {name!r}; serving {', '.join(self.variants)}",
                           "variant")
        return self.variants[name]

    def _decode_feature(self, body: bytes) -> tuple[str, torch.Tensor]:
        packet = Packet.from_bytes(body, self.cfg.limits)
        h = packet.header
        v = self._variant(h.model)
        k, height, width = self.expect[h.model]
        want_c = v.meta.channels if v.meta.kept is not None else k
        want_idx = v.meta.kept if v.meta.kept is not None else tuple(range(k))
        if h.split != v.meta.point:
            raise Rejected(f"packet is for split {h.split!r}, variant {h.model} cuts at "
                           f"{v.meta.point!r}", "field")
        if h.channels != want_c:
            raise Rejected(f"packet's split tensor has C={h.channels} channels, variant "
                           f"{h.model}'s has {want_c}", "field")
        if (h.height, h.width) != (height, width):
            raise Rejected(f"packet holds a {h.kept_shape} tensor, variant {h.model} "
                           f"expects {(k, height, width)}", "field")
        if len(h.indices) != k:
            raise Rejected(f"packet holds K={len(h.indices)} kept channels, variant "
                           f"{h.model} expects {(k, height, width)}", "field")
        if tuple(h.indices) != want_idx:
            raise Rejected("packet's kept channels differ from the variant's", "field")
        return h.model, decode_packet(packet, v.coding_tables())[None]

    def _batcher(self, name: str, full: bool) -> _Batcher:
        key = (name, full)
        if key not in self.batchers:
            self.batchers[key] = _Batcher(self.on_device[name], full, self.cfg,
                                          self.compute_pool, self.device)
        return self.batchers[key]


def _lower_priority() -> None:
    """Photo threads yield the CPU to the compute thread when cores are scarce (Linux
    schedules threads one by one, so a thread may have a nice value of its own)."""
    import os
    import threading

    with contextlib.suppress(AttributeError, OSError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid)
                                                 + PHOTO_NICE))


def _reason(exc: Exception) -> str:
    """A short code for logs and metrics."""
    if isinstance(exc, Rejected):
        return exc.reason
    if isinstance(exc, P.ProtocolError):
        return "frame"
    if isinstance(exc, PacketError):
        return "packet"
    if isinstance(exc, ImageReadError):
        return "photo"
    return "request"


def _kind_name(kind: int | None) -> str:
    if kind is None:
        return "-"
    try:
        return P.Kind(kind).name
    except ValueError:
        return str(kind)


async def serve(variants: dict[str, SplitNetwork], cfg: ServerConfig,
                ready: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM, then shut down gracefully."""
    import signal

    server = EdgeServer(variants, cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before the "listening" line a supervisor
        loop.add_signal_handler(sig, stop.set)   # may answer with a signal at once
    host, port = await server.start()
    extra = f", metrics on {cfg.metrics_host}:{server.metrics.port}" if server.metrics.on else ""
    plural = "s" if len(variants) != 1 else ""
    print(f"aecnn serve: listening on {host}:{port} ({len(variants)} variant{plural} on "
          f"{server.device}{', TLS' if cfg.tls else ''}{extra})", flush=True)
    if ready is not None:
        ready.set()
    await stop.wait()
    await server.shutdown()
    print(f"aecnn serve: stopped after {server.served} requests", flush=True)
