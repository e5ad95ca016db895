"""``aecnn bench input``: the photo sent as JPEG and WebP at several qualities (full
offloading), the uncut network's accuracy on the decoded photo: ``input.json``,
``input.md`` and ``input.png`` (top-1 against bytes per image) in ``--out``.
See :mod:`aecnn.evaluation.input_compression`."""

from __future__ import annotations

import argparse
from pathlib import Path

from aecnn.config import positive_int


def _quality(text: str) -> int:
    try:
        q = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= q <= 100:
        raise argparse.ArgumentTypeError(f"quality must be in 1..100, not {q}")
    return q


CODECS = ("jpeg", "webp")  # as aecnn.evaluation.input_compression (importing it loads torch)
QUALITIES = (10, 30, 50, 75, 90)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="trained baseline checkpoint (best.pt of aecnn train-baseline)")
    p.add_argument("--codecs", nargs="+", choices=CODECS, default=list(CODECS),
                   help="image codecs the photo is sent with")
    p.add_argument("--qualities", nargs="+", type=_quality, default=list(QUALITIES),
                   help="encoder qualities, 1..100")
    p.add_argument("--images", type=positive_int,
                   help="photos of the split, spread evenly over it (default: all)")
    p.add_argument("--split", choices=("train", "val", "test"), default="test",
                   help="split of the checkpoint's manifest")
    p.add_argument("--split-point",
                   help="also give each size as a ratio against this split point's float32 "
                        "tensor (e.g. stem)")
    p.add_argument("--data", help="dataset root (default: the checkpoint's, $AECNN_DATA, or "
                                  "the shared copy)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="photos per forward pass")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", default="results/input_codec",
                   help="folder for input.json, input.md and input.png")
    p.add_argument("--no-plot", action="store_true", help="write no figure")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import torch

    from aecnn.evaluation.input_compression import plot, render_markdown, run_input_compression
    from aecnn.records import write_record

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    rec = run_input_compression(args.checkpoint, args.codecs, args.qualities, args.images,
                                split=args.split, split_point=args.split_point,
                                data_root=args.data, batch_size=args.batch_size,
                                progress=not args.no_progress)
    rec = write_record(out / "input.json", rec)
    table = render_markdown(rec)
    (out / "input.md").write_text(table)
    if not args.no_plot:
        plot(rec, out / "input.png")
    print(table, end="")
    return 0
