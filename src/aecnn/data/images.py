"""Decoding images and caching them decoded, so CPU training is not bound by JPEG decoding."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from aecnn.data.cache import cache_dir
from aecnn.errors import ImageReadError


def load_image(path: str | Path, shorter_side: int | None = None) -> torch.Tensor:
    """Read an image as RGB (grey-scale and palette images converted) uint8 ``(3, H, W)``.

    With ``shorter_side`` the image is resized (bilinear, antialiased) so that its shorter
    side has that length; JPEG decoding then uses the decoder's fast down-scaling.
    """
    try:
        with Image.open(path) as img:
            if shorter_side is not None:
                img.draft("RGB", (shorter_side, shorter_side))
            img = img.convert("RGB")
            if shorter_side is not None:
                w, h = img.size
                s = shorter_side / min(w, h)
                img = img.resize((max(1, round(w * s)), max(1, round(h * s))),
                                 Image.Resampling.BILINEAR, reducing_gap=None)
            arr = np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc}") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


class DecodedCache:
    """All images of a sample list decoded once at a fixed shorter side, in one memory map.

    Files: ``<key>.u8`` (the pixels, concatenated) and ``<key>.json`` (offsets and shapes).
    The map is opened lazily, so the object pickles cheaply into data-loader workers.
    """

    def __init__(self, root: Path, paths: Sequence[str], shorter_side: int,
                 directory: Path | None = None, progress: bool = True) -> None:
        self.shorter_side = shorter_side
        key = hashlib.sha256(
            json.dumps([str(root), list(paths), shorter_side, 1]).encode()
        ).hexdigest()[:16]
        directory = directory or cache_dir()
        self.data_file = directory / f"images-{key}.u8"
        self.index_file = directory / f"images-{key}.json"
        if not self.index_file.is_file():
            self._build(root, paths, directory, progress)
        index = json.loads(self.index_file.read_text())
        self.offsets: list[int] = index["offsets"]
        self.shapes: list[list[int]] = index["shapes"]
        self._map: np.memmap | None = None

    def _build(self, root: Path, paths: Sequence[str], directory: Path, progress: bool) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        offsets, shapes, pos = [], [], 0
        tmp = self.data_file.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for p in tqdm(paths, desc=f"decoding images ({self.shorter_side}px)",
                          disable=not progress, unit="img"):
                img = load_image(root / p, self.shorter_side).numpy()
                f.write(img.tobytes())
                offsets.append(pos)
                shapes.append(list(img.shape))
                pos += img.size
        tmp.replace(self.data_file)
        self.index_file.write_text(json.dumps({"offsets": offsets, "shapes": shapes}))

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> torch.Tensor:
        if self._map is None:
            self._map = np.memmap(self.data_file, dtype=np.uint8, mode="r")
        c, h, w = self.shapes[i]
        flat = self._map[self.offsets[i]: self.offsets[i] + c * h * w]
        return torch.from_numpy(np.array(flat).reshape(c, h, w))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_map": None}
