"""``aecnn profile``: measure what the latency model needs, on real images.

Device-side times run with ``device_threads`` torch threads (1 by default: the part of the
paper's Raspberry Pi 4B is played by one core of this machine); server-side times with
``server_threads``. Each time is the median over the images and repeats.
"""

from __future__ import annotations

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
from aecnn.runtime.latency import CoderCost, ImageCost, LatencyProfile, VariantCost
from aecnn.runtime.preprocess import Preprocessor

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
    """Times and sizes of one variant over ``images`` (encoded photo bytes)."""
    m = v.meta
    prep = Preprocessor(m.input_size, m.mean, m.std)
    t_pre, t_iot, t_fr, t_es = [], [], [], []
    enc: dict[str, list] = {c: [] for c in coders}
    codecs = {c: v.codec(quant, c) for c in coders}
    z = None
    for data in images:
        with _Threads(device_threads):
            t_pre.append(_median_time(lambda d=data: prep(d), repeats))
            x = prep(data)
            v.head(x)  # warm-up
            t_iot.append(_median_time(lambda x=x: v.head(x), repeats))
            z = v.head(x)
            for c, codec in codecs.items():
                kept = m.kept
                out = {}

                def run(codec=codec, z=z, kept=kept, out=out):
                    out["p"] = codec.encode(z[0], kept, m.channels if kept else None,
                                            m.name, m.point)[0].to_bytes()

                t_enc = _median_time(run, repeats)
                enc[c].append((len(out["p"]), t_enc, out["p"]))
        with _Threads(server_threads):
            for c in coders:
                wire = enc[c][-1][2]
                t_dec = _median_time(
                    lambda w=wire: decode_packet(Packet.from_bytes(w), v.coding_tables()),
                    repeats)
                enc[c][-1] = (*enc[c][-1][:2], t_dec)
            r = v.bridge(z)
            t_fr.append(_median_time(_on_server_thread(lambda z=z: v.bridge(z)), repeats))
            t_es.append(_median_time(_on_server_thread(lambda r=r: v.tail(r)), repeats))
    med = statistics.median
    assert z is not None
    shape = tuple(int(s) for s in z.shape[1:])
    return VariantCost(
        name=m.name, point=m.point, ratio=m.ratio, shape=shape,
        raw_bytes=4 * shape[0] * shape[1] * shape[2], t_pre=med(t_pre), t_iot=med(t_iot),
        t_fr=med(t_fr), t_es=med(t_es),
        coders={c: CoderCost(float(med(e[0] for e in enc[c])), med(e[1] for e in enc[c]),
                             med(e[2] for e in enc[c])) for c in coders},
        accuracy=m.test_top1)


@torch.inference_mode()
def profile_all(variants: dict[str, SplitNetwork], images: Sequence[bytes],
                full: SplitNetwork | None = None, coders: Sequence[str] = ("none", "memoryless"),
                quant: str = "float32", device_threads: int = 1,
                server_threads: int | None = None, repeats: int = 3,
                photo_sizes: dict[str, tuple[int, int]] | None = None, t_rtt: float = 0.0,
                progress: bool = True) -> LatencyProfile:
    """A :class:`LatencyProfile` of ``variants``; ``full`` (an uncompressed variant) gives
    local computing and full offloading times; ``photo_sizes`` the Fig. 5(a) photos."""
    costs = {}
    for name, v in tqdm(variants.items(), desc="profile", disable=not progress):
        costs[name] = profile_variant(v, images, coders, quant, device_threads,
                                      server_threads, repeats)
    t_dev = t_srv = 0.0
    photos: dict[str, ImageCost] = {}
    if full is not None:
        m = full.meta
        prep = Preprocessor(m.input_size, m.mean, m.std)
        x = prep(images[0])
        with _Threads(device_threads):
            full(x)
            t_dev = _median_time(lambda: full(x), repeats)
        with _Threads(server_threads):
            full(x)
            t_srv = _median_time(_on_server_thread(lambda: full(x)), repeats)
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
               "torch": torch.__version__, "quant": quant}
    return LatencyProfile(costs, photos, t_dev, t_srv, t_rtt, machine)
