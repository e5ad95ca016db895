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


def write_report(main_run: Path, ablation_runs: list[Path], baseline: Path, out: Path,
                 command: str) -> str:
    """Write ``out/table1.md`` (and ``ablation.md``) from the runs' records."""
    base = json.loads(baseline.read_text())
    main = collect(main_run, out)
    text = (f"# AECNN, Table I format\n\nCommand: `{command}`  \nRecords: "
            f"`{out / main_run.name}`; machine and per-stage budget in each record.\n\n"
            + render_table1(main, base))
    (out / "table1.md").write_text(text)
    if ablation_runs:
        abl = {r.name.removeprefix("ablation_"): collect(r, out) for r in ablation_runs}
        point = next(iter(abl.values()))[0]["point"]
        (out / "ablation.md").write_text(
            f"# Channel ranking ablation at {point} (CA_Pruned test top-1, %)\n\n"
            f"Command: `{command}`\n\n" + render_ablation(main, abl, point))
    return text
