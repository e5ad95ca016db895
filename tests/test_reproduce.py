"""``python -m experiments.reproduce``: every cell of a table comes from records, and the
committed tables are what their records give."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from experiments.reproduce import load_repro_config, main

CONFIGS = Path("experiments/configs")
BEST = ["--config", "experiments/configs/cpu.yaml",
        "--config", "experiments/configs/overlays/ternary512.yaml"]


@pytest.mark.slow
def test_reproduce_table1_smoke(caltech_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AECNN_DATA", str(caltech_root))
    runs, res = tmp_path / "runs", tmp_path / "results"
    sets = [f"baseline_out={runs}/seed{{seed}}/baseline", f"aecnn_out={runs}/seed{{seed}}/aecnn",
            f"bottlenet_out={runs}/seed{{seed}}/bottlenet",
            f"entropic_out={runs}/seed{{seed}}/entropic-rw{{rate_weight:g}}",
            f"measure_out={runs}/measure", f"results={res}"]
    argv = ["table1", "--scale", "smoke", "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    table = json.loads((res / "table1.json").read_text())
    assert table["seeds"] == [0, 1] and (res / "rate_accuracy.png").stat().st_size > 1000
    md = (res / "table1.md").read_text()
    assert len(table["rows"]) == 2 * 2  # two split points x ratios 4 and 64
    for row in table["rows"]:
        for method, stage in (("aecnn", "aecnn-x"), ("ca_pruned", "pruned-x"),
                              ("bottlenet++", "bottlenet-x")):
            # the cell is the mean over seeds of the stage records' test accuracy
            accs = []
            for seed in (0, 1):
                run = "bottlenet" if method == "bottlenet++" else "aecnn"
                rec = runs / f"seed{seed}" / run / row["point"] / f"{stage}{row['ratio']}"
                accs.append(json.loads((rec / "result.json").read_text())["test_top1"])
            cell = row[method]
            assert cell["n"] == 2
            assert cell["mean"] == pytest.approx(statistics.mean(accs))
            assert cell["std"] == pytest.approx(statistics.stdev(accs))
            assert f"{cell['mean']:.2f} ± {cell['std']:.2f}" in md
        for key in ("compressed_shape", "entropy_bits", "value_entropy", "t_enc_ms",
                    "t_dec_ms", "total_compression"):
            assert row[key] is not None, key
        assert row["compressed_shape"][0] * row["ratio"] == row["split_shape"][0]
    for f in (runs / "measure").glob("seed*/*.json"):  # the whole split tensor's size
        r = json.loads(f.read_text())
        assert r["split_elements"] == r["elements"] * r["ratio"] and not r["spatial"], f.name
    # AECNN minus BottleNet++ seed by seed, from the same stage records
    plain = [p for p in table["paired"] if p["aecnn_grid"] == "float32"]
    assert len(plain) == len(table["rows"]) and "## AECNN minus BottleNet++, seed by seed" in md
    for p in plain:
        diffs = [
            json.loads((runs / f"seed{seed}" / "aecnn" / p["point"] / f"aecnn-x{p['ratio']}"
                        / "result.json").read_text())["test_top1"]
            - json.loads((runs / f"seed{seed}" / "bottlenet" / p["point"]
                          / f"bottlenet-x{p['ratio']}" / "result.json").read_text())["test_top1"]
            for seed in (0, 1)]
        assert p["seeds"] == [0, 1] and p["diffs"] == pytest.approx(diffs)
        assert p["sem"] == pytest.approx(p["std"] / math.sqrt(2))
        assert (f"| {p['mean']:+.2f} ± {p['std']:.2f} | {p['sem']:.2f} | "
                f"{p['aecnn_ahead']} of 2 |") in md
    quants = {p["quant"] for p in table["curve"] if p["method"] != "entropic"}
    assert quants == {"float32", "uint8", "uint4", "uint2", "uint2@p90", "uint1@p90"}
    _check_new_methods(runs, res, table, md)
    # quantisation-aware fine-tuning (qat_grids; AECNN through uint2 and uint1@p90,
    # BottleNet++ through uint2): one stage per network and grid, measured on that grid
    for run, stage, quant, bits in (("aecnn", "aecnn-q2-x64", "uint2", 2),
                                    ("aecnn", "aecnn-q1p90-x64", "uint1@p90", 1),
                                    ("bottlenet", "bottlenet-q2-x64", "uint2", 2)):
        rec = json.loads((runs / "seed0" / run / "stem" / stage / "result.json").read_text())
        assert rec["qat_bits"] == bits and rec["ratio"] == 64 and rec["qat_quant"] == quant
        # distilled from the baseline (qat.distill); the stages before QAT were not
        assert (rec["budget"]["distill"], rec["budget"]["distill_temperature"]) == (0.5, 4.0)
        start = "aecnn-x64" if run == "aecnn" else "bottlenet-x64"
        start_rec = json.loads((runs / "seed0" / run / "stem" / start / "result.json"
                                ).read_text())
        assert start_rec["budget"]["distill"] == 0.0
        # BottleNet++'s QAT alone is rate-regularised (qat.rate)
        assert rec["budget"]["rate"] == (0.1 if run == "bottlenet" else 0.0)
        assert start_rec["budget"]["rate"] == 0.0
    # each QAT record names its own grid's bits (not another stage's), and the paired
    # differences pair grids of one bit width only
    for f in (runs / "measure").rglob("*_qat-*.json"):
        rec = json.loads(f.read_text())
        assert rec["qat_bits"] == int(rec["qat_quant"][4]), f.name
    assert {(p["aecnn_grid"], p["bottlenet_grid"]) for p in table["paired"]} == {
        ("float32", "float32"), ("uint2", "uint2")}
    kd = {"qat": {"weight": 0.5, "temperature": 4.0}}
    assert table["distill"] == {"aecnn": kd, "bottlenet": kd,
                                "entropic": {"tail": kd["qat"]}}
    assert ("Distilled from the uncut baseline (the KL divergence to its outputs): AECNN's "
            "`qat` (0.5 of the loss at T = 4); BottleNet++'s `qat` (0.5 of the loss at T = 4); "
            "Entropic's `tail` (0.5 of the loss at T = 4) stages.") in md
    assert table["qat_rate"] == {"bottlenet": 0.1}
    assert ("Rate-regularised QAT (`qat.rate`): the QAT loss adds a weight (BottleNet++ 0.1) "
            "times the estimated bits per element") in md
    qat = [p for p in table["curve"] if p["method"].endswith("_qat")]
    assert {(p["method"], p["quant"]) for p in qat} == {
        ("aecnn_qat", "uint2"), ("aecnn_qat", "uint1@p90"), ("bottlenet++_qat", "uint2")}
    assert len(qat) == 3 * 2 * 2 * 2  # (method, grid) x seed x point x ratio
    assert len(table["qat"]) == 3 * 2 * 2  # (method, grid) x point x ratio
    for q in table["qat"]:
        assert q["no_qat"] is not None and q["quant"] in ("uint2", "uint1@p90")
        assert f"| {q['quant']} | {q['no_qat']:.2f} | {q['qat']:.2f} ± " in md
    assert "## Quantisation-aware fine-tuning" in md
    side = (res / "side_by_side.md").read_text()
    assert "| stem | 64 | 88.54 (-7.30) |" in side  # the paper quoted, ours beside it
    # a rerun reuses every record: nothing is trained or measured again
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("*.json")}
    assert main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("*.json") if p in before} == before
    # a new grid is measured on its own and merged into the records; nothing else changes
    # (the main seeds' records of the methods measured on the scale's grids)
    measured = {p: json.loads(p.read_text()) for p in (runs / "measure").glob("seed[01]/*.json")
                if not p.name.startswith("entropic")}
    assert main([*argv, "--set", "clipped=[uint2@p90, uint4@p99]"]) == 0
    trained = [p for p in before if "measure" not in p.parts]
    assert all(p.stat().st_mtime_ns == before[p] for p in trained)
    for p, old in measured.items():
        new = json.loads(p.read_text())
        assert ("uint4@p99" in new["accuracy"]) == (not p.name.startswith(("aecnn_qat",
                                                                           "bottlenet++_qat")))
        assert {k: new["accuracy"][k] for k in old["accuracy"]} == old["accuracy"]
    # a scale on the same runs and records with fewer cells (V = 4, 2-bit QAT only)
    # tabulates its own cells and measures nothing
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("*.json")}
    narrow = [*argv, "--set", "train=false", "--set", f"results={tmp_path / 'narrow'}",
              "--set", "headline_seeds=[]",
              "--set", 'aecnn_overrides=["fr_shapes=[1x1]", "ratios=[4]", "qat_grids=[uint2]"]',
              "--set", 'bottlenet_overrides=["ratios=[4]", "qat_grids=[uint2]"]']
    assert main(narrow) == 0
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("*.json")} == before
    table = json.loads((tmp_path / "narrow" / "table1.json").read_text())
    assert sorted((r["point"], r["ratio"]) for r in table["rows"]) == [("layer1.0", 4),
                                                                       ("stem", 4)]
    assert {(p["method"], p["quant"], p["ratio"])
            for p in table["curve"] if p["method"].endswith("_qat")} == {
        ("aecnn_qat", "uint2", 4), ("bottlenet++_qat", "uint2", 4)}
    # context priors (wire coder 5) fitted on 4 training images: the narrow scale's records
    # are measured again with them, the same accuracies, and every integer grid's codec names
    # its prior; the trained records and the measurements of other cells do not change
    old = {p: json.loads(p.read_text()) for p in (runs / "measure").glob("seed[01]/*.json")}
    assert main([*narrow, "--set", "prior_images=4"]) == 0
    assert {p: p.stat().st_mtime_ns for p in trained} == {p: before[p] for p in trained}
    for p, rec in old.items():
        new = json.loads(p.read_text())
        if p.name != "baseline.json" and (not p.name.endswith("-x4.json") or "q1p90" in p.name):
            assert new == rec, p.name
            continue
        # measured again at this scale's grids only (not the uint4@p99 added above)
        assert new["prior_images"] == 4 and set(new["accuracy"]) <= set(rec["accuracy"])
        assert new["accuracy"] == {k: rec["accuracy"][k] for k in new["accuracy"]}
        for quant, codec in new["codec"].items():
            assert ("prior" in codec) == (quant != "float32"), (p.name, quant)
            assert len(codec.get("prior", "abcd")) == 4
    # the raster context model instead: the same records are measured again (a record
    # names its priors' model), with the same accuracies and other fingerprints
    lattice_recs = {p: json.loads(p.read_text()) for p in old}
    assert main([*narrow, "--set", "prior_images=4", "--set", "prior_model=raster"]) == 0
    again = 0
    for p, rec in lattice_recs.items():
        new = json.loads(p.read_text())
        if "prior_model" not in rec:
            assert new == rec, p.name
            continue
        again += 1
        assert rec["prior_model"] == "lattice" and new["prior_model"] == "raster"
        assert new["accuracy"] == rec["accuracy"]
        for quant, codec in new["codec"].items():
            assert ("prior" in codec) == (quant != "float32"), (p.name, quant)
            if "prior" in codec:
                assert codec["prior"] != rec["codec"][quant]["prior"], (p.name, quant)
    assert again >= 3
    narrow_table = json.loads((tmp_path / "narrow" / "table1.json").read_text())
    assert narrow_table["prior"] == {"images": 4, "model": "raster"}
    assert main([*narrow, "--set", "prior_model=pixelcnn"]) == 2
    assert "prior_model: 'pixelcnn'" in capsys.readouterr().err
    # measure_shard: two processes' shares make the missing records, disjointly (shard 0
    # the baseline too), tabulate nothing; the unsharded run then measures nothing
    raster = [*narrow, "--set", "prior_images=4", "--set", "prior_model=raster"]
    gone = [runs / "measure" / "seed0" / f for f in (
        "aecnn-stem-x4.json", "ca_pruned-layer1.0-x4.json", "bottlenet++-stem-x4.json",
        "baseline.json")] + [runs / "measure" / "input.json"]
    kept = {p: json.loads(p.read_text()) for p in gone}
    for p in gone:
        p.unlink()
    table_time = (tmp_path / "narrow" / "table1.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main([*raster, "--set", "measure_shard=1/2"]) == 0
    assert "shard 1/2:" in capsys.readouterr().out
    made_by_1 = {p for p in gone if p.exists()}
    assert not made_by_1 & {gone[-2], gone[-1]}  # the baseline and the photos: shard 0's
    assert main([*raster, "--set", "measure_shard=0/2"]) == 0
    assert all(p.exists() for p in gone)
    for p, rec in kept.items():
        key = "rows" if p.name == "input.json" else "accuracy"
        assert json.loads(p.read_text())[key] == rec[key], p.name
    assert (tmp_path / "narrow" / "table1.json").stat().st_mtime_ns == table_time
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("*.json")}
    assert main(raster) == 0
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("*.json")} == before
    assert main([*raster, "--set", "measure_shard=2/2"]) == 2
    assert "measure_shard: '2/2' is not K/N" in capsys.readouterr().err
    assert main([*raster, "--set", "measure_shard=0/2", "--set", "train=true"]) == 2
    assert "set train: false" in capsys.readouterr().err

    # Fig. 4 of the same scale from the seed-0 run
    assert main(["fig4", "--scale", "smoke", "--no-progress", *sum(
        (["--set", s] for s in sets), [])]) == 0
    assert (res / "fig4_stem.png").exists() and (res / "fig4_stem.json").exists()


def _check_new_methods(runs: Path, res: Path, table: dict, md: str) -> None:
    """The smoke scale's learned bottleneck, input references and headline seed."""
    ent = [p for p in table["curve"] if p["method"] == "entropic"]
    assert len(ent) == 2 * 2 and {p["quant"] for p in ent} == {"learned"}  # point x seed
    n_test = table["n_quant_images"]  # the whole test split of the smoke's subset
    for seed in (0, 1):
        for point in ("stem", "layer1.0"):
            rec = json.loads((runs / "measure" / f"seed{seed}"
                              / f"entropic-{point}-x4-rw0.001.json").read_text())
            stage = runs / f"seed{seed}" / "entropic-rw0.001" / point / "entropic-x4"
            assert rec["source"] == str(stage) and rec["rate_weight"] == 0.001
            assert rec["n_quant_images"] == n_test and rec["n_codec_images"] == 2
            assert rec["codec"]["learned"]["coder"] == "factorized"
            assert rec["val_accuracy"] and rec["val_bytes"] and rec["n_val_images"] > 0
    for f in (runs / "measure").glob("seed[01]/aecnn*.json"):  # the networks the choice reads
        assert "val_accuracy" in json.loads(f.read_text()), f.name
    refs = json.loads((runs / "measure" / "input.json").read_text())
    assert refs["images"] == n_test and refs["codecs"] == ["jpeg", "webp"]
    assert refs["qualities"] == [75, 10]
    assert len(table["input_refs"]["rows"]) == 4
    # the headline points: chosen on validation (seeds 0 and 1), measured again for seed 2
    head = table["headline_seeds"]
    assert head["seeds"] == [0, 1, 2] and [p["family"] for p in head["picks"]] == [
        "aecnn", "aecnn", "bottlenet++", "bottlenet++", "entropic", "entropic"]
    for p in head["picks"]:
        if p["cell"] is None:
            continue
        assert p["seeds"] == [0, 1, 2], p
        seed2 = [json.loads(f.read_text()) for f in (runs / "measure" / "seed2").glob("*.json")]
        got = [r for r in seed2 if r["method"] == p["cell"]["method"]
               and r["point"] == p["cell"]["point"] and r["ratio"] == p["cell"]["ratio"]
               and p["cell"]["quant"] in r["accuracy"]]
        assert p["test"][2] in [r["accuracy"][p["cell"]["quant"]] for r in got]
    # seed 2 trained the chosen networks only: their split points and ratios, no other
    chosen = {(p["family"], p["cell"]["point"], p["cell"]["ratio"])
              for p in head["picks"] if p["cell"]}
    for run, family in (("aecnn", "aecnn"), ("bottlenet", "bottlenet++"),
                        ("entropic-rw0.001", "entropic")):
        recs = [json.loads(f.read_text()) for f in (runs / "seed2" / run).rglob("result.json")
                if f.parent.name != "ca"]
        assert {(r["point"], r["ratio"]) for r in recs} == {
            (pt, v) for fam, pt, v in chosen if fam == family}, run
    for section in ("## Headline points: chosen on validation, seeds 0, 1, 2",
                    "## Table I by split point", "## At equal bytes",
                    "## Input compression (full offloading)"):
        assert section in md, section


