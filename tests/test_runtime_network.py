"""Fig. 5's machinery over a real shaped link: the edge server in the edge namespace, the
one-thread device client in the device namespace, every point measured and predicted."""

from __future__ import annotations

import json

import pytest
import torch

from aecnn.cli.main import main
from aecnn.core.split import SplitMeta, SplitNetwork, save_network
from aecnn.models import get_spec
from aecnn.netem.link import list_namespaces

SPEC = get_spec("resnet18")


def _export(tmp_path, name, bridge, ratio, kept=None):
    torch.manual_seed(ratio)
    meta = SplitMeta(name=name, model_name="resnet18", classes=("a", "b", "c"), point="stem",
                       ratio=ratio, bridge=bridge, kept=kept, channels=64, input_size=32,
                       mean=SPEC.mean, std=SPEC.std, fr_shape="1x1", test_top1=50.0 + ratio)
    return str(save_network(SplitNetwork.from_meta(meta).eval(), tmp_path / f"{name}.pt"))


@pytest.mark.network
def test_fig5_over_shaped_links(netns, caltech_root, tmp_path, monkeypatch):
    monkeypatch.setenv("AECNN_DATA", str(caltech_root))
    full = _export(tmp_path, "n-x1", "identity", 1)
    x8 = _export(tmp_path, "n-x8", "fr", 8, tuple(range(0, 64, 8)))
    out = tmp_path / "fig5"
    before = set(list_namespaces())
    assert main(["fig5", "--no-progress", "--set", f"variants=[{x8}]", "--set", f"full={full}",
                 "--set", "input_size=32", "--set", "rates_mbps=[2, 20]", "--set",
                 "sizes=[224x224, 640x480]", "--set", "photos=1", "--set", "requests=2",
                 "--set", f"out={out}"]) == 0
    assert set(list_namespaces()) == before  # links cleaned up
    rec = json.loads((out / "fig5.json").read_text())
    assert [ln["ok"] for ln in rec["links"]] == [True, True]
    series = {(p["rate_mbps"], p["series"], p["size"]) for p in rec["points"]}
    for rate in (2, 20):
        for size in ("224x224", "640x480"):
            assert {(rate, s, size) for s in ("aecnn-raw", "aecnn-coded", "full-offload")} \
                <= series
    assert {(2, "local", "224x224"), (2, "V=1", "224x224"), (20, "V=8", "224x224")} <= series
    for p in rec["points"]:
        assert p["measured_s"] > 0 and p["predicted_s"] > 0 and len(p["requests"]) == 2
        assert all(r["bytes_up"] > 0 for r in p["requests"]) or p["mode"] == "local"
    # the slow link costs the raw 640x480 upload more time than the fast one
    full_off = {p["rate_mbps"]: p["measured_s"] for p in rec["points"]
                if p["series"] == "full-offload" and p["size"] == "640x480"}
    assert full_off[2] > full_off[20]
    assert (out / "fig5a.png").stat().st_size > 1000 and (out / "fig5.md").exists()


@pytest.fixture(scope="module")
def tiny_runs(caltech_root, tmp_path_factory):
    """A one-epoch ResNet-18 at 32 px on one image per class, Algorithm 1 at the stem (V = 8,
    QAT through uint2@p90) and the learned bottleneck (V = 8) on it, each exported whole
    with ``aecnn export RUN --out-dir``: the files the best-codes Fig. 5 takes, in seconds."""
    import os

    d = tmp_path_factory.mktemp("runs")
    old = os.environ.get("AECNN_DATA")
    os.environ["AECNN_DATA"] = str(caltech_root)
    try:
        assert main(["train-baseline", "--model", "resnet18", "--epochs", "1", "--input-size",
                     "32", "--subset", "1", "--out", str(d / "base"), "--no-progress",
                     "--set", f"data.manifest={d / 'm.json'}", "--set", "data.workers=0",
                     "--set", "threads=1"]) == 0
        base = d / "base" / "best.pt"
        assert main(["train-aecnn", "--no-progress", "--set", f"baseline={base}", "--set",
                     "points=[stem]", "--set", "ratios=[8]", "--set", f"out={d / 'aecnn'}",
                     "--set", "ca.epochs=1", "--set", "prune.epochs=1", "--set", "fr.epochs=1",
                     "--set", "qat.epochs=1", "--set", "qat_grids=[uint2@p90]", "--set",
                     "fr_shapes=[1x1]", "--set", "threads=1",
                     "--set", "importance_images=64"]) == 0
        assert main(["train-entropic", "--no-progress", "--set", f"baseline={base}", "--set",
                     "points=[stem]", "--set", "ratios=[8]", "--set", f"out={d / 'ent'}",
                     "--set", "module.epochs=1", "--set", "tail.epochs=1", "--set",
                     "rate_images=4", "--set", "threads=1"]) == 0
        deploy = d / "deploy"
        assert main(["export", str(d / "aecnn"), "--out-dir", str(deploy), "--prior",
                     "uint2@p90", "--prior-images", "20", "--no-progress"]) == 0
        assert main(["export", str(d / "ent"), "--out-dir", str(deploy), "--kinds",
                     "entropic", "--no-progress"]) == 0
    finally:
        if old is None:
            os.environ.pop("AECNN_DATA", None)
        else:
            os.environ["AECNN_DATA"] = old
    return deploy


