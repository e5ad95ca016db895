"""Markdown summary of the stage records of a reproduction run that ended before its
measurement (float32 and QAT test accuracies only; no bytes): what the
partial 128 px GPU table (docs/experiments.md) was written by.

    python -m experiments.scripts.stage_summary RECORDS_FOLDER
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(records: Path) -> str:
    base = json.loads(next(records.glob("baseline/*/result.json")).read_text())
    stages = {}
    for f in sorted(records.glob("*/*/*/*/result.json")):
        rec = json.loads(f.read_text())
        stages[rec["stage"]] = rec
    b = base["test_top1"]
    lines = [f"Baseline: ResNet-50 from scratch, {base['input_size']} px, {base['epochs']} epochs,"
             f" test top-1 {b:.2f} % on {base['n_test']} images ({base['seconds']:.0f} s).", "",
             "| V | CA_Pruned | AECNN | AECNN + QAT `uint2@p90` | BottleNet++ | "
             "BottleNet++ + QAT `uint2` |", "|---|---|---|---|---|---|"]

    def cell(name: str) -> str:
        rec = stages.get(name)
        if rec is None:
            return "not trained (run ended)"
        return f"{rec['test_top1']:.2f} ({rec['test_top1'] - b:+.2f})"

    for v in sorted({r["ratio"] for r in stages.values() if r.get("ratio", 1) > 1}):
        lines.append(f"| {v} | {cell(f'pruned-x{v}')} | {cell(f'aecnn-x{v}')} | "
                     f"{cell(f'aecnn-q2p90-x{v}')} | {cell(f'bottlenet-x{v}')} | "
                     f"{cell(f'bottlenet-q2-x{v}')} |")
    lines += ["", "Test top-1 (%) on all test images (points against the baseline). QAT "
              "stages: each network's own test accuracy through its grid (the codec's "
              "quantiser).", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {r['seconds']:.0f} |" for k, r in stages.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(main(Path(sys.argv[1])), end="")
