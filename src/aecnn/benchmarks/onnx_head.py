"""``aecnn bench onnx``: the device head's time, PyTorch against ONNX Runtime, on one thread.

For each split point: an AECNN device side (backbone head, every ``ratio``-th channel kept;
random weights, since timing does not depend on them) at ``--input-size``, timed as
``torch`` (the head), ``torch + numpy quantise`` (the head, then
:func:`~aecnn.compression.quantize.quantize` as :class:`~aecnn.compression.codec.FeatureCodec`
does), ``onnxruntime`` (the head exported with a float grid: features only) and
``onnxruntime + quantiser`` (the exported graph of ``aecnn export --onnx``: features, symbols,
lo, step). The four run interleaved, one call each per round, so that a busy machine slows
them alike; the record holds every sample, the tables medians. It also records how far the
ONNX outputs are from PyTorch's on the timed input.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aecnn.core.split import SplitNetwork

WAYS = ("torch", "torch + numpy quantise", "onnxruntime", "onnxruntime + quantiser")


def _variant(model: str, point: str, ratio: int, size: int) -> SplitNetwork:
    from aecnn.core.split import SplitMeta, SplitNetwork
    from aecnn.models import get_spec

    spec = get_spec(model)
    channels = spec.split_point(point).channels
    meta = SplitMeta(name=f"{model}-{point}-fr-x{ratio}", model_name=model,
                     classes=tuple(f"c{i}" for i in range(10)), point=point, ratio=ratio,
                     bridge="fr", kept=tuple(range(0, channels, ratio)), channels=channels,
                     input_size=size, mean=spec.mean, std=spec.std, fr_shape="1x1")
    return SplitNetwork.from_meta(meta).eval()


def time_point(model: str, point: str, ratio: int, size: int, grid: str, repeats: int,
               warmup: int, folder: Path) -> dict:
    """One split point: samples (seconds) of each way, and the agreement on the input."""
    import numpy as np
    import torch

    from aecnn.compression.quantize import QuantSpec, quantize
    from aecnn.runtime.onnx_export import export_onnx
    from aecnn.runtime.onnx_head import OnnxHead

    torch.manual_seed(0)
    net = _variant(model, point, ratio, size)
    spec = QuantSpec.parse(grid)
    plain = OnnxHead(export_onnx(net, folder / f"{point}-float.onnx", "float32"), threads=1)
    quant = OnnxHead(export_onnx(net, folder / f"{point}-{spec.tag}.onnx", spec), threads=1)
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    xt = torch.from_numpy(x)

    def head():
        with torch.inference_mode():
            return net.head(xt)

    def head_quantise():
        with torch.inference_mode():
            return quantize(net.head(xt)[0].numpy(), spec)

    calls = dict(zip(WAYS, (head, head_quantise, lambda: plain.run(x), lambda: quant.run(x)),
                     strict=True))
    samples: dict[str, list[float]] = {w: [] for w in WAYS}
    for r in range(warmup + repeats):
        for w, f in calls.items():
            t0 = time.perf_counter()
            f()
            if r >= warmup:
                samples[w].append(time.perf_counter() - t0)
    z = head()[0].numpy()
    out = quant.run(x)
    sym = quantize(z, spec)[0]
    return {"model": model, "point": point, "ratio": ratio, "input_size": size,
            "grid": str(spec), "shape": list(z.shape),
            "median_s": {w: statistics.median(s) for w, s in samples.items()},
            "min_s": {w: min(s) for w, s in samples.items()},
            "samples_s": samples,
            "max_abs_feature_diff": float(np.abs(out.features - z).max()),
            "symbols_agree": float((out.symbols == sym).mean()),
            "onnx_bytes": (folder / f"{point}-{spec.tag}.onnx").stat().st_size}


def run_onnx_bench(model: str, points: tuple[str, ...], ratio: int, size: int, grid: str,
                   repeats: int, warmup: int) -> dict:
    import torch


    torch.set_num_threads(1)
    import onnxruntime

    with tempfile.TemporaryDirectory() as d:
        rows = [time_point(model, p, ratio, size, grid, repeats, warmup, Path(d))
                for p in points]
    return {"kind": "onnx-head", "threads": 1, "repeats": repeats, "warmup": warmup,
            "weights": "random (timing only)", "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "rows": rows}


def render_markdown(rec: dict) -> str:
    lines = ["# Device head: PyTorch against ONNX Runtime, one thread", "",
             f"Command: `{rec.get('command', '')}`  ",
             f"Machine: {rec.get('machine', {})}", "",
             f"torch {rec['torch']}, onnxruntime {rec['onnxruntime']}; {rec['weights']} "
             f"weights; median of {rec['repeats']} interleaved calls per way after "
             f"{rec['warmup']} warm-up rounds (min in brackets), milliseconds.", "",
             "| model | split | kept (K, H, W) | grid | " + " | ".join(WAYS)
             + " | ONNX / torch (head) | max abs diff | symbols equal |",
             "|---|---|---|---|" + "---|" * len(WAYS) + "---|---|---|"]
    for r in rec["rows"]:
        med, mn = r["median_s"], r["min_s"]
        cells = " | ".join(f"{1e3 * med[w]:.2f} ({1e3 * mn[w]:.2f})" for w in WAYS)
        lines.append(f"| {r['model']} | {r['point']} | {tuple(r['shape'])} | {r['grid']} | "
                     f"{cells} | {med['onnxruntime'] / med['torch']:.2f} | "
                     f"{r['max_abs_feature_diff']:.1e} | {100 * r['symbols_agree']:.3f} % |")
    return "\n".join(lines) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="resnet50", help="backbone (aecnn models)")
    p.add_argument("--points", nargs="+", default=["stem", "layer1.0"], help="split points")
    p.add_argument("--ratio", type=int, default=8, help="keep every ratio-th channel (V)")
    p.add_argument("--input-size", type=int, default=224, help="input side in pixels")
    p.add_argument("--grid", default="uint2@p90", help="the quantiser's grid")
    p.add_argument("--repeats", type=int, default=30, help="timed calls per way")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    p.add_argument("--out", default="results/runtime", help="folder for onnx_head.{json,md}")


def run(args: argparse.Namespace, command: str | None = None) -> int:
    from aecnn.records import write_record

    out = Path(args.out)
    rec = run_onnx_bench(args.model, tuple(args.points), args.ratio, args.input_size,
                         args.grid, args.repeats, args.warmup)
    if command:
        rec["command"] = command
    rec = write_record(out / "onnx_head.json", rec)
    text = render_markdown(rec)
    (out / "onnx_head.md").write_text(text)
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m aecnn.benchmarks.onnx_head",
                                description=__doc__.split("\n\n")[0])
    add_arguments(p)
    argv = sys.argv[1:] if argv is None else argv
    return run(p.parse_args(argv),
               shlex.join(["python", "-m", "aecnn.benchmarks.onnx_head", *argv]))


if __name__ == "__main__":
    sys.exit(main())