def test_export_a_whole_run_then_profile_and_plan_every_candidate(tiny_runs, caltech_root,
                                                                  tmp_path, monkeypatch,
                                                                  capsys):
    """``aecnn export RUN --out-dir`` writes AECNN (the FR shape validation chose), its QAT
    variant with the prior of its grid, the learned bottleneck and the uncut baseline; ``aecnn
    profile`` makes every deployable candidate of them and ``aecnn plan`` weighs them all."""
    from aecnn.core.split import load_network
    from aecnn.runtime.latency import LatencyProfile

    monkeypatch.setenv("AECNN_DATA", str(caltech_root))
    files = sorted(p.name for p in tiny_runs.glob("*.pt"))
    assert files == ["resnet18-stem-entropic-x8.pt", "resnet18-stem-fr-q2p90-x8.pt",
                     "resnet18-stem-fr-x8.pt", "resnet18-stem-x1.pt"]
    qat = load_network(tiny_runs / "resnet18-stem-fr-q2p90-x8.pt")
    assert qat.meta.quant == "uint2@p90" and list(qat.priors) == ["uint2@p90"]
    assert load_network(tiny_runs / "resnet18-stem-fr-x8.pt").meta.quant is None
    prof_file = tmp_path / "profile.json"
    assert main(["profile", *(str(tiny_runs / f) for f in files[:3]), "--full",
                 str(tiny_runs / files[3]), "--test", "1", "--repeats", "1", "--jpeg", "90",
                 "--accuracy", "full-jpeg-q90=3.5", "--accuracy-images", "0",
                 "--out", str(prof_file), "--no-progress"]) == 0
    prof = LatencyProfile.load(prof_file)
    assert set(prof.variants) == {"resnet18-stem-entropic-x8", "resnet18-stem-fr-q2p90-x8",
                                  "resnet18-stem-fr-x8", "local", "full-jpeg-q90"}
    assert "prior" in prof.variant("resnet18-stem-fr-q2p90-x8").coders
    assert prof.variant("full-jpeg-q90").accuracy == 3.5
    capsys.readouterr()
    code = main(["plan", "--profile", str(prof_file), "--rate", "5Mbps", "--deadline", "10s",
                 "--json", str(tmp_path / "plan.json")])
    out = capsys.readouterr().out
    assert code == 0 and "**<- chosen**" in out
    assert {r["mode"] for r in json.loads((tmp_path / "plan.json").read_text())["rows"]} == {
        "co", "local", "full"}


@pytest.mark.network
def test_fig5_with_the_best_codes(netns, tiny_runs, caltech_root, tmp_path, monkeypatch):
    """Fig. 5 with a QAT variant (prior-coded where that is fastest), a learned bottleneck,
    local computing and the device's crop as JPEG, over real shaped links; the Markdown says
    per rate where co-inference beats both, and re-renders from the record alone."""
    monkeypatch.setenv("AECNN_DATA", str(caltech_root))
    out = tmp_path / "fig5"
    v = [str(tiny_runs / f"resnet18-stem-{n}.pt") for n in ("fr-x8", "fr-q2p90-x8",
                                                             "entropic-x8")]
    assert main(["fig5", "--no-progress", "--set", f"variants=[{', '.join(v)}]", "--set",
                 f"full={tiny_runs / 'resnet18-stem-x1.pt'}", "--set", "input_size=32",
                 "--set", "rates_mbps=[1, 50]", "--set", "sizes=[224x224]", "--set",
                 "photos=1", "--set", "requests=2", "--set", "jpeg_quality=90", "--set",
                 "fig5a_series=[resnet18-stem-fr-q2p90-x8]", "--set",
                 "accuracy={full-jpeg-q90: 1.0}", "--set", f"out={out}"]) == 0
    rec = json.loads((out / "fig5.json").read_text())
    assert rec["series"] == {"sweep": {"1": "resnet18-stem-x1", "8": "resnet18-stem-fr-x8"},
                             "best": ["resnet18-stem-fr-q2p90-x8", "resnet18-stem-entropic-x8"]}
    got = {(p["rate_mbps"], p["fig"], p["series"]) for p in rec["points"]}
    for rate in (1, 50):
        assert {(rate, "5a", "jpeg-q90"), (rate, "5a", "resnet18-stem-fr-q2p90-x8"),
                (rate, "5b", "resnet18-stem-fr-q2p90-x8"),
                (rate, "5b", "resnet18-stem-entropic-x8"), (rate, "5b", "V=8")} <= got
    by = {(p["rate_mbps"], p["fig"], p["series"]): p for p in rec["points"]}
    ent = by[1, "5b", "resnet18-stem-entropic-x8"]
    assert ent["coder"] == "factorized" and ent["quant"] == "learned"
    assert by[1, "5b", "resnet18-stem-fr-q2p90-x8"]["quant"] == "uint2@p90"
    jpeg = by[1, "5a", "jpeg-q90"]
    assert jpeg["accuracy"] == 1.0 and jpeg["quant"] == "jpeg@q90"
    # the crop travels, not the photo: a 32 x 32 JPEG is far smaller than the 224 x 224 one
    assert jpeg["median"]["bytes_up"] < by[1, "5a", "full-offload"]["median"]["bytes_up"] / 3
    assert all(r["bytes_up"] > 0 for r in jpeg["requests"])
    assert set(rec["planner"].values()) <= set(rec["profile"]["variants"])
    text = (out / "fig5.md").read_text()
    assert "## Where co-inference beats local computing and JPEG offloading" in text
    assert main(["fig5", "--replot", str(out / "fig5.json")]) == 0
    assert (out / "fig5.md").read_text() == text
