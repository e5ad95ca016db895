"""Collect the records of Algorithm 1 runs under ``results/`` and render their tables."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from aecnn.evaluation.table1 import load_stage_records, render_table1


def collect(run: Path, out: Path) -> list[dict]:
    """Copy a run's stage records and importances to ``out/<run name>/``."""
    dest = out / run.name
    for p in sorted(run.glob("*/*/result.json")):
        target = dest / p.parent.parent.name / f"{p.parent.name}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, target)
    for p in sorted(run.glob("*/importance.json")):
        (dest / p.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dest / p.parent.name / "importance.json")
    if (run / "config.yaml").exists():
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run / "config.yaml", dest / "config.yaml")
    return load_stage_records(run)


def render_ablation(main: list[dict], ablations: dict[str, list[dict]], point: str) -> str:
    """CA_Pruned test top-1 by ranking method at each ratio (same budget)."""
    methods = {"ca": main, **ablations}
    ratios = sorted({r["ratio"] for recs in ablations.values() for r in recs
                     if r["stage"].startswith("pruned")})
    lines = ["| ranking | " + " | ".join(f"V={v}" for v in ratios) + " |",
             "|---|" + "---|" * len(ratios)]
    for name, recs in methods.items():
        by = {r["ratio"]: r for r in recs if r["point"] == point and r["stage"].startswith(
            "pruned")}
        cells = [f"{by[v]['test_top1']:.2f}" if v in by else "-" for v in ratios]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_fr_shapes(records: list[dict]) -> str:
    """Every FR shape tried: its size and cost next to the tail's, and its accuracy."""
    from aecnn.evaluation.table1 import best_aecnn

    lines = ["| point | V | FR shape | FR params | FR MFLOPs | tail MFLOPs | val top-1 | "
             "test top-1 | chosen |", "|---|---|---|---|---|---|---|---|---|"]
    fr = sorted((r for r in records if r["stage"].startswith("aecnn-x")),
                key=lambda r: (r["point"] != "stem", r["point"], r["ratio"], r["fr_shape"]))
    for r in fr:
        best = best_aecnn(records, r["point"], r["ratio"])
        lines.append(f"| {r['point']} | {r['ratio']} | {r['fr_shape']} | "
                     f"{r['params_bridge']:,} | {r['flops_bridge'] / 1e6:.1f} | "
                     f"{r['flops_tail'] / 1e6:.1f} | {r['val_top1']:.2f} | "
                     f"{r['test_top1']:.2f} | {'yes' if best is r else ''} |")
    wins: dict[str, int] = {}
    for r in fr:
        if best_aecnn(records, r["point"], r["ratio"]) is r:
            wins[r["fr_shape"]] = wins.get(r["fr_shape"], 0) + 1
    lines += ["", "Chosen by validation accuracy: " + ", ".join(
        f"{k} {v}x" for k, v in sorted(wins.items())) + "."]
    return "\n".join(lines) + "\n"


def render_affine(main: list[dict], affine: list[dict], point: str) -> str:
    """CA_Pruned test top-1 with channels ranked by the paper's CA and by CA with a
    learnable affine (same budget), and how much the two rankings agree."""
    ratios = sorted({r["ratio"] for r in affine if r["stage"].startswith("pruned")})
    lines = ["| CA form | CA stage test top-1 | " + " | ".join(f"V={v}" for v in ratios)
             + " |", "|---|---|" + "---|" * len(ratios)]
    for name, recs in (("paper (eqs. 5-7)", main), ("with affine (GCT-style)", affine)):
        by = {r["stage"]: r for r in recs if r["point"] == point}
        ca = by.get("ca")
        cells = [f"{by[f'pruned-x{v}']['test_top1']:.2f}" if f"pruned-x{v}" in by else "-"
                 for v in ratios]
        lines.append(f"| {name} | {ca['test_top1']:.2f} | " if ca else f"| {name} | - | ")
        lines[-1] += " | ".join(cells) + " |"
    return "\n".join(lines) + "\n"


def write_report(main_run: Path, ablation_runs: list[Path], baseline: Path, out: Path,
                 command: str, affine_run: Path | None = None) -> str:
    """Write ``out/table1.md`` (and ``ablation.md``) from the runs' records."""
    base = json.loads(baseline.read_text())
    main = collect(main_run, out)
    text = (f"# AECNN, Table I format\n\nCommand: `{command}`  \nRecords: "
            f"`{out / main_run.name}`; machine and per-stage budget in each record.\n\n"
            + render_table1(main, base))
    (out / "table1.md").write_text(text)
    if any(r["stage"].startswith("aecnn-x") for r in main):
        (out / "fr_shapes.md").write_text(
            f"# Feature-recovery shapes\n\nCommand: `{command}`\n\n" + render_fr_shapes(main))
    if affine_run is not None:
        aff = collect(affine_run, out)
        point = aff[0]["point"]
        text_aff = render_affine(main, aff, point)
        imp = [json.loads((run / point / "importance.json").read_text())["importance"]
               for run in (main_run, affine_run)
               if (run / point / "importance.json").exists()]
        if len(imp) == 2:
            import numpy as np

            from aecnn.evaluation.fig4 import kendall, spearman, top_overlap

            a, b = np.asarray(imp[0]), np.asarray(imp[1])
            text_aff += (f"\nAgreement of the two importance rankings at {point}: Spearman "
                         f"{spearman(a, b):.3f}, Kendall {kendall(a, b):.3f}; top-C/V overlap "
                         + ", ".join(f"V={v}: {top_overlap(a, b, len(a) // v):.2f}"
                                     for v in (2, 4, 8, 16, 32, 64) if len(a) // v)
                         + ".\n")
        (out / "ca_affine.md").write_text(
            f"# Channel attention: paper form vs learnable affine, at {point}\n\n"
            f"Command: `{command}`\n\nCA_Pruned test top-1 (%), same budget.\n\n" + text_aff)
    if ablation_runs:
        abl = {r.name.removeprefix("ablation_"): collect(r, out) for r in ablation_runs}
        point = next(iter(abl.values()))[0]["point"]
        (out / "ablation.md").write_text(
            f"# Channel ranking ablation at {point} (CA_Pruned test top-1, %)\n\n"
            f"Command: `{command}`\n\n" + render_ablation(main, abl, point))
    return text
