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
