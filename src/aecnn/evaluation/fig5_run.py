"""The paper's Fig. 5, measured: completion time vs uplink rate over real shaped links.

For every rate, a :class:`~aecnn.netem.link.ShapedLink` joins a device and an edge
namespace; its goodput is checked against the rate (within 10 %) before anything is timed.
The edge server (``aecnn serve``) runs in the edge namespace; a device process (one torch
thread: the weak device) runs every planned request in the device namespace and writes each
request's breakdown. Each point is also predicted by the latency model (eq. 4) from a profile
measured beforehand, and the error is reported.

Points: Fig. 5(a) AECNN (stem, one ratio) with and without entropy coding, full offloading
and local computing, for four photo sizes; Fig. 5(b) AECNN at V = 1 ... 64 (the coder that
the profile predicts fastest at that rate), with the planner's choice for the deadline.

The best codes (:mod:`aecnn.runtime.candidates`): every other co-inference candidate of the
profile (a float variant on another grid of ``grids``, a quantisation-aware variant on its
own grid, prior-coded where the profile predicts that fastest, a learned bottleneck) is a
series of Fig. 5(b) (group ``best``) and, as ``fig5a_series`` says, of Fig. 5(a); with
``jpeg_quality`` the device's ``S x S`` crop sent as JPEG at that quality is a series of
Fig. 5(a) (``jpeg-qN``). The record then says, per rate, where co-inference beats both local
computing and JPEG offloading (:func:`aecnn.evaluation.fig5.render_fig5`).
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from aecnn.errors import AecnnError

PORT = 7070


@dataclass(frozen=True)
class Fig5Config:
    """What ``aecnn fig5`` measures."""

    variants: tuple[str, ...] = ()        # AECNN variant files at the stem, V = 2 ... 64
    full: str = ""                        # the uncompressed model cut at the stem (V = 1)
    fig5a_ratio: int = 8                  # which AECNN ratio Fig. 5(a) shows
    input_size: int = 224
    rates_mbps: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200)
    sizes: tuple[str, ...] = ("224x224", "640x480", "1280x720", "1920x1080")
    photos: int = 3                       # distinct Caltech-101 test photos per size
    requests: int = 3                     # timed requests per point (cycling the photos)
    coders: tuple[str, ...] = ("none", "memoryless", "per-channel")
    quant: str = "float32"                # the grid of the V sweep (Fig. 5(b))
    grids: tuple[str, ...] = ()           # more grids for float variants (best codes)
    fig5a_series: tuple[str, ...] | None = None  # best codes in 5(a) (None: every one)
    jpeg_quality: int | None = None       # the device's crop sent as JPEG (full offloading)
    input_record: str | None = None       # aecnn bench input record: the JPEG's accuracy
    accuracy: dict = field(default_factory=dict)  # candidate key -> top-1 % (given)
    accuracy_images: int = 0              # > 0: measure every candidate's on test photos
    accuracy_tolerance: float = 1.0       # points below local's that still count as kept
    deadline_s: float = 0.1
    delay_ms: float = 0.0
    device_threads: int = 1
    server_threads: int = 1
    tolerance: float = 0.10
    data: str | None = None
    out: str = "results/runtime"
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------ device side
def run_client(plan_file: str, out_file: str) -> None:
    """Device process: every planned request; one JSON record per point."""
    import torch

    from aecnn.core.split import load_network
    from aecnn.runtime.client import CoInference, Connection, FullOffloading, LocalComputing

    plan = json.loads(Path(plan_file).read_text())
    torch.set_num_threads(plan["threads"])
    conn = Connection(plan["host"], plan["port"], timeout=600).connect()
    cache: dict = {}

    def variant(path: str):
        if path not in cache:
            cache[path] = load_network(path, plan["input_size"])
        return cache[path]

    results = []
    for point in plan["points"]:
        photos = [Path(p).read_bytes() for p in point["photos"]]
        if point["mode"] == "co":
            var = variant(point["variant"])
            quant = point.get("quant") or plan["quant"]
            runner = CoInference(var, var.codec(quant, point["coder"]), conn)
        elif point["mode"] == "local":
            runner = LocalComputing(variant(point["variant"]))
        elif point["mode"] == "jpeg":
            runner = FullOffloading(point["served"], conn, point["quality"],
                                    plan["input_size"])
        else:
            runner = FullOffloading(point["served"], conn)
        runner.infer(photos[0])  # warm-up
        reqs = [runner.infer(photos[i % len(photos)]).to_dict()
                for i in range(point["requests"])]
        results.append({**point, "requests": reqs,
                        "median": {k: statistics.median(r[k] for r in reqs)
                                   for k in ("t_pre", "t_iot", "t_enc", "t_com", "t_dec",
                                             "t_fr", "t_es", "total", "bytes_up")}})
        Path(out_file).write_text(json.dumps(results))
    conn.close()


# ------------------------------------------------------------------ orchestration
@dataclass(frozen=True)
class Series:
    """What the profile's candidates are in the figure: the V sweep (ratio -> key), the best
    codes (keys), and the uncut network's name and file."""

    sweep: dict[int, str]
    best: tuple[str, ...]
    full: str
    full_file: str


