"""``aecnn bench codec``: every coder on real split tensors, against general-purpose
compressors, single thread, on this machine.

Features: the stem split (64 x 56 x 56 at 224 px, post-ReLU and max-pool) of a trained
ResNet-50 checkpoint run on real Caltech-101 test images. Until the channel-attention ranking
exists, the C' kept channels are those with the highest mean activation over the images.
Without a checkpoint, randomly initialised features are used and the record says so.
"""

from __future__ import annotations

import json
import lzma
import statistics
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from aecnn.compression import CODERS, QuantSpec, empirical_entropy, quantize
from aecnn.errors import CheckpointError
from aecnn.records import write_record

KEPT = (1, 2, 4, 8, 16, 32, 64)
BITS = (8, 4, 2)


def _generic() -> dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]]:
    import zstandard

    out = {
        "zlib-9": (lambda b: zlib.compress(b, 9), zlib.decompress),
        "lzma-6": (lambda b: lzma.compress(b, preset=6), lzma.decompress),
        "zstd-3": (zstandard.ZstdCompressor(level=3).compress,
                   zstandard.ZstdDecompressor().decompress),
        "zstd-19": (zstandard.ZstdCompressor(level=19).compress,
                    zstandard.ZstdDecompressor().decompress),
    }
    try:
        import brotli

        out["brotli-11"] = (lambda b: brotli.compress(b, quality=11), brotli.decompress)
    except ImportError:
        pass
    return out