def test_pareto_front_keeps_only_undominated_points():
    from experiments.table1_repro import pareto_front

    pts = [(100.0, 40.0), (50.0, 45.0), (200.0, 60.0), (150.0, 44.0), (200.0, 55.0),
           (1000.0, 59.0), (400.0, 62.0)]
    assert pareto_front(pts) == [(50.0, 45.0), (200.0, 60.0), (400.0, 62.0)]
    assert pareto_front([]) == []


def test_byte_axis_is_labelled_with_plain_numbers():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from experiments.table1_repro import _plain_log_ticks

    fig, ax = plt.subplots()
    ax.set_xscale("log")
    _plain_log_ticks(ax)
    major, minor = ax.xaxis.get_major_formatter(), ax.xaxis.get_minor_formatter()
    ax.set_xlim(150, 4000)  # 1.4 decades: 2 and 5 times a power of ten are labelled
    labels = (major(1000, 0), minor(200, 0), minor(500, 0), minor(300, 0))
    assert labels == ("1000", "200", "500", "")
    ax.set_xlim(30, 100000)  # 3.5 decades: only the powers of ten
    assert (major(100, 0), minor(200, 0)) == ("100", "")
    plt.close(fig)


SHIPPED = [[f"{p.stem}.yaml"] for p in sorted(CONFIGS.glob("*.yaml"))] + [
    ["cpu.yaml", f"overlays/{p.name}"] for p in sorted(CONFIGS.glob("overlays/*.yaml"))]


