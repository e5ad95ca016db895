"""Where one training epoch's time goes on a GPU machine: data loading alone, GPU compute
alone, checkpoint writing, and whole epochs of the real loop (``fit``), for the 128 px
protocol of ``experiments/configs/gpu128.yaml`` (ResNet-50 from scratch,
batch 64, the packed dataset). Writes one JSON record.

    python -m experiments.scripts.device_epoch_profile OUT.json [--workers 12]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from aecnn.config import load_config
from aecnn.models import create_model, get_spec
from aecnn.records import machine_info
from aecnn.training.baseline import load_manifest, make_split
from aecnn.training.config import TrainConfig
from aecnn.training.loop import RunOptions, fit, make_loader


def timed(fn) -> float:
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--workers", type=int, nargs="+", default=[12, 16])
    ap.add_argument("--subset", type=int, help="images per class (a quick check on a CPU)")
    ap.add_argument("--fit-epochs", type=int, default=2)
    args = ap.parse_args()
    cfg = load_config(TrainConfig, "configs/baseline/resnet50_cpu.yaml",
                      ["data.input_size=128", "data.workers=12",
                       f"data.subset={args.subset if args.subset else 'null'}"])
    spec = get_spec("resnet50")
    root, manifest = load_manifest(cfg.data)
    t0 = time.perf_counter()
    train = make_split(cfg.data, root, manifest, "train", spec.mean, spec.std, True, False)
    val = make_split(cfg.data, root, manifest, "val", spec.mean, spec.std, False, False)
    rec: dict = {"kind": "gpu-epoch-profile", "images": len(train), "batch": 64,
                 "cache_build_s": time.perf_counter() - t0}
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # 1. the loader alone: one epoch of batches, worker start included
    for w in args.workers:
        def epoch(w=w):
            for _x, _y in make_loader(train, 64, w, shuffle=True, device=dev):
                pass
        rec[f"loader_epoch_s_w{w}"] = timed(epoch)
    # 2. the GPU alone: the same number of steps on one resident batch
    model = create_model("resnet50", 101).to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(64, 3, 128, 128, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 101, (64,), device=dev)
    steps = -(-len(train) // 64)

    def compute(sync_each: bool):
        for _ in range(steps):
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sync_each:
                loss.item()
    compute(False)  # warm-up (cuDNN autotuning, allocator)
    rec["compute_epoch_s"] = timed(lambda: compute(False))
    rec["compute_epoch_s_item_each_step"] = timed(lambda: compute(True))
    # 3. checkpoint writing: what fit saves every epoch (last.pt with the optimizer)
    with tempfile.TemporaryDirectory() as d:
        state = {"model": model.state_dict(), "optimizer": opt.state_dict()}
        rec["checkpoint_save_s"] = timed(lambda: torch.save(state, Path(d) / "last.pt"))
        rec["checkpoint_mb"] = (Path(d) / "last.pt").stat().st_size / 1e6
        # 4. the real loop: two epochs of fit
        opts = RunOptions(dev, True, True, False)
        optim = dataclasses.replace(cfg.optim, epochs=args.fit_epochs, warmup_epochs=0)
        t0 = time.perf_counter()
        hist = fit(create_model("resnet50", 101), train, val, optim, Path(d) / "run", opts,
                   seed=0, batch_size=64, eval_batch_size=128, workers=args.workers[0],
                   config={}, meta={})
        rec["fit_s"] = time.perf_counter() - t0
        rec["fit_epoch_s"] = [h["seconds"] for h in hist]
    rec["machine"] = machine_info()
    Path(args.out).write_text(json.dumps(rec, indent=1) + "\n")
    print(json.dumps({k: v for k, v in rec.items() if k != "machine"}, indent=1))


if __name__ == "__main__":
    main()
