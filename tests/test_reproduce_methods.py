"""The reproduction's extra methods and choices, on tiny networks and synthetic records (seconds):
the learned bottleneck as a measured method, the input-compression references, headline points
chosen on validation and trained again for more seeds, and what the table says of them."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
import torch

from aecnn.errors import ConfigError, RecordError
from experiments.reproduce import ReproConfig, load_repro_config

CONFIGS = Path("experiments/configs")
SIZE = 32
CLASSES = tuple(f"c{i}" for i in range(5))


def _images(n: int, seed: int) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.TensorDataset(torch.randn(n, 3, SIZE, SIZE, generator=g),
                                          torch.randint(0, len(CLASSES), (n,), generator=g))


def _entropic_stage(run: Path, ratio: int = 4, weight: float = 0.01) -> Path:
    """A finished (random-weight) learned-bottleneck stage of ResNet-18 at 32 px, split at
    the stem, in ``run``: its module stage and its tail stage, as train-entropic writes."""
    from aecnn.core.split import SplitMeta, SplitNetwork
    from aecnn.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    meta = SplitMeta("n", "resnet18", CLASSES, "stem", ratio, "entropic", None, 64, SIZE,
                     (0.5,) * 3, (0.25,) * 3)
    net = SplitNetwork.from_meta(meta)
    for stage in (f"entropic-module-x{ratio}", f"entropic-x{ratio}"):
        folder = run / "stem" / stage
        save_checkpoint(folder / "best.pt", {"model": net.state_dict(), "classes": list(CLASSES),
                                             "model_name": "resnet18"})
        (folder / "result.json").write_text(json.dumps(
            {"stage": stage, "point": "stem", "ratio": ratio, "input_size": SIZE,
             "rate_weight": weight, "spatial": False, "test_top1": 20.0, "val_top1": 20.0}))
    return run / "stem" / f"entropic-x{ratio}"


def test_the_learned_bottleneck_is_measured_like_the_other_methods(tmp_path):
    """Its accuracy is the server's on the grid values of every measured test image; its
    bytes are the real coder-6 payloads of the same spread codec images as the others'; on
    validation the same; a second measurement reuses the record."""
    from aecnn.training.export import meta_from_stage
    from experiments.learned_repro import GRID, measure_entropic
    from experiments.reproduce import MeasureData, Stage, measure_network, stage_folders

    folder = _entropic_stage(tmp_path / "ent")
    assert stage_folders({"aecnn": tmp_path / "a", "bottlenet": tmp_path / "b",
                          "entropic": {0.01: tmp_path / "ent"}}) == [
        ("entropic", "stem", 4, folder)]  # the tail stage, not the module stage
    test, val = _images(10, 1), _images(7, 2)
    cfg = ReproConfig(quant_images=0, codec_images=3, codec_subset="spread",
                      measure_out=str(tmp_path / "measure"))
    rec = measure_entropic(folder, test, cfg, False, val=val)

    from aecnn.core.split import SplitNetwork

    meta, state = meta_from_stage(folder)
    net = SplitNetwork.from_meta(meta)
    net.load_state_dict(state)
    net.eval()
    net.head.bottleneck.update()
    with torch.inference_mode():
        x, y = test.tensors
        pred = net(x).argmax(1)
        payloads = [len(net.head.bottleneck.compress(net.head(x[i:i + 1]))) for i in (0, 4, 9)]
        vx, vy = val.tensors
        vpay = [len(net.head.bottleneck.compress(net.head(vx[i:i + 1]))) for i in (0, 3, 6)]
        vpred = net(vx).argmax(1)
    assert rec["accuracy"] == {GRID: pytest.approx(100.0 * float((pred == y).float().mean()))}
    assert rec["codec"][GRID]["bytes_per_image"] == pytest.approx(statistics.mean(payloads))
    assert rec["codec"][GRID]["coder"] == "factorized" and rec["rate_weight"] == 0.01
    assert rec["compressed_shape"] == [16, 8, 8] and rec["split_shape"] == [64, 8, 8]
    assert rec["split_elements"] == 64 * 8 * 8 and rec["n_quant_images"] == 10
    assert (rec["codec_subset"], rec["n_codec_images"]) == ("spread", 3)
    assert rec["val_accuracy"][GRID] == pytest.approx(100.0 * float((vpred == vy).float().mean()))
    assert rec["val_bytes"][GRID] == pytest.approx(statistics.mean(vpay))
    assert rec["n_val_images"] == 7

    data = MeasureData(test, None, val)
    stage = Stage("entropic", "stem", 4, folder, rate_weight=0.01)
    made = measure_network(cfg, 0, stage, data, False)
    f = tmp_path / "measure" / "seed0" / "entropic-stem-x4-rw0.01.json"
    assert f.is_file() and made["method"] == "entropic" and made["seed"] == 0
    assert made["accuracy"] == rec["accuracy"] and made["val_bytes"] == rec["val_bytes"]
    before = f.stat().st_mtime_ns
    assert measure_network(cfg, 0, stage, data, False)["accuracy"] == rec["accuracy"]
    assert f.stat().st_mtime_ns == before  # reused


def test_validation_is_measured_beside_the_test_split(tmp_path):
    """A baseline cut at the stem: ``val_accuracy`` and ``val_bytes`` per grid on all the
    validation images; a record without them is measured again, one with them reused."""
    from aecnn.models import create_model
    from aecnn.training.checkpoint import save_checkpoint
    from experiments.reproduce import _measured, measure_stage

    torch.manual_seed(0)
    ckpt = tmp_path / "base" / "best.pt"
    save_checkpoint(ckpt, {"model": create_model("resnet18", len(CLASSES)).state_dict(),
                           "classes": list(CLASSES), "model_name": "resnet18",
                           "config": {"data": {"input_size": SIZE}}})
    cfg = ReproConfig(quant_images=0, codec_images=2, codec_subset="spread")
    test, val = _images(6, 1), _images(5, 2)
    rec = measure_stage(ckpt, test, cfg, False, "stem", ["float32", "uint2"], val=val)
    assert set(rec["val_accuracy"]) == set(rec["val_bytes"]) == {"float32", "uint2"}
    assert rec["n_val_images"] == 5 and rec["val_bytes"]["uint2"] < rec["val_bytes"]["float32"]
    plain = measure_stage(ckpt, test, cfg, False, "stem", ["float32", "uint2"])
    assert plain["accuracy"] == rec["accuracy"] and "val_accuracy" not in plain

    calls = []

    def measure(quants):
        calls.append(list(quants))
        return {**rec, "accuracy": {q: rec["accuracy"][q] for q in quants},
                "val_accuracy": {q: rec["val_accuracy"][q] for q in quants}}

    f = tmp_path / "r.json"
    f.write_text(json.dumps({**plain, "val_accuracy": {}}))  # measured without validation
    subset = ("all", 6)
    _measured(f, ["float32", "uint2"], measure, subset, 6, val=5)
    _measured(f, ["float32", "uint2"], measure, subset, 6, val=5)
    assert calls == [["float32", "uint2"]]  # once, then reused
    _measured(f, ["float32", "uint2"], measure, subset, 6, val=4)  # other validation images
    assert len(calls) == 2
    codec = {"codec_subset": "spread", "n_codec_images": 2}
    _measured(f, ["float32", "uint2"], measure, subset, 6, val=5, codec=codec)
    assert len(calls) == 2
    _measured(f, ["float32", "uint2"], measure, subset, 6, val=5, codec={})  # first images
    assert len(calls) == 3


def test_codec_images_are_the_first_or_spread():
    from experiments.reproduce import codec_positions

    assert codec_positions(10, ReproConfig(codec_images=3)) == [0, 1, 2]  # as before
    spread = ReproConfig(codec_images=3, codec_subset="spread")
    assert codec_positions(10, spread) == [0, 4, 9] and codec_positions(2, spread) == [0, 1]


# ---------------------------------------------------------------------- choice on validation
def _rec(method, point, ratio, seed, acc, size, val_acc=None, val_size=None, grid=None,
         weight=None, quant="float32"):
    """A measurement record of one grid (``quant``; a QAT network's ``grid``)."""
    q = grid or quant
    r = {"kind": "reproduce-measure", "method": method, "point": point, "ratio": ratio,
         "seed": seed, "n_quant_images": 100, "quant_subset": "all",
         "elements": 64 * 8 * 8 // max(ratio, 1), "split_elements": 64 * 8 * 8,
         "accuracy": {q: acc}, "test_top1": acc,
         "codec": {q: {"bytes_per_image": size, "bits_per_element": 1.0, "coder": "x"}}}
    if grid:
        r |= {"qat_quant": grid, "qat_bits": int(grid[4])}
    if weight is not None:
        r["rate_weight"] = weight
    if val_acc is not None:
        r |= {"val_accuracy": {q: val_acc}, "val_bytes": {q: val_size}, "n_val_images": 50}
    return r


def _main_records():
    """Seed 0: baseline 90 % on validation (test 91 %); networks whose test numbers would
    pick other points than their validation numbers."""
    return [
        _rec("baseline", "stem", 1, 0, 91.0, 16384.0, 90.0, 16384.0),
        _rec("aecnn", "stem", 4, 0, 90.5, 800.0, 89.5, 820.0),              # within 1
        _rec("aecnn", "stem", 4, 0, 90.8, 300.0, 88.5, 310.0, quant="uint2"),  # 4.4, not 1
        _rec("aecnn_qat", "stem", 16, 0, 90.9, 100.0, 85.0, 90.0, grid="uint1@p90"),  # neither
        _rec("ca_pruned", "stem", 16, 0, 95.0, 10.0, 95.0, 10.0),           # not a family
        _rec("bottlenet++", "layer1.0", 4, 0, 80.0, 500.0, 89.2, 480.0),    # within 1
        _rec("bottlenet++_qat", "layer1.0", 4, 0, 90.0, 50.0, 89.0, 60.0, grid="uint2"),
        _rec("entropic", "stem", 4, 0, 88.0, 200.0, 86.0, 190.0, quant="learned", weight=0.01),
        _rec("entropic", "stem", 4, 0, 89.0, 700.0, 89.9, 650.0, quant="learned", weight=0.001),
    ]


def test_headline_points_are_chosen_on_validation_alone():
    from experiments.headline_seeds import choose

    choice = choose(_main_records())
    assert choice["baseline_val"] == 90.0 and choice["drops"] == [1.0, 4.4]
    picked = {(p["family"], p["drop"]): p["cell"] for p in choice["picks"]}
    assert picked[("aecnn", 1.0)] == {"method": "aecnn", "point": "stem", "ratio": 4,
                                      "quant": "float32"}
    assert picked[("aecnn", 4.4)]["quant"] == "uint2"  # fewest validation bytes within 4.4
    # the QAT network is 5 points down on validation, whatever the test split says
    assert all(c["method"] != "aecnn_qat" for c in picked.values() if c)
    assert picked[("bottlenet++", 1.0)] == {"method": "bottlenet++_qat", "point": "layer1.0",
                                            "ratio": 4, "quant": "uint2"}
    assert picked[("entropic", 1.0)]["rate_weight"] == 0.001
    assert picked[("entropic", 4.4)]["rate_weight"] == 0.01
    # a threshold no point meets: no cell; no validation numbers: no choice
    tight = choose(_main_records(), drops=(0.05,))
    assert all(p["cell"] is None for p in tight["picks"])
    unvalidated = [{k: v for k, v in r.items() if not k.startswith(("val", "n_val"))}
                   for r in _main_records()]
    assert choose(unvalidated) is None


def test_headline_seeds_table_and_targets():
    """Mean and std over the seeds of each pick's test numbers, its compression against the
    float32 split tensor, and the two targets decided on the means."""
    from experiments.headline_seeds import choose, render_headline, seed_table

    main = _main_records()
    choice = choose(main)
    extra = [_rec("aecnn", "stem", 4, s, a, b) for s, a, b in ((1, 90.0, 780.0),
                                                               (2, 89.6, 840.0))]
    extra += [_rec("aecnn", "stem", 4, s, a, b, quant="uint2")
              for s, a, b in ((1, 87.0, 40.0), (2, 86.0, 44.0))]
    table = seed_table(choice, [*main, *extra], [0, 1, 2])
    a1 = next(p for p in table["picks"] if (p["family"], p["drop"]) == ("aecnn", 1.0))
    assert a1["seeds"] == [0, 1, 2] and a1["test"] == [90.5, 90.0, 89.6]
    assert a1["test_mean"] == pytest.approx(statistics.mean([90.5, 90.0, 89.6]))
    assert a1["test_std"] == pytest.approx(statistics.stdev([90.5, 90.0, 89.6]))
    assert a1["bytes_mean"] == pytest.approx(statistics.mean([800.0, 780.0, 840.0]))
    assert a1["compression"] == pytest.approx(4 * 64 * 64 / a1["bytes_mean"])
    assert a1["within"] and a1["test_drop"] == pytest.approx(91.0 - a1["test_mean"])
    a44 = next(p for p in table["picks"] if (p["family"], p["drop"]) == ("aecnn", 4.4))
    assert a44["bytes_mean"] == pytest.approx(statistics.mean([300.0, 40.0, 44.0]))
    # the other methods have seed 0 only (no extra seed records given)
    e1 = next(p for p in table["picks"] if (p["family"], p["drop"]) == ("entropic", 1.0))
    assert e1["seeds"] == [0] and e1["test_std"] == 0.0
    aecnn_target, best_target = table["targets"]
    assert aecnn_target["family"] == "aecnn" and not aecnn_target["met"]  # 128x < 265x
    within1 = [p for p in table["picks"] if p["drop"] == 1.0 and p["within"]]
    best = max(within1, key=lambda p: p["compression"])
    assert best_target["compression"] == best["compression"] and not best_target["met"]
    md = "\n".join(render_headline(table))
    assert "## Headline points: chosen on validation, seeds 0, 1, 2" in md
    assert "test images play no part in the choice" in md
    assert "0: 90.50, 1: 90.00, 2: 89.60" in md
    assert "- AECNN >= 265x within 4.4 points: not met" in md


def test_only_the_chosen_cells_are_trained_for_a_headline_seed(tmp_path):
    """The configs that train a chosen network for another seed: the scale's method config
    and overrides, the cell's split point and ratio, and its QAT grid or none."""
    from experiments.headline_seeds import cell_configs

    cfg = load_repro_config([CONFIGS / "effnet.yaml"])
    base = Path("runs/baseline/efficientnet_lite0_224")
    qat = {"method": "aecnn_qat", "point": "blocks.3", "ratio": 40, "quant": "uint1@p90"}
    [(run, a)] = cell_configs(cfg, 2, qat, base)
    assert run == "aecnn" and (a.points, a.ratios, a.qat_grids) == (("blocks.3",), (40,),
                                                                     ("uint1@p90",))
    assert (a.seed, a.out, a.baseline) == (2, "runs/aecnn/efficientnet_lite0_224-seed2",
                                           str(base / "best.pt"))
    assert a.prune.steps == 100  # the scale's method config
    [(_, a)] = cell_configs(cfg, 1, {**qat, "method": "aecnn", "quant": "uint2@p90"}, base)
    assert a.qat_grids == () and a.out.endswith("-seed1")
    [(run, b)] = cell_configs(cfg, 1, {"method": "bottlenet++_qat", "point": "stem",
                                       "ratio": 16, "quant": "uint2"}, base)
    assert run == "bottlenet" and (b.points, b.ratios, b.qat_grids) == (("stem",), (16,),
                                                                        ("uint2",))
    [(run, e)] = cell_configs(cfg, 2, {"method": "entropic", "point": "stem", "ratio": 4,
                                       "quant": "learned", "rate_weight": 1e-4}, base)
    assert run == "entropic" and e.rate_weight == 1e-4 and e.ratios == (4,)
    assert e.out == "runs/entropic/efficientnet_lite0_224-rw0.0001-seed2" and e.seed == 2


def test_a_headline_seed_without_networks_comes_from_its_records(tmp_path):
    from experiments.headline_seeds import seed_records

    cfg = load_repro_config([CONFIGS / "smoke.yaml"], [
        "train=false", f"measure_out={tmp_path}", f"baseline_out={tmp_path}/gone{{suffix}}"])
    cell = {"method": "aecnn", "point": "stem", "ratio": 4, "quant": "uint2"}
    (tmp_path / "seed2").mkdir()
    (tmp_path / "seed2" / "aecnn-stem-x4.json").write_text(json.dumps(
        _rec("aecnn", "stem", 4, 2, 50.0, 10.0, quant="uint2")))
    [rec] = seed_records(cfg, 2, [cell], False)
    assert rec["accuracy"] == {"uint2": 50.0} and rec["seed"] == 2
    with pytest.raises(RecordError, match="neither a network nor a record"):
        seed_records(cfg, 2, [{**cell, "ratio": 64}], False)


# ---------------------------------------------------------------------- the table
def _refs():
    return {"images": 100, "input_size": SIZE, "checkpoint": "c",
            "raw": {"bytes_per_image": 3072.0, "accuracy": 91.0},
            "rows": [{"codec": "jpeg", "quality": 10, "bytes_per_image": 450.0,
                      "accuracy": 70.0},
                     {"codec": "jpeg", "quality": 75, "bytes_per_image": 1200.0,
                      "accuracy": 89.0},
                     {"codec": "webp", "quality": 10, "bytes_per_image": 250.0,
                      "accuracy": 75.0}]}


def test_equal_bytes_takes_each_front_at_no_more_bytes():
    from experiments.fronts import at_most, equal_bytes, front

    def pt(method, size, acc, ratio=4, quant="float32", **kw):
        return {"method": method, "point": "stem", "ratio": ratio, "quant": quant,
                "seed": 0, "accuracy": acc, "bytes_per_image": size, "compression": None, **kw}

    curve = [pt("aecnn", 100.0, 80.0, 16, "uint2"), pt("aecnn", 200.0, 85.0),
             pt("aecnn", 300.0, 84.0, 8),  # dominated: not on the front
             pt("aecnn_qat", 600.0, 88.0, 2, "uint2"),
             pt("entropic", 150.0, 83.0, quant="learned", rate_weight=0.01),
             pt("entropic", 400.0, 90.0, quant="learned", rate_weight=0.001)]
    [t] = equal_bytes(curve, {"stem": 16384.0}, _refs())
    assert t["columns"] == ["AECNN", "Entropic", "JPEG", "WebP"]
    rows = {(r["family"], r["bytes_per_image"]): r for r in t["rows"]}
    assert [r["bytes_per_image"] for r in t["rows"]] == [100.0, 150.0, 200.0, 400.0, 600.0]
    assert rows[("AECNN", 200.0)]["at"]["Entropic"]["accuracy"] == 83.0
    assert rows[("AECNN", 200.0)]["at"]["JPEG"] is None
    assert rows[("AECNN", 200.0)]["at"]["WebP"] is None  # its 250 B point is more
    assert rows[("Entropic", 400.0)]["at"]["WebP"]["label"] == "WebP q10"
    assert rows[("AECNN", 100.0)]["at"]["Entropic"] is None
    assert rows[("Entropic", 400.0)]["at"]["AECNN"]["bytes_per_image"] == 200.0
    assert rows[("AECNN", 600.0)]["at"]["JPEG"]["accuracy"] == 70.0
    assert rows[("AECNN", 200.0)]["compression"] == pytest.approx(16384.0 / 200.0)
    pts = front([{"bytes_per_image": b, "accuracy": a} for b, a in ((1, 5), (2, 4), (3, 6))])
    assert [p["bytes_per_image"] for p in pts] == [1, 3]
    assert at_most(pts, 2.5)["bytes_per_image"] == 1 and at_most(pts, 0.5) is None


def test_a_scale_with_every_method_tabulates_and_draws_them(tmp_path):
    """From real committed records plus a learned bottleneck and the input references: the
    learned bottleneck is an operating point of its own (its rate weight kept apart), Table I
    by split point has its row, the comparisons and the references are rendered, the figure
    is drawn; a scale without them keeps its table as it was."""
    from experiments.table1_repro import plot_rate_accuracy, render_reproduction, summarize

    folder = Path("results/reproduction/cpu-ternary512/measure/seed2")
    recs = [json.loads(f.read_text()) for f in sorted(folder.glob("*.json"))]
    ent = [{**_rec("entropic", "stem", 32, 2, acc, size, quant="learned", weight=w),
            "split_elements": 64 * 16 * 16, "elements": 2 * 16 * 16}
           for acc, size, w in ((55.0, 120.0, 0.01), (60.0, 300.0, 0.001))]
    cfg = ReproConfig(scale="t", input_codecs=("jpeg", "webp"),
                      entropic_config="configs/entropic/efficientnet_lite0.yaml",
                      entropic_rate_weights=(0.01, 0.001))
    table = summarize([*recs, *ent], [{"test_top1": 62.9}], cfg, _refs())
    ours = [p for p in table["curve"] if p["method"] == "entropic"]
    assert sorted(p["rate_weight"] for p in ours) == [0.001, 0.01]
    assert not any(r.get("entropic") for r in table["rows"])  # no float32 Table I column
    best = table["headline"]["entropic@stem"]["within_3"]
    assert best is None or best["rate_weight"] in (0.01, 0.001)
    [stem] = table["point_tables"]
    entropic_rows = [r for r in stem["rows"] if r["method"] == "entropic"]
    assert [r["rate_weight"] for r in entropic_rows] == [0.001, 0.01]
    assert stem["split_bytes"] == 4 * 64 * 16 * 16 and 32 in stem["ratios"]
    assert table["equal_bytes"][0]["columns"][-2:] == ["JPEG", "WebP"]
    assert table["targets"] == [[265, 4.4], [1000, 1.0]]
    md = render_reproduction(table)
    for section in ("## Table I by split point: every method and grid", "### stem",
                    "## At equal bytes, front point by front point",
                    "## Input compression (full offloading)", "| Entropic | λ = 0.01 |"):
        assert section in md, section
    assert "| JPEG | 10 | 450 B | 70.00 |" in md
    assert render_reproduction(json.loads(json.dumps(table))) == md  # from table1.json alone
    plot_rate_accuracy(table, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    plain = summarize(recs, [{"test_top1": 62.9}], ReproConfig(scale="t"))
    assert "point_tables" not in plain and "## At equal bytes" not in render_reproduction(plain)


def test_input_references_are_measured_once_per_scale(tmp_path, monkeypatch):
    import aecnn.evaluation.input_compression as ic
    from experiments.input_refs import input_references, summarize_inputs

    calls = []

    def fake(checkpoint, codecs, qualities, images, split="test", progress=True):
        calls.append((list(codecs), list(qualities), images))
        return {"kind": "input-compression", "checkpoint": str(checkpoint), "images": images,
                "codecs": list(codecs), "qualities": list(qualities), "input_size": SIZE,
                "rows": [{"codec": "raw", "quality": None, "bytes_mean": 3072.0, "top1": 9.0},
                         *({"codec": c, "quality": q, "bytes_mean": 100.0 + q, "top1": 5.0}
                           for c in codecs for q in qualities)]}

    monkeypatch.setattr(ic, "run_input_compression", fake)
    base = tmp_path / "base"
    base.mkdir()
    (base / "best.pt").write_bytes(b"x")
    cfg = ReproConfig(input_codecs=("jpeg", "webp"), input_qualities=(10, 75),
                      measure_out=str(tmp_path / "m"))
    rec = input_references(cfg, base, 1736, False)
    assert calls == [(["jpeg", "webp"], [75, 10], 1736)]
    assert (tmp_path / "m" / "input.json").is_file()
    input_references(cfg, base, 1736, False)
    assert len(calls) == 1  # reused
    input_references(cfg, base, 600, False)  # other images: measured again
    assert len(calls) == 2
    (base / "best.pt").unlink()  # the networks are gone: the record stands for them
    assert input_references(cfg, base, 600, False)["images"] == 600 and len(calls) == 2
    with pytest.raises(RecordError, match="no baseline"):
        input_references(cfg, base, 1736, False)
    s = summarize_inputs(rec)
    assert s["raw"] == {"bytes_per_image": 3072.0, "accuracy": 9.0} and len(s["rows"]) == 4


def test_new_config_keys_are_checked():
    with pytest.raises(ConfigError, match="go together"):
        ReproConfig(entropic_rate_weights=(0.1,))
    with pytest.raises(ConfigError, match="measure_val"):
        ReproConfig(headline_seeds=(1,))
    with pytest.raises(ConfigError, match="already in seeds"):
        ReproConfig(headline_seeds=(0,), measure_val=True)
    with pytest.raises(ConfigError, match="codec_subset"):
        ReproConfig(codec_subset="random")
    with pytest.raises(ConfigError, match="input_codecs"):
        ReproConfig(input_codecs=("png",))
    with pytest.raises(ConfigError, match="quant_subset: spread"):
        ReproConfig(input_codecs=("jpeg",), quant_subset="prefix")
    cfg = load_repro_config([CONFIGS / "effnet.yaml"])
    assert cfg.entropic_rate_weights == (1e-5, 1e-4, 1e-3) and cfg.quant_images == 0
    assert math.isclose(cfg.entropic_rate_weights[0], 1e-5)


def test_export_kinds_sort_every_stage_of_a_run(tmp_path):
    """``aecnn export RUN --out-dir --kinds``: ``qat`` is every quantisation-aware stage
    (AECNN's and BottleNet++'s), ``bottlenet`` BottleNet++ in float32, a module stage only
    where its fine-tuned stage is missing, and an FR shape other than ``aecnn-xV`` never."""
    from aecnn.training.export import ALL_RUN_KINDS, _run_stages

    stages = {"pruned-x4": {"ratio": 4}, "aecnn-x4": {"ratio": 4},
              "aecnn-x4-3x3": {"ratio": 4, "stage": "aecnn-x4"},
              "aecnn-q2p90-x4": {"ratio": 4, "qat_bits": 2},
              "bottlenet-module-x4": {"ratio": 4}, "bottlenet-x4": {"ratio": 4},
              "bottlenet-q2-x4": {"ratio": 4, "qat_bits": 2},
              "entropic-module-x8": {"ratio": 8}, "ca": {}}
    for name, rec in stages.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(json.dumps({"stage": name, **rec}))
    (tmp_path / "bottlenet-x8").mkdir()  # unfinished: no result.json

    def kinds(*k):
        return sorted((kind, f.name) for kind, f in _run_stages(tmp_path, k))

    assert kinds("qat") == [("qat", "aecnn-q2p90-x4"), ("qat", "bottlenet-q2-x4")]
    assert kinds("bottlenet") == [("bottlenet", "bottlenet-x4")]
    assert kinds(*ALL_RUN_KINDS) == [
        ("aecnn", "aecnn-x4"), ("bottlenet", "bottlenet-x4"),
        ("entropic", "entropic-module-x8"), ("pruned", "pruned-x4"),
        ("qat", "aecnn-q2p90-x4"), ("qat", "bottlenet-q2-x4")]
