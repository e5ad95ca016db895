"""A scale's methods side by side, from `experiments.reproduce` records only: Table I by split
point (every method and grid as a row, the point's own ratios V as columns), each method's
Pareto front with the other methods' accuracy at no more bytes, and the input-compression
references (the photo as JPEG or WebP)."""

from __future__ import annotations

import statistics
from collections import defaultdict

from aecnn.compression.quantize import QuantSpec
from aecnn.errors import AecnnError
from experiments.table1_repro import ALL_NAMES, pareto_front

FRONT_FAMILIES = {"AECNN": ("aecnn", "aecnn_qat"),
                  "BottleNet++": ("bottlenet++", "bottlenet++_qat"),
                  "Entropic": ("entropic",)}
INPUT_NAMES = {"jpeg": "JPEG", "webp": "WebP"}
ROW_ORDER = ("bottlenet++", "bottlenet++_qat", "ca_pruned", "aecnn", "aecnn_qat", "entropic")


def grid_label(p: dict) -> str:
    """A point's grid: the quantiser, or a learned bottleneck's rate weight."""
    return f"λ = {p['rate_weight']:g}" if p.get("rate_weight") is not None else p["quant"]


def point_label(p: dict) -> str:
    return f"{ALL_NAMES[p['method']]}, V = {p['ratio']}, {grid_label(p)}"


def _quant_order(q: str) -> tuple:
    """float32 first, then the integer grids from the most bits down (min-max before
    clipped), then anything else."""
    if q == "float32":
        return (0, 0, "")
    try:
        spec = QuantSpec.parse(q)
    except AecnnError:
        return (2, 0, q)
    return (1, -spec.bits, "@" in q, q)


def _first_point(point: str) -> tuple:
    return (point != "stem", point)


def operating_points(curve: list[dict]) -> list[dict]:
    """The curve's points (one per record and grid) averaged over seeds: per method, split
    point, V, grid and rate weight, the mean test top-1, bytes per image and compression."""
    by: dict = defaultdict(list)
    for p in curve:
        if p["method"] in ALL_NAMES:
            by[(p["method"], p["point"], p["ratio"], p["quant"], p.get("rate_weight"))].append(p)
    out = []
    for (method, point, ratio, quant, weight), ps in by.items():
        xs = [p["compression"] for p in ps if p.get("compression")]
        out.append({"method": method, "point": point, "ratio": ratio, "quant": quant,
                    **({"rate_weight": weight} if weight is not None else {}),
                    "accuracy": statistics.mean(p["accuracy"] for p in ps),
                    "bytes_per_image": statistics.mean(p["bytes_per_image"] for p in ps),
                    "compression": statistics.mean(xs) if xs else None, "n": len(ps)})
    return out


def point_tables(curve: list[dict], raw: dict[str, float]) -> list[dict]:
    """Table I by split point: for each point (``raw``: its float32 split tensor's bytes),
    its ratios and one row per (method, grid, rate weight) with a cell per V it has."""
    ops = operating_points(curve)
    tables = []
    for point in sorted({o["point"] for o in ops}, key=_first_point):
        here = [o for o in ops if o["point"] == point]
        rows: dict = defaultdict(list)
        for o in here:
            rows[(o["method"], o["quant"], o.get("rate_weight"))].append(o)
        ordered = sorted(rows, key=lambda k: (ROW_ORDER.index(k[0]) if k[0] in ROW_ORDER
                                              else len(ROW_ORDER), _quant_order(k[1]),
                                              k[2] or 0.0))
        tables.append({
            "point": point, "split_bytes": raw.get(point),
            "ratios": sorted({o["ratio"] for o in here}),
            "rows": [{"method": m, "quant": q, **({"rate_weight": w} if w is not None else {}),
                      "cells": [{"ratio": o["ratio"], "accuracy": o["accuracy"],
                                 "bytes_per_image": o["bytes_per_image"], "n": o["n"]}
                                for o in sorted(rows[(m, q, w)], key=lambda o: o["ratio"])]}
                     for m, q, w in ordered]})
    return tables


def front(points: list[dict]) -> list[dict]:
    """The points of ``points`` on their Pareto front (fewer bytes, higher accuracy), by
    bytes; accuracy strictly rises along it."""
    kept = pareto_front([(p["bytes_per_image"], p["accuracy"]) for p in points])
    out = []
    for x, y in kept:
        out.append(next(p for p in points if (p["bytes_per_image"], p["accuracy"]) == (x, y)))
    return out


def at_most(points: list[dict], size: float) -> dict | None:
    """Of a front (by bytes), the point with the most bytes not above ``size``: the best
    accuracy the method reaches at no more bytes (None: it has no point that small)."""
    below = [p for p in points if p["bytes_per_image"] <= size]
    return below[-1] if below else None


def input_points(refs: dict | None) -> dict[str, list[dict]]:
    """The input-compression references as labelled points, per codec name."""
    out: dict = defaultdict(list)
    for r in (refs or {}).get("rows", []):
        out[INPUT_NAMES.get(r["codec"], r["codec"])].append(
            {"bytes_per_image": r["bytes_per_image"], "accuracy": r["accuracy"],
             "label": f"{INPUT_NAMES.get(r['codec'], r['codec'])} q{r['quality']}"})
    return dict(out)


