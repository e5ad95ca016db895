"""Caltech-101 discovery, stratified splits, manifests, images and the decoded cache."""

from __future__ import annotations

import json

import pytest
import torch

from aecnn.data import (
    ImageFolderSplit,
    Manifest,
    eval_transform,
    load_image,
    make_manifest,
    resolve_root,
    train_transform,
)
from aecnn.data.images import DecodedCache
from aecnn.errors import DatasetNotFoundError, ImageReadError


def test_resolve_root_errors(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError, match="aecnn data download"):
        resolve_root(tmp_path / "missing")
    monkeypatch.setenv("AECNN_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path)):
        resolve_root()


def test_resolve_root_accepts_category_folder(caltech_root):
    assert resolve_root(caltech_root / "101_ObjectCategories") == caltech_root


def test_manifest_is_stratified_deterministic_and_disjoint(caltech_root):
    m = make_manifest(caltech_root, seed=0)
    assert len(m.classes) == 101 and "BACKGROUND_Google" not in m.classes
    assert len(m.train) + len(m.val) + len(m.test) == 8677
    sets = [{p for p, _ in m.split(s)} for s in ("train", "val", "test")]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    for split in ("train", "val", "test"):
        assert {label for _, label in m.split(split)} == set(range(101))
    assert make_manifest(caltech_root, seed=0) == m
    assert make_manifest(caltech_root, seed=1).test != m.test


def test_committed_manifest_matches_generator(caltech_root):
    from pathlib import Path

    committed = Path(__file__).parents[1] / "configs" / "splits" / "caltech101_seed0.json"
    assert Manifest.load(committed) == make_manifest(caltech_root, seed=0)


def test_manifest_roundtrip_and_malformed(tmp_path, caltech_root):
    m = make_manifest(caltech_root, seed=3).subset(2)
    m.save(tmp_path / "m.json")
    assert Manifest.load(tmp_path / "m.json") == m
    assert Manifest.load(tmp_path / "m.json").digest() == m.digest()
    data = json.loads((tmp_path / "m.json").read_text())
    del data["train"]
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(DatasetNotFoundError, match="malformed"):
        Manifest.load(tmp_path / "bad.json")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        Manifest.load(tmp_path / "none.json")


def test_subset_counts(caltech_root):
    m = make_manifest(caltech_root).subset(8)
    assert len(m.train) == 8 * 101
    assert len(m.test) == 2 * 101
    with pytest.raises(ValueError):
        m.subset(0)


def test_greyscale_becomes_rgb(caltech_root):
    path = caltech_root / "101_ObjectCategories" / "Motorbikes" / "image_0512.jpg"
    img = load_image(path)
    assert img.dtype == torch.uint8 and img.shape[0] == 3
    assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])
    small = load_image(path, shorter_side=40)
    assert min(small.shape[1:]) == 40


def test_unreadable_image_is_clear(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 this is no jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg"):
        load_image(tmp_path / "broken.jpg")


def test_cache_returns_what_decoding_returns(caltech_root, tmp_path):
    m = make_manifest(caltech_root).subset(1)
    paths = [p for p, _ in m.train[:12]]
    cache = DecodedCache(caltech_root, paths, 40, directory=tmp_path, progress=False)
    again = DecodedCache(caltech_root, paths, 40, directory=tmp_path, progress=False)
    for i, p in enumerate(paths):
        assert torch.equal(cache[i], load_image(caltech_root / p, 40))
        assert torch.equal(again[i], cache[i])


def test_dataset_transforms_give_fixed_size(caltech_root):
    m = make_manifest(caltech_root).subset(1)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    for tf in (train_transform(48, mean, std), eval_transform(48, mean, std)):
        ds = ImageFolderSplit(caltech_root, m.train[:3], tf, 55, cache=True, progress=False)
        x, y = ds[2]
        assert x.shape == (3, 48, 48) and x.dtype == torch.float32
        assert y == m.train[2][1]


def test_pack_keeps_names_and_split_and_decodes_at_its_shorter_side(mini_caltech, tmp_path,
                                                                     capsys):
    """``aecnn data pack``: a folder and a tar copy with every image's name, so the same
    split, each at the shorter side asked for (decoding it there again is a no-op resize),
    close to the original pixels; bad arguments are clear errors."""
    import tarfile

    from PIL import Image

    from aecnn.cli.main import main
    from aecnn.data.caltech101 import scan
    from aecnn.data.images import load_image

    out = tmp_path / "packed"
    assert main(["data", "pack", "--data", str(mini_caltech), "--to", str(out),
                 "--shorter-side", "40", "--quality", "90", "--no-progress"]) == 0
    assert "404 images" in capsys.readouterr().out
    classes, samples = scan(mini_caltech)
    assert scan(out) == (classes, samples)
    rel = samples[0][0]
    with Image.open(out / rel) as img:
        assert img.format == "WEBP" and min(img.size) == 40
    a, b = load_image(out / rel, 40), load_image(mini_caltech / rel, 40)
    assert a.shape == b.shape and (a.float() - b.float()).abs().mean() < 12
    tar = tmp_path / "packed.tar"
    assert main(["data", "pack", "--data", str(mini_caltech), "--to", str(tar), "--tar",
                 "--shorter-side", "40", "--format", "jpeg", "--no-progress"]) == 0
    with tarfile.open(tar) as t:
        names = t.getnames()
        assert names == [p for p, _ in samples]
        assert t.extractfile(rel).read()[:2] == b"\xff\xd8"  # JPEG
    capsys.readouterr()
    assert main(["data", "pack", "--data", str(mini_caltech), "--to", str(tmp_path / "x"),
                 "--shorter-side", "8"]) == 2
    assert "--shorter-side" in capsys.readouterr().err
