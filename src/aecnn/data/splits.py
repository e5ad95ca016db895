"""Deterministic, stratified train/val/test splits, stored as a JSON manifest.

Every experiment names a manifest, so all of them train and evaluate on the same images.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from aecnn.data.cache import cache_dir
from aecnn.data.caltech101 import scan
from aecnn.errors import DatasetNotFoundError

SPLITS = ("train", "val", "test")
FORMAT = "aecnn-split-manifest/1"

Sample = tuple[str, int]


def spread_indices(n: int, k: int) -> list[int]:
    """``k`` of the indices ``0 .. n - 1`` spread evenly over them (all of them when ``k``
    is 0 or at least ``n``): every class of a class-sorted split gets its share."""
    if not k or k >= n:
        return list(range(n))
    return [int(i) for i in np.linspace(0, n - 1, k).round().astype(int)]


@dataclass(frozen=True)
class Manifest:
    """Classes and the ``(relative path, label)`` samples of each split."""

    dataset: str
    seed: int
    fractions: tuple[float, float, float]
    classes: tuple[str, ...]
    train: tuple[Sample, ...] = field(repr=False)
    val: tuple[Sample, ...] = field(repr=False)
    test: tuple[Sample, ...] = field(repr=False)

    def split(self, name: str) -> tuple[Sample, ...]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose from {', '.join(SPLITS)}")
        return getattr(self, name)

    def digest(self) -> str:
        """Short hash of the sample lists (identifies the split in records)."""
        h = hashlib.sha256(json.dumps([self.train, self.val, self.test]).encode())
        return h.hexdigest()[:12]

    def subset(self, per_class: int | None) -> Manifest:
        """Keep ``per_class`` training images per class and ``max(1, per_class // 4)``
        validation and test images per class (the first ones of each split)."""
        if per_class is None:
            return self
        if per_class < 1:
            raise ValueError("subset must be at least 1 image per class")

        def cap(samples: tuple[Sample, ...], n: int) -> tuple[Sample, ...]:
            seen: dict[int, int] = {}
            out = []
            for s in samples:
                if seen.get(s[1], 0) < n:
                    seen[s[1]] = seen.get(s[1], 0) + 1
                    out.append(s)
            return tuple(out)

        n_eval = max(1, per_class // 4)
        return Manifest(self.dataset, self.seed, self.fractions, self.classes,
                        cap(self.train, per_class), cap(self.val, n_eval), cap(self.test, n_eval))

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"format": FORMAT, **asdict(self)}
        path.write_text(json.dumps(data, separators=(",", ":")) + "\n")

    @staticmethod
    def load(path: str | Path) -> Manifest:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            if data.pop("format") != FORMAT:
                raise ValueError("unknown format")
            lists = {s: tuple((str(p), int(c)) for p, c in data.pop(s)) for s in SPLITS}
            return Manifest(dataset=str(data["dataset"]), seed=int(data["seed"]),
                            fractions=tuple(data["fractions"]), classes=tuple(data["classes"]),
                            **lists)
        except FileNotFoundError:
            raise DatasetNotFoundError(f"split manifest {path} does not exist") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetNotFoundError(f"split manifest {path} is malformed: {exc}") from None


def make_manifest(root: Path, seed: int = 0,
                  fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> Manifest:
    """Split every class independently: shuffle with a per-class seed, then cut.

    Each class gets ``max(1, round(n * f))`` validation and test images and the rest for
    training, so small classes appear in every split.
    """
    classes, samples = scan(root)
    by_class: dict[int, list[Sample]] = {i: [] for i in range(len(classes))}
    for s in samples:
        by_class[s[1]].append(s)
    out: dict[str, list[Sample]] = {s: [] for s in SPLITS}
    for label, items in by_class.items():
        random.Random(f"aecnn-{seed}-{classes[label]}").shuffle(items)
        n_val = max(1, round(len(items) * fractions[1]))
        n_test = max(1, round(len(items) * fractions[2]))
        out["val"] += items[:n_val]
        out["test"] += items[n_val:n_val + n_test]
        out["train"] += items[n_val + n_test:]
    return Manifest("caltech101", seed, fractions, tuple(classes),
                    *(tuple(sorted(out[s])) for s in SPLITS))


PACKAGED = "caltech101_seed0.json"
"""The split manifest that ships with the package: Caltech-101, seed 0 (every record of this
project was made on it)."""
LEGACY_PATHS = ("configs/splits/caltech101_seed0.json",)
"""Where configs and checkpoints before the package shipped its manifest named it; such a
path that does not exist means the packaged file."""


def packaged_manifest() -> Path:
    """The path of the packaged seed-0 manifest (package data, read through
    :mod:`importlib.resources`)."""
    return Path(str(resources.files("aecnn.data") / "manifests" / PACKAGED))


def default_manifest(seed: int) -> Path:
    """Where the Caltech-101 split of ``seed`` lives when a config names no manifest: the
    packaged file for seed 0, else ``<cache>/splits/caltech101_seed<seed>.json`` (made from
    the dataset on first use; cache: ``$AECNN_CACHE`` or ``~/.cache/aecnn``)."""
    if seed == 0:
        return packaged_manifest()
    return cache_dir() / "splits" / f"caltech101_seed{seed}.json"


def load_or_make(path: str | Path | None, root: Path, seed: int) -> Manifest:
    """Read the manifest at ``path``; create it from ``root`` and ``seed`` when absent.

    ``path`` None (or empty) means :func:`default_manifest` of ``seed``; one of
    :data:`LEGACY_PATHS` that does not exist means the packaged manifest."""
    if not path or (str(path) in LEGACY_PATHS and not Path(path).is_file()):
        path = default_manifest(seed) if not path else packaged_manifest()
    path = Path(path)
    if path.is_file():
        m = Manifest.load(path)
        if m.seed != seed:
            raise DatasetNotFoundError(
                f"manifest {path} was made with seed {m.seed}, not {seed}: pass another path"
            )
        return m
    m = make_manifest(root, seed)
    m.save(path)
    return m
