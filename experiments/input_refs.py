"""The input-compression references of a scale: the photo sent as JPEG or WebP at several
qualities (full offloading) and the uncut baseline on the decoded photo
(:mod:`aecnn.evaluation.input_compression`), on the same test images as the feature methods.
They do not depend on the split point or the seed: one record per scale, ``input.json`` in
the measure folder, measured once and reused while it was made of the same checkpoint,
codecs, qualities and number of images."""

from __future__ import annotations

import json
from pathlib import Path

from aecnn.errors import RecordError
from aecnn.records import write_record
from experiments.reproduce import ReproConfig

RECORD = "input.json"


def _wanted(cfg: ReproConfig, checkpoint: Path, images: int) -> dict:
    return {"checkpoint": str(checkpoint), "codecs": list(dict.fromkeys(cfg.input_codecs)),
            "qualities": sorted(set(cfg.input_qualities), reverse=True), "images": images}


def input_references(cfg: ReproConfig, baseline: Path, images: int, progress: bool
                     ) -> dict:
    """The scale's input-compression record: read from ``<measure_out>/input.json`` when it
    was made of ``baseline``'s checkpoint with the scale's codecs and qualities on
    ``images`` test images (the count the feature methods were measured on), else measured
    (test images spread over the split, all when ``images`` is the whole split).

    Raises:
        RecordError: there is no such record and no baseline checkpoint to measure it with.
    """
    from aecnn.evaluation.input_compression import run_input_compression

    f = Path(cfg.measure_out) / RECORD
    checkpoint = baseline / "best.pt"
    want = _wanted(cfg, checkpoint, images)
    if f.is_file():
        rec = json.loads(f.read_text())
        if all(rec.get(k) == v for k, v in want.items()) or (
                not checkpoint.is_file()
                and all(rec.get(k) == v for k, v in want.items() if k != "checkpoint")):
            return rec
    if not checkpoint.is_file():
        raise RecordError(f"no {f} for this scale's input references, and no baseline "
                          f"{checkpoint} to measure them with")
    # ``images`` spread over the split, as the feature methods' (all when it is the split)
    rec = run_input_compression(checkpoint, want["codecs"], want["qualities"], images,
                                split="test", progress=progress)
    return write_record(f, rec)


def summarize_inputs(rec: dict) -> dict:
    """What a table keeps of an input-compression record: per (codec, quality) the mean
    bytes per image and the top-1, and the uncompressed crop's."""
    raw = next(r for r in rec["rows"] if r["codec"] == "raw")
    return {"images": rec["images"], "input_size": rec["input_size"],
            "checkpoint": rec["checkpoint"],
            "raw": {"bytes_per_image": raw["bytes_mean"], "accuracy": raw["top1"]},
            "rows": [{"codec": r["codec"], "quality": r["quality"],
                      "bytes_per_image": r["bytes_mean"], "accuracy": r["top1"]}
                     for r in rec["rows"] if r["codec"] != "raw"]}
