"""Run ``aecnn ARGS...`` as one torchrun rank, recording a hash of the model's parameters
after every optimiser step into ``HASHES/rank<r>.json`` (for tests/test_distributed.py).

Usage: ``torchrun --nproc_per_node 2 tests/ddp_worker.py HASHES ARGS...``
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from pathlib import Path

from torch import nn

import aecnn.training.baseline as baseline
from aecnn.cli.main import main
from aecnn.training import distributed
from aecnn.training.loop import fit


def run(hashes: Path, args: list[str]) -> int:
    seen: list[str] = []

    def on_step(model: nn.Module) -> None:
        h = hashlib.sha256()
        for p in model.parameters():
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
        seen.append(h.hexdigest())

    baseline.fit = functools.partial(fit, on_step=on_step)  # what train_baseline calls
    rc = main(args)
    hashes.mkdir(parents=True, exist_ok=True)
    (hashes / f"rank{distributed.rank()}.json").write_text(json.dumps(
        {"rank": distributed.rank(), "world": distributed.world(), "steps": seen}))
    return rc


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1]), sys.argv[2:]))
