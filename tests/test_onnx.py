"""The device side as ONNX (``aecnn export --onnx``, ``aecnn infer --engine onnxruntime``):
agreement with PyTorch at both split points and every bridge kind, packets that the server
decodes to PyTorch's class, and a device that runs from the ONNX file with torch blocked.
Tiny ResNet-18 variants with random weights at 64 px on real Caltech-101 photos."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from aecnn.cli import main  # noqa: E402
from aecnn.compression.quantize import QuantSpec, quantize  # noqa: E402
from aecnn.core.split import SplitMeta, SplitNetwork, load_network, save_network  # noqa: E402
from aecnn.models import get_spec  # noqa: E402
from aecnn.runtime.background import BackgroundServer  # noqa: E402
from aecnn.runtime.client import CoInference, Connection  # noqa: E402
from aecnn.runtime.onnx_export import export_onnx, quantile_position  # noqa: E402
from aecnn.runtime.onnx_head import OnnxHead, OnnxHeadError  # noqa: E402
from aecnn.runtime.preprocess import ArrayPreprocessor, Preprocessor  # noqa: E402

SPEC = get_spec("resnet18")
CLASSES = tuple(f"class{i}" for i in range(5))
SIZE = 64
# (name, point, bridge, ratio, spatial, grid): both split points, pruned (zero fill, FR, at
# half size) and BottleNet++ heads, per-tensor, per-channel, clipped and ternary grids
CASES = [
    ("r18-stem-fr-x8", "stem", "fr", 8, False, "uint8"),
    ("r18-stem-fr-half-x8", "stem", "fr", 8, True, "uint2@p90"),
    ("r18-stem-bn-x8", "stem", "bottlenet", 8, False, "uint2l3@p90"),
    ("r18-l1-zf-x4", "layer1.0", "zerofill", 4, False, "uint4c@p99"),
    ("r18-l1-bn-x4", "layer1.0", "bottlenet", 4, False, "uint2"),
]


def _meta(name: str, point: str, bridge: str, ratio: int, spatial: bool) -> SplitMeta:
    kept = tuple(range(0, 64, ratio)) if bridge in ("fr", "zerofill") else None
    return SplitMeta(name=name, model_name="resnet18", classes=CLASSES, point=point,
                     ratio=ratio, bridge=bridge, kept=kept, channels=64, input_size=SIZE,
                     mean=SPEC.mean, std=SPEC.std, fr_shape="1x1" if bridge == "fr" else None,
                     spatial=spatial)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[Path, Path, str]]:
    """name -> (variant file, ONNX head, grid)."""
    d = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    out = {}
    for name, point, bridge, ratio, spatial, grid in CASES:
        net = SplitNetwork.from_meta(_meta(name, point, bridge, ratio, spatial)).eval()
        pt = save_network(net, d / f"{name}.pt")
        out[name] = (pt, export_onnx(load_network(pt), d / f"{name}.onnx", grid), grid)
    return out


@pytest.fixture(scope="module")
def photos(caltech_root) -> list[bytes]:
    folder = caltech_root / "101_ObjectCategories"
    return [sorted((folder / c).iterdir())[0].read_bytes()
            for c in ("airplanes", "Motorbikes", "Faces_easy", "panda")]


def test_numpy_preprocessing_equals_torchvision(photos):
    """The torch-free preprocessor gives the torch one's input, bit for bit."""
    for size in (32, 64, 224):
        a, b = Preprocessor(size, SPEC.mean, SPEC.std), ArrayPreprocessor(size, SPEC.mean,
                                                                          SPEC.std)
        for data in photos:
            assert np.array_equal(a(data).numpy(), b(data))


@pytest.mark.parametrize("n, q", [(10, 0.9), (100, 0.9), (4096, 0.9), (37, 0.995), (64, 0.5),
                                  (200704, 0.9), (12544, 0.99)])
def test_quantile_position_is_numpys(n, q):
    x = np.random.default_rng(n).random(n)
    i, g = quantile_position(n, q)
    v = np.sort(x)
    a, b = v[i], v[min(i + 1, n - 1)]
    top = a + (b - a) * g if g < 0.5 else b - (b - a) * (1 - g)
    assert top == np.quantile(x, q)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_onnx_head_agrees_with_pytorch(exported, photos, case):
    """Features within 1e-5; symbols equal on >= 99.9 % of elements (only elements whose
    float value lies within a float32 rounding error of a level boundary may differ, by one
    level); through the quantiser alone, the graph is exact: numpy's quantize of the ONNX
    features gives the graph's symbols, lo and step bit for bit."""
    name = case[0]
    pt, onnx_file, grid = exported[name]
    net, head = load_network(pt), OnnxHead(onnx_file)
    spec = QuantSpec.parse(grid)
    assert head.quant == spec and head.meta["name"] == name and head.kept == net.meta.kept
    prep = ArrayPreprocessor(SIZE, SPEC.mean, SPEC.std)
    inputs = [prep(p) for p in photos] + [
        np.random.default_rng(i).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
        for i in range(4)]
    same = total = 0
    for x in inputs:
        with torch.inference_mode():
            z = net.head(torch.from_numpy(x))[0].numpy()
        out = head.run(x)
        assert out.features.shape == z.shape
        np.testing.assert_allclose(out.features, z, rtol=0, atol=1e-5)
        sym, lo, step = quantize(z, spec)
        same += int((out.symbols == sym).sum())
        total += sym.size
        assert np.abs(out.symbols.astype(int) - sym).max() <= 1
        exact = quantize(out.features, spec)
        assert np.array_equal(out.symbols, exact[0])
        assert np.array_equal(out.lo, exact[1]) and np.array_equal(out.step, exact[2])
    assert same / total >= 0.999, f"{name}: {same}/{total} symbols agree"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_onnx_packet_decodes_to_the_pytorch_class(exported, photos, case):
    pt, onnx_file, grid = exported[case[0]]
    net, head = load_network(pt), OnnxHead(onnx_file)
    prep = ArrayPreprocessor(SIZE, SPEC.mean, SPEC.std)
    for data in photos:
        x = prep(data)
        packet, stats = head.encode(head.run(x), head.codec("auto"))
        ref = net.encode(torch.from_numpy(x), grid)
        assert packet.header.indices == ref.header.indices
        assert packet.header.kept_shape == ref.header.kept_shape
        got, want = net.decode(packet.to_bytes()), net.decode(ref.to_bytes())
        assert int(got.argmax()) == int(want.argmax())
        torch.testing.assert_close(got, want, rtol=0, atol=1e-3)


