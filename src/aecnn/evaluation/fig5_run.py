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
    quant: str = "float32"
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
            runner = CoInference(var, var.codec(plan["quant"], point["coder"]), conn)
        elif point["mode"] == "local":
            runner = LocalComputing(variant(point["variant"]))
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
def _points(cfg: Fig5Config, files: dict[str, str], names: dict[str, str],
            ratios: dict[str, int], photos: dict[str, list[str]], first: bool,
            profile, rate_bps: float) -> list[dict]:
    """The requests to time at one rate."""
    pts = []
    by_ratio = {ratios[n]: n for n in files}
    a = by_ratio.get(cfg.fig5a_ratio)
    for size in cfg.sizes:
        ph = photos[size]
        if a is not None:
            for coder, tag in (("none", "aecnn-raw"), (None, "aecnn-coded")):
                c = coder or profile.variant(a).best_coder(rate_bps, profile.t_rtt)
                pts.append({"fig": "5a", "series": tag, "size": size, "mode": "co",
                            "variant": files[a], "name": a, "coder": c, "photos": ph,
                            "requests": cfg.requests})
        pts.append({"fig": "5a", "series": "full-offload", "size": size, "mode": "full",
                    "served": names["full"], "name": names["full"], "photos": ph,
                    "requests": cfg.requests})
        if first:  # local computing does not depend on the link
            pts.append({"fig": "5a", "series": "local", "size": size, "mode": "local",
                        "variant": cfg.full, "name": names["full"], "photos": ph,
                        "requests": cfg.requests})
    for v in sorted(by_ratio):
        n = by_ratio[v]
        pts.append({"fig": "5b", "series": f"V={v}", "size": "224x224", "mode": "co",
                    "variant": files[n], "name": n, "ratio": v,
                    "coder": profile.variant(n).best_coder(rate_bps, profile.t_rtt),
                    "photos": photos["224x224"], "requests": cfg.requests})
    return pts


def _predict(profile, point: dict, rate_bps: float) -> float:
    if point["mode"] == "local":
        return profile.local(point["size"])["total"]
    if point["mode"] == "full":
        return profile.full_offloading(point["size"], rate_bps)["total"]
    return profile.co_inference(point["name"], rate_bps, point["coder"],
                                image=point["size"])["total"]


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
    ratios = {n: v.meta.ratio for n, v in variants.items()}
    sources = [p.read_bytes() for p in collect_images([], cfg.photos, cfg.data)]
    photos: dict[str, list[str]] = {}
    for size in cfg.sizes:
        w, h = PHOTO_SIZES[size]
        photos[size] = []
        for i, src in enumerate(sources):
            p = work / f"{size}-{i}.jpg"
            p.write_bytes(make_photo(src, w, h))
            photos[size].append(str(p))
    print("profiling (device: 1 thread) ...", flush=True)
    profile = profile_all(variants, sources, full, cfg.coders, cfg.quant, cfg.device_threads,
                          cfg.server_threads, 3, {s: PHOTO_SIZES[s] for s in cfg.sizes},
                          0.0, progress)
    profile.save(out / "profile.json")
    names = {"full": full.meta.name}
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
                pts = _points(cfg, files_all, names, ratios, photos, i == 0, prof, rate)
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
                rows.append({"rate_mbps": mbps, "fig": r["fig"], "series": r["series"],
                             "size": r["size"], "mode": r["mode"], "variant": r["name"],
                             "ratio": r.get("ratio"), "coder": r.get("coder"),
                             "measured_s": meas, "predicted_s": pred,
                             "error": (pred - meas) / meas, "median": r["median"],
                             "requests": r["requests"]})
    from aecnn.runtime.planner import plan as plan_at

    choices = {}
    for mbps in cfg.rates_mbps:
        names_b = [n for n in variants]
        _, choice = plan_at(profile, mbps * 1e6, cfg.deadline_s, names_b)
        choices[str(mbps)] = choice.variant if choice else None
    return {"kind": "fig5", "config": asdict(cfg), "links": links, "points": rows,
            "planner": choices, "profile": profile.to_dict()}


if __name__ == "__main__":  # the device process: python -m aecnn.evaluation.fig5_run client
    if len(sys.argv) != 4 or sys.argv[1] != "client":
        sys.exit("usage: python -m aecnn.evaluation.fig5_run client PLAN.json OUT.json")
    run_client(sys.argv[2], sys.argv[3])
