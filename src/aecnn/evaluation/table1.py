"""Table I in the paper's format, built only from JSON records."""

from __future__ import annotations

import json
from pathlib import Path


def load_stage_records(root: str | Path) -> list[dict]:
    """Every ``result.json`` of an Algorithm 1 run folder."""
    return [json.loads(p.read_text()) for p in sorted(Path(root).glob("*/*/result.json"))]


def best_aecnn(records: list[dict], point: str, ratio: int) -> dict | None:
    """The AECNN stage (one per FR shape tried) with the best validation accuracy."""
    cands = [r for r in records if r["point"] == point and r["ratio"] == ratio
             and r["stage"].startswith("aecnn-x")]
    return max(cands, key=lambda r: (r["val_top1"], r["stage"] == f"aecnn-x{ratio}"),
               default=None)


def render_table1(records: list[dict], baseline: dict | None = None) -> str:
    """Markdown: split point, C x H x W, V, CA_Pruned and AECNN test top-1, C' x H x W.
    Where several FR shapes were trained, AECNN is the one chosen by validation accuracy."""
    by = {(r["point"], r["stage"]): r for r in records}
    points = list(dict.fromkeys(r["point"] for r in records))
    if records and "model" in records[0]:  # in network order: stem first
        from aecnn.models import get_spec

        spec = get_spec(records[0]["model"])
        points.sort(key=lambda p: spec.split_point(p).index)
    lines = []
    if baseline:
        lines += [f"Baseline ({baseline['model']}, {baseline['input_size']} px): test top-1 "
                  f"{baseline['test_top1']:.2f} %, top-5 {baseline['test_top5']:.2f} %.", ""]
    lines += ["| split point | C x H x W | V | CA_Pruned top-1 (%) | AECNN top-1 (%) | "
              "C' x H x W | CA (with attention) top-1 (%) | FR (by val) |",
              "|---|---|---|---|---|---|---|---|"]
    for point in points:
        ca = by.get((point, "ca"))
        ratios = sorted({r["ratio"] for r in records if r["point"] == point and r["ratio"] > 1})
        for ratio in ratios:
            pr, ae = by.get((point, f"pruned-x{ratio}")), best_aecnn(records, point, ratio)
            full = ca["compressed_shape"] if ca else None
            kept = (ae or pr or {}).get("compressed_shape")

            def shape(s):
                return " x ".join(map(str, s)) if s else "-"

            def acc(r):
                return f"{r['test_top1']:.2f}" if r else "-"

            lines.append(f"| {point} | {shape(full)} | {ratio}x | {acc(pr)} | {acc(ae)} | "
                         f"{shape(kept)} | {acc(ca)} | {ae.get('fr_shape', '-') if ae else '-'} |")
    return "\n".join(lines) + "\n"
