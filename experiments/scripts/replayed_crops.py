"""Has a stage network learnt its training batches by heart? Its top-1 on the very batches
(order and random crops) that each of its training epochs drew, against batches it never saw.

    python -m experiments.scripts.replayed_crops STAGE [STAGE ...] --out replayed.json

Each STAGE is a stage folder (``runs/<method>/<run>/<point>/<stage>``). For every epoch k
of its budget the script redraws the training batches of that epoch as ``fit`` drew them
(:func:`aecnn.training.loop.epoch_seed` with the stage's stream; a record without a
``stream`` was trained before streams existed, on the baseline's stream "") and measures
top-1 on the first ``--images`` of them, BN in training mode as the training loop measures
it (on a copy, so no statistics change), the split tensor through the stage's QAT grid if it
has one. The same is done for the baseline's epochs 0-2 and for a stream no run uses. A
network that scores far more on the batches it trained on than on unseen ones of the same
distribution has memorised them. Written for the stream fix in docs/experiments.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
from pathlib import Path

import torch

from aecnn.compression.quantize import QuantSpec
from aecnn.core.split import SplitNetwork
from aecnn.errors import AecnnError
from aecnn.records import write_record
from aecnn.training.baseline import baseline_split
from aecnn.training.checkpoint import load_checkpoint
from aecnn.training.export import meta_from_stage
from aecnn.training.loop import epoch_seed, make_loader, seed_everything
from experiments.reproduce import requantize

UNSEEN = "replayed-crops/unseen"


@torch.no_grad()
def top1_on(var: SplitNetwork, train_ds, seed: int, epoch: int, stream: str, images: int,
            spec: QuantSpec | None, batch_size: int) -> float:
    """Top-1 (%) of ``var`` (training-mode BN) on the first ``images`` training images of
    epoch ``epoch`` as ``fit`` draws them for ``(seed, stream)``."""
    s = epoch_seed(seed, epoch, stream)
    seed_everything(s)
    net = copy.deepcopy(var).train()
    n = correct = 0
    for x, y in make_loader(train_ds, batch_size, 0, shuffle=True, seed=s):
        z = net.head(x)
        correct += int((net.server(z if spec is None else requantize(z, spec))
                        .argmax(1) == y).sum())
        n += len(y)
        if n >= images:
            break
    return 100.0 * correct / n


def replayed(stage: Path, images: int) -> dict:
    """The stage's top-1 on its own epochs' batches, the baseline's first three epochs'
    and an unseen stream's (see the module docstring)."""
    rec = json.loads((stage / "result.json").read_text())
    meta, state = meta_from_stage(stage)
    var = SplitNetwork.from_meta(meta)
    var.load_state_dict(state)
    cfg = load_checkpoint(stage / "best.pt", ("config",))["config"]
    train_ds = baseline_split(cfg["baseline"], "train", train=True)
    seed, stream = int(cfg["seed"]), str(rec.get("stream", ""))
    spec = QuantSpec.parse(rec["qat_quant"]) if rec.get("qat_quant") else None
    bs = int(cfg["data"]["batch_size"])  # the batches fit drew

    def run(epochs: range, on: str) -> list[float]:
        return [top1_on(var, train_ds, seed, e, on, images, spec, bs) for e in epochs]

    return {"stage": str(stage), "stream": stream, "seed": seed, "images": images,
            "grid": str(spec) if spec else "float32",
            "own_epochs": run(range(int(rec["budget"]["epochs"])), stream),
            "baseline_epochs_0_2": run(range(3), ""),
            "unseen": run(range(1), UNSEEN)[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stages", nargs="+", type=Path)
    ap.add_argument("--images", type=int, default=1280, help="images per epoch measured")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    rows = []
    try:
        for stage in args.stages:
            if not (stage / "result.json").is_file():
                raise AecnnError(f"{stage}: not a finished stage folder (no result.json)")
            r = replayed(stage, args.images)
            rows.append(r)
            own = ", ".join(f"{a:.1f}" for a in r["own_epochs"])
            bl = ", ".join(f"{a:.1f}" for a in r["baseline_epochs_0_2"])
            print(f"{stage} (stream {r['stream']!r}): own epochs {own} %; baseline's epochs "
                  f"0-2 {bl} %; unseen {r['unseen']:.1f} %")
    except AecnnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_record(args.out, {"command": shlex.join(["python", *sys.argv]), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