@pytest.mark.parametrize("files", SHIPPED, ids=lambda f: "+".join(f))
def test_every_shipped_config_resolves(files):
    """Each scale's base (and each overlay over the cpu scale): its own keys, and the overrides
    it hands to the baseline, Algorithm 1 and BottleNet++ configs, load (a typo would only
    show hours into a run otherwise)."""
    from aecnn.config import load_config
    from aecnn.training import TrainConfig
    from aecnn.training.aecnn import AecnnConfig
    from aecnn.training.bottlenet import BottleNetConfig
    from experiments.reproduce import quant_names

    cfg = load_repro_config([CONFIGS / f for f in files])
    assert cfg.scale == (Path(files[0]).stem if len(files) == 1
                         else f"cpu-{Path(files[-1]).stem}")
    load_config(TrainConfig, cfg.baseline_config, cfg.baseline_overrides)
    a = load_config(AecnnConfig, cfg.aecnn_config, cfg.aecnn_overrides)
    b = load_config(BottleNetConfig, cfg.bottlenet_config, cfg.bottlenet_overrides)
    if cfg.entropic_config:
        from aecnn.training.entropic import EntropicConfig

        e = load_config(EntropicConfig, cfg.entropic_config, cfg.entropic_overrides)
        assert set(e.points) <= set(a.points), files  # compared at the same split points
    names = quant_names(cfg)
    for spec in (*a.qat_specs, *b.qat_specs):  # every QAT grid is also measured without QAT
        assert str(spec) in names, (files, str(spec))


