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
    assert main(argv) == 0
    assert "usage: aecnn" in capsys.readouterr().out


def _tiny_variant(tmp_path):
    """A variant file: ResNet-18 uncut at the stem, 32 px, two classes, seeded weights."""
    import torch

    from aecnn.core import SplitMeta, SplitNetwork, save_network

    meta = SplitMeta(name="r18-x1", model_name="resnet18", classes=("a", "b"), point="stem",
                     ratio=1, bridge="identity", kept=None, channels=64, input_size=32,
                     mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    torch.manual_seed(0)
    return save_network(SplitNetwork.from_meta(meta).eval(), tmp_path / "v.pt")


def _one_line(capsys) -> str:
    """The whole of stderr: exactly one line, ``aecnn: error: ...``, without an object
    address or PyTorch's advice."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("aecnn: error: "), err
    assert "0x" not in err and "weights_only" not in err and "Traceback" not in err
    return err


def test_plan_with_a_binary_profile(tmp_path, capsys):
    prof = tmp_path / "profile.json"
    prof.write_bytes(bytes(range(256)) * 8)
    assert main(["plan", "--profile", str(prof), "--rate", "10Mbps"]) == 2
    assert str(prof) in _one_line(capsys)


@pytest.mark.parametrize("content", [b"garbage", b"PK\x03\x04" + bytes(100)])
def test_corrupt_checkpoint_says_why(tmp_path, capsys, content):
    bad = tmp_path / "best.pt"
    bad.write_bytes(content)
    assert main(["evaluate", str(bad)]) == 2
    err = _one_line(capsys)
    assert str(bad) in err and "not a PyTorch file" in err


def test_checkpoint_that_holds_code(tmp_path, capsys):
    import torch

    bad = tmp_path / "variant.pt"
    torch.save({"format": "aecnn-variant/1", "meta": open}, bad)
    assert main(["serve", str(bad)]) == 2
    assert "refers to code (io.open)" in _one_line(capsys)


def test_corrupt_photo_names_its_file(tmp_path, capsys):
    variant = _tiny_variant(tmp_path)
    photo = tmp_path / "cat.jpg"
    photo.write_bytes(b"\xff\xd8 not really a JPEG")
    assert main(["infer", str(photo), "--mode", "local", "--variant", str(variant)]) == 2
    err = _one_line(capsys)
    assert str(photo) in err and "cannot decode image" in err


def test_bench_codec_reads_the_architecture_from_the_checkpoint(tmp_path, caltech_root, capsys):
    """A ResNet-18 checkpoint is measured as ResNet-18 (not loaded into a ResNet-50); weights
    that do not fit the model the checkpoint names are a one-line error (exit status 2)."""
    from aecnn.benchmarks.codec import stem_features
    from aecnn.models import create_model
    from aecnn.training.checkpoint import save_checkpoint

    classes = [f"c{i}" for i in range(3)]
    good, bad = tmp_path / "r18.pt", tmp_path / "wrong.pt"
    state = create_model("resnet18", 3).state_dict()
    save_checkpoint(good, {"model": state, "classes": classes, "model_name": "resnet18"})
    save_checkpoint(bad, {"model": state, "classes": classes, "model_name": "resnet50"})
    feats, source = stem_features(str(good), 1, input_size=64)
    assert feats.shape == (1, 64, 16, 16) and "resnet18" in source
    assert main(["bench", "codec", "--checkpoint", str(bad), "--out", str(tmp_path)]) == 2
    err = _one_line(capsys)
    assert str(bad) in err and "do not fit resnet50" in err


def test_help_shows_defaults_and_every_option_is_explained(capsys):
    import argparse

    from aecnn.cli.main import build_parser

    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    assert "(default: 127.0.0.1)" in out and "(default: 7070)" in out

    def walk(p: argparse.ArgumentParser, path: str):
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                helps = {c.dest: c.help for c in a._choices_actions}
                for name, sp in a.choices.items():
                    assert helps.get(name), f"{path} {name} has no help line"
                    yield from walk(sp, f"{path} {name}")
            elif not isinstance(a, (argparse._HelpAction, argparse._VersionAction)):
                yield path, a

    missing = [f"{path} {a.option_strings or a.dest}" for path, a in walk(build_parser(), "aecnn")
               if not a.help]
    assert missing == []


def test_more_one_line_errors(tmp_path, capsys):
    """What a newcomer hit: a taken port, a negative count, a rate or deadline without a
    unit, an unknown command: each one line and exit status 2."""
    import socket

    variant = str(_tiny_variant(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", variant, "--port", str(port)]) == 2
        assert f"cannot listen on 127.0.0.1:{port}" in _one_line(capsys)
    assert main(["infer", "--mode", "local", "--variant", variant, "--test", "-3"]) == 2
    assert "--test: must be at least 1, got -3" in _one_line(capsys)
    prof = tmp_path / "p.json"
    prof.write_text("{}")
    assert main(["plan", "--profile", str(prof), "--rate", "2"]) == 2
    assert "needs a unit" in _one_line(capsys)
    assert main(["nosuch"]) == 2
    assert "invalid choice: 'nosuch'" in _one_line(capsys)


def test_client_waits_for_a_server_that_is_starting():
    import socket
    import threading
    import time

    from aecnn.errors import AecnnError
    from aecnn.runtime.client import Connection

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(AecnnError, match="cannot connect"):
        Connection("127.0.0.1", port, connect_wait=0.0).connect()
    server = socket.socket()

    def start_late():
        time.sleep(0.6)
        server.bind(("127.0.0.1", port))
        server.listen()

    threading.Thread(target=start_late).start()
    t0 = time.monotonic()
    conn = Connection("127.0.0.1", port, connect_wait=5.0).connect()
    assert 0.5 < time.monotonic() - t0 < 3
    conn.close()
    server.close()


def test_best_code_options_fail_in_one_line(tmp_path, capsys):
    """The options of the candidates' commands, misused: one line and exit status 2."""
    from PIL import Image

    variant = str(_tiny_variant(tmp_path))
    photo = tmp_path / "p.jpg"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(photo)
    assert main(["infer", "--jpeg", "90", "--variant", variant, "--server", "x:1",
                 str(photo)]) == 2
    assert "--jpeg is for --mode full" in _one_line(capsys)
    assert main(["infer", "--mode", "full", "--jpeg", "0", "--variant-name", "r18-x1",
                 "--server", "127.0.0.1:1", str(photo)]) == 2
    assert "--jpeg must be a quality in 1..100, not 0" in _one_line(capsys)
    assert main(["export", str(tmp_path), "--out-dir", str(tmp_path / "d")]) == 2
    assert "holds no finished deployable stage" in _one_line(capsys)
    assert main(["export", str(tmp_path), "--out-dir", str(tmp_path / "d"), "--kinds",
                 "nope"]) == 2
    assert "unknown kind 'nope'" in _one_line(capsys)
    assert main(["export", variant, "--out", str(tmp_path / "o.pt"), "--kinds", "qat"]) == 2
    assert "--kinds is for --out-dir" in _one_line(capsys)
    assert main(["export", str(tmp_path), "--out-dir", str(tmp_path / "d"), "--out",
                 str(tmp_path / "o.pt")]) == 2
    assert "--out-dir exports a whole run folder" in _one_line(capsys)
    assert main(["profile", variant, "--full", variant, "--images", str(photo),
                 "--accuracy", "local"]) == 2
    assert "is not KEY=PERCENT" in _one_line(capsys)
