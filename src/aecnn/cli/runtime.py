"""Command-line entry points of the runtime: export, serve, infer, profile, plan."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from aecnn.config import positive_int
from aecnn.data.collect import collect_images
from aecnn.errors import AecnnError

TIMES = ("t_pre", "t_iot", "t_enc", "t_com", "t_dec", "t_fr", "t_es", "total")


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise AecnnError(f"server address {text!r} is not HOST:PORT")
    return host or "127.0.0.1", int(port)


def cmd_export(args: argparse.Namespace) -> int:
    if args.out_dir:
        return _export_run(args)
    if args.kinds:
        raise AecnnError("--kinds is for --out-dir (a whole run folder)")
    if not args.out and not args.onnx:
        raise AecnnError("give --out FILE (variant file), --onnx FILE (device head), --out-dir "
                         "DIR (every stage of a run folder), or --out and --onnx")
    if args.out:
        from aecnn.training.export import export_from

        var = export_from(args.source, args.out, args.point, args.name, args.best,
                          tuple(args.prior or ()), args.prior_images, args.baseline,
                          progress=not args.no_progress, prior_model=args.prior_model)
        _describe(var, args.out)
    else:
        from aecnn.core.split import load_network

        if args.prior or args.point or args.name or args.best:
            raise AecnnError("--onnx without --out reads a variant file: --prior, --point, "
                             "--name and --best need --out")
        var = load_network(args.source)
    if args.onnx:
        from aecnn.runtime.onnx_export import export_onnx

        path = export_onnx(var, args.onnx, args.quant, args.input_size)
        size = args.input_size or var.meta.input_size
        prior = " and its context prior" if var.prior(args.quant) is not None else ""
        print(f"{var.meta.name}: device head at {size} px with the {args.quant} quantiser"
              f"{prior} -> {path} ({path.stat().st_size / 1e6:.1f} MB, ONNX)")
    return 0


def _export_run(args: argparse.Namespace) -> int:
    from aecnn.training.export import RUN_KINDS, export_run

    if args.out or args.onnx or args.point or args.name or args.best:
        raise AecnnError("--out-dir exports a whole run folder: --out, --onnx, --point, "
                         "--name and --best are for one stage")
    written = export_run(args.source, args.out_dir, tuple(args.kinds or RUN_KINDS),
                         tuple(args.prior or ()), args.prior_images, args.baseline,
                         progress=not args.no_progress, prior_model=args.prior_model)
    for path, var in written:
        _describe(var, str(path))
    print(f"{len(written)} variant files -> {args.out_dir}")
    return 0


def _describe(var, out: str) -> None:
    meta = var.meta
    acc = f", test top-1 {meta.test_top1:.2f} %" if meta.test_top1 is not None else ""
    kept = len(meta.kept) if meta.kept else meta.channels // meta.ratio
    shape = f" ({meta.fr_shape})" if meta.fr_shape else ""
    half = ", at half height and width" if meta.spatial else ""
    qat = f", fine-tuned through {meta.quant}" if meta.quant else ""
    print(f"{meta.name}: {meta.model_name} cut at {meta.point}, bridge {meta.bridge}{shape}, "
          f"V={meta.ratio} ({kept}/{meta.channels} channels{half}){qat}{acc} -> {out}")
    for grid, prior in var.priors.items():
        print(f"  context prior for {grid}: {prior.fingerprint_hex} ({prior.model} model, "
              f"{prior.levels} levels, fitted on {prior.images} training tensors; "
              "wire coder 5)")


def _load_variants(paths: list[str], input_size: int | None) -> dict:
    from aecnn.core.split import load_network

    out = {}
    for p in paths:
        v = load_network(p, input_size)
        if v.meta.name in out:
            raise AecnnError(f"two variants are named {v.meta.name!r}")
        out[v.meta.name] = v
    return out


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from aecnn.runtime.server import ServerConfig, serve, server_device

    server_device(args.device)  # a GPU that is not there fails before anything loads
    logger = logging.getLogger("aecnn.serve")  # one timestamped line per event
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(args.log_level.upper())
    variants = _load_variants(args.variants, args.input_size)
    tls = None
    if args.tls_cert:
        from aecnn.runtime.tls import server_context

        tls = server_context(args.tls_cert, args.tls_key, args.tls_client_ca)
    elif args.tls_key or args.tls_client_ca:
        raise AecnnError("--tls-key and --tls-client-ca need --tls-cert")
    cfg = ServerConfig(host=args.host, port=args.port, max_connections=args.max_connections,
                       max_per_peer=args.max_per_peer,
                       first_byte_timeout=args.first_byte_timeout,
                       request_timeout=args.timeout, idle_timeout=args.idle_timeout,
                       buffer_budget=args.buffer_budget * 2**20,
                       max_frame=args.max_frame * 2**20, batch_window=args.batch_window,
                       max_batch=args.max_batch, threads=args.threads,
                       decode_workers=args.decode_workers, decode_queue=args.decode_queue,
                       max_pixels=args.max_pixels, tls=tls, metrics_port=args.metrics_port,
                       metrics_host=args.metrics_host, device=args.device)
    try:
        asyncio.run(serve(variants, cfg))
    except OSError as exc:  # the address is taken, or not this machine's
        raise AecnnError(f"cannot listen on {args.host}:{args.port}: "
                         f"{exc.strerror or exc}") from None
    return 0


def _rate(text: str) -> float:
    """``--rate`` in bits per second; the unit is required (``2`` alone is refused, not read
    as 2 bit/s)."""
    from aecnn.runtime.units import parse_rate

    if text.strip().replace(".", "", 1).replace("e", "", 1).isdigit():
        raise AecnnError(f"rate {text!r} needs a unit, e.g. {text}Mbps or {text}kbps")
    return parse_rate(text)


def _duration(text: str) -> float:
    """``--deadline`` in seconds; the unit is required (``100`` alone is refused)."""
    from aecnn.runtime.units import parse_duration

    if text.strip().replace(".", "", 1).isdigit():
        raise AecnnError(f"duration {text!r} needs a unit, e.g. {text}ms or {text}s")
    return parse_duration(text)


def _connection(args: argparse.Namespace):
    from aecnn.runtime.client import Connection

    tls = None
    if args.tls or args.tls_ca or args.tls_cert:
        from aecnn.runtime.tls import client_context

        tls = client_context(args.tls_ca, args.tls_cert, args.tls_key)
    return Connection(*parse_address(args.server), timeout=args.timeout, tls=tls,
                      server_hostname=args.tls_server_name,
                      connect_wait=args.connect_wait).connect()


def summarize(results: list[dict]) -> dict:
    """Medians of every time over the requests (seconds)."""
    return {k: statistics.median(r[k] for r in results) for k in (*TIMES, "bytes_up")}


def _onnx_runner(args: argparse.Namespace):
    """``--engine onnxruntime``: the device head from the ONNX file, no torch on this path."""
    from aecnn.compression.quantize import QuantSpec
    from aecnn.runtime.onnx_head import OnnxCoInference, OnnxHead

    if args.mode != "co" or args.adaptive:
        raise AecnnError("--engine onnxruntime runs co-inference only (--mode co, no "
                         "--adaptive)")
    if not args.variant or not args.server:
        raise AecnnError("--engine onnxruntime needs --variant HEAD.onnx (aecnn export "
                         "--onnx) and --server HOST:PORT")
    if args.input_size:
        raise AecnnError("an ONNX head runs at the input size it was exported at (aecnn "
                         "export --onnx --input-size)")
    head = OnnxHead(args.variant, args.threads)
    if args.quant and QuantSpec.parse(args.quant) != head.quant:
        raise AecnnError(f"{args.variant} quantises to {head.quant} (its graph), not "
                         f"{args.quant}; export it again with --quant {args.quant}")
    conn = _connection(args)
    return OnnxCoInference(head, head.codec(args.coder, _rate(args.rate)), conn), conn


def cmd_infer(args: argparse.Namespace) -> int:
    if args.cpu_quota:
        from aecnn.runtime.weak import limit_cpu

        limit_cpu(args.cpu_quota)
    images = collect_images(args.images, args.test, args.data)
    if args.engine == "onnxruntime":
        runner, conn = _onnx_runner(args)
    else:
        runner, conn = _torch_runner(args)
    return _run(args, runner, conn, images)


def _torch_runner(args: argparse.Namespace):
    import torch

    from aecnn.core.split import load_network
    from aecnn.runtime.client import CoInference, FullOffloading, LocalComputing

    torch.set_num_threads(args.threads)
    quant = args.quant or "float32"
    conn = None
    if args.jpeg is not None and args.mode != "full":
        raise AecnnError("--jpeg is for --mode full (the device's crop sent as JPEG)")
    if args.mode == "full":
        if not args.server or not args.variant_name:
            raise AecnnError("--mode full needs --server and --variant-name (served name)")
        if args.jpeg is not None and not 1 <= args.jpeg <= 100:
            raise AecnnError(f"--jpeg must be a quality in 1..100, not {args.jpeg}")
        conn = _connection(args)
        runner = FullOffloading(args.variant_name, conn, args.jpeg, args.input_size)
    else:
        if not args.variant:
            raise AecnnError(f"--mode {args.mode} needs --variant FILE")
        var = load_network(args.variant, args.input_size)
        if args.adaptive:
            from aecnn.runtime.client import AdaptiveCoInference
            from aecnn.runtime.latency import LatencyProfile
            from aecnn.runtime.planner import AdaptivePolicy

            if not args.profile or not args.server:
                raise AecnnError("--adaptive needs --profile and --server")
            variants = _load_variants([args.variant, *args.adaptive], args.input_size)
            policy = AdaptivePolicy(LatencyProfile.load(args.profile),
                                    _duration(args.deadline), _rate(args.rate))
            conn = _connection(args)
            runner = AdaptiveCoInference(variants, policy, conn, quant)
        elif args.mode == "local":
            runner = LocalComputing(var)
        else:
            if not args.server:
                raise AecnnError("--mode co needs --server HOST:PORT")
            conn = _connection(args)
            codec = var.codec(quant, args.coder, _rate(args.rate))
            runner = CoInference(var, codec, conn)
    return runner, conn


def _run(args: argparse.Namespace, runner, conn, images: list[Path]) -> int:
    results = []
    try:
        for _ in range(args.warmup):
            _infer(runner, images[0])
        for img in images * args.repeat:
            r = _infer(runner, img).to_dict()
            r["image"] = str(img)
            results.append(r)
            if not args.quiet:
                print(f"{Path(img).name}: [{r['variant']}] {r['label']} ({r['score']:.2f}) "
                      f"{r['bytes_up']} B up, " + " ".join(
                          f"{k}={r[k] * 1e3:.1f}" for k in TIMES) + " ms")
    finally:
        if conn is not None:
            conn.close()
    med = summarize(results)
    print(f"{runner.mode}: {len(results)} requests, median total {med['total'] * 1e3:.1f} ms, "
          f"median {med['bytes_up']:.0f} B up")
    if args.json:
        from aecnn.records import write_record

        write_record(args.json, {"kind": "inference", "mode": runner.mode,
                                 "engine": args.engine, "threads": args.threads,
                                 "cpu_quota": args.cpu_quota,
                                 "median": med, "requests": results})
    return 0


def _infer(runner, image: Path):
    """``runner.infer(image)``; a photo that cannot be read is an error naming its file."""
    from aecnn.errors import ImageReadError

    try:
        return runner.infer(image)
    except ImageReadError as exc:
        raise ImageReadError(f"{image}: {exc}") from None


def given_accuracy(pairs: list[str], input_record: str | None, qualities: list[int]
                   ) -> dict[str, tuple[float, str]]:
    """``--accuracy KEY=PCT`` and the JPEG rows of ``--input-record`` (an ``aecnn bench
    input`` record) as key -> (top-1 %, where it comes from)."""
    from aecnn.runtime.candidates import jpeg_key

    out = {}
    if input_record:
        from aecnn.evaluation.input_compression import jpeg_accuracy

        for q in qualities:
            out[jpeg_key(q)] = jpeg_accuracy(input_record, q)
    for text in pairs:
        key, sep, value = text.rpartition("=")
        try:
            out[key] = (float(value), "given: --accuracy on the command line")
        except ValueError:
            sep = ""
        if not sep or not key:
            raise AecnnError(f"--accuracy {text!r} is not KEY=PERCENT (e.g. full-jpeg-q90=91.5)")
    return out


def cmd_profile(args: argparse.Namespace) -> int:
    from aecnn.core.split import load_network
    from aecnn.runtime.profile import PHOTO_SIZES, profile_all

    variants = _load_variants(args.variants, args.input_size)
    files = {n: p for n, p in zip(variants, args.variants, strict=True)}
    full = load_network(args.full, args.input_size) if args.full else None
    if full is not None:
        files.setdefault(full.meta.name, args.full)
    jpeg = list(dict.fromkeys(args.jpeg)) if full is not None else []
    for q in jpeg:
        if not 1 <= q <= 100:
            raise AecnnError(f"--jpeg qualities are 1..100, not {q}")
    given = given_accuracy(args.accuracy, args.input_record, jpeg)  # options before data
    images = [p.read_bytes() for p in collect_images(args.images, args.test, args.data)]
    photos = None
    if args.accuracy_images:
        from aecnn.data.collect import labelled_test_images

        photos = [(p.read_bytes(), label)
                  for p, label in labelled_test_images(args.accuracy_images, args.data)]
    quant = args.quant[0]
    prof = profile_all(variants, images, full, tuple(args.coders), quant, args.threads,
                       args.server_threads, args.repeats, PHOTO_SIZES if full else None,
                       args.rtt / 1e3, not args.no_progress, grids=args.quant,
                       local=full is not None, jpeg=jpeg, files=files,
                       accuracy_photos=photos, accuracy=given)
    prof.save(args.out)
    for name, v in prof.variants.items():
        acc = f"{v.accuracy:.2f} %" if v.accuracy is not None else "-"
        print(f"{name} [{v.mode}, {prof.grid(name)}]: t_iot {v.t_iot * 1e3:.1f} ms, "
              f"t_es {v.t_es * 1e3:.1f} ms, " + ", ".join(
                  f"{c} {cc.bytes:.0f} B" for c, cc in v.coders.items())
              + f"; accuracy {acc} ({v.accuracy_source.split(':')[0] or 'none'})")
    print(f"profile -> {args.out}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from aecnn.runtime.latency import LatencyProfile
    from aecnn.runtime.planner import fastest, plan, render_plan

    rate, deadline = _rate(args.rate), _duration(args.deadline)
    prof = LatencyProfile.load(args.profile)
    rows, choice = plan(prof, rate, deadline)
    print(render_plan(rows, choice, rate, deadline))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"rate_bps": rate, "deadline_s": deadline, "rows": [r.__dict__ for r in rows],
             "choice": choice.variant if choice else None,
             "fastest": fastest(rows).variant if rows else None}, indent=1))
    return 0 if choice else 1


def cmd_fig5(args: argparse.Namespace) -> int:
    from aecnn.evaluation.fig5 import plot_fig5, render_fig5
    from aecnn.records import command_line, write_record

    if args.replot:
        rec = json.loads(Path(args.replot).read_text())
        out = Path(args.replot).parent
    else:
        from aecnn.config import load_config
        from aecnn.evaluation.fig5_run import Fig5Config, run_fig5

        cfg = load_config(Fig5Config, args.config, args.overrides)
        out = Path(cfg.out)
        rec = write_record(out / "fig5.json", run_fig5(cfg, not args.no_progress))
    text = render_fig5(rec, rec.get("command", command_line()))
    (out / "fig5.md").write_text(text)
    plot_fig5(rec, out)
    print(text)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a deployable variant file from a stage folder "
                                      "or a baseline checkpoint")
    p.add_argument("source", help="stage folder (pruned-xV, aecnn-xV, bottlenet-xV, "
                                  "entropic-xV), baseline best.pt, a variant file (--onnx "
                                  "alone), or with --out-dir a run folder")
    p.add_argument("--out", help="variant file to write (.pt)")
    p.add_argument("--out-dir", metavar="DIR",
                   help="SOURCE is a run folder (train-aecnn, train-bottlenet or "
                        "train-entropic's out): write every finished deployable stage of it, "
                        "and the uncut baseline at each split point, as DIR/<variant name>.pt "
                        "(--prior: fitted for the QAT variants of that grid)")
    p.add_argument("--kinds", nargs="+", metavar="KIND",
                   help="with --out-dir: which stages (aecnn, qat, bottlenet, entropic, uncut, "
                        "pruned); default all but pruned")
    p.add_argument("--point", help="split point, for a baseline checkpoint")
    p.add_argument("--name", help="variant name (default: model-point-bridge-xV)")
    p.add_argument("--best", action="store_true",
                   help="for aecnn-xV: the FR shape with the best validation accuracy")
    p.add_argument("--prior", action="append", metavar="GRID",
                   help="fit a context prior (wire coder 5) for this integer grid, e.g. "
                        "uint2@p90, on training images and store it in the file (repeatable)")
    p.add_argument("--prior-images", type=int, default=1000, metavar="N",
                   help="training images each prior is fitted on")
    p.add_argument("--prior-model", choices=("lattice", "raster"), default="lattice",
                   help="the priors' context model: lattice (coder 4's contexts, shared by "
                        "all channels) or raster (per-channel tables over the left, upper, "
                        "upper-right and previous-channel neighbours; fewer bytes on small "
                        "codes); default lattice")
    p.add_argument("--baseline", help="baseline best.pt whose training split fits the priors "
                                      "(default: the one the stage was trained from)")
    p.add_argument("--onnx", metavar="FILE",
                   help="also write the device side (head, kept channels or encoder, and the "
                        "--quant quantiser up to integer symbols) as ONNX, for aecnn infer "
                        "--engine onnxruntime; without --out, SOURCE is a variant file")
    p.add_argument("--quant", default="uint8",
                   help="the grid the ONNX head quantises to (see aecnn infer --quant; a "
                        "float grid: the head's features only)")
    p.add_argument("--input-size", type=positive_int,
                   help="the ONNX head's input side (default: the variant's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", help="run the edge server")
    p.add_argument("variants", nargs="+", help="variant files (aecnn export)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=7070, help="TCP port to listen on")
    p.add_argument("--input-size", type=positive_int, help="run at another input size than trained")
    p.add_argument("--threads", type=positive_int,
                   help="torch threads on the server (default: torch's, all cores)")
    p.add_argument("--device", default="auto",
                   help="where the networks run: auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--batch-window", type=float, default=0.0,
                   help="seconds to wait for more requests to batch (0: batch what queued)")
    p.add_argument("--max-batch", type=int, default=16, help="most requests run as one batch")
    p.add_argument("--max-connections", type=int, default=64,
                   help="connection slots; when all are taken the quietest idle connection "
                        "is evicted for a newcomer")
    p.add_argument("--max-per-peer", type=int, default=16,
                   help="connections one address may hold, 0: no cap")
    p.add_argument("--first-byte-timeout", type=float, default=5.0,
                   help="seconds a new connection (or TLS handshake) may stay silent")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="per-request seconds, from a frame's first byte to its reply")
    p.add_argument("--idle-timeout", type=float, default=600.0,
                   help="seconds a connection may stay silent between requests")
    p.add_argument("--max-frame", type=int, default=32, metavar="MIB",
                   help="largest request frame body, MiB")
    p.add_argument("--buffer-budget", type=int, default=128, metavar="MIB",
                   help="request bytes held in memory across all connections, MiB; beyond "
                        "it the largest partial frame is cut")
    p.add_argument("--decode-workers", type=int, default=1,
                   help="threads that decode photos (IMAGE requests)")
    p.add_argument("--decode-queue", type=int, default=4,
                   help="photos admitted for decoding at once; more get an error")
    p.add_argument("--max-pixels", type=int, default=50_000_000,
                   help="largest photo, in pixels, read from its header before decoding")
    p.add_argument("--tls-cert", help="PEM certificate chain: serve TLS (1.2+)")
    p.add_argument("--tls-key", help="PEM private key (if not in --tls-cert)")
    p.add_argument("--tls-client-ca", help="PEM CA: mutual TLS, admit only clients with a "
                                           "certificate it signed")
    p.add_argument("--metrics-port", type=int,
                   help="serve Prometheus metrics on this port (needs prometheus-client)")
    p.add_argument("--metrics-host", default="127.0.0.1", help="address of the metrics port")
    p.add_argument("--log-level", default="info",
                   choices=("debug", "info", "warning", "error"),
                   help="aecnn.serve log level; every rejection is one warning line")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("infer", help="device client: co-inference, local or full offload")
    p.add_argument("images", nargs="*", help="image files or folders")
    p.add_argument("--test", type=positive_int, help="also the first N Caltech-101 test images")
    p.add_argument("--data", help="Caltech-101 root for --test")
    p.add_argument("--mode", choices=("co", "local", "full"), default="co",
                   help="co: co-inference with the server; local: the whole network on the "
                        "device; full: send the photo")
    p.add_argument("--variant", help="variant file (co, local); with --engine onnxruntime "
                                     "the ONNX head (aecnn export --onnx)")
    p.add_argument("--engine", choices=("torch", "onnxruntime"), default="torch",
                   help="what runs the device head: torch, or ONNX Runtime from the ONNX "
                        "file alone (co-inference; needs the onnx extra)")
    p.add_argument("--variant-name", help="served variant that runs whole images (full)")
    p.add_argument("--jpeg", type=int, metavar="QUALITY",
                   help="--mode full: send the device's S x S crop (the pixels the network "
                        "sees) as JPEG at this quality instead of the photo as it is")
    p.add_argument("--server", help="HOST:PORT of aecnn serve (co and full modes)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds to wait for the connection and for each reply")
    p.add_argument("--connect-wait", type=float, default=10.0,
                   help="seconds to keep retrying while the server refuses connections "
                        "(it may still be starting)")
    p.add_argument("--tls", action="store_true", help="speak TLS, checking the server "
                                                     "against the system's CAs")
    p.add_argument("--tls-ca", help="PEM CA that signed the server's certificate (implies "
                                    "--tls)")
    p.add_argument("--tls-cert", help="PEM client certificate for mutual TLS (implies --tls)")
    p.add_argument("--tls-key", help="PEM private key (if not in --tls-cert)")
    p.add_argument("--tls-server-name", help="name to check the server's certificate "
                                             "against (default: the host of --server)")
    p.add_argument("--input-size", type=positive_int,
                   help="run the variant at this input side instead of its trained one")
    p.add_argument("--quant",
                   help="float32 | float16 | uintN[c][@pNN] (c: per channel; @pNN: the "
                        "grid's top level at the NN-th percentile, larger values saturate); "
                        "default float32, with --engine onnxruntime the ONNX head's grid")
    p.add_argument("--coder", default="auto",
                   help="none | zstd | memoryless | per-channel | context | prior (the variant's "
                        "context prior for --quant, from aecnn export --prior) | auto")
    p.add_argument("--rate", default="10Mbps", help="uplink rate that --coder auto assumes")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="device threads of torch or ONNX Runtime (1: weak)")
    p.add_argument("--cpu-quota", type=float, help="also cap the device at this many CPUs "
                                                   "(cgroup v2, needs root)")
    p.add_argument("--adaptive", nargs="+", metavar="VARIANT",
                   help="more variant files: pick one per request by the planner, with the "
                        "uplink rate estimated online (needs --profile)")
    p.add_argument("--profile", help="latency profile for --adaptive")
    p.add_argument("--deadline", default="100ms", help="deadline for --adaptive")
    p.add_argument("--repeat", type=positive_int, default=1, help="times each image is sent")
    p.add_argument("--warmup", type=int, default=1, help="untimed requests before the timed ones")
    p.add_argument("--json", help="write every request's breakdown here")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("profile", help="measure the latency model's times on real images")
    p.add_argument("variants", nargs="+", help="variant files")
    p.add_argument("--full", help="uncompressed variant (local computing, full offloading)")
    p.add_argument("--images", nargs="*", default=[],
                   help="image files or folders to time on (besides --test)")
    p.add_argument("--test", type=positive_int, default=8, help="first N Caltech-101 test images")
    p.add_argument("--data", help="Caltech-101 root for --test")
    p.add_argument("--input-size", type=positive_int,
                   help="run the variants at this input side instead of their trained one")
    p.add_argument("--coders", nargs="+", default=["none", "memoryless", "per-channel"],
                   help="entropy coders to time (plus 'prior' wherever a variant file holds "
                        "a context prior for the grid; a learned bottleneck: its own, "
                        "'factorized')")
    p.add_argument("--quant", nargs="+", default=["float32"], metavar="GRID",
                   help="quantisation grids of the split tensor (see aecnn infer --quant) "
                        "that float variants are profiled on, each a candidate; a QAT "
                        "variant is profiled on its own grid, a learned bottleneck on its own")
    p.add_argument("--jpeg", nargs="*", type=int, default=[50, 75, 90], metavar="QUALITY",
                   help="with --full: candidates that send the device's S x S crop as JPEG "
                        "at these qualities (full offloading)")
    p.add_argument("--accuracy-images", type=int, default=0, metavar="N",
                   help="measure every candidate's top-1 on N test photos spread over the "
                        "test split, through its own codec (default: the accuracies the "
                        "variant files record)")
    p.add_argument("--accuracy", action="append", default=[], metavar="KEY=PERCENT",
                   help="give a candidate's accuracy (repeatable), e.g. full-jpeg-q90=91.5")
    p.add_argument("--input-record", metavar="JSON",
                   help="an aecnn bench input record: the JPEG candidates' accuracy, from "
                        "its rows of the same qualities")
    p.add_argument("--threads", type=positive_int, default=1, help="device threads")
    p.add_argument("--server-threads", type=int,
                   help="torch threads of the server side (default: torch's)")
    p.add_argument("--repeats", type=int, default=3, help="timed repetitions per image")
    p.add_argument("--rtt", type=float, default=0.0, help="link round trip (ms) to add")
    p.add_argument("--out", default="runs/profile.json", help="latency profile to write (JSON)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("plan", help="pick the most accurate variant that meets a deadline")
    p.add_argument("--profile", required=True, help="latency profile (aecnn profile)")
    p.add_argument("--rate", required=True, help="uplink rate, e.g. 10Mbps")
    p.add_argument("--deadline", default="100ms", help="end-to-end deadline per image, e.g. 100ms")
    p.add_argument("--json", help="also write the plan to this JSON file")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("fig5", help="Fig. 5 measured over shaped links (needs root)")
    p.add_argument("--config", help="YAML (see configs/runtime/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value (repeatable)")
    p.add_argument("--replot", help="only redraw tables and figures from this fig5.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_fig5)
