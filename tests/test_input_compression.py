"""Input compression (the photo sent as JPEG/WebP): sizes, record, CLI, errors. Seconds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from aecnn.benchmarks.input_codec import add_arguments, run
from aecnn.data.splits import Manifest, packaged_manifest
from aecnn.errors import AecnnError, CheckpointError
from aecnn.evaluation.input_compression import (
    decode,
    device_crop,
    encode,
    render_markdown,
    run_input_compression,
)
from aecnn.models import create_model
from aecnn.training.checkpoint import save_checkpoint

SIZE = 32


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A random-weight ResNet-18 for the packaged manifest's 101 classes, at 32 px."""
    torch.manual_seed(0)
    classes = list(Manifest.load(packaged_manifest()).classes)
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_checkpoint(path, {"model": create_model("resnet18", len(classes)).state_dict(),
                           "classes": classes, "model_name": "resnet18",
                           "config": {"data": {"input_size": SIZE}}})
    return path


def _photo(caltech_root: Path) -> bytes:
    m = Manifest.load(packaged_manifest())
    return (caltech_root / m.test[0][0]).read_bytes()


def test_encode_decode_sizes_and_determinism(caltech_root):
    crop = device_crop(_photo(caltech_root), SIZE)
    assert crop.shape == (SIZE, SIZE, 3) and crop.dtype == np.uint8
    for codec in ("jpeg", "webp"):
        sizes = []
        for q in (90, 50, 10):
            data = encode(crop, codec, q)
            assert data == encode(crop, codec, q)  # deterministic
            assert decode(data).shape == (SIZE, SIZE, 3)
            sizes.append(len(data))
        assert sizes[0] > sizes[1] > sizes[2], (codec, sizes)
    with pytest.raises(AecnnError, match="codec"):
        encode(crop, "png", 50)
    with pytest.raises(AecnnError, match="quality"):
        encode(crop, "jpeg", 0)


def test_record_has_every_codec_and_quality(caltech_root, checkpoint):
    rec = run_input_compression(checkpoint, ("jpeg", "webp"), (10, 50, 90), images=4,
                                split_point="stem", progress=False)
    keys = {(r["codec"], r["quality"]) for r in rec["rows"]}
    assert keys == {("raw", None)} | {(c, q) for c in ("jpeg", "webp") for q in (10, 50, 90)}
    assert rec["images"] == 4 and rec["input_size"] == SIZE and rec["sent_size"] == [SIZE, SIZE]
    raw = next(r for r in rec["rows"] if r["codec"] == "raw")
    assert raw["bytes_mean"] == 3 * SIZE * SIZE and raw["ratio_vs_input"] == 1.0
    # ResNet-18 stem at 32 px: 64 x 8 x 8 float32
    assert rec["split_tensor_bytes"] == 4 * 64 * 8 * 8
    for codec in ("jpeg", "webp"):
        b = {r["quality"]: r["bytes_mean"] for r in rec["rows"] if r["codec"] == codec}
        assert b[90] > b[50] > b[10]
    for r in rec["rows"]:
        assert 0 <= r["top1"] <= r["top5"] <= 100 and r["images"] == 4
        assert r["ratio_vs_split"] == pytest.approx(rec["split_tensor_bytes"] / r["bytes_mean"])
    again = run_input_compression(checkpoint, ("jpeg", "webp"), (10, 50, 90), images=4,
                                  split_point="stem", progress=False)
    assert again["rows"] == rec["rows"]
    assert "| webp | 10 |" in render_markdown(rec)


