"""``aecnn bench``: measurements that write JSON records (codec, wire fuzzing, transport,
context priors)."""

from __future__ import annotations

import argparse
from pathlib import Path

from aecnn.errors import AecnnError


def cmd_bench(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.what == "codec":
        from aecnn.benchmarks.codec import render_markdown, run_codec_bench

        rec = run_codec_bench(args.checkpoint, out, args.images, progress=not args.no_progress)
        print(render_markdown(rec))
    elif args.what == "transport":
        from aecnn.benchmarks.transport import run_transport, write_transport
        from aecnn.core.split import load_network
        from aecnn.records import write_record

        if not args.variant:
            raise AecnnError("bench transport needs --variant FILE (aecnn export)")
        out = Path(args.out if args.out != "results/codec" else "results/runtime")
        out.mkdir(parents=True, exist_ok=True)
        rec = write_record(out / "transport.json", run_transport(
            load_network(args.variant, args.input_size), args.clients, args.requests,
            threads=args.threads))
        print(write_transport(rec, out))
    elif args.what == "prior":
        from aecnn.benchmarks.prior import DEFAULT_IMAGES, plot, render_markdown, run_prior_bench
        from aecnn.records import write_record
        from aecnn.runtime.units import parse_rate

        if not args.stage:
            raise AecnnError("bench prior needs --stage (a trained stage folder)")
        rec = run_prior_bench(args.stage, args.grid,
                              tuple(args.prior_images or DEFAULT_IMAGES), args.test_images,
                              parse_rate(args.rate), args.requests,
                              link=not args.no_link, progress=not args.no_progress,
                              models=tuple(args.models))
        rec = write_record(out / "prior.json", rec)
        plot(rec, out / "prior.png")
        (out / "prior.md").write_text(render_markdown(rec))
        print(render_markdown(rec))
    else:
        from aecnn.compression.fuzz import run_fuzz
        from aecnn.records import write_record

        rep = run_fuzz(args.cases, args.seed)
        write_record(out / "fuzz.json", {"kind": "wire-fuzz", **rep.__dict__})
        print(f"{rep.cases} mutated packets: {rep.parsed} parsed, {rep.decoded} decoded, "
              f"errors {rep.errors}, slowest {1e3 * rep.max_seconds:.1f} ms, "
              f"{len(rep.escaped)} undocumented exceptions")
        return 1 if rep.escaped else 0
    return 0



def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks that write records under results/")
    p.add_argument("what", choices=("codec", "fuzz", "transport", "prior"),
                   help="codec: coders on real split tensors; fuzz: mutated packets; transport: "
                        "requests/s of a server; prior: context priors")
    p.add_argument("--variant", help="transport: variant file served")
    p.add_argument("--input-size", type=int, help="transport: run the variant at this size")
    p.add_argument("--clients", type=int, default=8, help="transport: concurrent devices")
    p.add_argument("--requests", type=int, default=8,
                   help="transport: requests per device; prior: photos sent over the link")
    p.add_argument("--threads", type=int, help="transport: server torch threads")
    p.add_argument("--checkpoint", help="trained ResNet-50 checkpoint for real features")
    p.add_argument("--images", type=int, default=4,
                   help="codec: test images whose split tensors are coded")
    p.add_argument("--cases", type=int, default=100_000, help="fuzz: mutated packets")
    p.add_argument("--stage", help="prior: stage folder whose network is measured")
    p.add_argument("--grid", default="uint2@p90", help="prior: integer grid")
    p.add_argument("--prior-images", type=int, nargs="+", help="prior: training images per "
                   "fitted prior (default 1 3 10 ... 3000)")
    p.add_argument("--test-images", type=int, default=600, help="prior: test tensors coded")
    p.add_argument("--rate", default="1Mbps", help="prior: shaped uplink rate")
    p.add_argument("--no-link", action="store_true", help="prior: skip the shaped-link part")
    p.add_argument("--models", nargs="+", choices=("lattice", "raster"),
                   default=["lattice", "raster"],
                   help="prior: context models to fit (the link part uses the last)")
    p.add_argument("--seed", type=int, default=0, help="fuzz: seed of the mutations")
    p.add_argument("--out", default="results/codec", help="(transport: results/runtime)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_bench)

