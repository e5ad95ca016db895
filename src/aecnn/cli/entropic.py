"""``aecnn train-entropic``: train (or resume) the learned entropy bottleneck (Entropic
Student) and print its table: accuracy and real bytes per image next to the prior's
estimate."""

from __future__ import annotations

import argparse

from aecnn.cli.common import add_config_args


def render_entropic_table(records: list[dict]) -> str:
    """Markdown: split point, V, stage, test top-1, latent k x H' x W', real and estimated
    payload bytes per image."""
    lines = ["| split point | V | stage | top-1 (%) | latent | payload B/image | "
             "estimate B/image |", "|---|---|---|---|---|---|---|"]

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    for r in records:
        rate = r.get("rate") or {}
        shape = " x ".join(map(str, rate.get("latent_shape") or r.get("compressed_shape", [])))
        lines.append(f"| {r['point']} | {r['ratio']}x | {r['stage']} | {r['test_top1']:.2f} | "
                     f"{shape or '-'} | {num(rate.get('payload_bytes'))} | "
                     f"{num(rate.get('estimate_bytes'))} |")
    return "\n".join(lines) + "\n"


def cmd_train_entropic(args: argparse.Namespace) -> int:
    from aecnn.config import load_config
    from aecnn.training import distributed
    from aecnn.training.entropic import EntropicConfig, train_entropic

    cfg = load_config(EntropicConfig, args.config, args.overrides)
    records = train_entropic(cfg, progress=not args.no_progress)
    if distributed.is_main():  # under torchrun rank 0 reports
        print(render_entropic_table(records))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``train-entropic`` to an ``aecnn`` parser's subcommands."""
    p = subparsers.add_parser(
        "train-entropic",
        help="learned entropy bottleneck (Entropic Student): encoder + factorized prior + "
             "decoder with a rate term, then decoder and tail")
    add_config_args(p, "fields of EntropicConfig: baseline, points, ratios, module, tail, "
                       "rate_weight, spatial, ...", "rate_weight=0.01")
    p.set_defaults(func=cmd_train_entropic)
    return p
