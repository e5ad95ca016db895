"""``aecnn demo`` end to end on tiny settings: baseline, Algorithm 1, loopback co-inference."""

from __future__ import annotations

import json

from aecnn.cli.main import main


def test_demo_runs_the_whole_pipeline(caltech_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AECNN_DATA", str(caltech_root))
    out = tmp_path / "demo"
    assert main(["demo", "--no-progress", "--set", "data.subset=2", "--set",
                 "data.input_size=32", "--set", "optim.epochs=1", "--set", f"out={out}",
                 "--set", "threads=2"]) == 0
    rec = json.loads((out / "result.json").read_text())
    co, local = rec["runtime"]["co-inference"], rec["runtime"]["local"]
    assert rec["images"] == 101 and co["bytes_up"] > 0 and local["bytes_up"] == 0
    assert 0 <= co["accuracy"] <= 100 and co["t_com"] > 0 and co["t_es"] > 0
    assert (out / "deploy" / "aecnn.pt").exists()
    text = capsys.readouterr().out
    assert "co-inference over TCP" in text and "median ms" in text
