"""Training under ``torchrun`` with two gloo ranks on the CPU: identical weights on both
ranks after every step, a falling loss, an evaluation that equals one process's, and a run
killed after its first checkpoint that resumes and ends as the uninterrupted run did."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aecnn.evaluation import evaluate_checkpoint
from aecnn.training.checkpoint import load_checkpoint

WORKER = Path(__file__).with_name("ddp_worker.py")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def _args(root: Path, tmp: Path, out: Path) -> list[str]:
    return ["train-baseline", "--data", str(root), "--model", "resnet18", "--epochs", "3",
            "--input-size", "32", "--subset", "2", "--out", str(out), "--no-progress",
            "--set", f"data.manifest={tmp / 'manifest.json'}", "--set", "data.workers=0",
            "--set", "data.batch_size=32", "--set", "threads=1", "--set", "optim.lr=0.05"]


def _comparable(record: dict) -> dict:
    keep = ("test_top1", "test_top5", "test_loss", "val_top1", "best_epoch", "n_test")
    hist = [{k: v for k, v in row.items() if k != "seconds"} for row in record["history"]]
    return {**{k: record[k] for k in keep}, "history": hist}


@pytest.fixture(scope="module")
def straight(caltech_root, tmp_path_factory) -> tuple[Path, Path]:
    """An uninterrupted 2-rank run (3 epochs) and the folder of its per-step hashes."""
    tmp = tmp_path_factory.mktemp("ddp")
    out, hashes = tmp / "straight", tmp / "hashes"
    subprocess.run([*TORCHRUN, str(WORKER), str(hashes), *_args(caltech_root, tmp, out)],
                   env=ENV, check=True, timeout=300)
    return out, hashes


def test_both_ranks_hold_identical_weights_after_every_step(straight):
    _, hashes = straight
    ranks = [json.loads((hashes / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    steps = ranks[0]["steps"]
    # 202 training images, global batch 32: 16 per rank, 7 steps an epoch, as in one process
    assert len(steps) == 3 * 7
    assert ranks[1]["steps"] == steps
    assert len(set(steps)) == len(steps)  # every step moved the weights


def test_the_loss_falls_and_rank_0_alone_wrote_the_run(straight):
    out, _ = straight
    rec = json.loads((out / "result.json").read_text())
    losses = [row["train_loss"] for row in rec["history"]]
    assert losses[-1] < losses[0]
    assert len(rec["history"]) == 3 and rec["n_train"] == 202
    assert rec["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert sorted(p.name for p in out.iterdir()) == [
        "best.pt", "config.yaml", "last.pt", "metrics.json", "result.json"]


def test_distributed_evaluation_equals_one_process(straight):
    out, _ = straight
    rec = json.loads((out / "result.json").read_text())
    res = evaluate_checkpoint(str(out / "best.pt"), "test", progress=False)  # one process
    assert res["n"] == rec["n_test"] == 101  # each test image counted once, none padded
    assert (res["top1"], res["top5"]) == (rec["test_top1"], rec["test_top5"])
    assert res["loss"] == pytest.approx(rec["test_loss"], rel=1e-5)


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def test_killed_run_resumes_under_torchrun(caltech_root, tmp_path, straight):
    out = tmp_path / "killed"
    args = _args(caltech_root, straight[0].parent, out)
    cmd = [*TORCHRUN, "-m", "aecnn", *args]  # the documented command
    proc = subprocess.Popen(cmd, env=ENV)
    deadline = time.monotonic() + 300
    try:
        while not (out / "last.pt").exists():
            assert proc.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.02)
        for pid in _children(proc.pid):  # both ranks die at once, then torchrun with them
            os.kill(pid, signal.SIGKILL)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    done = load_checkpoint(out / "last.pt", ("epoch",))["epoch"]
    assert 1 <= done < 3, f"kill came too late (epoch {done})"
    assert not (out / "result.json").exists()

    subprocess.run([*cmd, "--resume"], env=ENV, check=True, timeout=300)
    resumed = json.loads((out / "result.json").read_text())
    expected = json.loads((straight[0] / "result.json").read_text())
    assert _comparable(resumed) == _comparable(expected)


@pytest.mark.slow
def test_algorithm1_and_bottlenet_stages_under_torchrun(caltech_root, tmp_path, straight):
    """CA, pruning, FR and QAT stages, then BottleNet++'s module (backbone frozen), joint and
    QAT stages, each on 2 gloo ranks from the 2-rank baseline."""
    base = straight[0] / "best.pt"
    env = {**ENV, "AECNN_DATA": str(caltech_root)}
    common = ["--no-progress", "--set", f"baseline={base}", "--set", "points=[stem]",
              "--set", "ratios=[8]", "--set", "threads=1", "--set", "qat_grids=[uint2]",
              "--set", "qat.epochs=1"]
    aecnn, bottlenet = tmp_path / "aecnn", tmp_path / "bottlenet"
    subprocess.run([*TORCHRUN, "-m", "aecnn", "train-aecnn", *common, "--set", f"out={aecnn}",
                    "--set", "ca.epochs=1", "--set", "prune.epochs=1", "--set", "fr.epochs=1",
                    "--set", "fr_shapes=[1x1]", "--set", "importance_images=64"],
                   env=env, check=True, timeout=300)
    subprocess.run([*TORCHRUN, "-m", "aecnn", "train-bottlenet", *common,
                    "--set", f"out={bottlenet}", "--set", "module.epochs=1",
                    "--set", "joint.epochs=1"], env=env, check=True, timeout=300)
    stages = {"ca", "pruned-x8", "aecnn-x8", "aecnn-q2-x8"}
    for folder, names in ((aecnn, stages), (bottlenet, {"bottlenet-module-x8", "bottlenet-x8",
                                                        "bottlenet-q2-x8"})):
        for name in names:
            rec = json.loads((folder / "stem" / name / "result.json").read_text())
            assert rec["n_test"] == 101 and len(rec["budget"]) > 0, name
    # the frozen backbone head of the module stage kept the baseline's weights and statistics
    module = load_checkpoint(bottlenet / "stem" / "bottlenet-module-x8" / "best.pt")["model"]
    baseline = load_checkpoint(base)["model"]
    held = [k for k in module if k.startswith("head.backbone.")]
    assert held and all(module[k].equal(baseline[k.removeprefix("head.backbone.")])
                        for k in held)
