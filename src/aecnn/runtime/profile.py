"""``aecnn profile``: measure what the latency model needs, on real images.

Device-side times run with ``device_threads`` torch threads (1 by default: the part of the
paper's Raspberry Pi 4B is played by one core of this machine); server-side times with
``server_threads``. Each time is the median over the images and repeats.
"""

from __future__ import annotations

import dataclasses
import io
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from PIL import Image
from tqdm import tqdm

from aecnn.compression.codec import decode_packet
from aecnn.compression.wire import Packet
from aecnn.core.split import SplitNetwork
from aecnn.runtime.candidates import (
    LEARNED,
    LOCAL,
    candidate_coders,
    candidate_keys,
    jpeg_grid,
    jpeg_key,
    measure_co,
    measure_jpeg,
    measure_local,
    recorded_accuracy,
)
from aecnn.runtime.latency import CoderCost, ImageCost, LatencyProfile, VariantCost
from aecnn.runtime.preprocess import Preprocessor, device_crop, encode_rgb
from aecnn.runtime.protocol import image_body

PHOTO_SIZES = {"224x224": (224, 224), "640x480": (640, 480), "1280x720": (1280, 720),
               "1920x1080": (1920, 1080)}


def make_photo(source: bytes, width: int, height: int, quality: int = 90) -> bytes:
    """A JPEG of ``width x height`` from a real photo: centre crop to the aspect ratio,
    resize (bicubic), encode at ``quality``. (Caltech-101 photos are about 300 x 200, so
    the larger sizes are upscaled: smoother than native photos, hence smaller files.)"""
    with Image.open(io.BytesIO(source)) as img:
        img = img.convert("RGB")
        w, h = img.size
        aspect = width / height
        if w / h > aspect:
            cw, ch = round(h * aspect), h
        else:
            cw, ch = w, round(w / aspect)
        left, top = (w - cw) // 2, (h - ch) // 2
        img = img.crop((left, top, left + cw, top + ch)).resize(
            (width, height), Image.Resampling.BICUBIC)
        out = io.BytesIO()
        img.save(out, "JPEG", quality=quality)
        return out.getvalue()


#: Idle time before each timed call. A device or server that waits for the network between
#: requests runs each step cold (its OpenMP threads asleep, caches cool): measured here,
#: ResNet-50 at 224 px on 2 threads takes ~57 ms back to back but ~95 ms after 0.3 s idle.
GAP_S = 0.1


def _median_time(fn: Callable[[], object], repeats: int, gap: float = GAP_S) -> float:
    times = []
    for _ in range(repeats):
        if gap:
            time.sleep(gap)
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


_POOL = ThreadPoolExecutor(1, thread_name_prefix="aecnn-profile")


def _on_server_thread(fn: Callable[[], object]) -> Callable[[], object]:
    """Run ``fn`` on a worker thread, as the edge server runs its models."""
    def run() -> object:
        with torch.inference_mode():  # grad mode is per thread
            return fn()

    return lambda: _POOL.submit(run).result()


class _Threads:
    def __init__(self, n: int | None) -> None:
        self.n, self.old = n, torch.get_num_threads()

    def __enter__(self) -> None:
        if self.n:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self.old)


@torch.inference_mode()
def profile_variant(v: SplitNetwork, images: Sequence[bytes], coders: Sequence[str],
                    quant: str = "float32", device_threads: int = 1,
                    server_threads: int | None = None, repeats: int = 3) -> VariantCost:
    """Times and sizes of one variant over ``images`` (encoded photo bytes) on one grid."""
    return profile_grids(v, images, {quant: list(coders)}, device_threads, server_threads,
                         repeats)[quant]


