"""``aecnn serve --device``: the CPU as before, a clear error for a GPU that is not there, and
(with a GPU, marker ``gpu``) the same answers from the GPU as from the CPU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aecnn.cli.main import main
from aecnn.compression.codec import FeatureCodec
from aecnn.core.split import SplitMeta, SplitNetwork, save_network
from aecnn.errors import ConfigError
from aecnn.models import get_spec
from aecnn.runtime.background import BackgroundServer
from aecnn.runtime.client import CoInference, Connection
from aecnn.runtime.server import ServerConfig, server_device

SPEC = get_spec("resnet18")


def _variant() -> SplitNetwork:
    torch.manual_seed(0)
    meta = SplitMeta(name="r18-fr-x8", model_name="resnet18",
                     classes=tuple(f"c{i}" for i in range(5)), point="stem", ratio=8,
                     bridge="fr", kept=tuple(range(0, 64, 8)), channels=64, input_size=32,
                     mean=SPEC.mean, std=SPEC.std, fr_shape="1x1")
    return SplitNetwork.from_meta(meta).eval()


def _answers(net: SplitNetwork, device: str | None, photos: list[Path]) -> list[tuple]:
    cfg = ServerConfig(port=0) if device is None else ServerConfig(port=0, device=device)
    with BackgroundServer({net.meta.name: net}, cfg) as (
            host, port), Connection(host, port) as conn:
        co = CoInference(net, FeatureCodec("float32", "memoryless"), conn)
        return [(r.label, round(r.score, 4)) for r in map(co.infer, photos)]


def _no_cuda(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_device_names(monkeypatch):
    _no_cuda(monkeypatch)
    assert server_device("cpu") == torch.device("cpu")
    assert server_device("auto") == torch.device("cpu")  # no GPU: the CPU
    for bad, said in (("cuda", "CUDA is not available"), ("cuda:1", "CUDA is not available"),
                      ("tpu", "not auto, cpu, cuda or cuda:N"), ("mps", "not auto")):
        with pytest.raises(ConfigError, match=said):
            server_device(bad)


def test_serve_on_a_missing_gpu_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    _no_cuda(monkeypatch)
    assert main(["serve", "--device", "cuda", str(tmp_path / "absent.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aecnn: error: device: 'cuda'") and err.count("\n") == 1, err


def test_cpu_server_answers_as_before(caltech_root):
    net = _variant()
    photos = [sorted((caltech_root / "101_ObjectCategories" / c).iterdir())[0]
              for c in ("airplanes", "Faces_easy")]
    assert _answers(net, "cpu", photos) == _answers(net, None, photos)  # the default: cpu
    assert next(net.parameters()).device.type == "cpu"  # the caller's network stays put


def test_serve_command_on_the_cpu(tmp_path):
    path = save_network(_variant(), tmp_path / "v.pt")
    proc = subprocess.Popen([sys.executable, "-m", "aecnn", "serve", "--device", "cpu",
                             "--port", "0", str(path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        assert "listening on 127.0.0.1:" in line and "on cpu" in line, line
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_server_answers_as_the_cpu_server(caltech_root):
    net = _variant()
    photos = [sorted((caltech_root / "101_ObjectCategories" / c).iterdir())[0]
              for c in ("airplanes", "Faces_easy", "Motorbikes")]
    cpu, gpu = _answers(net, "cpu", photos), _answers(net, "cuda", photos)
    assert [c for c, _ in cpu] == [c for c, _ in gpu]
    assert [s for _, s in cpu] == pytest.approx([s for _, s in gpu], abs=1e-3)