def equal_bytes(curve: list[dict], raw: dict[str, float], refs: dict | None) -> list[dict]:
    """Per split point: each feature method's front point (a row), and for every other
    method and input codec the best test top-1 it reaches at no more bytes (its front's
    point with the most bytes not above the row's)."""
    ops = operating_points(curve)
    inputs = {name: front(pts) for name, pts in input_points(refs).items()}
    out = []
    for point in sorted({o["point"] for o in ops}, key=_first_point):
        fronts = {}
        for fam, methods in FRONT_FAMILIES.items():
            pts = [{**o, "label": point_label(o)} for o in ops
                   if o["point"] == point and o["method"] in methods]
            if pts:
                fronts[fam] = front(pts)
        columns = [*fronts, *inputs]
        every = {**fronts, **inputs}
        rows = []
        for fam, pts in fronts.items():
            for p in pts:
                at = {}
                for other in columns:
                    if other != fam:
                        q = at_most(every[other], p["bytes_per_image"])
                        at[other] = ({k: q[k] for k in ("accuracy", "bytes_per_image", "label")}
                                     if q else None)
                size = p["bytes_per_image"]
                rows.append({"family": fam, "label": p["label"], "bytes_per_image": size,
                             "accuracy": p["accuracy"],
                             "compression": raw[point] / size if raw.get(point) else None,
                             "at": at})
        rows.sort(key=lambda r: (r["bytes_per_image"], r["family"]))
        out.append({"point": point, "split_bytes": raw.get(point), "columns": columns,
                    "rows": rows})
    return out


# ------------------------------------------------------------------ Markdown
def _b(size: float) -> str:
    return f"{size:,.0f} B"


def render_point_tables(summary: dict) -> list[str]:
    """Table I by split point (Markdown lines)."""
    lines = ["", "## Table I by split point: every method and grid", "",
             f"Test top-1 (%) on {summary.get('n_quant_images')} test images / bytes per "
             "image (payload, entropy coded), mean over seeds "
             f"{', '.join(map(str, summary['seeds']))}. Each split point has its own V, the "
             "ratios that divide its channels. A QAT row is the network fine-tuned through "
             "that grid; a learned-bottleneck (Entropic) row is one rate weight λ on its own "
             "grid; float32 rows send the float32 tensor coded losslessly."]
    for t in summary["point_tables"]:
        split = f" (float32 split tensor: {_b(t['split_bytes'])})" if t["split_bytes"] else ""
        lines += ["", f"### {t['point']}{split}", "",
                  "| method | grid | " + " | ".join(f"V = {v}" for v in t["ratios"]) + " |",
                  "|---|---|" + "---|" * len(t["ratios"])]
        for row in t["rows"]:
            cells = {c["ratio"]: c for c in row["cells"]}
            text = [f"{cells[v]['accuracy']:.2f} / {_b(cells[v]['bytes_per_image'])}"
                    if v in cells else "-" for v in t["ratios"]]
            lines.append(f"| {ALL_NAMES[row['method']]} | {grid_label(row)} | "
                         + " | ".join(text) + " |")
    return lines


def render_equal_bytes(summary: dict) -> list[str]:
    """The methods at equal bytes, front point by front point (Markdown lines)."""
    lines = ["", "## At equal bytes, front point by front point", "",
             "Each row is a point of one method's Pareto front at that split point (test "
             "top-1 against bytes per image, mean over seeds; AECNN and BottleNet++ with their "
             "QAT networks, every grid). Its own accuracy is in bold; every other column gives "
             "the best test top-1 that method reaches at no more bytes: the nearest point of "
             "its front at fewer or equal bytes (no interpolation), with its bytes; '-' where "
             "it has no point that small. x: the float32 split tensor's bytes over the row's. "
             "JPEG and WebP send the photo (the uncut baseline on the decoded crop), the same "
             "at either split point."]
    for t in summary["equal_bytes"]:
        lines += ["", f"### {t['point']}", "",
                  "| front point | bytes | x | " + " | ".join(t["columns"]) + " |",
                  "|---|---|---|" + "---|" * len(t["columns"])]
        for r in t["rows"]:
            cells = []
            for col in t["columns"]:
                if col == r["family"]:
                    cells.append(f"**{r['accuracy']:.2f}**")
                    continue
                q = r["at"].get(col)
                cells.append(f"{q['accuracy']:.2f} ({_b(q['bytes_per_image'])})" if q else "-")
            x = f"{r['compression']:,.0f}x" if r["compression"] else "-"
            lines.append(f"| {r['label']} | {_b(r['bytes_per_image'])} | {x} | "
                         + " | ".join(cells) + " |")
    return lines


def render_inputs(summary: dict) -> list[str]:
    """The input-compression references (Markdown lines)."""
    refs = summary["input_refs"]
    raw = refs["raw"]
    splits = [(t["point"], t["split_bytes"]) for t in summary.get("point_tables", [])
              if t["split_bytes"]]
    size = refs["input_size"]
    lines = ["", "## Input compression (full offloading)", "",
             f"The photo's {size} x {size} centre crop sent as JPEG or WebP (`aecnn bench "
             f"input`), the uncut baseline on the decoded crop, on the same "
             f"{refs['images']} test images (record: `input.json` in the measure folder). "
             f"The uncompressed crop ({_b(raw['bytes_per_image'])}): "
             f"{raw['accuracy']:.2f} %.", "",
             "| codec | quality | bytes per image | test top-1 (%) | "
             + " | ".join(f"x {p} float32" for p, _ in splits) + " |",
             "|---|---|---|---|" + "---|" * len(splits)]
    for r in sorted(refs["rows"], key=lambda r: (r["codec"], r["bytes_per_image"])):
        xs = " | ".join(f"{b / r['bytes_per_image']:,.0f}x" for _, b in splits)
        lines.append(f"| {INPUT_NAMES.get(r['codec'], r['codec'])} | {r['quality']} | "
                     f"{_b(r['bytes_per_image'])} | {r['accuracy']:.2f} | {xs} |")
    return lines
