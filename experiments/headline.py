"""README's results table, generated from the committed records (``python -m
experiments.headline`` prints it; ``tests/test_readme.py`` checks README holds exactly this).

Each row names one point of a committed Table I reproduction (``results/reproduction/<scale>/
table1.json``): a float32 row of Table I, or a quantisation-aware (QAT) network through its
grid, with its test top-1 on all 1,736 test images and the drop from that scale's baseline.
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


def _record(scale: str) -> dict:
    return json.loads((ROOT / "results" / "reproduction" / scale / "table1.json").read_text())


def _acc(mean: float, std: float, n: int) -> str:
    return f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"


def row(p: Pick) -> str:
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
    """The Markdown table (ResNet-50 trained from scratch at 64 px on Caltech-101): each
    scale's uncut baseline, then its picked rows."""
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
