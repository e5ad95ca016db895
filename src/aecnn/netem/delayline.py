"""A userspace delay line: delay, jitter and loss for packets redirected into a TUN device.

Used by :class:`aecnn.netem.link.ShapedLink` where the kernel has no ``netem`` qdisc. The
link redirects the edge end's ingress IPv4 packets (tc ``mirred``) to a TUN device that this
process owns; the process writes every packet back into the same device after its delay, and
the kernel delivers it as if it had arrived there. Packets leave in arrival order: a packet's
release time is ``max(previous release, arrival + delay + U(-jitter, +jitter))``, as netem
does in ``rate`` mode, so jitter never reorders packets (under back-to-back load the delays
lean towards ``delay + jitter``). ``loss`` drops each packet independently.

Standard library only, so it runs by path in a namespace without ``aecnn`` installed::

    python delayline.py --ifname aecnn-dl --delay 0.02 --jitter 0.002 --loss 0.01 --seed 0

It prints ``ready`` once the TUN device exists, and exits on SIGTERM or when its parent dies.
"""

from __future__ import annotations

import argparse
import collections
import errno
import fcntl
import os
import random
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65536
#: Packets held at most (a full delay line drops arrivals, like a full queue).
MAX_HELD = 200_000


def open_tun(name: str) -> int:
    """Create the (non-persistent) layer-3 TUN device ``name``; return its non-blocking fd."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def run(fd: int, delay: float, jitter: float, loss: float, seed: int | None) -> None:
    """Forward packets read from ``fd`` back into it after their delay, until SIGTERM."""
    rng = random.Random(seed)
    held: collections.deque[tuple[float, bytes]] = collections.deque()
    last_release = 0.0
    parent = os.getppid()
    clock = time.monotonic
    while True:
        now = clock()
        timeout = 0.5 if not held else min(0.5, max(0.0, held[0][0] - now))
        ready, _, _ = select.select([fd], [], [], timeout)
        if ready:
            now = clock()
            while True:
                try:
                    pkt = os.read(fd, MAX_PACKET)
                except BlockingIOError:
                    break
                if (loss and rng.random() < loss) or len(held) >= MAX_HELD:
                    continue
                jit = rng.uniform(-jitter, jitter) if jitter else 0.0
                last_release = max(last_release, now + delay + jit)
                held.append((last_release, pkt))
        now = clock()
        while held and held[0][0] <= now:
            try:
                os.write(fd, held.popleft()[1])
            except OSError as exc:  # the stack refused one packet: it is lost, as on a wire
                if exc.errno not in (errno.EINVAL, errno.ENOBUFS, errno.EAGAIN):
                    raise
        if not held and os.getppid() != parent:
            return


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ifname", required=True, help="TUN device to create (at most 15 chars)")
    p.add_argument("--delay", type=float, default=0.0, help="seconds")
    p.add_argument("--jitter", type=float, default=0.0, help="seconds, uniform +-")
    p.add_argument("--loss", type=float, default=0.0, help="drop probability per packet")
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    fd = open_tun(args.ifname)
    # Packets re-enter through the TUN device but come from an address routed via the veth:
    # strict reverse-path filtering would drop them (the effective value is the max of both).
    for conf in ("all", args.ifname):
        with open(f"/proc/sys/net/ipv4/conf/{conf}/rp_filter", "w") as f:
            f.write("0")
    print("ready", flush=True)
    run(fd, args.delay, args.jitter, args.loss, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
