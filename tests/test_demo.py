"""``aecnn demo`` end to end on tiny settings (baseline, Algorithm 1, loopback
co-inference), run from a wheel installed into a fresh environment, in a working directory
outside the checkout: the package needs no file of the repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]


def _fresh_env(tmp_path: Path) -> Path:
    """A new virtual environment with aecnn built from this checkout and installed in it
    (not editable). Its other dependencies (torch, ...) come from the test's environment,
    appended to the new one's path, so nothing is downloaded."""
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig."
                                "get_paths()['purelib'])"], check=True, capture_output=True,
                               text=True).stdout.strip())
    (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-index", "--no-build-isolation", str(CHECKOUT)],
                   check=True, cwd=tmp_path)
    return env


def test_installed_demo_runs_outside_the_checkout(caltech_root, tmp_path):
    env = _fresh_env(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    run_env = {**os.environ, "AECNN_DATA": str(caltech_root), "PYTHONPATH": ""}
    where = subprocess.run([str(env / "bin" / "python"), "-c",
                            "import aecnn; print(aecnn.__file__)"],
                           check=True, capture_output=True, text=True, cwd=work, env=run_env)
    assert Path(where.stdout.strip()).is_relative_to(env), where.stdout  # the wheel's copy
    proc = subprocess.run(
        [str(env / "bin" / "aecnn"), "demo", "--no-progress", "--set", "data.subset=1",
         "--set", "data.input_size=32", "--set", "optim.epochs=1", "--set", "threads=2"],
        cwd=work, env=run_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = work / "runs" / "demo"
    rec = json.loads((out / "result.json").read_text())
    co, local = rec["runtime"]["co-inference"], rec["runtime"]["local"]
    assert rec["images"] == 101 and co["bytes_up"] > 0 and local["bytes_up"] == 0
    assert 0 <= co["accuracy"] <= 100 and co["t_com"] > 0 and co["t_es"] > 0
    assert (out / "deploy" / "aecnn.pt").exists() and (out / "deploy" / "x1.pt").exists()
    assert "co-inference over TCP" in proc.stdout and "median ms" in proc.stdout