def classify(cfg: Fig5Config, variants: dict, full_meta) -> Series:
    """The candidates of ``variants`` (name -> network, the uncut one included) on the
    config's grids, as :func:`~aecnn.runtime.profile.profile_all` names them: the V sweep is
    the float variants (no QAT grid, not a learned bottleneck) on ``cfg.quant`` cut where the
    uncut one is (one per V, the first listed); the best codes every other one.

    Raises:
        AecnnError: ``cfg.fig5a_series`` names a candidate that is not a best code."""
    from aecnn.compression.quantize import QuantSpec
    from aecnn.runtime.candidates import LEARNED, candidate_keys

    base = QuantSpec.parse(cfg.quant)
    sweep: dict[int, str] = {}
    best = []
    for key, (name, grid) in candidate_keys(variants, (cfg.quant, *cfg.grids)).items():
        meta = variants[name].meta
        plain = (grid != LEARNED and not meta.quant and QuantSpec.parse(grid) == base
                 and meta.point == full_meta.point and meta.ratio not in sweep)
        if plain:
            sweep[meta.ratio] = key
        else:
            best.append(key)
    unknown = [k for k in cfg.fig5a_series or () if k not in best]
    if unknown:
        raise AecnnError(f"fig5a_series: {', '.join(unknown)} is not a best code of these "
                         f"variants; they are: {', '.join(best) or 'none'}")
    return Series(sweep, tuple(best), full_meta.name, cfg.full)


def _co_point(profile, key: str, files: dict[str, str], rate_bps: float, **fields) -> dict:
    v = profile.variant(key)
    return {"mode": "co", "variant": files[v.served], "name": key, "served": v.served,
            "quant": profile.grid(key), "ratio": v.ratio,
            "coder": fields.pop("coder", None) or v.best_coder(rate_bps, profile.t_rtt),
            **fields}


def _points(cfg: Fig5Config, series: Series, files: dict[str, str],
            photos: dict[str, list[str]], first: bool, profile, rate_bps: float) -> list[dict]:
    """The requests to time at one rate."""
    from aecnn.runtime.candidates import jpeg_key

    pts = []
    a = series.sweep.get(cfg.fig5a_ratio)
    extra_a = series.best if cfg.fig5a_series is None else cfg.fig5a_series
    for size in cfg.sizes:
        ph = photos[size]
        common = {"fig": "5a", "size": size, "photos": ph, "requests": cfg.requests}
        if a is not None:
            for coder, tag in (("none", "aecnn-raw"), (None, "aecnn-coded")):
                pts.append(_co_point(profile, a, files, rate_bps, coder=coder, series=tag,
                                     **common))
        pts.append({**common, "series": "full-offload", "mode": "full",
                    "served": series.full, "name": series.full})
        if cfg.jpeg_quality is not None:
            q = cfg.jpeg_quality
            pts.append({**common, "series": f"jpeg-q{q}", "mode": "jpeg", "quality": q,
                        "served": series.full, "name": jpeg_key(q)})
        if first:  # local computing does not depend on the link
            pts.append({**common, "series": "local", "mode": "local",
                        "variant": series.full_file, "name": series.full})
        for key in extra_a:
            pts.append(_co_point(profile, key, files, rate_bps, series=key, group="best",
                                 **common))
    common = {"fig": "5b", "size": "224x224", "photos": photos["224x224"],
              "requests": cfg.requests}
    for v in sorted(series.sweep):
        pts.append(_co_point(profile, series.sweep[v], files, rate_bps, series=f"V={v}",
                             group="ratio", **common))
    for key in series.best:
        pts.append(_co_point(profile, key, files, rate_bps, series=key, group="best",
                             **common))
    return pts


