"""TCP probes that :mod:`aecnn.netem.link` runs inside the namespaces to measure a link.

Standard library only, so they run by path (``python -I linkprobe.py ROLE ...``) in a namespace
without ``aecnn`` installed. Servers print their port on the first line of stdout; the
measuring ends print one JSON line.

* ``sink IP SECONDS WARMUP``: accept one connection and read for ``SECONDS`` after the first
  byte; report goodput over the steady-state window, from ``WARMUP`` after the first byte
  (slow start excluded) to the last byte read: ``{"bps", "bytes", "window_s"}``.
* ``source IP PORT SECONDS``: push zeros until the sink closes (or ``SECONDS + 5`` pass).
* ``echo IP``: accept one connection and echo single bytes back.
* ``ping IP PORT COUNT``: ``COUNT`` 1-byte ping-pongs (after two warm-up ones); a JSON list of
  round-trip times in seconds.
"""

from __future__ import annotations

import json
import socket
import sys
import time

ACCEPT_TIMEOUT_S = 15.0


def _listen(ip: str) -> socket.socket:
    srv = socket.socket()
    srv.bind((ip, 0))
    srv.listen(1)
    srv.settimeout(ACCEPT_TIMEOUT_S)
    print(srv.getsockname()[1], flush=True)
    return srv


def sink(ip: str, seconds: float, warmup: float) -> dict[str, float]:
    """Receive one bulk flow; see the module docstring."""
    conn, _ = _listen(ip).accept()
    buf = bytearray(1 << 20)
    total, t0, mark, last = 0, None, None, None
    while True:
        n = conn.recv_into(buf)
        now = time.monotonic()
        if not n:
            break
        t0 = now if t0 is None else t0
        total += n
        if mark is None and now - t0 >= warmup:
            mark = (now, total)
        last = (now, total)
        if now - t0 >= seconds:
            break
    conn.close()
    if mark is None or last is None or last[0] <= mark[0]:
        return {"bps": 0.0, "bytes": total, "window_s": 0.0}
    window = last[0] - mark[0]
    return {"bps": 8 * (last[1] - mark[1]) / window, "bytes": total, "window_s": window}


def source(ip: str, port: int, seconds: float) -> None:
    """Send zeros to ``ip:port`` until the peer closes or ``seconds + 5`` have passed."""
    sock = socket.create_connection((ip, port), timeout=ACCEPT_TIMEOUT_S)
    chunk = b"\0" * (1 << 16)
    end = time.monotonic() + seconds + 5
    try:
        while time.monotonic() < end:
            sock.sendall(chunk)
    except OSError:  # the sink closed the connection: done
        pass


def echo(ip: str) -> None:
    """Echo single bytes on one connection until it closes."""
    conn, _ = _listen(ip).accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while b := conn.recv(1):
        conn.sendall(b)


def ping(ip: str, port: int, count: int) -> list[float]:
    """Round-trip times (s) of ``count`` 1-byte ping-pongs, after two warm-up ones."""
    sock = socket.create_connection((ip, port), timeout=ACCEPT_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out = []
    for _ in range(count + 2):
        t = time.perf_counter()
        sock.sendall(b"x")
        sock.recv(1)
        out.append(time.perf_counter() - t)
    return out[2:]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    role, rest = args[0], args[1:]
    if role == "sink":
        print(json.dumps(sink(rest[0], float(rest[1]), float(rest[2]))), flush=True)
    elif role == "source":
        source(rest[0], int(rest[1]), float(rest[2]))
    elif role == "echo":
        echo(rest[0])
    elif role == "ping":
        print(json.dumps(ping(rest[0], int(rest[1]), int(rest[2]))), flush=True)
    else:
        print(f"unknown probe {role!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
