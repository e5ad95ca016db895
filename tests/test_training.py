"""Baseline training: exact resume after a real kill, and evaluation of the checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from aecnn.cli import main
from aecnn.evaluation import evaluate_checkpoint
from aecnn.training.checkpoint import load_checkpoint


def _args(root: Path, tmp: Path, out: Path) -> list[str]:
    return ["train-baseline", "--data", str(root), "--model", "resnet18", "--epochs", "3",
            "--input-size", "32", "--subset", "2", "--out", str(out), "--no-progress",
            "--set", f"data.manifest={tmp / 'manifest.json'}", "--set", "data.workers=0",
            "--set", "data.batch_size=32", "--set", "threads=1", "--set", "optim.lr=0.05"]


def _comparable(record: dict) -> dict:
    keep = ("test_top1", "test_top5", "test_loss", "val_top1", "best_epoch", "n_test")
    hist = [{k: v for k, v in row.items() if k != "seconds"} for row in record["history"]]
    return {**{k: record[k] for k in keep}, "history": hist}


def test_killed_and_resumed_run_matches_uninterrupted(caltech_root, tmp_path):
    straight = tmp_path / "straight"
    assert main(_args(caltech_root, tmp_path, straight)) == 0
    expected = json.loads((straight / "result.json").read_text())

    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "aecnn", *_args(caltech_root, tmp_path,
                                                                   killed)], env=env)
    deadline = time.monotonic() + 300
    try:
        while not (killed / "last.pt").exists():
            assert proc.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    done = load_checkpoint(killed / "last.pt", ("epoch",))["epoch"]
    assert 1 <= done < 3, f"kill came too late (epoch {done})"
    assert not (killed / "result.json").exists()

    assert main(_args(caltech_root, tmp_path, killed)) == 2  # refuses to overwrite
    assert main([*_args(caltech_root, tmp_path, killed), "--resume"]) == 0
    resumed = json.loads((killed / "result.json").read_text())
    assert _comparable(resumed) == _comparable(expected)

    res = evaluate_checkpoint(str(straight / "best.pt"), "test", progress=False)
    assert res["top1"] == pytest.approx(expected["test_top1"])
    assert res["n"] == expected["n_test"] == 101
    ckpt = load_checkpoint(straight / "best.pt")
    assert len(ckpt["classes"]) == 101 and ckpt["config"]["model"]["name"] == "resnet18"
    assert isinstance(ckpt["model"]["conv1.weight"], torch.Tensor)


def test_resume_refuses_changed_config(caltech_root, tmp_path):
    out = tmp_path / "run"
    args = _args(caltech_root, tmp_path, out)
    args[args.index("--epochs") + 1] = "1"
    assert main(args) == 0
    changed = [*args, "--resume", "--set", "optim.lr=0.2"]
    assert main(changed) == 2


def test_a_bad_device_name_is_a_config_error():
    from aecnn.errors import ConfigError
    from aecnn.training.loop import resolve_device

    with pytest.raises(ConfigError, match="not a torch device"):
        resolve_device("gpu0")
    assert resolve_device("cpu").type == "cpu" and resolve_device("auto").type in ("cpu", "cuda")
