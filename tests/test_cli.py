"""The command line: clear one-line errors for bad input, never a traceback."""

from __future__ import annotations

import os

import pytest

from aecnn.cli.main import main
from aecnn.data.caltech101 import FOLDER


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines and lines[-1].startswith("aecnn: error: ")
    return lines[-1]


def test_missing_dataset(tmp_path, capsys):
    assert main(["data", "info", "--data", str(tmp_path / "nowhere")]) == 2
    assert "no Caltech-101 at" in _error(capsys)


def test_unknown_model_and_split(capsys):
    assert main(["models", "resnet5000"]) == 2
    assert "unknown model 'resnet5000'" in _error(capsys)
    assert main(["train-baseline", "--model", "vgg99", "--epochs", "1"]) == 2
    assert "unknown model" in _error(capsys)


def test_split_command_and_unknown_split(capsys):
    assert main(["split", "resnet50", "l2"]) == 0
    out = capsys.readouterr().out
    assert "layer1.0" in out and "256 x 56 x 56" in out and "3211264 bytes" in out
    assert main(["split", "resnet50", "layer9.9"]) == 2
    assert "no split point 'layer9.9'" in _error(capsys)


def test_bad_override(capsys):
    assert main(["train-baseline", "--set", "optim.epochs=x"]) == 2
    assert "optim.epochs" in _error(capsys)


def test_corrupt_checkpoint(tmp_path, capsys):
    (tmp_path / "c.pt").write_bytes(os.urandom(256))
    assert main(["evaluate", str(tmp_path / "c.pt")]) == 2
    assert "corrupt" in _error(capsys)
    assert main(["evaluate", str(tmp_path / "none.pt")]) == 2
    assert "does not exist" in _error(capsys)


def test_unreadable_image_in_dataset(mini_caltech, tmp_path, capsys):
    bad = mini_caltech / FOLDER / "accordion" / "image_9999.jpg"
    bad.write_bytes(b"garbage, not an image")
    rc = main(["train-baseline", "--data", str(mini_caltech), "--model", "resnet18",
               "--epochs", "1", "--input-size", "32", "--out", str(tmp_path / "r"),
               "--no-progress", "--set", f"data.manifest={tmp_path / 'm.json'}",
               "--set", "data.workers=0"])
    assert rc == 2
    assert "cannot read image" in _error(capsys)


def test_models_listing(capsys):
    assert main(["models", "resnet50"]) == 0
    out = capsys.readouterr().out
    assert "stem" in out and "64 x  56 x  56" in out and "layer1.0" in out


@pytest.mark.parametrize("argv", [["--help"], ["train-baseline", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