@torch.inference_mode()
def profile_grids(v: SplitNetwork, images: Sequence[bytes], grids: dict[str, Sequence[str]],
                  device_threads: int = 1, server_threads: int | None = None,
                  repeats: int = 3) -> dict[str, VariantCost]:
    """Times and sizes of one variant over ``images`` on each grid of ``grids`` (grid ->
    coders; :data:`~aecnn.runtime.candidates.LEARNED` for a learned bottleneck's own). The
    head, recovery and tail are timed once and shared; each (grid, coder) gets its own
    packet bytes and coding times. Returns grid -> cost (``name`` the variant's)."""
    m = v.meta
    prep = Preprocessor(m.input_size, m.mean, m.std)
    t_pre, t_iot, t_fr, t_es = [], [], [], []
    pairs = [(g, c) for g, cs in grids.items() for c in cs]
    enc: dict[tuple[str, str], list] = {gc: [] for gc in pairs}
    codecs = {(g, c): v.codec("float32" if g == LEARNED else g,
                              "auto" if g == LEARNED else c) for g, c in pairs}
    z = None
    for data in images:
        with _Threads(device_threads):
            t_pre.append(_median_time(lambda d=data: prep(d), repeats))
            x = prep(data)
            v.head(x)  # warm-up
            t_iot.append(_median_time(lambda x=x: v.head(x), repeats))
            z = v.head(x)
            for gc, codec in codecs.items():
                kept = m.kept
                out = {}

                def run(codec=codec, z=z, kept=kept, out=out):
                    out["p"] = codec.encode(z[0], kept, m.channels if kept else None,
                                            m.name, m.point)[0].to_bytes()

                t_enc = _median_time(run, repeats)
                enc[gc].append((len(out["p"]), t_enc, out["p"]))
        with _Threads(server_threads):
            for gc in pairs:  # the server looks its tables up per packet, as timed here
                wire = enc[gc][-1][2]
                t_dec = _median_time(
                    lambda w=wire: decode_packet(Packet.from_bytes(w), v.coding_tables()),
                    repeats)
                enc[gc][-1] = (*enc[gc][-1][:2], t_dec)
            r = v.bridge(z)
            t_fr.append(_median_time(_on_server_thread(lambda z=z: v.bridge(z)), repeats))
            t_es.append(_median_time(_on_server_thread(lambda r=r: v.tail(r)), repeats))
    med = statistics.median
    assert z is not None
    shape = tuple(int(s) for s in z.shape[1:])
    out = {}
    for g, cs in grids.items():
        out[g] = VariantCost(
            name=m.name, point=m.point, ratio=m.ratio, shape=shape,
            raw_bytes=4 * shape[0] * shape[1] * shape[2], t_pre=med(t_pre), t_iot=med(t_iot),
            t_fr=med(t_fr), t_es=med(t_es),
            coders={c: CoderCost(float(med(e[0] for e in enc[g, c])),
                                 med(e[1] for e in enc[g, c]), med(e[2] for e in enc[g, c]))
                    for c in cs},
            accuracy=m.test_top1, variant=m.name, quant=g)
    return out


@torch.inference_mode()
def profile_uncut(full: SplitNetwork, images: Sequence[bytes], jpeg: Sequence[int] = (),
                  device_threads: int = 1, server_threads: int | None = None,
                  repeats: int = 3) -> tuple[float, float, VariantCost, dict[int, VariantCost]]:
    """The uncut network ``full``: its time on the device and on the server, the ``local``
    candidate (the device's preprocessing, then the whole network) and, per JPEG quality of
    ``jpeg``, the full-offloading candidate of the device's ``S x S`` crop (``t_pre``: decode,
    resize and crop; ``t_enc``: JPEG encoding; bytes: the IMAGE request's body; ``t_dec``: the
    server's decoding and normalisation; ``t_es``: the whole network on the server)."""
    m = full.meta
    s = m.input_size
    prep = Preprocessor(s, m.mean, m.std)
    x = prep(images[0])
    with _Threads(device_threads):
        full(x)
        t_dev = _median_time(lambda: full(x), repeats)
        pre = statistics.median(_median_time(lambda d=d: prep(d), repeats) for d in images)
        crop_t = statistics.median(_median_time(lambda d=d: device_crop(d, s), repeats)
                                   for d in images)
        crops = [device_crop(d, s) for d in images]
        shots = {q: [encode_rgb(c, "jpeg", q) for c in crops] for q in jpeg}
        enc_t = {q: statistics.median(_median_time(lambda c=c, q=q: encode_rgb(c, "jpeg", q),
                                                   repeats) for c in crops) for q in jpeg}
    with _Threads(server_threads):
        full(x)
        t_srv = _median_time(_on_server_thread(lambda: full(x)), repeats)
        dec_t = {q: statistics.median(_median_time(lambda b=b: prep(b), repeats)
                                      for b in shots[q]) for q in jpeg}
    local = VariantCost(
        name=LOCAL, point="input", ratio=1, shape=(3, s, s), raw_bytes=0, t_pre=pre,
        t_iot=t_dev, t_fr=0.0, t_es=0.0, coders={"none": CoderCost(0.0, 0.0, 0.0)},
        accuracy=m.test_top1, mode="local", variant=m.name, quant="float32")
    body = len(image_body(m.name, b""))
    offload = {q: VariantCost(
        name=jpeg_key(q), point="input", ratio=1, shape=(3, s, s), raw_bytes=3 * s * s,
        t_pre=crop_t, t_iot=0.0, t_fr=0.0, t_es=t_srv,
        coders={"jpeg": CoderCost(float(statistics.median(body + len(b) for b in shots[q])),
                                  enc_t[q], dec_t[q])},
        mode="full", variant=m.name, quant=jpeg_grid(q)) for q in jpeg}
    return t_dev, t_srv, local, offload


