"""A compact copy of Caltech-101 for a machine the full dataset cannot travel to.

``aecnn data pack --to DIR --shorter-side 146`` decodes every image of the 101 classes at the
shorter side that an input size's transforms start from (:func:`resize_size`: 146 px for
128 px inputs), re-encodes it (WebP or JPEG at ``quality``) and writes it to the same
relative path under ``DIR/101_ObjectCategories``. The names are kept, so the committed split
manifest applies unchanged; the loader opens files by content, not by suffix. Decoding the
copy at that shorter side is then a no-op resize, so the only difference from the original
pipeline is the lossy re-encoding. ``--tar`` writes one uncompressed tar of the copy instead
(what a 64 MiB transfer limit wants: the images are compressed already).
"""

from __future__ import annotations

import contextlib
import io
import tarfile
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from aecnn.data.caltech101 import scan
from aecnn.data.images import load_image
from aecnn.errors import AecnnError

FORMATS = {"webp": "WEBP", "jpeg": "JPEG"}


def encode_image(path: Path, shorter_side: int, fmt: str = "webp", quality: int = 85) -> bytes:
    """The image at ``path`` at ``shorter_side`` px (bilinear, as the loader resizes),
    encoded as ``fmt`` at ``quality``."""
    pixels = load_image(path, shorter_side).permute(1, 2, 0).numpy()
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, FORMATS[fmt], quality=quality)
    return out.getvalue()


def pack(root: Path, to: Path, shorter_side: int, fmt: str = "webp", quality: int = 85,
         as_tar: bool = False, progress: bool = True) -> tuple[int, int]:
    """Write the compact copy of the dataset at ``root`` (the folder holding
    ``101_ObjectCategories``) to the folder ``to``, or to the tar file ``to`` with
    ``as_tar``. Returns ``(images, bytes written)``."""
    if fmt not in FORMATS:
        raise AecnnError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    if not 16 <= shorter_side <= 4096 or not 1 <= quality <= 100:
        raise AecnnError("--shorter-side must be 16-4096 px and --quality 1-100")
    _, samples = scan(root)
    total = 0
    with tarfile.open(to, "w") if as_tar else contextlib.nullcontext() as tar:
        for rel, _ in tqdm(samples, desc=f"packing ({shorter_side} px, {fmt} q{quality})",
                           unit="img", disable=not progress):
            data = encode_image(root / rel, shorter_side, fmt, quality)
            total += len(data)
            if tar is not None:  # rel: 101_ObjectCategories/<class>/<file>
                info = tarfile.TarInfo(rel)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                dest = to / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
    return len(samples), total
