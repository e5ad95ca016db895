"""Who may hold a connection slot and how many request bytes: the edge server's bookkeeping.

Three rules keep well-behaved devices served while others misbehave (the asyncio server of
:mod:`aecnn.runtime.server` enforces the deadlines; this module decides who goes):

- **Per-peer cap.** One address may hold at most ``max_per_peer`` connections (0: no cap).
- **Eviction before refusal.** When all ``max_connections`` slots are taken, a newcomer takes
  the slot of the connection whose last byte arrived longest ago, unless that one is being
  answered (a request is decoded, computed or its reply written). Only when every slot is
  being answered is the newcomer refused.
- **Buffer budget.** The bytes of request frames held in memory, partial or being answered,
  may not exceed ``budget`` together. A chunk that would exceed it cuts the connection
  holding the most bytes of a partial frame; when that is the chunk's own connection, its
  request is refused.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

from aecnn.errors import AecnnError


class Rejected(AecnnError):
    """A request or connection refused with an error reply; ``reason`` is a short code for
    logs and metrics, the message goes to the client."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(eq=False)
class Peer:
    """One open connection. ``last``: loop time of its latest byte (or of its accept);
    ``buffered``: bytes of its current frame charged to the budget; ``rid``/``kind``: its
    current request's, once the frame header is complete."""

    host: str
    port: int
    task: asyncio.Task
    last: float
    requests: int = 0
    working: bool = False
    buffered: int = 0
    rid: int | None = None
    kind: int | None = None
    evicted: str | None = None

    def touch(self, now: float) -> None:
        self.last = now


class Admission:
    """Connection slots, per-address counts and the buffer budget of one server."""

    def __init__(self, max_connections: int, max_per_peer: int, budget: int) -> None:
        self.max_connections, self.max_per_peer, self.budget = (max_connections,
                                                                 max_per_peer, budget)
        self.peers: dict[asyncio.Task, Peer] = {}
        self.per_host: Counter[str] = Counter()
        self.buffered = 0
        self.evictions = 0

    def admit(self, peer: Peer) -> None:
        """Give ``peer`` a slot, evicting the quietest idle connection if none is free.

        Raises:
            Rejected: the address holds its cap, or every slot is being answered.
        """
        if self.max_per_peer and self.per_host[peer.host] >= self.max_per_peer:
            raise Rejected(f"too many connections from {peer.host} (at most "
                           f"{self.max_per_peer} per address)", "per-peer")
        if len(self.peers) >= self.max_connections:
            victim = min((p for p in self.peers.values() if not p.working),
                         key=lambda p: p.last, default=None)
            if victim is None:
                raise Rejected("server busy: every connection slot is answering a request",
                               "busy")
            self.evict(victim, "connection closed to make room: the server is full and "
                               "this connection was the quietest")
        self.peers[peer.task] = peer
        self.per_host[peer.host] += 1

    def evict(self, victim: Peer, reason: str) -> None:
        """Free ``victim``'s slot and bytes now and cancel its task, which answers
        ``reason`` to its client."""
        victim.evicted = reason
        self.evictions += 1
        self.release(victim)
        victim.task.cancel()

    def release(self, peer: Peer) -> None:
        """``peer`` is gone (idempotent)."""
        if self.peers.pop(peer.task, None) is not None:
            self.per_host[peer.host] -= 1
            if self.per_host[peer.host] <= 0:
                del self.per_host[peer.host]
        self.uncharge(peer)

    def charge(self, peer: Peer, n: int) -> None:
        """``peer`` buffers ``n`` more bytes of a frame; make room by cutting the largest
        holder of a partial frame if the budget would be exceeded.

        Raises:
            Rejected: ``peer`` itself is the largest holder (its request is refused).
        """
        while self.buffered + n > self.budget:
            victim = max((p for p in self.peers.values()
                          if p.buffered > 0 and not p.working and p is not peer),
                         key=lambda p: p.buffered, default=None)
            if victim is None or victim.buffered <= peer.buffered + n:
                self.uncharge(peer)
                raise Rejected(f"server buffer budget of {self.budget} bytes for request "
                               "frames is exhausted; retry later", "budget")
            self.evict(victim, f"connection closed: the server's buffer budget of "
                               f"{self.budget} bytes is exhausted and this connection held "
                               "the largest partial frame")
        peer.buffered += n
        self.buffered += n

    def uncharge(self, peer: Peer) -> None:
        self.buffered -= peer.buffered
        peer.buffered = 0
