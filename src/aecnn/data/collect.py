"""Image files named on a command line: files, folders, or the Caltech-101 test split."""

from __future__ import annotations

from pathlib import Path

from aecnn.data.caltech101 import resolve_root
from aecnn.data.splits import load_or_make, spread_indices
from aecnn.errors import AecnnError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def collect_images(paths: list[str], test: int | None, data: str | None) -> list[Path]:
    """Image files from files/folders, or the first ``test`` images of the test split."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise AecnnError(f"image path {p} does not exist")
    if test:
        root = resolve_root(data)
        manifest = load_or_make(None, root, 0)
        out += [root / s[0] for s in manifest.split("test")[:test]]
    if not out:
        raise AecnnError("no images given (paths, or --test N for the Caltech-101 test split)")
    return out


def labelled_test_images(n: int, data: str | None) -> list[tuple[Path, str]]:
    """``n`` photos of the Caltech-101 test split, spread evenly over it (so every class of
    the class-sorted split has its share; all of them when ``n`` is 0 or more than the
    split holds), each with its class name."""
    root = resolve_root(data)
    manifest = load_or_make(None, root, 0)
    test = manifest.split("test")
    return [(root / test[i][0], manifest.classes[test[i][1]])
            for i in spread_indices(len(test), n)]
