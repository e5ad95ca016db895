"""``aecnn train-baseline``, ``train-aecnn``, ``fig4``, ``report-aecnn``, ``evaluate``."""

from __future__ import annotations

import argparse
from pathlib import Path

from aecnn.cli.common import add_config_args


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=0.05 (repeatable)")
    p.add_argument("--data", help="Caltech-101 root (default: $AECNN_DATA or the shared copy)")
    p.add_argument("--model", help="backbone name (see `aecnn models`)")
    p.add_argument("--weights", help="none | imagenet | PATH")
    p.add_argument("--epochs", type=int, help="training epochs (overrides optim.epochs)")
    p.add_argument("--input-size", type=int,
                   help="square input side in px (overrides data.input_size)")
    p.add_argument("--subset", type=int, help="training images per class (quick runs)")
    p.add_argument("--out", help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _train_config(args: argparse.Namespace):
    from aecnn.config import load_config
    from aecnn.training import TrainConfig

    flags = {"data.root": args.data, "model.name": args.model, "model.weights": args.weights,
             "optim.epochs": args.epochs, "data.input_size": args.input_size,
             "data.subset": args.subset, "out": args.out}
    overrides = list(args.overrides) + [f"{k}={v}" for k, v in flags.items() if v is not None]
    return load_config(TrainConfig, args.config, overrides)


def cmd_train_baseline(args: argparse.Namespace) -> int:
    from aecnn.training import distributed, train_baseline

    cfg = _train_config(args)
    rec = train_baseline(cfg, resume=args.resume, progress=not args.no_progress)
    if not distributed.is_main():  # under torchrun rank 0 reports
        return 0
    print(f"{rec['model']} @ {rec['input_size']}px: test top-1 {rec['test_top1']:.2f}% "
          f"top-5 {rec['test_top5']:.2f}% (n={rec['n_test']}); record: {cfg.out}/result.json")
    return 0


def cmd_train_aecnn(args: argparse.Namespace) -> int:
    from aecnn.config import load_config
    from aecnn.evaluation.table1 import load_stage_records, render_table1
    from aecnn.training import distributed
    from aecnn.training.aecnn import AecnnConfig, train_aecnn

    cfg = load_config(AecnnConfig, args.config, args.overrides)
    train_aecnn(cfg, progress=not args.no_progress)
    if distributed.is_main():  # under torchrun rank 0 reports
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



def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-baseline", help="train a backbone on Caltech-101")
    _add_train_args(p)
    p.set_defaults(func=cmd_train_baseline)

    p = sub.add_parser("train-aecnn", help="Algorithm 1: CA, importance, pruning, FR")
    add_config_args(p, "see configs/aecnn/", "ratios=[8,16]")
    p.set_defaults(func=cmd_train_aecnn)

    p = sub.add_parser("fig4", help="Fig. 4: attention of three random batches")
    p.add_argument("--config", help="the train-aecnn config of the run")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one value of the run's config (repeatable)")
    p.add_argument("--point", default="stem", help="split point whose CA module is plotted")
    p.add_argument("--batch-size", type=int, default=64, help="images per plotted batch")
    p.add_argument("--seed", type=int, default=0, help="seed that draws the three batches")
    p.add_argument("--out", default="results/aecnn", help="folder for fig4_<point>.json and .png")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_fig4)

    p = sub.add_parser("report-aecnn", help="collect Algorithm 1 records into results/")
    p.add_argument("run", help="the train-aecnn output folder")
    p.add_argument("--ablation", nargs="*", default=[], help="ablation run folders")
    p.add_argument("--affine", help="run of CA with learnable affine (configs/aecnn/ca_affine)")
    p.add_argument("--baseline", default="results/baseline/resnet50_cpu64.json",
                   help="the baseline's evaluation record (JSON)")
    p.add_argument("--out", default="results/aecnn",
                   help="folder for the table and ablation reports")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("evaluate", help="top-1/top-5 of a checkpoint")
    p.add_argument("checkpoint", help="checkpoint file (best.pt or last.pt of a training run)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"),
                   help="which split of the checkpoint's manifest to evaluate on")
    p.add_argument("--data", help="Caltech-101 root (default: $AECNN_DATA or the shared copy)")
    p.add_argument("--json", help="also write the result to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_evaluate)

