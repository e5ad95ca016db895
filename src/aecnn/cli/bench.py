"""``aecnn bench codec|fuzz|transport|prior|server|onnx|input``: measurements that write JSON
records (and a Markdown table) into ``--out``."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_codec(args: argparse.Namespace) -> int:
    from aecnn.benchmarks.codec import render_markdown, run_codec_bench

    rec = run_codec_bench(args.checkpoint, Path(args.out), args.images,
                          progress=not args.no_progress)
    print(render_markdown(rec))
    return 0


def cmd_transport(args: argparse.Namespace) -> int:
    from aecnn.benchmarks.transport import run_transport, write_transport
    from aecnn.core.split import load_network
    from aecnn.records import write_record

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rec = write_record(out / "transport.json", run_transport(
        load_network(args.variant, args.input_size), args.clients, args.requests,
        threads=args.threads))
    print(write_transport(rec, out))
    return 0


def cmd_prior(args: argparse.Namespace) -> int:
    from aecnn.benchmarks.prior import DEFAULT_IMAGES, plot, render_markdown, run_prior_bench
    from aecnn.records import write_record
    from aecnn.runtime.units import parse_rate

    out = Path(args.out)
    rec = run_prior_bench(args.stage, args.grid, tuple(args.prior_images or DEFAULT_IMAGES),
                          args.test_images, parse_rate(args.rate), args.requests,
                          link=not args.no_link, progress=not args.no_progress,
                          models=tuple(args.models))
    rec = write_record(out / "prior.json", rec)
    plot(rec, out / "prior.png")
    (out / "prior.md").write_text(render_markdown(rec))
    print(render_markdown(rec))
    return 0


def cmd_fuzz(args: argparse.Namespace) -> int:
    from aecnn.compression.fuzz import run_fuzz
    from aecnn.records import write_record

    rep = run_fuzz(args.cases, args.seed)
    write_record(Path(args.out) / "fuzz.json", {"kind": "wire-fuzz", **rep.__dict__})
    print(f"{rep.cases} mutated packets: {rep.parsed} parsed, {rep.decoded} decoded, "
          f"errors {rep.errors}, slowest {1e3 * rep.max_seconds:.1f} ms, "
          f"{len(rep.escaped)} undocumented exceptions")
    return 1 if rep.escaped else 0


def cmd_server(args: argparse.Namespace) -> int:
    from aecnn.benchmarks.server_load import run

    return run(args)


def cmd_onnx(args: argparse.Namespace) -> int:
    from aecnn.benchmarks.onnx_head import run

    return run(args)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="measurements that write JSON records and tables",
                           description=__doc__)
    kinds = bench.add_subparsers(dest="what", required=True, metavar="BENCHMARK")

    p = kinds.add_parser("codec", help="every coder against general-purpose compressors on "
                                       "real split tensors")
    p.add_argument("--checkpoint", help="trained checkpoint whose stem features are coded "
                                        "(default: a randomly initialised ResNet-50)")
    p.add_argument("--images", type=int, default=4,
                   help="test images whose split tensors are coded")
    p.add_argument("--out", default="results/codec", help="folder for codec.json and codec.md")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_codec)

    p = kinds.add_parser("fuzz", help="mutation-fuzz the packet parser and payload decoders")
    p.add_argument("--cases", type=int, default=100_000, help="mutated packets")
    p.add_argument("--seed", type=int, default=0, help="seed of the mutations")
    p.add_argument("--out", default="results/codec", help="folder for fuzz.json")
    p.set_defaults(func=cmd_fuzz)

    p = kinds.add_parser("transport", help="the server's transport overhead and dynamic "
                                           "batching, on loopback")
    p.add_argument("--variant", required=True, help="variant file served (aecnn export)")
    p.add_argument("--input-size", type=int, help="run the variant at this input side")
    p.add_argument("--clients", type=int, default=8, help="concurrent devices")
    p.add_argument("--requests", type=int, default=8, help="requests per device")
    p.add_argument("--threads", type=int, help="server torch threads (default: torch's)")
    p.add_argument("--out", default="results/runtime", help="folder for transport.json")
    p.set_defaults(func=cmd_transport)

    p = kinds.add_parser("prior", help="what a context prior buys one trained network, "
                                       "offline and over a shaped link")
    p.add_argument("--stage", required=True, help="stage folder whose network is measured")
    p.add_argument("--grid", default="uint2@p90", help="integer grid of the split tensor")
    p.add_argument("--prior-images", type=int, nargs="+",
                   help="training images per fitted prior (default 1 3 10 ... 3000)")
    p.add_argument("--test-images", type=int, default=600, help="test tensors coded")
    p.add_argument("--rate", default="1Mbps", help="shaped uplink rate")
    p.add_argument("--requests", type=int, default=8, help="photos sent over the link")
    p.add_argument("--no-link", action="store_true", help="skip the shaped-link part (root)")
    p.add_argument("--models", nargs="+", choices=("lattice", "raster"),
                   default=["lattice", "raster"],
                   help="context models to fit (the link part uses the last)")
    p.add_argument("--out", default="results/codec", help="folder for prior.json, .md, .png")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_prior)

    from aecnn.benchmarks.server_load import add_arguments

    p = kinds.add_parser("server", help="the edge server with 64 devices, with and without "
                                        "TLS, and under each attack (loopback)")
    add_arguments(p)
    p.set_defaults(func=cmd_server)

    from aecnn.benchmarks.onnx_head import add_arguments as onnx_arguments

    p = kinds.add_parser("onnx", help="device head time at 224 px on one thread, PyTorch "
                                      "against ONNX Runtime (needs the onnx extra)")
    onnx_arguments(p)
    p.set_defaults(func=cmd_onnx)

    from aecnn.benchmarks.input_codec import add_arguments as input_arguments
    from aecnn.benchmarks.input_codec import run as run_input

    p = kinds.add_parser("input", help="the photo sent as JPEG and WebP at several qualities "
                                       "(full offloading): the uncut network's accuracy "
                                       "against bytes per image")
    input_arguments(p)
    p.set_defaults(func=run_input)
