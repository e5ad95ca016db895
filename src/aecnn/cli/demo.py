"""``aecnn demo`` (``make demo``): the whole device-edge pipeline, small enough for a laptop.

1. Train a baseline (``demo.yaml`` beside this module: ResNet-18, 64 px, a Caltech-101
   subset).
2. Algorithm 1 at the stem for one ratio: CA training, importance (eq. 8), physical pruning
   + fine-tuning (CA_Pruned), feature recovery + fine-tuning (AECNN).
3. Export the AECNN variant, start an edge server on loopback, and send the subset's test
   photos from a one-thread device client: head, codec (lossless, coder chosen by the
   latency model), TCP, decode, FR, tail. Print accuracy and the per-step time breakdown,
   next to local computing, and write ``<out>/result.json``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

from aecnn.config import load_config
from aecnn.records import write_record

DEMO_CONFIG = Path(__file__).with_name("demo.yaml")
"""The packaged demo config (package data beside this module)."""
STEPS = ("t_pre", "t_iot", "t_enc", "t_com", "t_dec", "t_fr", "t_es", "total")


def run_demo(config: str | None, overrides: list[str], ratio: int = 8, progress: bool = True
             ) -> dict:
    import torch

    from aecnn.compression.codec import FeatureCodec
    from aecnn.core.split import load_network
    from aecnn.data import resolve_root
    from aecnn.runtime.background import BackgroundServer
    from aecnn.runtime.client import CoInference, Connection, LocalComputing
    from aecnn.training import TrainConfig, train_baseline
    from aecnn.training.aecnn import AecnnConfig, StageBudget, train_aecnn
    from aecnn.training.baseline import load_manifest
    from aecnn.training.export import export_from

    t0 = time.perf_counter()
    base_cfg = load_config(TrainConfig, config or DEMO_CONFIG, overrides)
    out = Path(base_cfg.out)
    if out.exists():
        shutil.rmtree(out)
    base_out = out / "baseline"
    import dataclasses

    base_cfg = dataclasses.replace(base_cfg, out=str(base_out))
    print("demo 1/3: baseline training", flush=True)
    base = train_baseline(base_cfg, progress=progress)

    print(f"demo 2/3: Algorithm 1 at the stem, V={ratio}", flush=True)
    one = StageBudget(epochs=1, lr=0.01)
    acfg = AecnnConfig(baseline=str(base_out / "best.pt"), points=("stem",), ratios=(ratio,),
                       ca=one, prune=one, fr=one, fr_shapes=("1x1",), importance_images=512,
                       out=str(out / "aecnn"), threads=base_cfg.threads)
    stages = {r["stage"]: r for r in train_aecnn(acfg, progress)}

    print("demo 3/3: edge server on loopback, device client (1 thread)", flush=True)
    deploy = out / "deploy"
    export_from(out / "aecnn" / "stem" / f"aecnn-x{ratio}", deploy / "aecnn.pt",
                name=f"demo-stem-fr-x{ratio}")
    export_from(base_out / "best.pt", deploy / "x1.pt", point="stem", name="demo-x1")
    aecnn, full = load_network(deploy / "aecnn.pt"), load_network(deploy / "x1.pt")
    root, manifest = load_manifest(base_cfg.data)
    root = resolve_root(base_cfg.data.root)
    test = manifest.split("test")

    threads = torch.get_num_threads()
    results: dict[str, list] = {"co-inference": [], "local": []}
    with BackgroundServer({aecnn.meta.name: aecnn}) as (host, port), Connection(host, port) as conn:
        torch.set_num_threads(1)  # the weak device
        try:
            runners = {"co-inference": CoInference(aecnn, FeatureCodec("float32", "auto",
                                                                       rate_bps=10e6), conn),
                       "local": LocalComputing(full)}
            for path, label in test:
                data = (root / path).read_bytes()
                for mode, runner in runners.items():
                    r = runner.infer(data)
                    results[mode].append((r, r.cls == label))
        finally:
            torch.set_num_threads(threads)

    summary = {}
    for mode, rs in results.items():
        summary[mode] = {"accuracy": 100.0 * sum(ok for _, ok in rs) / len(rs),
                         "bytes_up": statistics.median(r.bytes_up for r, _ in rs),
                         **{k: statistics.median(getattr(r, k) for r, _ in rs) for k in STEPS},
                         "coders": sorted({r.coder for r, _ in rs if r.coder})}
    rec = {"kind": "demo", "baseline_top1": base["test_top1"],
           "ca_pruned_top1": stages[f"pruned-x{ratio}"]["test_top1"],
           "aecnn_top1": stages[f"aecnn-x{ratio}"]["test_top1"], "ratio": ratio,
           "images": len(test), "runtime": summary, "seconds": time.perf_counter() - t0}
    write_record(out / "result.json", rec)
    co, loc = summary["co-inference"], summary["local"]
    print(f"\ndemo: ResNet-18 baseline test top-1 {base['test_top1']:.2f} %, CA_Pruned x{ratio} "
          f"{rec['ca_pruned_top1']:.2f} %, AECNN x{ratio} {rec['aecnn_top1']:.2f} % "
          f"({base['n_test']} test images, {base_cfg.data.input_size} px)")
    print(f"co-inference over TCP: {co['accuracy']:.2f} % on {len(test)} photos, median "
          f"{co['bytes_up']:.0f} B sent ({', '.join(co['coders'])}); local computing: "
          f"{loc['accuracy']:.2f} %")
    print(f"{'median ms':<14s}" + "".join(f"{k:>8s}" for k in STEPS))
    for mode, s in summary.items():
        print(f"{mode:<14s}" + "".join(f"{s[k] * 1e3:8.1f}" for k in STEPS))
    print(f"record: {out / 'result.json'} ({rec['seconds']:.0f} s)")
    return rec


def cmd_demo(args: argparse.Namespace) -> int:
    run_demo(args.config, args.overrides, progress=not args.no_progress)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train, compress, serve and query a small network end to end "
                                   "(a few minutes on 2 cores; make demo)")
    p.add_argument("--config", help="YAML config of the demo's baseline (default: the packaged "
                   "demo.yaml: ResNet-18, 64 px, 12 training images per class)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one value of the demo config, e.g. --set optim.epochs=2 "
                        "(repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)
