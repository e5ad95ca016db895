"""The ``aecnn`` command line. Every entry point is ``main(argv=None)``.

Errors a user can cause (wrong path, unknown model, corrupt checkpoint, ...) are printed as
one line, ``aecnn: error: ...``, with exit status 2; never as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from aecnn.errors import AecnnError

DEMO_CONFIG = "configs/demo.yaml"


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=0.05 (repeatable)")
    p.add_argument("--data", help="Caltech-101 root (default: $AECNN_DATA or the shared copy)")
    p.add_argument("--model", help="backbone name (see `aecnn models`)")
    p.add_argument("--weights", help="none | imagenet | PATH")
    p.add_argument("--epochs", type=int)
    p.add_argument("--input-size", type=int)
    p.add_argument("--subset", type=int, help="training images per class (quick runs)")
    p.add_argument("--out", help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--no-progress", action="store_true")


def _train_config(args: argparse.Namespace):
    from aecnn.config import load_config
    from aecnn.training import TrainConfig

    flags = {"data.root": args.data, "model.name": args.model, "model.weights": args.weights,
             "optim.epochs": args.epochs, "data.input_size": args.input_size,
             "data.subset": args.subset, "out": args.out}
    overrides = list(args.overrides) + [f"{k}={v}" for k, v in flags.items() if v is not None]
    return load_config(TrainConfig, args.config, overrides)


def cmd_train_baseline(args: argparse.Namespace) -> int:
    from aecnn.training import train_baseline

    cfg = _train_config(args)
    rec = train_baseline(cfg, resume=args.resume, progress=not args.no_progress)
    print(f"{rec['model']} @ {rec['input_size']}px: test top-1 {rec['test_top1']:.2f}% "
          f"top-5 {rec['test_top5']:.2f}% (n={rec['n_test']}); record: {cfg.out}/result.json")
    return 0


def cmd_train_aecnn(args: argparse.Namespace) -> int:
    from aecnn.config import load_config
    from aecnn.evaluation.table1 import load_stage_records, render_table1
    from aecnn.training.aecnn import AecnnConfig, train_aecnn

    cfg = load_config(AecnnConfig, args.config, args.overrides)
    train_aecnn(cfg, progress=not args.no_progress)
    print(render_table1(load_stage_records(cfg.out)))
    return 0


def cmd_fig4(args: argparse.Namespace) -> int:
    import json

    from aecnn.config import load_config
    from aecnn.evaluation.fig4 import batch_attention, fig4
    from aecnn.training.aecnn import AecnnConfig, Pipeline

    cfg = load_config(AecnnConfig, args.config, args.overrides)
    pipe = Pipeline(cfg, progress=not args.no_progress)
    sp = pipe.spec.split_point(args.point)
    net = pipe.trained_ca(sp.name)
    ds = pipe._split("train")
    weights = batch_attention(net, ds, 3, args.batch_size, args.seed, pipe.opts.device)
    imp_file = Path(cfg.out) / sp.name / "importance.json"
    importance = json.loads(imp_file.read_text())["importance"] if imp_file.exists() else None
    import numpy as np

    rec = fig4(weights, np.asarray(importance if importance else weights.mean(0)), sp.name,
               cfg.ratios, Path(args.out), {"batch_size": args.batch_size, "seed": args.seed,
                                            "run": cfg.out})
    print(f"Fig. 4 at {sp.name}: Spearman {np.mean(rec['spearman']):.3f}, Kendall "
          f"{np.mean(rec['kendall']):.3f} between batches; {args.out}/fig4_{sp.name}.png")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from aecnn.evaluation.report import write_report
    from aecnn.records import command_line

    text = write_report(Path(args.run), [Path(p) for p in args.ablation], Path(args.baseline),
                        Path(args.out), command_line(),
                        Path(args.affine) if args.affine else None)
    print(text)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from aecnn.evaluation import evaluate_checkpoint

    res = evaluate_checkpoint(args.checkpoint, args.split, args.data, not args.no_progress)
    print(f"{res['model']} {res['split']}: top-1 {res['top1']:.2f}% top-5 {res['top5']:.2f}% "
          f"(n={res['n']})")
    if args.json:
        from aecnn.records import write_record

        write_record(args.json, {"kind": "evaluation", **res})
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from aecnn.models import get_spec, list_models

    names = [args.name] if args.name else list_models()
    for name in names:
        spec = get_spec(name)
        print(f"{name}: {len(spec.split_points)} split points")
        if args.name or args.verbose:
            for p in spec.split_points:
                c, h, w = p.shape(args.input_size)
                print(f"  l={p.index:<3d} {p.name:<12s} {c:5d} x {h:3d} x {w:3d}  "
                      f"(stride {p.reduction}, emitted by {p.module})")
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    import torch

    from aecnn.models import create_model, get_spec, split_model

    spec = get_spec(args.model)
    point = spec.split_point(args.point)
    model = create_model(spec.name, args.num_classes).eval()
    head, tail = split_model(model, spec, point)
    with torch.no_grad():
        z = head(torch.zeros(1, 3, args.input_size, args.input_size))
    c, h, w = z.shape[1:]
    print(f"{spec.name} split at {point.name} (paper's l={point.index}), "
          f"{args.input_size}px input:")
    print(f"  split tensor      {c} x {h} x {w} = {c * h * w} values, "
          f"{4 * c * h * w} bytes as float32 (eq. 1)")
    print(f"  emitted by        {point.module}")
    for name, part in (("device head", head), ("server tail", tail)):
        print(f"  {name:<17s} {sum(p.numel() for p in part.parameters()):,} parameters")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from aecnn.data import load_or_make, resolve_root
    from aecnn.data.caltech101 import download

    if args.action == "download":
        print(f"Caltech-101 ready at {download(args.to)}")
        return 0
    if args.action == "pack":
        from aecnn.data.pack import pack

        n, size = pack(resolve_root(args.data), Path(args.to), args.shorter_side, args.format,
                       args.quality, args.tar, progress=not args.no_progress)
        print(f"{n} images, {size / 2**20:.1f} MiB ({args.format} q{args.quality}, shorter "
              f"side {args.shorter_side} px) -> {args.to}")
        return 0
    root = resolve_root(args.data)
    m = load_or_make(args.manifest, root, args.seed)
    print(f"Caltech-101 at {root}: {len(m.classes)} classes; train {len(m.train)}, "
          f"val {len(m.val)}, test {len(m.test)} images (seed {m.seed}, digest {m.digest()}); "
          f"manifest {args.manifest}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from aecnn.cli.demo import run_demo

    run_demo(args.config, args.overrides, progress=not args.no_progress)
    return 0


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


def _optional_parsers(sub: argparse._SubParsersAction) -> None:
    """Sub-commands whose modules live outside the core (link shaping, baselines)."""
    from aecnn.cli.bottlenet import add_parser as add_bottlenet
    from aecnn.cli.link import add_parser as add_link

    add_link(sub)
    add_bottlenet(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aecnn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train-baseline", help="train a backbone on Caltech-101")
    _add_train_args(p)
    p.set_defaults(func=cmd_train_baseline)

    p = sub.add_parser("train-aecnn", help="Algorithm 1: CA, importance, pruning, FR")
    p.add_argument("--config", help="YAML config file (see configs/aecnn/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train_aecnn)

    p = sub.add_parser("fig4", help="Fig. 4: attention of three random batches")
    p.add_argument("--config", help="the train-aecnn config of the run")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--point", default="stem")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/aecnn")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_fig4)

    p = sub.add_parser("report-aecnn", help="collect Algorithm 1 records into results/")
    p.add_argument("run", help="the train-aecnn output folder")
    p.add_argument("--ablation", nargs="*", default=[], help="ablation run folders")
    p.add_argument("--affine", help="run of CA with learnable affine (configs/aecnn/ca_affine)")
    p.add_argument("--baseline", default="results/baseline/resnet50_cpu64.json")
    p.add_argument("--out", default="results/aecnn")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("evaluate", help="top-1/top-5 of a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--data")
    p.add_argument("--json", help="also write the result to this JSON file")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("models", help="list backbones and their split points")
    p.add_argument("name", nargs="?")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("split", help="cut a backbone at a split point and describe the halves")
    p.add_argument("model")
    p.add_argument("point", help="split point name (e.g. stem, layer1.0) or paper index (l1)")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--num-classes", type=int, default=101)
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("data", help="dataset: show the split, download, or pack a compact "
                                    "copy for a remote machine")
    p.add_argument("action", choices=("info", "download", "pack"))
    p.add_argument("--data")
    p.add_argument("--to", default="data", help="download / pack target folder (a tar file "
                                                "with --tar)")
    p.add_argument("--shorter-side", type=int, default=146,
                   help="pack: shorter side in px (146: what 128 px inputs are cropped from)")
    p.add_argument("--format", choices=("webp", "jpeg"), default="webp", help="pack: codec")
    p.add_argument("--quality", type=int, default=85, help="pack: codec quality 1-100")
    p.add_argument("--tar", action="store_true", help="pack: one uncompressed tar file")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--manifest", default="configs/splits/caltech101_seed0.json")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("bench", help="benchmarks that write records under results/")
    p.add_argument("what", choices=("codec", "fuzz", "transport", "prior"))
    p.add_argument("--variant", help="transport: variant file served")
    p.add_argument("--input-size", type=int, help="transport: run the variant at this size")
    p.add_argument("--clients", type=int, default=8, help="transport: concurrent devices")
    p.add_argument("--requests", type=int, default=8,
                   help="transport: requests per device; prior: photos sent over the link")
    p.add_argument("--threads", type=int, help="transport: server torch threads")
    p.add_argument("--checkpoint", help="trained ResNet-50 checkpoint for real features")
    p.add_argument("--images", type=int, default=4)
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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/codec", help="(transport: results/runtime)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_bench)

    from aecnn.cli.runtime import add_parsers as add_runtime

    add_runtime(sub)
    _optional_parsers(sub)

    p = sub.add_parser("demo", help="the main job on the default data (make demo)")
    p.add_argument("--config", default=DEMO_CONFIG)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AecnnError as exc:
        print(f"aecnn: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aecnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
