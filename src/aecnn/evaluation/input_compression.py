"""Input compression, the reference a user tries first: the photo itself sent as JPEG or WebP
(full offloading), and the accuracy of the uncut network on the decoded photo.

For every test photo the device does what the server's preprocessing would do anyway and no
more: it resizes the photo so that its shorter side is ``round(S * 256 / 224)`` and crops the
centre ``S x S`` (:func:`aecnn.runtime.preprocess.device_crop`), so it never sends pixels the
network does not see. That crop is encoded at each (codec, quality), the bytes are counted,
and the decoded ``S x S`` picture is scaled and normalised (no second resize: the edge
server takes an ``S x S`` photo as the crop, so ``aecnn infer --mode full`` on these bytes
classifies the same tensor) and classified by the whole network. A ``raw`` row (the crop as
uint8 pixels, ``3 * S * S`` bytes, no coding) is the reference: its accuracy is the
network's accuracy on that split.

Sizes can be set beside a feature method's: with a split point the record also holds the
compression ratio against that point's float32 split tensor (``4 * C * H * W`` bytes).
Everything is deterministic: the same images, the same encoder settings, eval mode.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from aecnn.errors import AecnnError, CheckpointError, ImageReadError
from aecnn.runtime.preprocess import device_crop
from aecnn.runtime.preprocess import encode_rgb as encode

CODECS = ("jpeg", "webp")  # the keys of aecnn.runtime.preprocess.PHOTO_CODECS
QUALITIES = (10, 30, 50, 75, 90)
_LABEL = {"jpeg": "JPEG", "webp": "WebP"}
RECORD_KIND = "input-compression"


def to_input(pics: Sequence[np.ndarray], mean: Sequence[float], std: Sequence[float]
             ) -> torch.Tensor:
    """Decoded ``(S, S, 3)`` uint8 crops -> the network's ``(B, 3, S, S)`` float32 input:
    scaled to [0, 1] and normalised, no resize (what the edge server's preprocessing does to
    an ``S x S`` photo, :class:`~aecnn.runtime.preprocess.Preprocessor`)."""
    x = torch.from_numpy(np.stack(pics)).permute(0, 3, 1, 2).float() / 255.0
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


def decode(data: bytes) -> np.ndarray:
    """Encoded bytes -> ``(H, W, 3)`` uint8 RGB, at the size they were encoded at."""
    try:
        with Image.open(io.BytesIO(data), formats=("JPEG", "WEBP")) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, ValueError) as exc:
        raise ImageReadError(f"cannot decode image: {exc}") from None


@dataclasses.dataclass
class _Tally:
    """Running sums of one (codec, quality)."""

    sizes: list[int] = dataclasses.field(default_factory=list)
    correct1: int = 0
    correct5: int = 0

    def add(self, sizes: Sequence[int], logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.sizes.extend(sizes)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        self.correct1 += int((top[:, 0] == labels).sum())
        self.correct5 += int((top == labels[:, None]).any(dim=1).sum())


def load_baseline(checkpoint: str | Path) -> tuple[torch.nn.Module, dict[str, Any], Any]:
    """The uncut network of a baseline checkpoint (eval mode), the checkpoint, its spec.

    Raises:
        CheckpointError: missing, corrupt, lacking an entry, or weights that do not fit.
    """
    from aecnn.models import create_model, get_spec
    from aecnn.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint, ("model", "classes", "model_name", "config"))
    spec = get_spec(ckpt["model_name"])
    model = create_model(spec.name, len(ckpt["classes"]))
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint {checkpoint}: its weights do not fit "
                              f"{spec.name}: {str(exc).splitlines()[0]}") from None
    return model.eval(), ckpt, spec


def run_input_compression(checkpoint: str | Path, codecs: Sequence[str] = CODECS,
                          qualities: Sequence[int] = QUALITIES, images: int | None = None,
                          split: str = "test", split_point: str | None = None,
                          data_root: str | None = None, batch_size: int = 64,
                          progress: bool = True) -> dict[str, Any]:
    """Accuracy and size of every (codec, quality) on ``images`` photos of ``split`` (spread
    evenly over the split; all of them when None) of the checkpoint's manifest.

    Returns the record (see :func:`render_markdown`): ``rows`` holds, per (codec, quality)
    and for the ``raw`` reference, ``bytes_mean``, ``bytes_median``, ``bits_per_pixel``,
    ``top1``, ``top5`` (in %), ``ratio_vs_input`` (raw crop bytes / bytes) and, with a
    ``split_point``, ``ratio_vs_split`` (float32 split tensor bytes / bytes).

    Raises:
        CheckpointError: the checkpoint is missing, corrupt or does not fit its model.
        AecnnError: an unknown codec, a quality outside 1..100, an unknown split point.
    """
    from aecnn.config import load_config
    from aecnn.data.splits import spread_indices
    from aecnn.training.baseline import load_manifest
    from aecnn.training.config import TrainConfig

    codecs = tuple(dict.fromkeys(codecs))
    qualities = tuple(sorted(set(int(q) for q in qualities), reverse=True))
    for c in codecs:
        if c not in CODECS:
            raise AecnnError(f"unknown codec {c!r}; choose from {', '.join(CODECS)}")
    for q in qualities:
        if not 1 <= q <= 100:
            raise AecnnError(f"quality must be in 1..100, not {q}")
    model, ckpt, spec = load_baseline(checkpoint)
    cfg = load_config(TrainConfig, base=ckpt["config"])
    if data_root is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=data_root))
    size = cfg.data.input_size
    split_bytes = None
    if split_point is not None:
        shape = spec.split_point(split_point).shape(size)
        split_bytes = 4 * int(np.prod(shape))
    root, manifest = load_manifest(cfg.data)
    samples = manifest.split(split)
    samples = [samples[i] for i in spread_indices(len(samples), images or 0)]

    def classify(batch: list[np.ndarray]) -> torch.Tensor:
        with torch.inference_mode():
            return model(to_input(batch, spec.mean, spec.std)).float()

    keys = [("raw", None)] + [(c, q) for c in codecs for q in qualities]
    tallies = {k: _Tally() for k in keys}
    bar = tqdm(total=len(samples), desc="input compression", unit="image",
               disable=not progress)
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        crops = []
        for rel, _ in chunk:
            try:
                data = (root / rel).read_bytes()
            except OSError as exc:
                raise ImageReadError(f"cannot read image {root / rel}: "
                                     f"{exc.strerror or exc}") from None
            crops.append(device_crop(data, size))
        labels = torch.tensor([label for _, label in chunk])
        for codec, q in keys:
            if codec == "raw":
                sizes, pics = [c.nbytes for c in crops], crops
            else:
                blobs = [encode(c, codec, q) for c in crops]
                sizes, pics = [len(b) for b in blobs], [decode(b) for b in blobs]
            tallies[(codec, q)].add(sizes, classify(pics), labels)
        bar.update(len(chunk))
    bar.close()

    n = len(samples)
    raw_bytes = 3 * size * size
    rows = []
    for (codec, q), t in tallies.items():
        mean_bytes = float(np.mean(t.sizes)) if t.sizes else 0.0
        row = {"codec": codec, "quality": q, "images": len(t.sizes),
               "bytes_mean": mean_bytes,
               "bytes_median": float(np.median(t.sizes)) if t.sizes else 0.0,
               "bits_per_pixel": 8 * mean_bytes / (size * size),
               "top1": 100.0 * t.correct1 / max(n, 1), "top5": 100.0 * t.correct5 / max(n, 1),
               "ratio_vs_input": raw_bytes / mean_bytes if mean_bytes else None}
        if split_bytes is not None:
            row["ratio_vs_split"] = split_bytes / mean_bytes if mean_bytes else None
        rows.append(row)
    return {
        "kind": RECORD_KIND,
        "checkpoint": str(checkpoint),
        "model": spec.name,
        "classes": len(ckpt["classes"]),
        "split": split,
        "images": n,
        "manifest_digest": manifest.digest(),
        "input_size": size,
        "sent_size": [size, size],
        "device_preprocessing": (f"shorter side {round(size * 256 / 224)} (bilinear), centre "
                                 f"crop {size}x{size}, then encode"),
        "encoders": {"jpeg": "PIL JPEG, quality q, 4:2:0, default tables",
                     "webp": "PIL WebP (libwebp), lossy, quality q, method 4"},
        "pil": Image.__version__,
        "raw_bytes": raw_bytes,
        "split_point": split_point,
        "split_tensor_bytes": split_bytes,
        "codecs": list(codecs),
        "qualities": list(qualities),
        "rows": rows,
    }


def jpeg_accuracy(record: str | Path, quality: int) -> tuple[float, str]:
    """Top-1 (%) of the uncut network on the crop sent as JPEG at ``quality``, from an
    ``aecnn bench input`` record, with a sentence naming it.

    Raises:
        AecnnError: the record is unreadable, not an input-compression record, or has no
            JPEG row of that quality.
    """
    import json

    try:
        rec = json.loads(Path(record).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AecnnError(f"cannot read the input-compression record {record}: {exc}") from None
    if not isinstance(rec, dict) or rec.get("kind") != RECORD_KIND:
        raise AecnnError(f"{record} is not an aecnn bench input record")
    row = next((r for r in rec.get("rows", []) if r.get("codec") == "jpeg"
                and r.get("quality") == quality), None)
    if row is None:
        raise AecnnError(f"{record} has no JPEG row of quality {quality} (it has "
                         + ", ".join(str(r.get("quality")) for r in rec.get("rows", [])
                                     if r.get("codec") == "jpeg") + ")")
    return float(row["top1"]), (f"given: aecnn bench input record {record} ({rec['images']} "
                                f"{rec['split']} images of {rec['checkpoint']})")


def render_markdown(rec: dict[str, Any]) -> str:
    """The record as a Markdown table, one row per (codec, quality)."""
    split = rec.get("split_point")
    head = ["codec", "quality", "bytes/image", "bits/pixel", "top-1 %", "top-5 %",
            "ratio vs input"] + ([f"ratio vs {split} float32"] if split else [])
    lines = [f"Input compression: {rec['model']} at {rec['input_size']} px, "
             f"{rec['images']} {rec['split']} images of {rec['checkpoint']}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rec["rows"]:
        cells = [r["codec"], "-" if r["quality"] is None else str(r["quality"]),
                 f"{r['bytes_mean']:.0f}", f"{r['bits_per_pixel']:.2f}", f"{r['top1']:.2f}",
                 f"{r['top5']:.2f}", f"{r['ratio_vs_input']:.1f}"]
        if split:
            cells.append(f"{r['ratio_vs_split']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rec: dict[str, Any], path: str | Path) -> None:
    """Top-1 against bytes per image (log x): one line per codec, qualities marked, the raw
    crop as a dashed reference. Reads only the record."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for codec in rec["codecs"]:
        rows = sorted((r for r in rec["rows"] if r["codec"] == codec),
                      key=lambda r: r["bytes_mean"])
        xs, ys = [r["bytes_mean"] for r in rows], [r["top1"] for r in rows]
        ax.plot(xs, ys, marker="o", label=_LABEL.get(codec, codec))
        for r in rows:
            ax.annotate(str(r["quality"]), (r["bytes_mean"], r["top1"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
    raw = next(r for r in rec["rows"] if r["codec"] == "raw")
    ax.axhline(raw["top1"], color="k", ls="--", lw=1,
               label=f"uncompressed crop ({raw['bytes_mean']:.0f} B)")
    ax.set_xscale("log")
    ax.set_xlabel("bytes per image")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(f"Input compression, {rec['model']} at {rec['input_size']} px "
                 f"({rec['images']} images)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
