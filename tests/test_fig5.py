"""Fig. 5's tables and figures from JSON records alone: an old record renders as it always
did, and a record with the best codes, local computing and JPEG offloading gets their
tables and the crossover table. No network, no models."""

from __future__ import annotations

import json
from pathlib import Path

from aecnn.evaluation.fig5 import beats_both, plot_fig5, render_fig5

RESULTS = Path(__file__).resolve().parents[1] / "results" / "runtime"


def test_the_committed_record_renders_as_committed(tmp_path):
    rec = json.loads((RESULTS / "fig5.json").read_text())
    assert render_fig5(rec, rec["command"]) == (RESULTS / "fig5.md").read_text()
    assert [p.name for p in plot_fig5(rec, tmp_path)] == ["fig5a.png", "fig5b.png"]


def _point(rate, fig, series, mode, ms, acc=None, group=None, size="224x224", ratio=None,
           coder="none"):
    p = {"rate_mbps": rate, "fig": fig, "series": series, "size": size, "mode": mode,
         "variant": series, "ratio": ratio, "coder": coder, "measured_s": ms / 1e3,
         "predicted_s": ms / 1e3 * 1.1, "error": 0.1, "median": {}, "requests": [],
         "accuracy": acc}
    if group:
        p["group"] = group
    return p


def _record() -> dict:
    """Two rates: at 1 Mbps nothing beats local computing (50 ms); at 100 Mbps the QAT code
    (90.5 %, within a point of local's 91 %) does, and the learned code (80 %) too."""
    pts = [_point(1, "5a", "local", "local", 50.0, 91.0)]
    for rate, jpeg, q, ent, v1 in ((1, 400.0, 120.0, 60.0, 900.0), (100, 60.0, 30.0, 20.0, 70.0)):
        pts += [_point(rate, "5a", "full-offload", "full", jpeg * 2, 91.0),
                _point(rate, "5a", "jpeg-q90", "jpeg", jpeg, 90.8),
                _point(rate, "5b", "V=1", "co", v1, 91.0, "ratio", ratio=1),
                _point(rate, "5b", "q1-x8", "co", q, 90.5, "best", ratio=8, coder="prior"),
                _point(rate, "5b", "ent-x8", "co", ent, 80.0, "best", ratio=8,
                       coder="factorized")]
    cfg = {"input_size": 224, "device_threads": 1, "server_threads": 2, "requests": 3,
           "sizes": ["224x224"], "deadline_s": 0.1, "accuracy_tolerance": 1.0}
    links = [{"rate_mbps": r, "expected_bps": r * 1e6, "measured_bps": r * 1e6, "error": 0.0,
              "rtt_s": 1e-4} for r in (1, 100)]
    return {"kind": "fig5", "config": cfg, "links": links, "points": pts,
            "planner": {"1": "local", "100": "q1-x8"},
            "planner_meets": {"1": True, "100": True}}


def test_best_codes_and_where_co_inference_beats_both(tmp_path):
    rec = _record()
    rows = {r["rate_mbps"]: r for r in beats_both(rec)}
    assert rows[1]["winners"] == [] and rows[1]["fastest"]["series"] == "ent-x8"
    assert rows[1]["fastest_kept"]["series"] == "q1-x8"  # 80 % is not within a point of 91
    assert [p["series"] for p in rows[100]["winners"]] == ["ent-x8", "q1-x8"]
    text = render_fig5(rec)
    assert "| rate (Mbps) | aecnn-coded | aecnn-raw | full-offload | local | jpeg-q90 |" in text
    assert "## Fig. 5(b), the best codes" in text
    assert "q1-x8 (90.50 %)" in text and "local (91.00 %)" in text
    table = text.split("## Where co-inference beats")[1]
    assert "| 1 | 50.0 | 400.0 |" in table and "| no | none |" in table
    assert "| **yes**, at kept accuracy | ent-x8, q1-x8 |" in table
    assert [p.name for p in plot_fig5(rec, tmp_path)] == ["fig5a.png", "fig5b.png"]
    rec["planner_meets"]["100"] = False
    assert "q1-x8 (none meets the deadline: the fastest)" in render_fig5(rec)