def _predict(profile, point: dict, rate_bps: float) -> float:
    if point["mode"] == "local":
        return profile.local(point["size"])["total"]
    if point["mode"] == "full":
        return profile.full_offloading(point["size"], rate_bps)["total"]
    return profile.predict(point["name"], rate_bps, point["coder"] if point["mode"] == "co"
                           else "jpeg", image=point["size"])["total"]


def _accuracy(profile, point: dict) -> float | None:
    """The top-1 of a point's candidate (the photo's full offloading: the uncut network's)."""
    from aecnn.runtime.candidates import LOCAL

    key = LOCAL if point["mode"] in ("local", "full") else point["name"]
    return profile.variants[key].accuracy if key in profile.variants else None


def start_server(link, files: list[str], log: Path, input_size: int | None = None,
                 threads: int = 1) -> subprocess.Popen:
    """``aecnn serve files`` in the link's edge namespace on :data:`PORT`, once it listens
    (its stderr goes to ``log``)."""
    argv = [sys.executable, "-m", "aecnn", "serve", *files, "--host", link.edge_ip,
            "--port", str(PORT), "--threads", str(threads),
            *(["--input-size", str(input_size)] if input_size else [])]
    proc = link.popen("edge", argv, stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "listening" in line:
            return proc
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AecnnError(f"the edge server did not start; see {log}")


def run_fig5(cfg: Fig5Config, progress: bool = True) -> dict:
    """Profile, then measure every point over shaped links; returns the record."""
    from aecnn.core.split import load_network
    from aecnn.data.collect import collect_images
    from aecnn.netem.link import LinkSpec, ShapedLink, check_link, measure_rtt
    from aecnn.runtime.profile import PHOTO_SIZES, make_photo, profile_all

    if not cfg.full or not cfg.variants:
        raise AecnnError("fig5 needs `full` (V = 1) and AECNN `variants` files")
    if cfg.jpeg_quality is not None and not 1 <= cfg.jpeg_quality <= 100:
        raise AecnnError(f"jpeg_quality must be in 1..100, not {cfg.jpeg_quality}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="aecnn-fig5-"))
    full = load_network(cfg.full, cfg.input_size)
    variants = {full.meta.name: full}
    files = {}
    for f in cfg.variants:
        v = load_network(f, cfg.input_size)
        variants[v.meta.name], files[v.meta.name] = v, f
    files_all = {full.meta.name: cfg.full, **files}
    series = classify(cfg, variants, full.meta)
    sources = [p.read_bytes() for p in collect_images([], cfg.photos, cfg.data)]
    photos: dict[str, list[str]] = {}
    for size in dict.fromkeys([*cfg.sizes, "224x224"]):  # 5(b) sends 224 x 224 photos
        w, h = PHOTO_SIZES[size]
        photos[size] = []
        for i, src in enumerate(sources):
            p = work / f"{size}-{i}.jpg"
            p.write_bytes(make_photo(src, w, h))
            photos[size].append(str(p))
    given = {k: (float(v), "given: the fig5 config's accuracy") for k, v in cfg.accuracy.items()}
    jpeg = () if cfg.jpeg_quality is None else (cfg.jpeg_quality,)
    if jpeg and cfg.input_record:
        from aecnn.evaluation.input_compression import jpeg_accuracy
        from aecnn.runtime.candidates import jpeg_key

        given.setdefault(jpeg_key(jpeg[0]), jpeg_accuracy(cfg.input_record, jpeg[0]))
    labelled = None
    if cfg.accuracy_images:
        from aecnn.data.collect import labelled_test_images

        labelled = [(p.read_bytes(), c)
                    for p, c in labelled_test_images(cfg.accuracy_images, cfg.data)]
    print("profiling (device: 1 thread) ...", flush=True)
    profile = profile_all(variants, sources, full, cfg.coders, cfg.quant, cfg.device_threads,
                          cfg.server_threads, 3, {s: PHOTO_SIZES[s] for s in cfg.sizes},
                          0.0, progress, grids=(cfg.quant, *cfg.grids), local=True, jpeg=jpeg,
                          files=files_all, accuracy_photos=labelled, accuracy=given)
    profile.save(out / "profile.json")
    rows, links = [], []
    for i, mbps in enumerate(tqdm(cfg.rates_mbps, desc="rates", disable=not progress)):
        rate = mbps * 1e6
        spec = LinkSpec(rate_bps=rate, delay_s=cfg.delay_ms / 1e3)
        with ShapedLink(spec) as link:
            check = check_link(link, cfg.tolerance, seconds=2.0 if mbps >= 5 else 4.0)
            rtt = measure_rtt(link)
            prof = type(profile)(**{**profile.__dict__, "t_rtt": rtt})
            links.append({"rate_mbps": mbps, **check})
            server = start_server(link, list(files_all.values()), work / "server.log",
                                  cfg.input_size, cfg.server_threads)
            try:
                pts = _points(cfg, series, files_all, photos, i == 0, prof, rate)
                plan = {"host": link.edge_ip, "port": PORT, "threads": cfg.device_threads,
                        "input_size": cfg.input_size, "quant": cfg.quant, "points": pts}
                plan_file, res_file = work / f"plan-{mbps}.json", work / f"res-{mbps}.json"
                plan_file.write_text(json.dumps(plan))
                res = link.run("device", [sys.executable, "-m", "aecnn.evaluation.fig5_run",
                                          "client", str(plan_file), str(res_file)],
                               check=False, timeout=3600)
                if res.returncode != 0:
                    raise AecnnError(f"device client failed at {mbps} Mbps: "
                                     f"{res.stderr.strip()[-500:]}")
            finally:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
            for r in json.loads(res_file.read_text()):
                pred = _predict(prof, r, rate)
                meas = r["median"]["total"]
                row = {"rate_mbps": mbps, "fig": r["fig"], "series": r["series"],
                       "size": r["size"], "mode": r["mode"], "variant": r["name"],
                       "ratio": r.get("ratio"), "coder": r.get("coder"),
                       "measured_s": meas, "predicted_s": pred,
                       "error": (pred - meas) / meas, "median": r["median"],
                       "requests": r["requests"]}
                if "group" in r:
                    row["group"] = r["group"]
                if r["mode"] in ("co", "jpeg"):
                    row["quant"] = r.get("quant") or (f"jpeg@q{r['quality']}"
                                                      if r["mode"] == "jpeg" else None)
                row["accuracy"] = _accuracy(prof, r)
                rows.append(row)
    from aecnn.runtime.planner import plan as plan_at

    choices, meets = {}, {}
    for mbps in cfg.rates_mbps:  # over every candidate: local and JPEG offloading too
        plan_rows, choice = plan_at(profile, mbps * 1e6, cfg.deadline_s)
        choices[str(mbps)] = (choice or min(plan_rows, key=lambda r: r.predicted)).variant
        meets[str(mbps)] = choice is not None
    return {"kind": "fig5", "config": asdict(cfg), "links": links, "points": rows,
            "planner": choices, "planner_meets": meets,
            "series": {"sweep": {str(k): v for k, v in series.sweep.items()},
                       "best": list(series.best)},
            "profile": profile.to_dict()}


if __name__ == "__main__":  # the device process: python -m aecnn.evaluation.fig5_run client
    if len(sys.argv) != 4 or sys.argv[1] != "client":
        sys.exit("usage: python -m aecnn.evaluation.fig5_run client PLAN.json OUT.json")
    run_client(sys.argv[2], sys.argv[3])
