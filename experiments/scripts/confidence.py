"""How a stage network's predictions fail on the test split: top-1, mean cross-entropy, and
the share of test images it gets wrong with a top probability of at least 0.9, with the split
tensor quantised to a grid as the codec would (or float32).

    python -m experiments.scripts.confidence STAGE [STAGE ...] --grid uint2l3 --out OUT.json

``--checkpoint last`` measures the network of the stage's last epoch (``last.pt``) instead
of the one its validation accuracy picked (``best.pt``, what every other command deploys).

Each STAGE is a stage folder (``runs/<method>/<run>/<point>/<stage>``); its network runs on
its baseline's whole test split (eval transforms). Written for the ternary-QAT study in
docs/experiments.md; it reads the same stage folders as ``experiments.reproduce``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from aecnn.compression.quantize import QuantSpec
from aecnn.core.split import SplitNetwork
from aecnn.errors import AecnnError
from aecnn.records import write_record
from aecnn.training.export import meta_from_stage, train_split_of
from experiments.reproduce import requantize

CONFIDENT = 0.9


@torch.inference_mode()
def confidence(stage: Path, grid: str, checkpoint: str = "best") -> dict:
    """Top-1 (%), mean cross-entropy (nats) and confidently wrong share (%) of ``stage``'s
    network (its ``best.pt`` or ``last.pt``) on its test split, the split tensor
    ``(B, K, H, W)`` through ``grid``."""
    meta, state = meta_from_stage(stage, checkpoint=checkpoint)
    var = SplitNetwork.from_meta(meta)
    var.load_state_dict(state)
    var.eval()
    spec = None if grid == "float32" else QuantSpec.parse(grid)
    test = train_split_of(stage, split="test")
    loader = torch.utils.data.DataLoader(test, batch_size=64)
    n = correct = wrong_sure = 0
    nll = 0.0
    for x, y in tqdm(loader, desc=stage.name, leave=False,
                     disable=not sys.stderr.isatty()):
        z = var.head(x)
        p = var.server(z if spec is None else requantize(z, spec)).softmax(1)
        top, cls = p.max(1)
        n += len(y)
        correct += int((cls == y).sum())
        wrong_sure += int(((cls != y) & (top >= CONFIDENT)).sum())
        nll -= float(p[torch.arange(len(y)), y].clamp_min(1e-12).log().sum())
    return {"stage": str(stage), "checkpoint": checkpoint, "grid": grid, "images": n,
            "top1": 100.0 * correct / n, "nll": nll / n,
            "confidently_wrong": 100.0 * wrong_sure / n}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stages", nargs="+", type=Path)
    ap.add_argument("--grid", action="append", default=None,
                    help="float32 or an integer grid (repeatable; default float32)")
    ap.add_argument("--checkpoint", choices=["best", "last"], default="best",
                    help="the validation-picked network (best) or the last epoch's")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    rows = []
    try:
        for stage in args.stages:
            for grid in args.grid or ["float32"]:
                rows.append(confidence(stage, grid, args.checkpoint))
                r = rows[-1]
                print(f"{stage}  {grid}: top-1 {r['top1']:.2f} %, NLL {r['nll']:.3f}, "
                      f"confidently wrong {r['confidently_wrong']:.2f} %")
    except AecnnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_record(args.out, {"command": shlex.join(["python", *sys.argv]),
                            "confident": CONFIDENT, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