def test_cli_writes_record_table_and_figure(caltech_root, checkpoint, tmp_path):
    p = argparse.ArgumentParser()
    add_arguments(p)
    out = tmp_path / "out"
    args = p.parse_args(["--checkpoint", str(checkpoint), "--qualities", "30", "75",
                         "--codecs", "jpeg", "--images", "2", "--out", str(out),
                         "--no-progress", "--threads", "1"])
    assert run(args) == 0
    rec = json.loads((out / "input.json").read_text())
    assert [(r["codec"], r["quality"]) for r in rec["rows"]] == [("raw", None), ("jpeg", 75),
                                                                 ("jpeg", 30)]
    assert "command" in rec and "machine" in rec
    assert (out / "input.md").read_text().startswith("Input compression")
    assert (out / "input.png").stat().st_size > 0
    for bad in (["--qualities", "0"], ["--qualities", "101"], ["--images", "0"],
                ["--codecs", "png"]):
        with pytest.raises(SystemExit):
            p.parse_args(["--checkpoint", "x", *bad])


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        run_input_compression(bad, progress=False)
    with pytest.raises(CheckpointError):
        run_input_compression(tmp_path / "missing.pt", progress=False)
    wrong = tmp_path / "wrong.pt"
    save_checkpoint(wrong, {"model": {"fc.weight": torch.zeros(3, 3)}, "classes": ["a"],
                            "model_name": "resnet18", "config": {"data": {"input_size": 32}}})
    with pytest.raises(CheckpointError, match="do not fit"):
        run_input_compression(wrong, progress=False)
    assert issubclass(CheckpointError, AecnnError)


def test_unknown_split_point_and_quality(checkpoint):
    with pytest.raises(AecnnError):
        run_input_compression(checkpoint, qualities=(0,), progress=False)
    with pytest.raises(AecnnError):
        run_input_compression(checkpoint, split_point="nowhere", progress=False)


def test_cli_choices_match_the_module():
    from aecnn.benchmarks import input_codec
    from aecnn.evaluation import input_compression

    assert input_codec.CODECS == input_compression.CODECS
    assert input_codec.QUALITIES == input_compression.QUALITIES


def test_full_offloading_classifies_the_crop_bench_input_classifies(caltech_root, checkpoint):
    """The edge server's photo path (IMAGE requests, ``aecnn infer --mode full``) takes an
    ``S x S`` photo as the crop the device made: the tensor it classifies is the one ``aecnn
    bench input`` classifies for the same JPEG bytes (it used to resize the crop again to
    ``S * 256 / 224`` and crop its centre, a zoom of 8/7), so both report the same class."""
    import asyncio
    import threading

    from aecnn.core.split import SplitMeta, SplitNetwork
    from aecnn.evaluation.input_compression import load_baseline, to_input
    from aecnn.models import get_spec
    from aecnn.runtime.client import Connection, FullOffloading
    from aecnn.runtime.preprocess import ArrayPreprocessor, Preprocessor
    from aecnn.runtime.server import EdgeServer, ServerConfig
    from aecnn.training.export import meta_from_baseline

    spec = get_spec("resnet18")
    m = Manifest.load(packaged_manifest())
    photos = [(caltech_root / m.test[i][0]).read_bytes() for i in (0, 200, 400)]
    blobs = [encode(device_crop(p, SIZE), "jpeg", 75) for p in photos]
    prep = Preprocessor(SIZE, spec.mean, spec.std)
    aprep = ArrayPreprocessor(SIZE, spec.mean, spec.std)
    for b in blobs:
        bench = to_input([decode(b)], spec.mean, spec.std)
        # float32 rounding of the scaling apart (the old path differed by up to 2.7)
        assert (prep(b) - bench).abs().max() < 1e-5
        assert np.abs(aprep(b) - bench.numpy()).max() < 1e-5
    # end to end: the server's answer is the class bench input counts
    model, _, _ = load_baseline(checkpoint)
    meta, state = meta_from_baseline(checkpoint, "stem", "x1")
    var = SplitNetwork.from_meta(meta)
    var.load_state_dict(state)
    assert isinstance(meta, SplitMeta)
    loop = asyncio.new_event_loop()
    server = EdgeServer({"x1": var.eval()}, ServerConfig(port=0, threads=1))
    host, port = loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        with Connection(host, port) as conn:
            runner = FullOffloading("x1", conn)
            for b in blobs:
                with torch.inference_mode():
                    probs = model(to_input([decode(b)], spec.mean, spec.std)).softmax(1)[0]
                r = runner.infer(b)
                assert r.cls == int(probs.argmax())
                assert r.score == pytest.approx(float(probs.max()), abs=1e-5)
    finally:
        asyncio.run_coroutine_threadsafe(server.shutdown(), loop).result(20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
