"""``aecnn bench prior``: what a context prior (wire coder 5) buys one trained network.

1. **Fitting size.** The network's head outputs on ``test_images`` test images (spread over
   the split) through one integer grid, coded by ``auto`` without a prior (coders 0 and 2-4,
   tables in every payload) and, for each context model (``lattice``, ``raster``), with
   priors fitted on 1, 3, 10, ... training images, and with an *oracle* prior fitted on
   those test tensors themselves (the bound that no fitted prior of that model beats on
   average). Bytes per image are real payload lengths.
2. **Over a shaped link** (``rate_bps``, root only; skipped with a note otherwise). The
   network is exported twice, with and without the prior (of the last model benched,
   fitted on 1,000 training images), and served by ``aecnn serve`` in
   the link's edge namespace. ``aecnn infer`` (one torch thread, the weak device) then sends
   the same test photos from the device namespace twice: with ``--coder prior``, and with
   ``--coder auto`` and no prior. The record holds the median bytes up, the per-step times,
   and whether every photo got the same class both ways (the coding is lossless, so it must).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from aecnn.compression.codec import FeatureCodec
from aecnn.compression.priors import PRIOR_MODELS, Prior, check_model, fit_prior
from aecnn.compression.quantize import QuantSpec, quantize
from aecnn.core.split import fit_head_priors, head_symbols
from aecnn.data.splits import spread_indices
from aecnn.errors import AecnnError

DEFAULT_IMAGES = (1, 3, 10, 30, 100, 300, 1000, 3000)
LINK_PRIOR_IMAGES = 1000  # the prior the shaped-link part sends with (aecnn export's default)


@torch.inference_mode()
def fitting_size(var, train, test, grid: str, images: tuple[int, ...], test_images: int,
                 rate_bps: float, progress: bool = True,
                 models: tuple[str, ...] = PRIOR_MODELS
                 ) -> tuple[dict, dict[tuple[str, int], Prior]]:
    """Part 1: mean payload bytes per test image without a prior, with priors of each of
    ``models`` fitted on each of ``images`` training images, and with each model's oracle
    prior. A row's ``fit_s`` is what ``aecnn export`` spends on that prior: the head over
    the training images (run once per size, shared by the models) plus the model's fit.
    Returns the record and the fitted priors by ``(model, number of images)``."""
    spec = QuantSpec.parse_tensor_grid(grid)
    idx = spread_indices(len(test), test_images)
    plain = FeatureCodec(spec, "auto", rate_bps)
    symbols, sizes = [], []
    chosen: dict[str, int] = {}
    for i in tqdm(idx, desc="test tensors", leave=False, disable=not progress):
        z = var.head(test[i][0][None])[0]
        symbols.append(quantize(z.float().cpu().numpy(), spec)[0])
        _, stats = plain.encode(z)
        sizes.append(stats.payload_bytes)
        chosen[stats.coder] = chosen.get(stats.coder, 0) + 1
    rows, priors = [], {}
    for n in tqdm([n for n in images if n <= len(train)], desc="priors", leave=False,
                  disable=not progress):
        t0 = time.perf_counter()  # the head runs once per size, for every model
        fitted_on = head_symbols(var.head, train, {grid: spec}, n)[grid]
        head_s = time.perf_counter() - t0
        for model in models:
            t0 = time.perf_counter()
            priors[model, n] = prior = fit_prior(fitted_on, spec.levels, model)
            rows.append({"model": model, "images": n,
                         "fit_s": head_s + time.perf_counter() - t0,
                         "fingerprint": prior.fingerprint_hex,
                         "bytes": statistics.mean(len(prior.encode(s)) for s in symbols)})
    rows.sort(key=lambda r: models.index(r["model"]))  # by model, then size (stable)
    oracle = {m: statistics.mean(len(p.encode(s)) for s in symbols)
              for m in models for p in [fit_prior(symbols, spec.levels, m)]}
    with torch.inference_mode():  # the split tensor the bridge rebuilds (a spatial code
        split = var.bridge(var.head(test[idx[0]][0][None]))  # is smaller than it)
    return {"grid": grid, "test_images": len(idx), "elements": int(symbols[0].size),
            "split_float32_bytes": split[0].numel() * 4,
            "no_prior": {"bytes": statistics.mean(sizes), "coders": chosen},
            "priors": rows, "oracle": oracle}, priors


def over_link(var, test, grid: str, prior: Prior, rate_bps: float, requests: int,
              work: Path) -> dict:
    """Part 2: the same photos through ``aecnn serve`` / ``aecnn infer`` over a shaped link,
    with ``--coder prior`` and with ``--coder auto`` and no prior."""
    from aecnn.core.split import save_network
    from aecnn.evaluation.fig5_run import PORT, start_server
    from aecnn.netem.link import LinkSpec, LinkUnavailableError, ShapedLink, check_link

    with_prior, bare = work / "with-prior.pt", work / "bare.pt"
    save_network(var, with_prior, priors={grid: prior})
    save_network(var, bare, priors={})
    root = Path(test.root)
    photos = [str(root / test.samples[i][0]) for i in spread_indices(len(test), requests)]
    out: dict = {"rate_bps": rate_bps, "requests": len(photos), "model": prior.model}
    try:
        with ShapedLink(LinkSpec(rate_bps)) as link:
            out["link"] = check_link(link, 0.10, seconds=4.0)
            server = start_server(link, [str(with_prior)], work / "server.log")
            try:
                for name, vfile, coder in (("prior", with_prior, "prior"),
                                           ("no_prior", bare, "auto")):
                    res = work / f"{name}.json"
                    link.run("device", [sys.executable, "-m", "aecnn", "infer", *photos,
                                        "--variant", str(vfile), "--server",
                                        f"{link.edge_ip}:{PORT}", "--quant", grid,
                                        "--coder", coder, "--rate", f"{rate_bps:g}bps",
                                        "--threads", "1", "--json", str(res), "--quiet"],
                             timeout=600)
                    reqs = json.loads(res.read_text())["requests"]
                    out[name] = {
                        "classes": [r["cls"] for r in reqs],
                        "coders": sorted({r["coder"] for r in reqs}),
                        **{k: statistics.median(r[k] for r in reqs)
                           for k in ("bytes_up", "t_enc", "t_com", "t_dec", "total")}}
            finally:
                server.terminate()
                server.wait(10)
    except LinkUnavailableError as exc:
        return {**out, "skipped": f"shaped links unavailable here: {exc}"}
    out["same_classes"] = out["prior"].pop("classes") == out["no_prior"].pop("classes")
    return out


def run_prior_bench(stage: str | Path, grid: str, images: tuple[int, ...] = DEFAULT_IMAGES,
                    test_images: int = 600, rate_bps: float = 1e6, requests: int = 50,
                    link: bool = True, progress: bool = True,
                    models: tuple[str, ...] = PRIOR_MODELS) -> dict:
    """Both parts for the stage folder ``stage`` (its network exported as by ``aecnn
    export``), on the baseline's training and test splits; the link part sends with the
    last of ``models``."""
    models = tuple(check_model(m) for m in models)
    if not models:
        raise AecnnError("bench prior needs at least one context model")
    from aecnn.core.split import SplitNetwork
    from aecnn.training.export import meta_from_stage, train_split_of

    stage = Path(stage)
    meta, state = meta_from_stage(stage)
    var = SplitNetwork.from_meta(meta)
    var.load_state_dict(state)
    var.eval()
    train, test = train_split_of(stage), train_split_of(stage, split="test")
    if len(train) == 0 or len(test) == 0:
        raise AecnnError(f"{stage}: its baseline's splits are empty")
    fitting, priors = fitting_size(var, train, test, grid, images, test_images, rate_bps,
                                   progress, models)
    rec = {"kind": "prior-bench", "stage": str(stage), "variant": meta.name, "fitting": fitting}
    if link:
        n = min(LINK_PRIOR_IMAGES, len(train))
        prior = priors.get((models[-1], n)) or fit_head_priors(
            var.head, train, {grid: QuantSpec.parse_tensor_grid(grid)}, n,
            model=models[-1])[grid]
        with tempfile.TemporaryDirectory(prefix="aecnn-prior-") as d:
            rec["link"] = over_link(var, test, grid, prior, rate_bps, requests, Path(d))
    return rec


def render_markdown(rec: dict) -> str:
    """The record as tables."""
    f = rec["fitting"]
    full = f["split_float32_bytes"]
    lines = [f"# Context priors for `{rec['variant']}` through `{f['grid']}`", "",
             f"Command: `{rec.get('command', '')}`  ",
             f"Stage: `{rec['stage']}`; {f['test_images']} test tensors of {f['elements']} "
             f"symbols; the uncut split tensor is {full:,} B in float32.", "",
             "| coding | bytes per image | compression vs the float32 split tensor | fit (s) |",
             "|---|---|---|---|",
             f"| `auto`, no prior ({', '.join(f['no_prior']['coders'])}) | "
             f"{f['no_prior']['bytes']:.1f} | {full / f['no_prior']['bytes']:,.0f}x | - |"]
    oracle = _oracle(f)
    for model in dict.fromkeys(r.get("model", "lattice") for r in f["priors"]):
        lines += [f"| {model} prior fitted on {r['images']:,} training "
                  f"image{'s' * (r['images'] != 1)} | {r['bytes']:.1f} | "
                  f"{full / r['bytes']:,.0f}x | {r['fit_s']:.2f} |"
                  for r in f["priors"] if r.get("model", "lattice") == model]
        if model in oracle:
            lines.append(f"| {model} oracle prior (fitted on these test tensors) | "
                         f"{oracle[model]:.1f} | {full / oracle[model]:,.0f}x | - |")
    link = rec.get("link")
    if link and "skipped" in link:
        lines += ["", f"Over a shaped link: {link['skipped']}"]
    elif link:
        lines += ["", f"Over a {link['rate_bps'] / 1e6:g} Mbit/s shaped link (measured TCP "
                  f"goodput {link['link']['measured_bps'] / 1e6:.3f} Mbit/s), "
                  f"{link['requests']} test photos, medians (ms, B); the same class for "
                  f"every photo both ways: {'yes' if link['same_classes'] else 'NO'}.", "",
                  "| device codec | coders | bytes up | t_enc | t_com | t_dec | total |",
                  "|---|---|---|---|---|---|---|"]
        prior_label = f"`--coder prior` ({link.get('model', 'lattice')} model)"
        for name, label in (("prior", prior_label), ("no_prior", "`--coder auto`, no prior")):
            r = link[name]
            lines.append(f"| {label} | {', '.join(r['coders'])} | {r['bytes_up']:.0f} | "
                         + " | ".join(f"{1e3 * r[k]:.1f}" for k in ("t_enc", "t_com", "t_dec",
                                                                      "total")) + " |")
    return "\n".join(lines) + "\n"


def plot(rec: dict, path: Path) -> None:
    """Bytes per image against the training images the prior was fitted on (log x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = rec["fitting"]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    oracle = _oracle(f)
    ax.axhline(f["no_prior"]["bytes"], color="k", ls="--", label="auto, no prior")
    for i, model in enumerate(dict.fromkeys(r.get("model", "lattice") for r in f["priors"])):
        rows = [r for r in f["priors"] if r.get("model", "lattice") == model]
        ax.plot([r["images"] for r in rows], [r["bytes"] for r in rows], "o-", color=f"C{i}",
                label=f"{model} prior (wire coder 5)")
        if model in oracle:
            ax.axhline(oracle[model], color=f"C{i}", ls=":",
                       label=f"{model} oracle (test tensors)")
    ax.set_xscale("log")
    ax.set_xlabel("training images the prior is fitted on")
    ax.set_ylabel("bytes per image")
    ax.set_title(f"{rec['variant']}, {f['grid']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _oracle(fitting: dict) -> dict[str, float]:
    """Oracle bytes by model (a record made before the raster model had one lattice
    oracle, ``oracle_bytes``)."""
    if "oracle" in fitting:
        return fitting["oracle"]
    return {"lattice": fitting["oracle_bytes"]} if "oracle_bytes" in fitting else {}
