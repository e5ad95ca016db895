"""README's results table, generated from the committed records (``python -m
experiments.headline`` prints it; ``tests/test_readme.py`` checks README holds exactly this).

Each row names one point of a committed Table I reproduction (``results/reproduction/<scale>/
table1.json``): a float32 row of Table I, a quantisation-aware (QAT) network through its grid,
a method's headline point chosen on the validation split, or the photo sent whole; with its
test top-1 on all 1,736 test images and the drop from that scale's baseline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMES = {"aecnn": "AECNN", "bottlenet++": "BottleNet++", "ca_pruned": "CA_Pruned"}


@dataclass(frozen=True)
class Pick:
    """One README row: ``quant`` None is the float32 row of Table I."""

    scale: str
    method: str
    point: str
    ratio: int
    quant: str | None = None
    label: str = ""


@dataclass(frozen=True)
class Chosen:
    """A README row from a scale's headline section: ``family``'s point chosen on the
    validation split within ``drop`` points of the baseline (``table1.md``'s rule)."""

    scale: str
    family: str
    drop: float


@dataclass(frozen=True)
class Photo:
    """A README row from a scale's input-compression references: the photo as ``codec`` at
    ``quality``, the uncut network on the decoded photo (full offloading)."""

    scale: str
    codec: str
    quality: int


PICKS = (
    Pick("cpu", "ca_pruned", "stem", 16),
    Pick("cpu", "aecnn", "stem", 16),
    Pick("cpu", "bottlenet++", "stem", 16),
    Pick("cpu", "aecnn", "layer1.0", 32, "uint2"),
    Pick("cpu", "bottlenet++", "layer1.0", 32, "uint2"),
    Pick("cpu-ternary512", "aecnn", "stem", 32, None, "AECNN (pool 2)"),
    Pick("cpu-ternary512", "aecnn", "stem", 32, "uint2l3@p90", "AECNN (pool 2)"),
    Pick("cpu-ternary512", "bottlenet++", "stem", 32, "uint2l3", "BottleNet++ (stride 2)"),
)
# the effnet scale's rows, once its table1.json is committed (the tabulating run):
# Chosen("effnet", "aecnn", 4.4), Chosen("effnet", "bottlenet++", 4.4),
# Chosen("effnet", "entropic", 4.4), Photo("effnet", "webp", 10)


def _record(scale: str) -> dict:
    return json.loads((ROOT / "results" / "reproduction" / scale / "table1.json").read_text())


def _acc(mean: float, std: float, n: int) -> str:
    return f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"


def chosen_row(p: Chosen) -> str:
    """The row of a headline point: mean ± std over the seeds it was trained with."""
    from experiments.table1_repro import ALL_NAMES

    sec = _record(p.scale)["headline_seeds"]
    pick = next(q for q in sec["picks"] if (q["family"], q["drop"]) == (p.family, p.drop))
    c = pick["cell"]
    name = (ALL_NAMES[c["method"]] if c.get("rate_weight") is None
            else f"learned bottleneck (λ = {c['rate_weight']:g})")
    link = ("learned latent, coder 6" if c.get("rate_weight") is not None
            else f"`{c['quant']}`, entropy coded")
    n = len(pick["seeds"])
    size = f"{pick['bytes_mean']:,.0f} B"
    return (f"| {name}, chosen on validation (≤ {p.drop:g} points) | {c['point']} | "
            f"{c['ratio']} | {link}, {size} | {pick['compression']:,.0f}× | "
            f"{_acc(pick['test_mean'], pick['test_std'], n)} | {-pick['test_drop']:+.2f} | "
            f"{', '.join(map(str, pick['seeds']))} | {_link(p.scale)} |")


def photo_row(p: Photo) -> str:
    """The row of the photo sent whole, as ``codec`` at ``quality``."""
    rec = _record(p.scale)
    refs = rec["input_refs"]
    r = next(r for r in refs["rows"] if (r["codec"], r["quality"]) == (p.codec, p.quality))
    base = rec["baseline"]["mean"]
    codec = {"jpeg": "JPEG", "webp": "WebP"}[p.codec]
    return (f"| the photo, full offloading | – | – | {codec} q{p.quality}, "
            f"{r['bytes_per_image']:,.0f} B | – | {r['accuracy']:.2f} | "
            f"{r['accuracy'] - base:+.2f} | {rec['seeds'][0]} | {_link(p.scale)} |")


def _link(scale: str) -> str:
    return f"[{scale}](results/reproduction/{scale}/table1.md)"


def row(p: Pick | Chosen | Photo) -> str:
    if isinstance(p, Chosen):
        return chosen_row(p)
    if isinstance(p, Photo):
        return photo_row(p)
    rec = _record(p.scale)
    base = rec["baseline"]["mean"]
    seeds = ", ".join(map(str, rec["seeds"]))
    name = p.label or NAMES[p.method]
    if p.quant is None:
        r = next(r for r in rec["rows"] if r["point"] == p.point and r["ratio"] == p.ratio)
        a = r[p.method]
        link, size, ratio = "float32, entropy coded", "", f"{r['total_compression']:.0f}×"
        mean, std, n = a["mean"], a["std"], a["n"]
    else:
        q = next(q for q in rec["qat"] if (q["method"], q["point"], q["ratio"], q["quant"])
                 == (p.method, p.point, p.ratio, p.quant))
        name += " + QAT"
        link = f"`{p.quant}`, entropy coded"
        size, ratio = f"{q['bytes_per_image']:.0f} B", f"{q['compression']:,.0f}×"
        mean, std, n = q["qat_all"]["mean"], q["qat_all"]["std"], q["qat_all"]["n"]
    link_cell = f"{link}, {size}" if size else link
    record = f"[{p.scale}](results/reproduction/{p.scale}/table1.md)"
    return (f"| {name} | {p.point} | {p.ratio} | {link_cell} | {ratio} | {_acc(mean, std, n)} "
            f"| {mean - base:+.2f} | {seeds} | {record} |")


def render() -> str:
    """The Markdown table: each scale's uncut baseline, then its picked rows (``cpu`` and
    ``cpu-ternary512``: ResNet-50 trained from scratch at 64 px; ``effnet``: EfficientNet-Lite0
    from ImageNet weights at 224 px)."""
    head = ("| method | split | V | what crosses the link | smaller than the float32 split "
            "tensor | test top-1 (%) | vs. baseline (points) | seeds | record |\n"
            "|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for scale in dict.fromkeys(p.scale for p in PICKS):
        rec = _record(scale)
        b, seeds = rec["baseline"], rec["seeds"]
        lines.append(f"| baseline, uncut | – | 1 | – | – | "
                     f"{_acc(b['mean'], b['std'], len(seeds))} | – | "
                     f"{', '.join(map(str, seeds))} | "
                     f"[{scale}](results/reproduction/{scale}/table1.md) |")
        lines += [row(p) for p in PICKS if p.scale == scale]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render())