def _with_accuracy(cost: VariantCost, acc: float | None, source: str,
                   file: str = "") -> VariantCost:
    return dataclasses.replace(cost, accuracy=acc, accuracy_source=source,
                               file=file or cost.file)


@torch.inference_mode()
def profile_all(variants: dict[str, SplitNetwork], images: Sequence[bytes],
                full: SplitNetwork | None = None, coders: Sequence[str] = ("none", "memoryless"),
                quant: str = "float32", device_threads: int = 1,
                server_threads: int | None = None, repeats: int = 3,
                photo_sizes: dict[str, tuple[int, int]] | None = None, t_rtt: float = 0.0,
                progress: bool = True, *, grids: Sequence[str] | None = None,
                local: bool = False, jpeg: Sequence[int] = (),
                files: dict[str, str] | None = None,
                accuracy_photos: Sequence[tuple[bytes, str]] | None = None,
                accuracy: dict[str, tuple[float, str]] | None = None) -> LatencyProfile:
    """A :class:`LatencyProfile` of ``variants``; ``full`` (an uncompressed variant) gives
    local computing and full offloading times; ``photo_sizes`` the Fig. 5(a) photos.

    Candidates (:mod:`aecnn.runtime.candidates`): every variant on each of its grids (those
    of ``grids``, default ``(quant,)``, for a float variant; a QAT variant's own; a learned
    bottleneck's own), keyed by the variant's name (``name:grid`` when it has several);
    with ``full``, ``local`` adds the uncut network on the device and each quality of
    ``jpeg`` the device's crop sent as JPEG. ``files``: variant name -> the file it came from.
    Accuracy: ``accuracy`` (key -> (top-1 %, where it comes from)) first, else measured on
    ``accuracy_photos`` ((photo bytes, class name), the same for every candidate) when
    given, else recorded in the variant."""
    files = files or {}
    grids = tuple(grids or (quant,))
    given = accuracy or {}
    costs: dict[str, VariantCost] = {}
    keys = candidate_keys(variants, grids)
    for name, v in tqdm(variants.items(), desc="profile", disable=not progress):
        vg = {g: k for k, (n, g) in keys.items() if n == name}
        per = profile_grids(v, images, {g: candidate_coders(v, g, coders) for g in vg},
                            device_threads, server_threads, repeats)
        for g, cost in per.items():
            key = vg[g]
            if key in given:
                acc, src = given[key]
            elif accuracy_photos:
                acc = measure_co(v, g, accuracy_photos)
                src = f"measured: {len(accuracy_photos)} test photos through this grid"
            else:
                acc, src = recorded_accuracy(v.meta, g)
            costs[key] = _with_accuracy(dataclasses.replace(cost, name=key), acc, src,
                                        files.get(name, ""))
    t_dev = t_srv = 0.0
    photos: dict[str, ImageCost] = {}
    if full is not None:
        m = full.meta
        prep = Preprocessor(m.input_size, m.mean, m.std)
        t_dev, t_srv, loc, offload = profile_uncut(full, images, jpeg, device_threads,
                                                   server_threads, repeats)
        extra = ({LOCAL: loc} if local else {}) | {c.name: c for c in offload.values()}
        for key, cost in extra.items():
            if key in given:
                acc, src = given[key]
            elif accuracy_photos:
                acc = (measure_local(full, accuracy_photos) if cost.mode == "local" else
                       measure_jpeg(full, int(cost.quant.split("@q")[1]), accuracy_photos))
                src = f"measured: {len(accuracy_photos)} test photos"
            elif cost.mode == "local":
                acc, src = recorded_accuracy(m, "float32")
            else:
                acc, src = None, ("none: JPEG's accuracy is not recorded (measure it, or give "
                                  "it from an aecnn bench input record)")
            costs[key] = _with_accuracy(cost, acc, src, files.get(m.name, ""))
        for label, (w, h) in (photo_sizes or {}).items():
            shots = [make_photo(d, w, h) for d in images]
            with _Threads(device_threads):
                pre = statistics.median(_median_time(lambda s=s: prep(s), repeats)
                                        for s in shots)
            with _Threads(server_threads):
                dec = statistics.median(_median_time(lambda s=s: prep(s), repeats)
                                        for s in shots)
            photos[label] = ImageCost(label, w, h, float(statistics.median(map(len, shots))),
                                      pre, dec)
    machine = {"machine": platform.machine(), "processor": platform.processor(),
               "cpus": torch.get_num_threads(), "device_threads": device_threads,
               "server_threads": server_threads or torch.get_num_threads(),
               "torch": torch.__version__, "quant": quant, "grids": list(grids)}
    return LatencyProfile(costs, photos, t_dev, t_srv, t_rtt, machine)
