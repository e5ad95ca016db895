"""From encoded image bytes to the model input: decode, resize, centre crop, normalise.

Used on the device (local computing, co-inference) and on the server (full offloading), so
both ends preprocess identically. A photo that is already ``S x S`` (the input side) is taken
as the crop the network sees, as a device that offloads its crop (``aecnn bench input``, the
JPEG full offloading of ``aecnn profile --jpeg``) sends it: it is only scaled and normalised,
never resized again. :class:`ArrayPreprocessor` is the same in numpy alone, for
a device without torch (the ONNX Runtime head); torch is imported only by the torch path.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from aecnn.errors import ImageReadError

if TYPE_CHECKING:
    import torch

PHOTO_CODECS = {"jpeg": "JPEG", "webp": "WEBP"}  # what a device may offload its crop as
MAX_PIXELS = 50_000_000  # refuse decompression bombs well before PIL's own limit
FORMATS = ("JPEG", "PNG", "BMP", "WEBP")  # what decode_image opens; no other decoder runs
_OBJECT = re.compile(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>")


def resize_size(input_size: int) -> int:
    """Shorter side before the centre crop (:func:`aecnn.data.transforms.resize_size`)."""
    return round(input_size * 256 / 224)


def decode_image(data: bytes, input_size: int, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """Encoded image bytes (JPEG, PNG, BMP or WebP) -> RGB uint8 ``(3, h, w)`` with shorter
    side ``resize_size``: :func:`decode_rgb` as a tensor."""
    import torch

    arr = decode_rgb(data, input_size, max_pixels)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def decode_rgb(data: bytes, input_size: int, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, BMP or WebP) -> RGB uint8 ``(h, w, 3)`` with shorter
    side ``resize_size``, or, for a photo of exactly ``input_size x input_size`` (a crop the
    device already made), that photo as it is. The pixel count is checked from the file's
    header, before any pixel is decompressed, so the cost of a decode is bounded by
    ``max_pixels``.

    Raises:
        ImageReadError: not an image of those formats, truncated, or more than
            ``max_pixels`` pixels.
    """
    side = resize_size(input_size)
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise ImageReadError(f"image of {w}x{h} pixels is over the limit of "
                                     f"{max_pixels}")
            cropped = (w, h) == (input_size, input_size)  # the crop itself: no resize
            if not cropped:
                img.draft("RGB", (side, side))
            img = img.convert("RGB") if img.mode != "RGB" else img
            if not cropped:
                w, h = img.size
                s = side / min(w, h)
                img = img.resize((max(1, round(w * s)), max(1, round(h * s))),
                                 Image.Resampling.BILINEAR, reducing_gap=None)
            arr = np.asarray(img, dtype=np.uint8)
    except UnidentifiedImageError:
        raise ImageReadError("cannot decode image: not a " + ", ".join(FORMATS)
                             + " file") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        # PIL's messages may name Python objects with their addresses: never send those
        raise ImageReadError(f"cannot decode image: {_OBJECT.sub('', str(exc))}") from None
    return arr


def read_image(image: bytes | str | Path) -> bytes:
    """The encoded photo: ``image`` itself, or the bytes of the file it names.

    Raises:
        ImageReadError: the file cannot be read (one line, no traceback).
    """
    if isinstance(image, bytes):
        return image
    try:
        return Path(image).read_bytes()
    except OSError as exc:
        raise ImageReadError(f"cannot read image {image}: {exc.strerror or exc}") from None


class Preprocessor:
    """``bytes | path -> (1, 3, S, S)`` float32: :func:`decode_image` (the resize of the
    evaluation transform, or none for an ``S x S`` photo), then the rest of the evaluation
    transform: centre crop, scaling to [0, 1], normalisation."""

    def __init__(self, input_size: int, mean: tuple, std: tuple,
                 max_pixels: int = MAX_PIXELS) -> None:
        import torch
        from torchvision.transforms import v2 as T

        self.input_size, self.max_pixels = input_size, max_pixels
        self.transform = T.Compose([T.CenterCrop(input_size),
                                    T.ToDtype(torch.float32, scale=True),
                                    T.Normalize(mean, std)])

    def __call__(self, image: bytes | str | Path) -> torch.Tensor:
        pixels = decode_image(read_image(image), self.input_size, self.max_pixels)
        return self.transform(pixels)[None]


class ArrayPreprocessor:
    """:class:`Preprocessor` in numpy alone: ``bytes | path -> (1, 3, S, S)`` float32, the
    same decode and resize (:func:`device_crop`), then scaling and normalisation in float32
    as torchvision computes them."""

    def __init__(self, input_size: int, mean: tuple, std: tuple,
                 max_pixels: int = MAX_PIXELS) -> None:
        self.input_size, self.max_pixels = input_size, max_pixels
        self.mean = np.asarray(mean, np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(3, 1, 1)

    def __call__(self, image: bytes | str | Path) -> np.ndarray:
        crop = device_crop(read_image(image), self.input_size, self.max_pixels)
        x = (crop.transpose(2, 0, 1).astype(np.float32) * np.float32(1.0 / 255)
             - self.mean) / self.std
        return np.ascontiguousarray(x[None], dtype=np.float32)


def device_crop(data: bytes, input_size: int, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Photo file bytes -> the ``(S, S, 3)`` uint8 centre crop the network sees
    (:func:`decode_rgb`, then the centre ``S x S`` as torchvision crops it: top =
    ``round((h - S) / 2)``, left likewise). What a device offloads when it sends its crop.

    Raises:
        ImageReadError: the bytes are not a readable image.
    """
    rgb = decode_rgb(data, input_size, max_pixels)
    s = input_size
    h, w = rgb.shape[:2]
    top, left = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
    return np.ascontiguousarray(rgb[top:top + s, left:left + s])


def encode_rgb(rgb: np.ndarray, codec: str, quality: int) -> bytes:
    """``(H, W, 3)`` uint8 -> the bytes of ``codec`` (``jpeg``: baseline, 4:2:0, PIL's
    default tables; ``webp``: lossy, libwebp's default method 4) at ``quality`` (1..100).

    Raises:
        AecnnError: an unknown codec or a quality outside 1..100.
    """
    from aecnn.errors import AecnnError

    if codec not in PHOTO_CODECS:
        raise AecnnError(f"unknown codec {codec!r}; choose from {', '.join(PHOTO_CODECS)}")
    if not 1 <= quality <= 100:
        raise AecnnError(f"quality must be in 1..100, not {quality}")
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, PHOTO_CODECS[codec], quality=int(quality))
    return buf.getvalue()