def _median_time(fn: Callable[[], object], budget_s: float = 0.3, max_runs: int = 25
                 ) -> float:
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < budget_s and len(times) < max_runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def stem_features(checkpoint: str | None, n_images: int, input_size: int = 224
                  ) -> tuple[np.ndarray, str]:
    """``(N, C, H, W)`` stem features on test images, and their source: of the backbone the
    checkpoint names (its ``model_name``), or of a randomly initialised ResNet-50 without one
    (ResNet-50: ``(N, 64, 56, 56)`` at 224 px)."""
    from aecnn.data import eval_transform, load_image, load_or_make, resolve_root
    from aecnn.models import create_model, get_spec, split_model
    from aecnn.training.checkpoint import load_checkpoint

    root = resolve_root()
    manifest = load_or_make(None, root, 0)
    if checkpoint:
        ckpt = load_checkpoint(checkpoint, ("model", "classes", "model_name"))
        spec = get_spec(ckpt["model_name"])
        model = create_model(spec.name, len(ckpt["classes"]))
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint {checkpoint}: its weights do not fit "
                                  f"{spec.name}: {str(exc).splitlines()[0]}") from None
        source = f"trained {spec.name} checkpoint {checkpoint}"
    else:
        torch.manual_seed(0)
        spec = get_spec("resnet50")
        model = create_model(spec.name, 101)
        source = "randomly initialised resnet50 (fallback: no checkpoint given)"
    model.eval()
    head, _ = split_model(model, spec, spec.split_points[0])
    tf = eval_transform(input_size, spec.mean, spec.std)
    step = max(1, len(manifest.test) // n_images)
    paths = [p for p, _ in manifest.test[::step][:n_images]]
    x = torch.stack([tf(load_image(root / p)) for p in paths])
    with torch.no_grad():
        return head(x).numpy(), source + f", {n_images} Caltech-101 test images at {input_size}px"


def run_codec_bench(checkpoint: str | None, out: Path, n_images: int = 4,
                    kept: tuple[int, ...] = KEPT, bits: tuple[int, ...] = BITS,
                    progress: bool = True) -> dict:
    """Measure every coder; write ``out/codec.json`` and ``out/codec.md``."""
    torch.set_num_threads(1)
    feats, source = stem_features(checkpoint, n_images)
    kept = tuple(k for k in kept if k <= feats.shape[1])  # a stem of fewer channels
    order = np.argsort(-feats.mean(axis=(0, 2, 3)), kind="stable")
    generic = _generic()
    rows = []
    jobs = [(k, b) for k in kept for b in bits]
    for k, b in tqdm(jobs, desc="codec bench", disable=not progress):
        spec = QuantSpec.parse(f"uint{b}")
        per_coder: dict[str, dict[str, list[float]]] = {}
        entropies = []
        for img in feats:
            x = img[np.sort(order[:k])]
            symbols, _, _ = quantize(x, spec)
            entropies.append(empirical_entropy(symbols, spec.levels))
            raw = symbols.tobytes()
            for name, coder in CODERS.items():
                payload = coder.encode(symbols, spec.levels)
                assert np.array_equal(coder.decode(payload, symbols.shape, spec.levels), symbols)
                enc = _median_time(lambda c=coder, s=symbols, v=spec.levels: c.encode(s, v))
                dec = _median_time(lambda c=coder, p=payload, s=symbols, v=spec.levels:
                                   c.decode(p, s.shape, v))
                _add(per_coder, name, len(payload), enc, dec)
            for name, (comp, decomp) in generic.items():
                payload = comp(raw)
                assert decomp(payload) == raw
                slow = name in ("lzma-6", "zstd-19", "brotli-11")
                enc = _median_time(lambda c=comp, r=raw: c(r), 0.05 if slow else 0.3,
                                   5 if slow else 25)
                dec = _median_time(lambda d=decomp, p=payload: d(p))
                _add(per_coder, name, len(payload), enc, dec)
        n = x.size
        h = float(np.mean(entropies))
        for name, m in per_coder.items():
            bpe = 8 * float(np.mean(m["bytes"])) / n
            enc, dec = float(np.median(m["enc"])), float(np.median(m["dec"]))
            rows.append({"kept": k, "bits": b, "coder": name, "elements": n,
                         "entropy_bits": h, "bits_per_element": bpe,
                         "ratio_to_entropy": bpe / h if h > 0 else None,
                         "compression_vs_float32": 32 / bpe if bpe > 0 else None,
                         "encode_ms": 1e3 * enc, "decode_ms": 1e3 * dec,
                         "encode_MBps": n / enc / 1e6, "decode_MBps": n / dec / 1e6,
                         "ours": name in CODERS})
    record = write_record(out / "codec.json", {
        "kind": "codec-benchmark", "features": source, "images": n_images,
        "channel_choice": "highest mean activation (stand-in for the CA ranking)",
        "timing": "median of repeated runs, single thread; MB/s of raw 8-bit symbols",
        "rows": rows, "targets": check_targets(rows)})
    (out / "codec.md").write_text(render_markdown(record))
    plot_codec(record, out / "codec.png")
    return record


def _add(d: dict, name: str, size: int, enc: float, dec: float) -> None:
    m = d.setdefault(name, {"bytes": [], "enc": [], "dec": []})
    m["bytes"].append(size)
    m["enc"].append(enc)
    m["dec"].append(dec)


def check_targets(rows: list[dict]) -> dict:
    """The issue's targets at 4 bits and C' >= 16, computed from the rows."""
    out: dict = {}
    sel = [r for r in rows if r["bits"] == 4 and r["kept"] >= 16]
    fast = {}
    for name in CODERS:
        rs = [r for r in sel if r["coder"] == name]
        if rs and all(r["encode_MBps"] >= 50 and r["decode_MBps"] >= 30 for r in rs):
            fast[name] = float(np.mean([r["ratio_to_entropy"] for r in rs]))
    best = min(fast, key=fast.get) if fast else None
    out["best_fast_coder"] = best
    out["best_fast_ratio_to_entropy"] = fast.get(best) if best else None
    if best:
        cmp = []
        for r in (r for r in sel if r["coder"] == best):
            peers = {p["coder"]: p for p in sel if p["kept"] == r["kept"]}
            cmp.append({
                "kept": r["kept"],
                "smaller_than_zstd19": r["bits_per_element"] < peers["zstd-19"]["bits_per_element"],
                "vs_brotli11_size": (r["bits_per_element"] / peers["brotli-11"]["bits_per_element"]
                                     if "brotli-11" in peers else None),
                "encode_speedup_vs_zstd19": peers["zstd-19"]["encode_ms"] / r["encode_ms"],
                "encode_speedup_vs_brotli11": (peers["brotli-11"]["encode_ms"] / r["encode_ms"]
                                               if "brotli-11" in peers else None),
            })
        out["versus_general_purpose"] = cmp
    one = [r for r in rows if r["kept"] == 1 and r["bits"] == 4 and r["ours"]
           and r["coder"] != "none"]
    out["one_channel_4bit_enc_plus_dec_ms"] = {r["coder"]: r["encode_ms"] + r["decode_ms"]
                                              for r in one}
    return out


def render_markdown(record: dict) -> str:
    lines = [
        "# Codec benchmark", "",
        f"Command: `{record['command']}`  ",
        f"Machine: {record['machine']['processor']}, {record['machine']['cpu_count']} cores, "
        f"{record['machine']['platform']}; created {record['created']}  ",
        f"Features: {record['features']}; kept channels: {record['channel_choice']}.  ",
        f"Timing: {record['timing']}.", "",
        "bpe = bits per element; H = empirical memoryless entropy of the symbols; "
        "x fp32 = total compression against float32 (payload only).", "",
    ]
    for b in sorted({r["bits"] for r in record["rows"]}, reverse=True):
        lines += [f"## {b}-bit symbols", "",
                  "| C' | coder | bpe | bpe / H | x fp32 | enc ms | dec ms | enc MB/s | "
                  "dec MB/s |", "|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in record["rows"] if r["bits"] == b):
            ratio = f"{r['ratio_to_entropy']:.3f}" if r["ratio_to_entropy"] else "-"
            lines.append(
                f"| {r['kept']} | {r['coder']}{'' if r['ours'] else ' (generic)'} | "
                f"{r['bits_per_element']:.3f} | {ratio} | {r['compression_vs_float32']:.1f} | "
                f"{r['encode_ms']:.3f} | {r['decode_ms']:.3f} | {r['encode_MBps']:.1f} | "
                f"{r['decode_MBps']:.1f} |")
        lines.append("")
    lines += ["## Targets (4-bit, C' >= 16)", "", "```",
              json.dumps(record["targets"], indent=1), "```", ""]
    return "\n".join(lines)


def plot_codec(record: dict, path: Path) -> None:
    """Bits per element against kept channels, one panel per bit depth, from the record."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bits = sorted({r["bits"] for r in record["rows"]}, reverse=True)
    fig, axes = plt.subplots(1, len(bits), figsize=(4.2 * len(bits), 3.4), dpi=110,
                             squeeze=False)
    for ax, b in zip(axes[0], bits, strict=True):
        rows = [r for r in record["rows"] if r["bits"] == b]
        for name in dict.fromkeys(r["coder"] for r in rows):
            rs = sorted((r for r in rows if r["coder"] == name), key=lambda r: r["kept"])
            ax.plot([r["kept"] for r in rs], [r["bits_per_element"] for r in rs],
                    marker="o" if rs[0]["ours"] else "x", ls="-" if rs[0]["ours"] else ":",
                    label=name, ms=3)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("kept channels C'")
        ax.set_ylabel("bits per element")
        ax.set_title(f"{b}-bit symbols")
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
