"""``aecnn train-bottlenet``: train (or resume) the BottleNet++ baseline and print its table.
"""

from __future__ import annotations

import argparse

from aecnn.cli.common import add_config_args


def render_bottlenet_table(records: list[dict]) -> str:
    """Markdown: split point, C x H x W, V, module-only and joint top-1, C' x H' x W'."""
    by = {(r["point"], r["stage"]): r for r in records}
    lines = ["| split point | C x H x W | V | BottleNet++ module only top-1 (%) | "
             "BottleNet++ top-1 (%) | C' x H' x W' |", "|---|---|---|---|---|---|"]

    def shape(s: list[int] | None) -> str:
        return " x ".join(map(str, s)) if s else "-"

    def acc(r: dict | None) -> str:
        return f"{r['test_top1']:.2f}" if r else "-"

    for point in dict.fromkeys(r["point"] for r in records):
        for ratio in sorted({r["ratio"] for r in records if r["point"] == point}):
            mod = by.get((point, f"bottlenet-module-x{ratio}"))
            joint = by.get((point, f"bottlenet-x{ratio}"))
            any_rec = joint or mod or {}
            lines.append(f"| {point} | {shape(any_rec.get('split_shape'))} | {ratio}x | "
                         f"{acc(mod)} | {acc(joint)} | "
                         f"{shape(any_rec.get('compressed_shape'))} |")
    return "\n".join(lines) + "\n"


def cmd_train_bottlenet(args: argparse.Namespace) -> int:
    from aecnn.config import load_config
    from aecnn.training import distributed
    from aecnn.training.bottlenet import BottleNetConfig, train_bottlenet

    cfg = load_config(BottleNetConfig, args.config, args.overrides)
    records = train_bottlenet(cfg, progress=not args.no_progress)
    if distributed.is_main():  # under torchrun rank 0 reports
        print(render_bottlenet_table(records))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``train-bottlenet`` to an ``aecnn`` parser's subcommands."""
    p = subparsers.add_parser("train-bottlenet",
                              help="BottleNet++ baseline: encoder/decoder, then joint tuning")
    add_config_args(p, "see configs/bottlenet/", "module.lr=1e-3")
    p.set_defaults(func=cmd_train_bottlenet)
    return p