DEVICE = """
import json, sys
sys.modules["torch"] = None          # import torch now fails: the device has no torch
sys.modules["torchvision"] = None
from aecnn.runtime.client import Connection
from aecnn.runtime.onnx_head import OnnxCoInference, OnnxHead
head = OnnxHead(sys.argv[1])
with Connection("127.0.0.1", int(sys.argv[2])) as conn:
    dev = OnnxCoInference(head, head.codec("auto"), conn)
    out = [dev.infer(p).to_dict() for p in sys.argv[3:]]
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")
                and sys.modules[m] is not None)
assert not loaded and "aecnn.training" not in sys.modules and "aecnn.core" not in sys.modules
print(json.dumps(out))
"""


def test_device_runs_from_the_onnx_file_without_torch(exported, photos, tmp_path):
    """A device process in which torch cannot be imported sends ONNX-built packets to a
    live server and gets the classes the PyTorch device gets."""
    files = []
    for i, data in enumerate(photos):
        files.append(tmp_path / f"photo{i}.jpg")
        files[-1].write_bytes(data)
    names = ("r18-stem-fr-x8", "r18-l1-bn-x4")
    nets = {n: load_network(exported[n][0]) for n in names}
    with BackgroundServer(nets) as (host, port):
        for n in names:
            run = subprocess.run([sys.executable, "-c", DEVICE, str(exported[n][1]), str(port),
                                  *map(str, files)], capture_output=True, text=True,
                                 timeout=120)
            assert run.returncode == 0, run.stderr
            got = json.loads(run.stdout.splitlines()[-1])
            with Connection(host, port) as conn:
                dev = CoInference(nets[n], nets[n].codec(exported[n][2], "auto"), conn)
                want = [dev.infer(f) for f in files]
            assert [r["cls"] for r in got] == [r.cls for r in want]
            assert all(r["variant"] == n and r["bytes_up"] > 0 for r in got)


CLI_DEVICE = """
import sys
sys.modules["torch"] = None          # import torch now fails: the device has no torch
sys.modules["torchvision"] = None
from aecnn.cli import main
rc = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")
                and sys.modules[m] is not None)
assert not loaded and "aecnn.training" not in sys.modules, loaded
sys.exit(rc)
"""


def test_aecnn_infer_runs_without_torch(exported, photos, tmp_path):
    """The ``aecnn infer --engine onnxruntime`` command itself, in a process where torch
    cannot be imported, against a live server."""
    pt, head, _ = exported["r18-stem-fr-x8"]
    photo = tmp_path / "p.jpg"
    photo.write_bytes(photos[0])
    with BackgroundServer({"r18-stem-fr-x8": load_network(pt)}) as (host, port):
        run = subprocess.run([sys.executable, "-c", CLI_DEVICE, "infer", "--engine",
                              "onnxruntime", "--variant", str(head), "--server",
                              f"{host}:{port}", str(photo), "--json", str(tmp_path / "r.json")],
                             capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "r.json").read_text())["requests"][0]["bytes_up"] > 0


def test_cli_export_and_infer_with_onnxruntime(exported, photos, tmp_path, capsys):
    pt, _, _ = exported["r18-stem-fr-x8"]
    head = tmp_path / "head.onnx"
    assert main(["export", str(pt), "--onnx", str(head), "--quant", "uint4"]) == 0
    assert "uint4 quantiser" in capsys.readouterr().out
    photo = tmp_path / "p.jpg"
    photo.write_bytes(photos[0])
    with BackgroundServer({"r18-stem-fr-x8": load_network(pt)}) as (host, port):
        server = f"{host}:{port}"
        assert main(["infer", "--engine", "onnxruntime", "--variant", str(head), "--server",
                     server, str(photo), "--json", str(tmp_path / "r.json")]) == 0
        rec = json.loads((tmp_path / "r.json").read_text())
        assert rec["engine"] == "onnxruntime" and rec["requests"][0]["bytes_up"] > 0
        capsys.readouterr()
        for extra, msg in [(["--quant", "uint8"], "quantises to uint4"),
                           (["--mode", "local"], "co-inference only"),
                           (["--input-size", "32"], "input size it was exported at")]:
            assert main(["infer", "--engine", "onnxruntime", "--variant", str(head),
                         "--server", server, str(photo), *extra]) == 2
            assert msg in capsys.readouterr().err
    # a variant file, or any other file, is not an ONNX head
    with pytest.raises(OnnxHeadError, match="not a readable ONNX model"):
        OnnxHead(pt)
    assert main(["export", str(pt)]) == 2
    assert "--out FILE" in capsys.readouterr().err
