"""Caltech-101 on disk: finding the folder and listing its images.

The standard layout is ``<root>/101_ObjectCategories/<category>/image_NNNN.jpg``: 101
categories plus ``BACKGROUND_Google``, which is clutter, not a class, and is left out.
"""

from __future__ import annotations

import os
from pathlib import Path

from aecnn.errors import DatasetNotFoundError

FOLDER = "101_ObjectCategories"
EXCLUDED = frozenset({"BACKGROUND_Google"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
NUM_CLASSES = 101

_HOW_TO_GET = (
    "Point --data (or the AECNN_DATA environment variable) at a folder that holds "
    f"{FOLDER}/, or fetch it with `aecnn data download --to DIR` on a machine with network "
    "access (torchvision's Caltech101 downloader)."
)


def _default_candidates() -> list[Path]:
    here = Path(__file__).resolve()
    rel = Path("..") / "shared" / "datasets" / "caltech101"
    return [Path.cwd() / rel, *(p / rel for p in here.parents[:5])]


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    """The folder that holds ``101_ObjectCategories/``.

    Looked up in order: ``root``; ``$AECNN_DATA``; ``../shared/datasets/caltech101`` next to
    the working directory or the source tree. ``root`` may also name the
    ``101_ObjectCategories`` folder itself.

    Raises:
        DatasetNotFoundError: nothing usable was found; the message says how to get the data.
    """
    given = root if root is not None else os.environ.get("AECNN_DATA")
    candidates = [Path(given)] if given else _default_candidates()
    for cand in candidates:
        cand = cand.expanduser()
        if cand.name == FOLDER and cand.is_dir():
            cand = cand.parent
        if (cand / FOLDER).is_dir():
            return cand.resolve()
    if given:
        raise DatasetNotFoundError(f"no Caltech-101 at {given} ({FOLDER}/ not found). "
                                   + _HOW_TO_GET)
    raise DatasetNotFoundError("Caltech-101 not found. " + _HOW_TO_GET)


def scan(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Classes (sorted folder names) and ``(path relative to root, label)`` of every image."""
    base = root / FOLDER
    classes = sorted(d.name for d in base.iterdir() if d.is_dir() and d.name not in EXCLUDED)
    if len(classes) != NUM_CLASSES:
        raise DatasetNotFoundError(
            f"{base} has {len(classes)} category folders, expected {NUM_CLASSES}. " + _HOW_TO_GET
        )
    samples = []
    for label, name in enumerate(classes):
        files = sorted(f.name for f in (base / name).iterdir()
                       if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        samples += [(f"{FOLDER}/{name}/{f}", label) for f in files]
    return classes, samples


def download(to: str | os.PathLike) -> Path:
    """Download Caltech-101 with torchvision's downloader into ``to``; returns the root."""
    from torchvision.datasets import Caltech101

    target = Path(to).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    try:
        Caltech101(str(target), download=True)
    except Exception as exc:
        raise DatasetNotFoundError(f"download failed ({type(exc).__name__}: {exc})") from None
    return resolve_root(target / "caltech101")
