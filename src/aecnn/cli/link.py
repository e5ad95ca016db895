"""``aecnn link``: check a shaped device-edge link, or remove leftover namespaces (root only).

``aecnn link check --rate 10Mbps --delay 5ms --jitter 1ms --loss 0.01 --seconds 2`` builds the
link, measures TCP goodput and RTT, prints one line per measurement and exits 0 when the
goodput is within ``--tolerance`` of the configured rate (see
:func:`aecnn.netem.link.check_link`), 1 otherwise. ``aecnn link cleanup`` deletes the
``aecnn-`` namespaces that dead processes left behind.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from aecnn.config import positive_int
from aecnn.runtime.units import UnitError, format_duration, format_rate, parse_duration, parse_rate


def _arg(parse: Callable[[str], float]) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            return parse(text)
        except UnitError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def _fraction(text: str) -> float:
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a fraction: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"loss must be in [0, 1) (or 0-100%), got {text!r}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``link`` command (``check``, ``cleanup``) to ``subparsers``; return its parser."""
    parser = subparsers.add_parser(
        "link", help="shaped device-edge links in network namespaces (needs root)")
    sub = parser.add_subparsers(dest="link_command", metavar="{check,cleanup}", required=True)

    p = sub.add_parser("check", help="build a shaped link and check its measured throughput")
    p.add_argument("--rate", required=True, type=_arg(parse_rate),
                   help="uplink rate, e.g. 10Mbps, 500kbps, 1.5Gbps")
    p.add_argument("--down-rate", type=_arg(parse_rate), help="downlink rate (default unshaped)")
    p.add_argument("--delay", type=_arg(parse_duration), default=0.0,
                   help="added one-way uplink delay, e.g. 5ms")
    p.add_argument("--jitter", type=_arg(parse_duration), default=0.0, help="+- jitter, e.g. 1ms")
    p.add_argument("--loss", type=_fraction, default=0.0, help="uplink loss, 0.01 or 1%%")
    p.add_argument("--mtu", type=int, default=1500,
                   help="link MTU in bytes (tbf shaping needs 1500)")
    p.add_argument("--seconds", type=float, default=2.0, help="length of each measurement")
    p.add_argument("--tolerance", type=float, default=0.10, help="allowed relative error")
    p.add_argument("--attempts", type=positive_int, default=3,
                   help="measurements before a shortfall counts (a busy host can dip once)")
    p.add_argument("--impairment", choices=("auto", "netem", "userspace"), default="auto",
                   help="how delay/jitter/loss are made (auto: netem if the kernel has it)")
    p.add_argument("--seed", type=int, help="seed of the userspace delay line")
    p.add_argument("--json", metavar="PATH", help="also write the measurements as a record")
    p.set_defaults(func=cmd_link_check)

    p = sub.add_parser("cleanup", help="delete leftover aecnn- network namespaces")
    p.add_argument("--all", action="store_true",
                   help="also those of processes still running (stops their links)")
    p.set_defaults(func=cmd_link_cleanup)
    return parser


def _tries(result: dict) -> str:
    """`` (best of N)`` when the goodput was measured more than once, else empty."""
    n = len(result["measurements_bps"])
    return f" (best of {n})" if n > 1 else ""


def cmd_link_check(args: argparse.Namespace) -> int:
    """Build the link, measure it, print one line per measurement; 0 if within tolerance."""
    from aecnn.netem.link import LinkSpec, ShapedLink, check_link

    spec = LinkSpec(rate_bps=args.rate, delay_s=args.delay, jitter_s=args.jitter,
                    loss=args.loss, down_rate_bps=args.down_rate, mtu=args.mtu)
    results = []
    with ShapedLink(spec, impairment=args.impairment, seed=args.seed) as link:
        print(f"link: {spec.describe()} ({link.device_ns} -> {link.edge_ns}, "
              f"impairment: {link.impairment})")
        for direction in ("up", "down") if spec.down_rate_bps else ("up",):
            r = check_link(link, args.tolerance, seconds=args.seconds, direction=direction,
                           raise_on_fail=False, attempts=args.attempts)
            results.append(r)
            print(f"{direction}link throughput: {format_rate(r['measured_bps'])} measured, "
                  f"{format_rate(r['expected_bps'])} expected ({format_rate(r['configured_bps'])}"
                  f" x {r['payload_fraction']:.4f} TCP payload), error {r['error'] * 100:+.2f}%"
                  f"{_tries(r)}"
                  f" -> {'ok' if r['ok'] else 'FAIL'}")
        print(f"rtt: {format_duration(results[0]['rtt_s'])} median "
              f"(configured one-way delay {format_duration(spec.delay_s)})")
    if args.json:
        from dataclasses import asdict

        from aecnn.records import write_record

        write_record(args.json, {"kind": "link_check", "spec": asdict(spec),
                                 "impairment": link.impairment, "checks": results})
    failed = [r["direction"] for r in results if not r["ok"]]
    if failed:
        print(f"aecnn: link check failed: {', '.join(failed)}link throughput is more than "
              f"{args.tolerance * 100:g}% off the configured rate", file=sys.stderr)
        return 1
    return 0


def cmd_link_cleanup(args: argparse.Namespace) -> int:
    """Delete leftover ``aecnn-`` namespaces and print their names."""
    from aecnn.netem.link import cleanup_stale

    removed = cleanup_stale(include_live=args.all)
    for name in removed:
        print(f"removed {name}")
    print(f"{len(removed)} namespace(s) removed")
    return 0
