"""Algorithm 1 end to end on a tiny model: all stages, a real kill after the first, resume."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from aecnn.cli.main import main
from aecnn.compression.errors import PayloadError
from aecnn.evaluation.table1 import best_aecnn, load_stage_records, render_table1


def test_all_stages_kill_and_resume(caltech_root, tmp_path, capsys):
    base = tmp_path / "base"
    assert main(["train-baseline", "--data", str(caltech_root), "--model", "resnet18",
                 "--epochs", "1", "--input-size", "32", "--subset", "2", "--out", str(base),
                 "--no-progress", "--set", f"data.manifest={tmp_path / 'm.json'}",
                 "--set", "data.workers=0", "--set", "threads=1"]) == 0
    out = tmp_path / "aecnn"
    args = ["train-aecnn", "--no-progress", "--set", f"baseline={base / 'best.pt'}",
            "--set", "points=[stem]", "--set", "ratios=[2, 8]", "--set", f"out={out}",
            "--set", "ca.epochs=1", "--set", "prune.epochs=1", "--set", "fr.epochs=1",
            "--set", "fr_shapes=[1x1]", "--set", "threads=1", "--set", "importance_images=64"]
    env = {**os.environ, "AECNN_DATA": str(caltech_root)}
    proc = subprocess.Popen([sys.executable, "-m", "aecnn", *args], env=env)
    ca_done = out / "stem" / "ca" / "result.json"
    deadline = time.monotonic() + 300
    try:
        while not ca_done.exists():
            assert proc.poll() is None, "pipeline ended before its first stage finished"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert not (out / "stem" / "aecnn-x8" / "result.json").exists()
    first = ca_done.read_text()

    assert main(args) == 0
    assert ca_done.read_text() == first  # the finished stage was not run again
    records = load_stage_records(out)
    stages = {r["stage"] for r in records}
    assert stages == {"ca", "pruned-x2", "aecnn-x2", "pruned-x8", "aecnn-x8"}
    by = {r["stage"]: r for r in records}
    assert by["ca"]["compressed_shape"] == [64, 8, 8]
    assert by["pruned-x8"]["compressed_shape"] == [8, 8, 8]
    assert by["pruned-x8"]["physical"] is True
    assert by["pruned-x8"]["stream"] == "stem/pruned-x8"  # its own batches and crops
    assert by["pruned-x8"]["params_head"] < by["ca"]["params_head"]
    assert by["aecnn-x8"]["params_bridge"] == 8 * 56 + 56  # 1x1 conv 8 -> 56 channels
    imp = json.loads((out / "stem" / "importance.json").read_text())
    assert len(imp["importance"]) == 64 and imp["images"] == 64
    kept = by["pruned-x8"]["kept"]
    assert sorted(kept) == sorted(imp["ranking"][:8])
    table = render_table1(records)
    assert "| stem | 64 x 8 x 8 | 8x |" in table

    figs = tmp_path / "figs"
    assert main(["fig4", *args[1:], "--batch-size", "8", "--out", str(figs)]) == 0
    fig = json.loads((figs / "fig4_stem.json").read_text())
    assert len(fig["weights"]) == 3 and len(fig["weights"][0]) == 64
    assert all(-1 <= r <= 1 for r in fig["spearman"] + fig["kendall"])
    assert (figs / "fig4_stem.png").stat().st_size > 1000

    # the CA form with a learnable affine, CA_Pruned only: its report compares the rankings
    aff = tmp_path / "affine"
    assert main([a if not a.startswith("out=") else f"out={aff}" for a in args]
                + ["--set", "ca_affine=true", "--set", "fr.epochs=0", "--set", "ratios=[8]"]) == 0
    res = tmp_path / "results"
    assert main(["report-aecnn", str(out), "--baseline", str(base / "result.json"),
                 "--out", str(res), "--affine", str(aff)]) == 0
    fr_md = (res / "fr_shapes.md").read_text()
    assert "| stem | 8 | 1x1 | 504 |" in fr_md  # 8 -> 56 channels, 1x1 conv: 8*56 + 56
    aff_md = (res / "ca_affine.md").read_text()
    assert "| with affine (GCT-style) |" in aff_md and "Spearman" in aff_md
    assert json.loads((aff / "stem" / "ca" / "result.json").read_text())["affine"] is True
    text = (res / "table1.md").read_text()
    assert "Baseline (resnet18, 32 px)" in text and "| stem | 64 x 8 x 8 | 2x |" in text
    assert (res / "aecnn" / "stem" / "aecnn-x8.json").exists()

    # a second FR shape: only its stages run; the table keeps the better one by val accuracy
    pruned_rec = (out / "stem" / "pruned-x8" / "result.json").read_text()
    assert main([a.replace("fr_shapes=[1x1]", "fr_shapes=[1x1, 3x3]") for a in args]) == 0
    assert (out / "stem" / "pruned-x8" / "result.json").read_text() == pruned_rec
    records = load_stage_records(out)
    by = {r["stage"]: r for r in records}
    assert by["aecnn-x8-3x3"]["fr_shape"] == "3x3" and by["aecnn-x8"]["fr_shape"] == "1x1"
    assert by["aecnn-x8-3x3"]["params_bridge"] > by["aecnn-x8"]["params_bridge"]
    best = best_aecnn(records, "stem", 8)
    assert best["val_top1"] == max(by["aecnn-x8"]["val_top1"], by["aecnn-x8-3x3"]["val_top1"])
    row = next(line for line in render_table1(records).splitlines() if "| 8x |" in line)
    assert row.endswith(f"| {best['fr_shape']} |") and f"{best['test_top1']:.2f}" in row

    # a finished stage is never reused for another network than the one asked for: the
    # shapes in the other order would make aecnn-x2 a 3x3 FR, and fr_init=quiet another start
    for change in ("fr_shapes=[3x3, 1x1]", "fr_init=quiet"):
        capsys.readouterr()
        assert main([a.replace("fr_shapes=[1x1]", change) for a in args]) == 2
        err = capsys.readouterr().err
        assert "aecnn-x2 was trained with fr_" in err and "another out folder" in err
        assert "Traceback" not in err
    # nor with another budget (more epochs, distillation), which the stage record keeps
    for change, said in (("prune.epochs=2", "budget.epochs=1 (asked 2)"),
                         ("prune.distill=0.5", "budget.distill=0.0 (asked 0.5)")):
        capsys.readouterr()
        assert main([*args, "--set", change]) == 2
        err = capsys.readouterr().err
        assert f"pruned-x2 was trained with {said}" in err and "Traceback" not in err

    # beyond the paper, `spatial`: the kept channels at half height and width, upsampled on
    # the server before the bridge; never reused from (or for) a full-size stage
    capsys.readouterr()
    assert main([*args, "--set", "spatial=true"]) == 2
    err = capsys.readouterr().err
    assert "pruned-x2 was trained with spatial=False (asked True)" in err
    half = tmp_path / "aecnn-half"
    (half / "stem").mkdir(parents=True)
    for name in ("ca", "importance.json"):  # the same CA stage and ranking
        os.link(out / "stem" / name, half / "stem" / name) if name.endswith(".json") else \
            shutil.copytree(out / "stem" / name, half / "stem" / name, copy_function=os.link)
    half_args = [a if not a.startswith("out=") else f"out={half}" for a in args]
    assert main([*half_args, "--set", "spatial=true", "--set", "ratios=[8]",
                 "--set", "qat_grids=[uint2]"]) == 0
    from aecnn.core.split import SplitNetwork
    from aecnn.training.export import meta_from_stage

    by = {r["stage"]: r for r in load_stage_records(half)}
    assert {"pruned-x8", "aecnn-x8", "aecnn-q2-x8"} <= set(by)
    for stage in ("pruned-x8", "aecnn-x8", "aecnn-q2-x8"):
        assert by[stage]["spatial"] is True and by[stage]["compressed_shape"] == [8, 4, 4]
        meta, state = meta_from_stage(half / "stem" / stage)
        v = SplitNetwork.from_meta(meta)
        v.load_state_dict(state)  # strict: the deployed network is the trained one
        with torch.inference_mode():
            z = v.head(torch.rand(1, 3, 32, 32))
            assert z.shape == (1, 8, 4, 4) and v.bridge(z).shape == (1, 64, 8, 8)
    # `checkpoint="last"` deploys the last epoch's weights (last.pt), not validation's pick
    from aecnn.core.split import VariantError
    from aecnn.training.checkpoint import load_checkpoint, save_checkpoint

    moved = tmp_path / "last-epoch" / "aecnn-q2-x8"
    shutil.copytree(half / "stem" / "aecnn-q2-x8", moved)
    ckpt = load_checkpoint(moved / "last.pt")
    ckpt["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    save_checkpoint(moved / "last.pt", ckpt)
    (_, best), (meta_last, last) = (meta_from_stage(moved, checkpoint=c) for c in ("best", "last"))
    original = meta_from_stage(half / "stem" / "aecnn-q2-x8")[0]
    assert dataclasses.replace(meta_last, source=original.source) == original
    assert all(torch.equal(last[k], ckpt["model"][k]) for k in last)
    assert not all(torch.equal(best[k], last[k]) for k in last)
    with pytest.raises(VariantError, match="'best' or 'last'"):
        meta_from_stage(moved, checkpoint="final")

    capsys.readouterr()
    assert main([a.replace("ratios=[2, 8]", "ratios=[8]") for a in half_args]) == 2
    assert "spatial=True (asked False)" in capsys.readouterr().err

    # aecnn export with context priors (wire coder 5), fitted on the baseline's training
    # split: both ends hold them in the variant file; bad grids are clear errors
    from aecnn.compression.codec import decode_packet
    from aecnn.compression.quantize import QuantSpec, quantize
    from aecnn.core.split import load_network

    vfile = tmp_path / "x8.pt"
    capsys.readouterr()
    assert main(["export", str(out / "stem" / "aecnn-x8"), "--out", str(vfile), "--prior",
                 "uint2", "--prior", "uint1@p90", "--prior-images", "30", "--no-progress"]) == 0
    said = capsys.readouterr().out
    var = load_network(vfile)
    assert set(var.priors) == {"uint2", "uint1@p90"}
    for grid, prior in var.priors.items():
        assert prior.images == 30 and prior.levels == QuantSpec.parse(grid).levels
        assert f"context prior for {grid}: {prior.fingerprint_hex}" in said
    with torch.inference_mode():
        z = var.head(torch.rand(1, 3, 32, 32))[0]
    packet, stats = var.codec("uint2", "prior").encode(z, var.meta.kept, 64)
    assert stats.coder == "prior"
    symbols = quantize(z.numpy(), QuantSpec.parse("uint2"))[0]
    plain = decode_packet(var.codec("uint2", "none").encode(z, var.meta.kept, 64)[0])
    assert torch.equal(decode_packet(packet, var.priors.values()), plain)
    assert stats.payload_bytes < symbols.size / 4 + 64  # well under 2 bits a symbol + slack
    # the raster model (per-channel tables over causal neighbours) through the same path
    rfile = tmp_path / "x8-raster.pt"
    assert main(["export", str(out / "stem" / "aecnn-x8"), "--out", str(rfile), "--prior",
                 "uint2", "--prior-images", "30", "--prior-model", "raster",
                 "--no-progress"]) == 0
    assert "(raster model, 4 levels, fitted on 30" in capsys.readouterr().out
    rvar = load_network(rfile)
    rprior = rvar.priors["uint2"]
    assert rprior.model == "raster" and rprior.per_channel and rprior.channels == z.shape[0]
    packet, stats = rvar.codec("uint2", "prior").encode(z, var.meta.kept, 64)
    assert stats.coder == "prior"
    assert torch.equal(decode_packet(packet, [*var.priors.values(), rprior]), plain)
    with pytest.raises(PayloadError, match="context prior"):  # the lattice copy cannot
        decode_packet(packet, var.priors["uint2"])
    assert main(["export", str(out / "stem" / "aecnn-x8"), "--out", str(tmp_path / "bad.pt"),
                 "--prior", "uint2", "--prior-model", "pixelcnn"]) == 2
    assert "invalid choice: 'pixelcnn'" in capsys.readouterr().err
    for bad, msg in ((["--prior", "float16"], "per-tensor integer grids"),
                     (["--prior", "uint3c"], "per-tensor integer grids"),
                     (["--prior", "uint2", "--prior-images", "0"], "at least 1"),
                     (["--prior", "uint2", "--baseline", str(tmp_path / "none.pt")],
                      "does not exist")):
        assert main(["export", str(out / "stem" / "aecnn-x8"), "--out",
                     str(tmp_path / "bad.pt"), *bad]) == 2
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err, err

    # aecnn bench prior: bytes with priors fitted on 1 and 20 training images, without one,
    # and with the oracle prior, from real payloads; the record, its table and its figure
    bench = tmp_path / "bench"
    assert main(["bench", "prior", "--stage", str(out / "stem" / "aecnn-x8"), "--grid",
                 "uint2", "--prior-images", "1", "20", "--test-images", "12", "--no-link",
                 "--out", str(bench), "--no-progress"]) == 0
    rec = json.loads((bench / "prior.json").read_text())["fitting"]
    assert [(r["model"], r["images"]) for r in rec["priors"]] == [
        ("lattice", 1), ("lattice", 20), ("raster", 1), ("raster", 20)]
    assert rec["test_images"] == 12
    # one head pass per size serves both models: the priors are those export fits
    from aecnn.core.split import fit_head_priors
    from aecnn.training.export import train_split_of

    train = train_split_of(out / "stem" / "aecnn-x8")
    for r in rec["priors"]:
        alone = fit_head_priors(var.head, train, {"uint2": QuantSpec.parse("uint2")},
                                r["images"], model=r["model"])["uint2"]
        assert r["fingerprint"] == alone.fingerprint_hex, r
    assert rec["elements"] == 8 * 8 * 8 and rec["split_float32_bytes"] == 4 * 64 * 8 * 8
    for model, oracle in rec["oracle"].items():
        fitted = [r["bytes"] for r in rec["priors"] if r["model"] == model]
        assert 0 < oracle <= min(fitted) + 2, model
        assert oracle < rec["no_prior"]["bytes"] <= 512 * 2 / 8 + 64
    assert (bench / "prior.png").stat().st_size > 1000
    assert "raster oracle prior" in (bench / "prior.md").read_text()
    # over a shaped link (where namespaces work): the same classes both ways, fewer bytes
    assert main(["bench", "prior", "--stage", str(out / "stem" / "aecnn-x8"), "--grid",
                 "uint2", "--prior-images", "20", "--test-images", "4", "--rate", "5Mbps",
                 "--requests", "3", "--out", str(bench), "--no-progress"]) == 0
    link = json.loads((bench / "prior.json").read_text())["link"]
    if "skipped" not in link:
        assert link["same_classes"] and link["requests"] == 3 and link["link"]["ok"]
        assert link["prior"]["coders"] == ["prior"] and "prior" not in link["no_prior"]["coders"]
        assert 0 < link["prior"]["bytes_up"] < link["no_prior"]["bytes_up"]
        assert "shaped link" in (bench / "prior.md").read_text()
    capsys.readouterr()
    assert main(["bench", "prior", "--out", str(bench)]) == 2
    assert "--stage" in capsys.readouterr().err


def test_rank_statistics():
    import numpy as np

    from aecnn.evaluation.fig4 import kendall, spearman, top_overlap

    a = np.array([0.1, 0.5, 0.3, 0.9])
    assert spearman(a, a) == 1.0 and kendall(a, a) == 1.0
    assert spearman(a, -a) == -1.0 and kendall(a, -a) == -1.0
    assert top_overlap(a, np.array([0.9, 0.8, 0.1, 0.7]), 2) == 0.5
