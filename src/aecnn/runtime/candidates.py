"""The deployable points of a set of variant files: which grids and coders each is profiled
on, what a candidate is called in a latency profile, and where its accuracy comes from.

A *candidate* is one way to answer a photo (:mod:`aecnn.runtime.latency`): a variant file on
one quantisation grid (co-inference), the uncut network on the device (``local``), or the
device's ``S x S`` crop sent as JPEG at one quality (``full-jpeg-qN``). Which grids a variant
file is profiled on:

- a learned bottleneck (``bridge: entropic``): its own grid and tables only (``learned``,
  wire coder 6, coder ``factorized``);
- a quantisation-aware variant (``meta.quant``): the grid it was fine-tuned through only;
- any other: every grid asked for (``float32`` by default).

The coders of an integer grid are those asked for, plus ``prior`` when the file holds a
context prior for that grid (wire coder 5).

Accuracy (test top-1, %), by preference: *given* (a number the caller supplies, e.g. from an
``aecnn bench input`` record for JPEG offloading), *measured* (here, on test photos, through
the very codec and server path the candidate deploys), *recorded* (the variant's
``meta.test_top1``, valid on a float grid, on the grid a QAT variant was fine-tuned through,
and for a learned bottleneck; an 8-bit grid without clipping and float16 are taken to keep
float32's, and say so), else none.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from aecnn.compression.codec import decode_packet
from aecnn.compression.quantize import DType, QuantSpec
from aecnn.compression.wire import Packet
from aecnn.core.split import SplitMeta, SplitNetwork
from aecnn.runtime.preprocess import Preprocessor, device_crop, encode_rgb

LEARNED = "learned"
"""The grid of a learned bottleneck: its own, frozen in the file (wire coder 6)."""
FACTORIZED = "factorized"
LOCAL = "local"


def jpeg_key(quality: int) -> str:
    """The candidate key of full offloading as JPEG at ``quality``: ``full-jpeg-q90``."""
    return f"full-jpeg-q{quality}"


def jpeg_grid(quality: int) -> str:
    """The ``quant`` of that candidate: ``jpeg@q90``."""
    return f"jpeg@q{quality}"


def candidate_grids(v: SplitNetwork, grids: Sequence[str]) -> list[str]:
    """The grids ``v`` is profiled on (see the module's docstring)."""
    m = v.meta
    assert m is not None
    if m.bridge == "entropic":
        return [LEARNED]
    if m.quant:
        return [m.quant]
    return list(dict.fromkeys(str(QuantSpec.parse(g)) for g in grids))


def candidate_coders(v: SplitNetwork, grid: str, coders: Sequence[str]) -> list[str]:
    """The coders ``v`` is profiled with on ``grid``: ``factorized`` for a learned
    bottleneck; else ``coders`` (``prior`` only where the file holds that grid's prior) and
    ``prior`` when it does."""
    if grid == LEARNED:
        return [FACTORIZED]
    has_prior = v.prior(grid) is not None
    out = [c for c in dict.fromkeys(coders) if c != "prior" or has_prior]
    if has_prior and "prior" not in out:
        out.append("prior")
    return out


def candidate_keys(variants: dict[str, SplitNetwork], grids: Sequence[str]
                   ) -> dict[str, tuple[str, str]]:
    """Every co-inference candidate of ``variants`` (name -> network) on ``grids``: key ->
    (variant name, grid). The key is the variant's name, followed by ``:GRID`` when that
    variant is profiled on several grids."""
    out = {}
    for name, v in variants.items():
        vg = candidate_grids(v, grids)
        for g in vg:
            out[f"{name}:{g}" if len(vg) > 1 else name] = (name, g)
    return out


def recorded_accuracy(meta: SplitMeta, grid: str) -> tuple[float | None, str]:
    """``meta.test_top1`` where it is the accuracy on ``grid``, with a sentence saying so."""
    where = f"test top-1 recorded in {meta.source or 'the variant file'}"
    if meta.test_top1 is None:
        return None, "none: the variant file records no accuracy"
    acc = float(meta.test_top1)
    if grid == LEARNED:
        return acc, f"recorded: {where} (its own grid, as deployed)"
    spec = QuantSpec.parse(grid)
    if meta.quant:
        if spec == QuantSpec.parse(meta.quant):
            return acc, f"recorded: {where} (fine-tuned and tested through {meta.quant})"
        return None, f"none: {where} is on {meta.quant}, not {grid}"
    if spec.dtype == DType.FLOAT32:
        return acc, f"recorded: {where} (float32)"
    if spec.dtype == DType.FLOAT16:
        return acc, f"recorded: {where} (float32; float16 taken as equal)"
    if spec.bits >= 8 and spec.clip >= 1.0 and not spec.grid_levels:
        return acc, f"recorded: {where} (float32; {grid}, 256 levels, taken as equal)"
    return None, f"none: {where} is float32's, not {grid}'s (measure it)"


# ---------------------------------------------------------------------- measured accuracy
def _top1(predict, photos: Sequence[tuple[bytes, str]], classes: Sequence[str]) -> float:
    correct = sum(classes[int(predict(data).argmax())] == label for data, label in photos)
    return 100.0 * correct / max(len(photos), 1)


@torch.inference_mode()
def measure_co(v: SplitNetwork, grid: str, photos: Sequence[tuple[bytes, str]]) -> float:
    """Top-1 (%) of co-inference with ``v`` on ``grid`` over ``photos`` (encoded photo,
    class name): the device's preprocessing, head and codec, the packet's bytes decoded as
    the server decodes them, bridge and tail. The coder is ``none`` (every coder is
    lossless, so the accuracy is the grid's)."""
    m = v.meta
    assert m is not None
    prep = Preprocessor(m.input_size, m.mean, m.std)
    codec = v.codec("float32" if grid == LEARNED else grid, "none")
    tables = v.coding_tables()

    def predict(data: bytes) -> torch.Tensor:
        z = v.head(prep(data))[0]
        packet, _ = codec.encode(z, m.kept, m.channels if m.kept else None, m.name, m.point)
        return v.server(decode_packet(Packet.from_bytes(packet.to_bytes()), tables)[None])

    return _top1(predict, photos, m.classes)


@torch.inference_mode()
def measure_local(full: SplitNetwork, photos: Sequence[tuple[bytes, str]]) -> float:
    """Top-1 (%) of the uncut network on the device's preprocessing of ``photos``."""
    m = full.meta
    assert m is not None
    prep = Preprocessor(m.input_size, m.mean, m.std)
    return _top1(lambda data: full(prep(data)), photos, m.classes)


@torch.inference_mode()
def measure_jpeg(full: SplitNetwork, quality: int, photos: Sequence[tuple[bytes, str]]
                 ) -> float:
    """Top-1 (%) of full offloading of the device's crop as JPEG at ``quality``: the crop,
    JPEG, then the server's preprocessing of those bytes and the uncut network."""
    m = full.meta
    assert m is not None
    prep = Preprocessor(m.input_size, m.mean, m.std)

    def predict(data: bytes) -> torch.Tensor:
        return full(prep(encode_rgb(device_crop(data, m.input_size), "jpeg", quality)))

    return _top1(predict, photos, m.classes)


__all__ = ["FACTORIZED", "LEARNED", "LOCAL", "candidate_coders", "candidate_grids",
           "candidate_keys", "jpeg_grid", "jpeg_key", "measure_co", "measure_jpeg",
           "measure_local", "recorded_accuracy"]