def test_config_files_compose_in_order(tmp_path, capsys):
    """``--config`` repeats: a later file's keys replace an earlier one's (lists whole), and
    ``--set`` applies last; a missing file is a one-line error."""
    over = tmp_path / "over.yaml"
    over.write_text("seeds: [5, 6]\nbits: [4]\nscale: mine\n")
    cfg = load_repro_config([CONFIGS / "cpu.yaml", over], ["scale=set"])
    base = load_repro_config([CONFIGS / "cpu.yaml"])
    assert (cfg.seeds, cfg.bits, cfg.scale) == ((5, 6), (4,), "set")
    assert cfg.aecnn_overrides == base.aecnn_overrides and cfg.results == base.results
    assert main(["table1", "--config", str(CONFIGS / "cpu.yaml"), "--config",
                 str(tmp_path / "nope.yaml"), "--render-only"]) == 2
    assert "nope.yaml does not exist" in capsys.readouterr().err
    assert main(["table1", "--scale", "nope", "--render-only"]) == 2
    assert "no reproduction config" in capsys.readouterr().err


KEPT = {"cpu": ["--scale", "cpu"], "cpu-ternary512": BEST}  # committed table -> its command


@pytest.mark.parametrize("scale", sorted(KEPT))
def test_render_only_redraws_a_recorded_table_without_its_networks(scale, tmp_path, capsys):
    """A committed table is redrawn from its JSON alone (no runs/ folder): the Markdown comes
    out byte for byte as committed and the figure is written; bad records are one-line
    errors."""
    shipped = Path("results/reproduction") / scale
    res = tmp_path / scale
    res.mkdir()
    (res / "table1.json").write_bytes((shipped / "table1.json").read_bytes())
    argv = ["table1", *KEPT[scale], "--render-only", "--set", f"results={res}"]
    assert main(argv) == 0
    for name in ("table1.md", "side_by_side.md"):
        assert (res / name).read_text() == (shipped / name).read_text(), name
    assert (res / "rate_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    if scale != "cpu":
        return
    (res / "table1.json").write_text("{not json")
    assert main(argv) == 2
    assert "cannot read" in capsys.readouterr().err
    (res / "table1.json").write_text(json.dumps({"kind": "something-else"}))
    assert main(argv) == 2
    assert "not a reproduce-table1 record" in capsys.readouterr().err
    (res / "table1.json").unlink()
    assert main(argv) == 2
    assert "run the table once" in capsys.readouterr().err


def test_measured_subset_spreads_over_every_class():
    """The quantised accuracy is measured on test images spread over the whole class-sorted
    split; the old ``prefix`` rule (kept for the records measured with it) misses classes."""
    from aecnn.data.splits import Manifest, packaged_manifest
    from experiments.reproduce import subset_indices

    test = Manifest.load(packaged_manifest()).test
    labels = [label for _, label in test]
    spread = subset_indices(len(test), 600)
    assert len(spread) == len(set(spread)) == 600
    assert spread[0] == 0 and spread[-1] == len(test) - 1
    assert {labels[i] for i in spread} == set(labels)  # all 101 classes
    prefix = subset_indices(len(test), 600, "prefix")
    assert prefix == list(range(0, 1200, 2))  # what the committed cpu records used
    assert len({labels[i] for i in prefix}) < 101
    assert subset_indices(10, 0) == subset_indices(10, 50) == list(range(10))


def test_a_record_made_on_other_images_is_measured_again(tmp_path):
    from experiments.reproduce import _measured

    calls = []

    def measure(quants, label="spread", n=600):
        calls.append(list(quants))
        return {"n_quant_images": n, "quant_subset": label,
                "accuracy": dict.fromkeys(quants, 50.0), "codec": dict.fromkeys(quants, {})}

    f = tmp_path / "rec.json"
    _measured(f, ["float32", "uint2"], measure, ("spread", 600), 1736)
    _measured(f, ["float32", "uint2", "uint4"], measure, ("spread", 600), 1736)
    assert calls == [["float32", "uint2"], ["uint4"]]  # only the missing grid is added
    _measured(f, ["float32", "uint2"], measure, ("spread", 300), 1736)  # another count: all again
    assert calls[-1] == ["float32", "uint2"]
    # a record without quant_subset was measured with the prefix rule (or on all images)
    f.write_text(json.dumps({"n_quant_images": 600, "accuracy": {"float32": 1.0}, "codec": {}}))
    _measured(f, ["float32"], measure, ("prefix", 600), 1736)
    assert len(calls) == 3  # reused
    _measured(f, ["float32"], measure, ("spread", 600), 1736)
    assert len(calls) == 4 and json.loads(f.read_text())["quant_subset"] == "spread"


def test_a_record_made_of_another_network_is_measured_again(tmp_path):
    """Same images, but the stage it was measured from changed (another FR sibling won the
    validation, or the stage was trained again): every quantisation is measured again."""
    from experiments.reproduce import _measured

    calls = []

    def measure(quants, source="runs/a/aecnn-x16", top1=55.0):
        calls.append(list(quants))
        return {"n_quant_images": 600, "quant_subset": "spread", "source": source,
                "test_top1": top1, "accuracy": dict.fromkeys(quants, 50.0),
                "codec": dict.fromkeys(quants, {})}

    f = tmp_path / "rec.json"
    made_of = ("runs/a/aecnn-x16", 55.0)
    _measured(f, ["float32"], measure, ("spread", 600), 1736, made_of)
    _measured(f, ["float32"], measure, ("spread", 600), 1736, made_of)
    assert calls == [["float32"]]  # the same network: reused
    _measured(f, ["float32", "uint2"], measure, ("spread", 600), 1736, ("runs/a/aecnn-x16", 56.0))
    assert calls[-1] == ["float32", "uint2"]  # retrained: all again, not only uint2
    _measured(f, ["float32"], measure, ("spread", 600), 1736, ("runs/a/aecnn-x16-fr3x3", 55.0))
    assert len(calls) == 3  # another FR sibling


def _from_shipped(tmp_path: Path, shipped: str, seeds: list[int]) -> tuple[Path, list[str]]:
    """A copy of the committed measurement records of ``seeds`` under ``tmp_path/measure``,
    and the argv that tabulates them with the scale's own command (``train=false``, no
    runs)."""
    measure = tmp_path / "measure"
    for seed in seeds:
        (measure / f"seed{seed}").mkdir(parents=True)
        for f in Path(f"results/reproduction/{shipped}/measure/seed{seed}").glob("*.json"):
            (measure / f"seed{seed}" / f.name).write_bytes(f.read_bytes())
    sets = ["train=false", f"seeds={seeds}", f"measure_out={measure}",
            f"results={tmp_path}", f"baseline_out={tmp_path}/gone{{suffix}}"]
    return measure, ["table1", *KEPT[shipped], "--no-progress",
                     *sum((["--set", s] for s in sets), [])]


@pytest.mark.parametrize("scale", sorted(KEPT))
def test_a_committed_table_is_its_records(scale, tmp_path, capsys):
    """``train=false`` and no runs: each seed is tabulated from its committed measurement
    records alone with the scale's command, and every number of the committed table1.json
    (cells, curve, targets, paired differences) and its table1.md come out again."""
    shipped = json.loads(Path(f"results/reproduction/{scale}/table1.json").read_text())
    measure, argv = _from_shipped(tmp_path, scale, shipped["seeds"])
    assert main(argv) == 0
    new = json.loads((tmp_path / "table1.json").read_text())
    for key in ("seeds", "baseline", "baseline_subset", "rows", "curve", "qat", "headline",
                "headline_all", "paired"):
        if key in shipped:  # the cpu table predates the paired differences
            if key == "curve":  # one point per record, in the order the records came
                new[key], shipped[key] = (sorted(c[key], key=json.dumps) for c in (new, shipped))
            assert new[key] == shipped[key], key
    if scale == "cpu":
        return
    best = new["headline_all"]
    assert (round(best["aecnn_qat@stem"]["within_3"]["compression"]),
            round(best["bottlenet++_qat@stem"]["within_3"]["compression"])) == (975, 1078)
    md = (tmp_path / "table1.md").read_text()
    assert "| 59.77 ± 0.59 (-2.84) | 67 |" in md and "| 59.91 ± 0.92 (-2.71) | 61 |" in md
    capsys.readouterr()
    # a seed with neither runs nor records is a one-line error
    assert main([*argv, "--set", "seeds=[2, 5]"]) == 2
    assert "seed 5 has neither a baseline run" in capsys.readouterr().err
    # records measured on other images do not go into one table
    f = measure / "seed2" / "aecnn-stem-x8.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), "quant_subset": "spread"}))
    assert main(argv) == 2
    assert "measured on different test images" in capsys.readouterr().err


def test_recorded_seeds_come_from_their_records_while_the_scale_trains(tmp_path, capsys):
    """``recorded_seeds``: seeds whose networks were made on another day or machine are
    tabulated from their measurement records alone even when the scale trains (here every
    seed is recorded, so nothing trains), and the table is the committed three-seed one."""
    _, argv = _from_shipped(tmp_path, "cpu-ternary512", [2, 3, 4])
    argv = [a.replace("train=false", "train=true") for a in argv]
    assert main([*argv, "--set", "recorded_seeds=[2, 3, 4]"]) == 0
    new = json.loads((tmp_path / "table1.json").read_text())
    shipped = json.loads(Path("results/reproduction/cpu-ternary512/table1.json").read_text())
    assert new["baseline"] == shipped["baseline"] and new["rows"] == shipped["rows"]
    assert not list(tmp_path.glob("gone*"))  # no baseline was trained
    capsys.readouterr()
    assert main([*argv, "--set", "seeds=[7]", "--set", "recorded_seeds=[7]"]) == 2
    assert "seed 7 is in recorded_seeds, but" in capsys.readouterr().err
    assert main([*argv, "--set", "seeds=[2]", "--set", "recorded_seeds=[3]"]) == 2
    assert "recorded_seeds: [3] are not in seeds [2]" in capsys.readouterr().err


def test_a_table_holds_only_its_scales_cells(tmp_path):
    """Scales may share runs and measure folders, so a record found there belongs to a table
    only when it is one of the scale's cells: rebuilt from the committed ternary records with
    AECNN fine-tuned through another grid, the AECNN QAT records are left out."""
    from experiments.reproduce import ScaleCells

    _, argv = _from_shipped(tmp_path, "cpu-ternary512", [2])
    best = load_repro_config([CONFIGS / "cpu.yaml", CONFIGS / "overlays/ternary512.yaml"])
    other = [o.replace("uint2l3@p90", "uint2@p90") for o in best.aecnn_overrides]
    assert main([*argv, "--set", f"aecnn_overrides={json.dumps(other)}"]) == 0
    table = json.loads((tmp_path / "table1.json").read_text())
    assert [(r["point"], r["ratio"]) for r in table["rows"]] == [("stem", 32)]
    qat = {p["method"] for p in table["curve"] if p["method"].endswith("_qat")}
    assert qat == {"bottlenet++_qat"}

    cells = ScaleCells.of(best)
    assert cells.holds("aecnn_qat", "stem", 8, "uint2l3@p90")
    assert not cells.holds("aecnn_qat", "stem", 8, "uint2l3")  # not its grid
    assert not cells.holds("bottlenet++", "layer1.0", 8) and cells.holds("baseline", "x", 1)
    old_qat = {"method": "bottlenet++_qat", "point": "stem", "ratio": 16, "qat_bits": 2}
    cpu = ScaleCells.of(load_repro_config([CONFIGS / "cpu.yaml"]))
    assert cpu.holds_record(old_qat)  # a record from before qat_quant: uint<bits>
    assert not cpu.holds_record({**old_qat, "qat_bits": 3})
    assert not cells.holds_record({**old_qat, "ratio": 8, "spatial": True})  # uint2, not uint2l3
    assert cells.holds_record({**old_qat, "ratio": 8, "spatial": True, "qat_quant": "uint2l3"})


def test_quant_subset_must_be_a_known_rule():
    from aecnn.config import load_config
    from aecnn.errors import ConfigError
    from experiments.reproduce import ReproConfig

    with pytest.raises(ConfigError, match="quant_subset"):
        load_config(ReproConfig, CONFIGS / "smoke.yaml", ["quant_subset=random"])
    with pytest.raises(ConfigError, match="measure_device"):
        load_config(ReproConfig, CONFIGS / "smoke.yaml", ["measure_device=gpu0"])
    for ok in ("auto", "cpu", "cuda:1"):
        assert load_config(ReproConfig, CONFIGS / "smoke.yaml",
                           [f"measure_device={ok}"]).measure_device == ok


def test_the_table_does_not_depend_on_the_order_of_its_records():
    """The codec columns are AECNN's (CA_Pruned's only where there is no AECNN record),
    however the records are ordered (stage order when measured, file order when rebuilt)."""
    from experiments.reproduce import ReproConfig
    from experiments.table1_repro import summarize

    folder = Path("results/reproduction/cpu-ternary512/measure/seed2")
    recs = [json.loads(f.read_text()) for f in sorted(folder.glob("*.json"))]
    base = [{"test_top1": 62.9}]
    cfg = ReproConfig(scale="t")
    a, b = summarize(recs, base, cfg), summarize(recs[::-1], base, cfg)
    assert a["rows"] == b["rows"] and a["headline"] == b["headline"]
    aecnn = next(r for r in recs if r["method"] == "aecnn")
    assert a["rows"][0]["entropy_bits"] == aecnn["codec"]["float32"]["bits_per_element"]
    no_aecnn = summarize([r for r in recs if r["method"] != "aecnn"], base, cfg)
    pruned = next(r for r in recs if r["method"] == "ca_pruned")
    assert no_aecnn["rows"][0]["entropy_bits"] == pruned["codec"]["float32"]["bits_per_element"]


def test_stride2_bottlenet_sits_in_the_row_of_as_many_elements(tmp_path):
    """BottleNet++'s stride-2 variant at V sends C/V channels at half the height and width:
    the table keys it by its element ratio 4V, pairs it with the AECNN that sends as many
    elements, names it, and a scale of one variant leaves the other's records out."""
    from experiments.reproduce import ReproConfig, ScaleCells
    from experiments.table1_repro import (
        render_reproduction,
        render_side_by_side,
        summarize,
    )

    folder = Path("results/reproduction/cpu/measure/seed0")  # the stem at V = 16
    recs = [r for f in sorted(folder.glob("*.json")) if (r := json.loads(f.read_text()))
            and (r["method"] == "baseline" or (r["point"], r["ratio"]) == ("stem", 16))]
    s2 = []
    for r in recs:  # BottleNet++ at V = 4, stride 2: 16 x 8 x 8, as many as AECNN at 16
        if r["method"].startswith("bottlenet"):
            r = {**r, "ratio": 4, "spatial": True, "split_elements": 64 * 16 * 16,
                 "compressed_shape": [16, 8, 8], "elements": 1024}
        s2.append(r)
    table = summarize(s2, [{"test_top1": 61.29}], ReproConfig(scale="t"))
    assert table["spatial"] == {"aecnn": False, "bottlenet": True}
    assert [r["ratio"] for r in table["rows"]] == [16]
    row = table["rows"][0]
    bn = next(r for r in recs if r["method"] == "bottlenet++")
    assert row["bottlenet++"]["mean"] == bn["test_top1"] and row["compressed_shape"] == [4, 16, 16]
    assert {p["ratio"] for p in table["paired"]} == {16}
    md = render_reproduction(table)
    assert "| BottleNet++ (stride 2) (%) |" in md and "BottleNet++ (stride 2) + QAT @ stem" in md
    plain = summarize(recs, [{"test_top1": 61.29}], ReproConfig(scale="t"))
    assert not any(plain["spatial"].values()) and "(stride 2)" not in render_reproduction(plain)
    pooled = summarize([{**r, "spatial": True, "split_elements": 64 * 16 * 16,
                         "elements": r["elements"] // 4} if r["method"] != "baseline" else r
                        for r in s2], [{"test_top1": 61.29}], ReproConfig(scale="t"))
    assert pooled["spatial"] == {"aecnn": True, "bottlenet": True}
    assert sorted(r["ratio"] for r in pooled["rows"]) == [64]  # both halved: 4V = 64
    md = render_reproduction(pooled)
    assert "| CA_Pruned (pool 2) (%) | AECNN (pool 2) (%) |" in md
    assert "AECNN (pool 2) + QAT @ stem" in md
    paper = json.loads(Path("experiments/configs/paper_table1.json").read_text())
    assert ("| ours (stride 2) | CA_Pruned paper | ours (pool 2) | AECNN paper | ours (pool 2) |"
            in render_side_by_side(pooled, paper))

    cfg = [CONFIGS / "cpu.yaml"]
    cells = ScaleCells.of(load_repro_config(cfg))
    cells2 = ScaleCells.of(load_repro_config(cfg, ['bottlenet_overrides=["ratios=[4]", '
                                                   '"spatial=true"]']))
    stride2 = {"method": "bottlenet++", "point": "stem", "ratio": 4, "spatial": True}
    assert cells2.holds_record(stride2) and not cells2.holds_record({**stride2, "spatial": False})
    assert not cells.holds_record({**stride2, "ratio": 16})  # a stride-1 scale: not its record
    assert cells.holds_record({**stride2, "ratio": 16, "spatial": False})


def test_aecnn_and_bottlenet_are_paired_seed_by_seed():
    """The paired difference compares networks of the same seed only, float32 with float32
    and QAT grids of the same bit width; a single seed draws no paired section."""
    from experiments.table1_repro import _render_paired, paired_by_seed

    def rec(method, seed, acc, grid=None):
        r = {"method": method, "point": "stem", "ratio": 16, "seed": seed, "test_top1": acc}
        return {**r, "qat_quant": grid, "qat_bits": int(grid[4])} if grid else r

    recs = [rec("aecnn", 0, 60.0), rec("bottlenet++", 0, 61.0),
            rec("aecnn", 1, 59.0), rec("bottlenet++", 1, 57.0),
            rec("bottlenet++", 2, 10.0),  # no AECNN of seed 2: not paired
            rec("aecnn_qat", 0, 58.0, "uint2@p90"), rec("bottlenet++_qat", 0, 56.5, "uint2"),
            rec("aecnn_qat", 1, 57.0, "uint2@p90"), rec("bottlenet++_qat", 1, 57.5, "uint2"),
            rec("bottlenet++_qat", 0, 40.0, "uint1"),  # another bit width: not paired
            rec("ca_pruned", 0, 99.0), rec("baseline", 0, 63.0)]
    rows = paired_by_seed(recs)
    assert [(r["aecnn_grid"], r["bottlenet_grid"]) for r in rows] == [
        ("float32", "float32"), ("uint2@p90", "uint2")]
    plain, qat = rows
    assert plain["seeds"] == [0, 1] and plain["diffs"] == pytest.approx([-1.0, 2.0])
    assert plain["mean"] == pytest.approx(0.5) and plain["aecnn_ahead"] == 1
    assert plain["sem"] == pytest.approx(1.5)  # std 2.12 over two seeds
    assert qat["diffs"] == pytest.approx([1.5, -0.5]) and qat["n"] == 2
    text = "\n".join(_render_paired(rows))
    assert ("| stem | 16 | float32 | float32 | 0: -1.00, 1: +2.00 | +0.50 ± 2.12 | 1.50 | "
            "1 of 2 |") in text
    assert paired_by_seed([r for r in recs if r["seed"] == 0])[0]["n"] == 1


def test_the_library_never_imports_experiments():
    """``aecnn`` is what a user imports or deploys: nothing under src/ imports experiments/."""
    import ast

    for f in Path("src/aecnn").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "experiments" for n in names), f
