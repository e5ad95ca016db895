"""The paper's Table I (and more) from records, in one command:
``python -m experiments.reproduce table1 --config experiments/configs/cpu.yaml``.

For each seed: the baseline, Algorithm 1 (CA_Pruned and AECNN) and BottleNet++ are trained
or, where their records exist, reused. Then every deployed network (method x split point x
ratio) is measured: test accuracy when the transmitted tensor is quantised to 8, 4 or 2 bits
(without quantisation-aware fine-tuning, and, for the stages fine-tuned through the
quantiser, at their own bit width), and, on a sample of test images, the bits per element
after lossless entropy coding and the encode/decode times. The table and the rate-accuracy
figure are written from those records only: no number is typed in.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from aecnn.compression.codec import FeatureCodec, decode_packet
from aecnn.compression.priors import PRIOR_MODELS
from aecnn.compression.quantize import QuantSpec, dequantize, quantize
from aecnn.compression.wire import Packet
from aecnn.config import load_config, read_yaml_mapping
from aecnn.data.splits import spread_indices
from aecnn.errors import RecordError
from aecnn.records import write_record
from experiments.table1_repro import RUN_OF

METHODS = ("bottlenet++", "ca_pruned", "aecnn")
QAT_METHODS = {"aecnn": "aecnn_qat", "bottlenet": "bottlenet++_qat"}  # stage prefix -> method


SUBSET_RULES = ("spread", "prefix")
PAPER_TABLE = "experiments/configs/paper_table1.json"  # the paper's numbers, quoted


def subset_indices(n: int, k: int, rule: str = "spread") -> list[int]:
    """The indices of the ``k`` of ``n`` test images whose quantised accuracy is measured
    (all of them when ``k`` is 0 or at least ``n``).

    ``spread``: evenly over the whole split, so every class has its share (the splits are
    sorted by class). ``prefix``: every ``n // k``-th image of the first ``k * (n // k)`` —
    with 600 of 1,736 images, every second image of the first 1,200, which leaves out the
    last third of the classes in alphabetical order. Measurements made before 2026-12-03
    used it, and the scales whose records were measured so keep it (``quant_subset:
    prefix``) so that their tables stay reproducible; new scales should not."""
    if rule == "prefix" and k and k < n:
        return list(range(0, n, max(1, n // k)))[:k]
    return spread_indices(n, k)


def subset_label(n: int, k: int, rule: str) -> str:
    """What a record says of its subset: ``all`` or the rule."""
    return "all" if not k or k >= n else rule


@dataclass(frozen=True)
class ReproConfig:
    """One scale of the reproduction (``experiments/configs/<scale>.yaml`` and overlays).
    ``{seed}`` in an ``out`` template is the seed; ``{suffix}`` is empty for seed 0 and
    ``-seed<N>`` else, so seed 0 can reuse the runs the other commands made."""

    baseline_config: str = "configs/baseline/resnet50_cpu.yaml"
    baseline_overrides: tuple[str, ...] = ()
    baseline_out: str = "runs/baseline/resnet50_cpu64{suffix}"
    aecnn_config: str = "configs/aecnn/resnet50_cpu.yaml"
    aecnn_overrides: tuple[str, ...] = ()
    aecnn_out: str = "runs/aecnn/resnet50_cpu64{suffix}"
    bottlenet_config: str = "configs/bottlenet/resnet50_cpu.yaml"
    bottlenet_overrides: tuple[str, ...] = ()
    bottlenet_out: str = "runs/bottlenet/resnet50_cpu64{suffix}"
    seeds: tuple[int, ...] = (0,)
    recorded_seeds: tuple[int, ...] = ()  # seeds of ``seeds`` taken from their measurement
                                     # records alone, never trained or measured (their
                                     # networks were made on another machine or day)
    points: tuple[str, ...] = ()     # train only these split points (default: the configs')
    bits: tuple[int, ...] = (8, 4, 2)
    clipped: tuple[str, ...] = ()    # more grids to measure, e.g. "uint2@p90" (clipped top)
    coder: str = "context"          # lossless coder for the quantised tensors, or "auto"
    link_bps: float = 1e6            # the uplink rate "auto" picks the coder for, per tensor
    float_coder: str = "memoryless"  # the paper's entropy column: float32 symbols
    quant_images: int = 600          # test images for the quantised accuracy (0: all)
    quant_subset: str = "spread"     # which ones: see :func:`subset_indices`
    codec_images: int = 16           # test images for bits per element and coding times
    prior_images: int = 0            # training images each network's context prior is
                                     # fitted on, per integer grid (0: no prior coder)
    prior_model: str = "lattice"     # those priors' context model: lattice or raster
    measure_device: str = "cpu"      # where measurement runs the networks ("auto": a GPU if
                                     # there is one); coding is always timed on the CPU
    measure_out: str = "runs/reproduce/cpu"
    results: str = "results/reproduction/cpu"
    scale: str = "cpu"
    train: bool = True               # False: only measure and tabulate the records that exist
    paper_table: str = PAPER_TABLE  # quoted, for the side by side

    def __post_init__(self) -> None:
        from aecnn.errors import ConfigError

        if self.quant_subset not in SUBSET_RULES:
            raise ConfigError(f"quant_subset: {self.quant_subset!r} is not one of "
                              f"{', '.join(SUBSET_RULES)}")
        if self.prior_model not in PRIOR_MODELS:
            raise ConfigError(f"prior_model: {self.prior_model!r} is not one of "
                              f"{', '.join(PRIOR_MODELS)}")
        if stray := sorted(set(self.recorded_seeds) - set(self.seeds)):
            raise ConfigError(f"recorded_seeds: {stray} are not in seeds {list(self.seeds)}")
        if self.measure_device != "auto":
            try:
                torch.device(self.measure_device)
            except RuntimeError:
                raise ConfigError(f"measure_device: {self.measure_device!r} is not a torch "
                                  "device (auto, cpu, cuda, cuda:1, ...)") from None


def _fmt(template: str, seed: int) -> str:
    return template.format(seed=seed, suffix="" if seed == 0 else f"-seed{seed}")


# ------------------------------------------------------------------ training (or reuse)
def train_all(cfg: ReproConfig, seed: int, progress: bool) -> dict[str, Path]:
    """Baseline, Algorithm 1 and BottleNet++ for one seed; finished stages are skipped."""
    from aecnn.training import TrainConfig, train_baseline
    from aecnn.training.aecnn import AecnnConfig, train_aecnn
    from aecnn.training.bottlenet import BottleNetConfig as BNConfig
    from aecnn.training.bottlenet import train_bottlenet

    base_out = Path(_fmt(cfg.baseline_out, seed))
    paths = {"baseline": base_out, "aecnn": Path(_fmt(cfg.aecnn_out, seed)),
             "bottlenet": Path(_fmt(cfg.bottlenet_out, seed))}
    if not cfg.train:
        return paths
    if not (base_out / "result.json").exists():
        bcfg = load_config(TrainConfig, cfg.baseline_config,
                           [*cfg.baseline_overrides, f"seed={seed}", f"out={base_out}"])
        train_baseline(bcfg, resume=(base_out / "last.pt").exists(), progress=progress)
    common = [f"baseline={base_out / 'best.pt'}", f"seed={seed}"]
    if cfg.points:
        common.append(f"points=[{', '.join(cfg.points)}]")
    a_out = Path(_fmt(cfg.aecnn_out, seed))
    train_aecnn(load_config(AecnnConfig, cfg.aecnn_config,
                            [*cfg.aecnn_overrides, *common, f"out={a_out}"]), progress)
    b_out = Path(_fmt(cfg.bottlenet_out, seed))
    train_bottlenet(load_config(BNConfig, cfg.bottlenet_config,
                                [*cfg.bottlenet_overrides, *common, f"out={b_out}"]), progress)
    return {"baseline": base_out, "aecnn": a_out, "bottlenet": b_out}


def stage_folders(runs: dict[str, Path]) -> list[tuple[str, str, int, Path]]:
    """``(method, point, ratio, folder)`` of every deployable stage: CA_Pruned
    (``pruned-xV``), AECNN (the FR shape with the best validation accuracy), BottleNet++
    (joint ``bottlenet-xV`` when it exists, else the module stage), and their
    quantisation-aware fine-tunings (``aecnn-qB-xV`` -> ``aecnn_qat``, ``bottlenet-qB-xV`` ->
    ``bottlenet++_qat``)."""
    from aecnn.training.export import best_sibling

    out = []
    for rec_file in sorted(runs["aecnn"].glob("*/pruned-x*/result.json")):
        rec = json.loads(rec_file.read_text())
        point, ratio = rec["point"], rec["ratio"]
        out.append(("ca_pruned", point, ratio, rec_file.parent))
        aecnn = rec_file.parent.parent / f"aecnn-x{ratio}"
        if any((p / "result.json").is_file()
               for p in [aecnn, *aecnn.parent.glob(f"aecnn-x{ratio}-*")]):
            out.append(("aecnn", point, ratio, best_sibling(aecnn)))
    for rec_file in sorted(runs["bottlenet"].glob("*/bottlenet-module-x*/result.json")):
        rec = json.loads(rec_file.read_text())
        joint = rec_file.parent.parent / f"bottlenet-x{rec['ratio']}"
        folder = joint if (joint / "result.json").exists() else rec_file.parent
        out.append(("bottlenet++", rec["point"], rec["ratio"], folder))
    for prefix, method in QAT_METHODS.items():  # quantisation-aware fine-tuning stages
        run = runs["bottlenet" if prefix == "bottlenet" else "aecnn"]
        for rec_file in sorted(run.glob(f"*/{prefix}-q*-x*/result.json")):
            rec = json.loads(rec_file.read_text())
            out.append((method, rec["point"], rec["ratio"], rec_file.parent))
    return out


def distilled_stages(cfg) -> dict[str, dict[str, float]]:
    """The stage kinds of an Algorithm 1 or BottleNet++ config (``prune``, ``qat``, ...) whose
    budgets distil the baseline, in the order they run, each with its weight and temperature
    (QAT only when the config fine-tunes through a grid; a stage only when it trains)."""
    out = {}
    for kind in ("ca", "prune", "fr", "module", "joint", "qat"):
        budget = getattr(cfg, kind, None)
        if budget is None or not budget.distill or budget.epochs == 0 or (
                kind == "qat" and not cfg.qat_grids):
            continue
        out[kind] = {"weight": budget.distill, "temperature": budget.distill_temperature}
    return out


@dataclass(frozen=True)
class ScaleCells:
    """What one scale tabulates, from its method configs (with their overrides): for each
    run (``"aecnn"``, ``"bottlenet"``) the split points, the ratios and the grids its QAT
    stages were fine-tuned through. Scales may share runs (``cpu-longft-frquiet-ratios``
    adds V = 32 and 64 to ``cpu-longft-frquiet``'s seed 2), so a stage or record found in a
    run or measure folder belongs to a table only when it is one of its cells.
    ``ReproConfig.points`` is not used: a scale may be trained one point at a time."""

    points: dict[str, frozenset[str]]
    ratios: dict[str, frozenset[int]]
    grids: dict[str, frozenset[QuantSpec]]
    distill: dict[str, dict[str, dict[str, float]]]  # run -> distilled stage kind -> w, T
    spatial: dict[str, bool] = field(default_factory=dict)  # run -> sends half H and W
    rate: dict[str, float] = field(default_factory=dict)  # run -> QAT rate weight, if > 0

    @classmethod
    def of(cls, cfg: ReproConfig) -> ScaleCells:
        from aecnn.training.aecnn import AecnnConfig
        from aecnn.training.bottlenet import BottleNetConfig

        runs = {"aecnn": load_config(AecnnConfig, cfg.aecnn_config, cfg.aecnn_overrides),
                "bottlenet": load_config(BottleNetConfig, cfg.bottlenet_config,
                                         cfg.bottlenet_overrides)}
        return cls({k: frozenset(c.points) for k, c in runs.items()},
                   {k: frozenset(c.ratios) for k, c in runs.items()},
                   {k: frozenset(c.qat_specs) for k, c in runs.items()},
                   {k: d for k, c in runs.items() if (d := distilled_stages(c))},
                   {k: c.spatial for k, c in runs.items()},
                   {k: c.qat.rate for k, c in runs.items() if c.qat.rate and c.qat_grids})

    def holds(self, method: str, point: str, ratio: int, grid: str | None = None) -> bool:
        """Whether ``method`` at ``point`` and ratio V (fine-tuned through ``grid``, for a
        QAT method) is a cell of this scale; the baseline always is."""
        if method == "baseline":
            return True
        run = RUN_OF.get(method)
        if run is None or point not in self.points[run] or ratio not in self.ratios[run]:
            return False
        return grid is None or QuantSpec.parse(grid) in self.grids[run]

    def holds_record(self, rec: dict) -> bool:
        """:meth:`holds` for a measurement record (older QAT records name only their bits);
        its network must also send what the scale's run sends: the split point's height
        and width, or half of them (``spatial``)."""
        grid = None
        if rec["method"].endswith("_qat"):
            grid = rec.get("qat_quant") or f"uint{rec['qat_bits']}"
        run = RUN_OF.get(rec["method"])
        if run and bool(rec.get("spatial", False)) != self.spatial.get(run, False):
            return False  # the other variant's record (half size or not), in a shared folder
        return self.holds(rec["method"], rec["point"], rec["ratio"], grid)


# ------------------------------------------------------------------ measurement
def _test_split(baseline: Path, split: str = "test"):
    """The baseline's ``split`` (test, or train for fitting priors) with eval transforms."""
    from aecnn.training.baseline import baseline_split

    return baseline_split(baseline / "best.pt", split)


def requantize(z: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """Each sample of ``z (B, K, H, W)`` quantised and dequantised as the codec would."""
    out = []
    for zi in z.float().cpu().numpy():
        sym, lo, step = quantize(zi, spec)
        out.append(dequantize(sym, spec, lo, step, zi.shape))
    return torch.from_numpy(np.stack(out)).to(z.device)


def value_entropy(z: torch.Tensor) -> float:
    """Empirical entropy (bits) of the tensor's distinct float values: what a memoryless code
    over the values themselves would need, codebook not counted (our reading of the paper's
    "Entropy (bit)" column)."""
    _, counts = np.unique(z.float().cpu().numpy(), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def quant_names(cfg: ReproConfig) -> list[str]:
    """The quantisations every deployed network is measured at: float32, ``uint<b>`` for
    each of ``cfg.bits``, then ``cfg.clipped``."""
    names = ["float32", *(f"uint{b}" for b in cfg.bits), *cfg.clipped]
    for n in cfg.clipped:
        QuantSpec.parse(n)  # a typo fails before any measurement
    return names


@torch.inference_mode()
@torch.inference_mode()
def measure_stage(folder: Path, dataset, cfg: ReproConfig, progress: bool,
                  point: str | None = None, quants: list[str] | None = None,
                  train=None) -> dict:
    """Accuracy and bits per element and coding times at each of ``quants`` (default:
    :func:`quant_names`), of a stage folder (or of a baseline checkpoint cut at ``point``).
    With ``cfg.prior_images`` and the ``train`` split, every integer grid's codec also holds
    the network's context prior for that grid (:func:`~aecnn.core.split.fit_head_priors`)."""
    from aecnn.core.split import SplitNetwork, fit_head_priors
    from aecnn.training.export import meta_from_baseline, meta_from_stage

    meta, state = (meta_from_stage(folder) if point is None
                   else meta_from_baseline(folder, point))
    from aecnn.training.loop import resolve_device

    device = resolve_device(cfg.measure_device)
    var = SplitNetwork.from_meta(meta)
    var.load_state_dict(state)
    var.eval().to(device)
    n = len(dataset)
    idx = subset_indices(n, cfg.quant_images, cfg.quant_subset)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, idx), batch_size=64)
    names = quants if quants is not None else quant_names(cfg)
    specs = {q: None if q == "float32" else QuantSpec.parse(q) for q in names}
    correct = dict.fromkeys(specs, 0)
    feats = []
    for x, y in tqdm(loader, desc=folder.name, leave=False, disable=not progress):
        z = var.head(x.to(device))
        if len(feats) < cfg.codec_images:
            feats += list(z[: cfg.codec_images - len(feats)].cpu())
        for name, spec in specs.items():
            zq = z if spec is None else requantize(z, spec)
            correct[name] += int((var.server(zq).argmax(1).cpu() == y).sum())
    acc = {k: 100.0 * v / len(idx) for k, v in correct.items()}
    # the bridge rebuilds the whole split tensor: what float32 compression is measured
    # against (with ``spatial`` a network sends fewer positions, not only fewer channels)
    split_shape = list(var.bridge(feats[0][None].to(device)).shape[1:])
    priors = (fit_head_priors(var.head, train, specs, cfg.prior_images, progress,
                              model=cfg.prior_model)
              if train is not None else {})
    codec = {}
    for name in specs:
        coder = cfg.float_coder if name == "float32" else cfg.coder
        c = FeatureCodec(name, coder, rate_bps=cfg.link_bps, prior=priors.get(name))
        bits, t_enc, t_dec, chosen = [], [], [], []
        for z in feats:
            t0 = time.perf_counter()
            packet, stats = c.encode(z)
            wire = packet.to_bytes()
            t1 = time.perf_counter()
            decode_packet(Packet.from_bytes(wire), priors.get(name))
            t2 = time.perf_counter()
            bits.append(8 * stats.payload_bytes / z.numel())
            chosen.append(stats.coder)
            t_enc.append(t1 - t0)
            t_dec.append(t2 - t1)
        elements = int(feats[0].numel())
        codec[name] = {"coder": coder if coder != "auto" else statistics.mode(chosen),
                       "coders": dict(Counter(chosen)),
                       "bits_per_element": statistics.mean(bits),
                       "value_entropy": statistics.mean(value_entropy(z) for z in feats),
                       "bytes_per_image": statistics.mean(bits) * elements / 8,
                       "t_enc_s": statistics.median(t_enc), "t_dec_s": statistics.median(t_dec)}
        if name in priors:
            codec[name]["prior"] = priors[name].fingerprint_hex
    return {"kind": "reproduce-measure", "source": str(folder), "point": meta.point,
            "ratio": meta.ratio, "bridge": meta.bridge, "fr_shape": meta.fr_shape,
            "compressed_shape": list(feats[0].shape), "elements": int(feats[0].numel()),
            "split_shape": split_shape, "split_elements": math.prod(split_shape),
            "spatial": meta.spatial,
            "n_quant_images": len(idx),
            "quant_subset": subset_label(n, cfg.quant_images, cfg.quant_subset),
            "accuracy": acc, "codec": codec,
            "prior_images": cfg.prior_images if train is not None else 0,
            **({"prior_model": cfg.prior_model} if train is not None else {}),
            "test_top1": meta.test_top1}


def _measured(f: Path, wanted: list[str], measure, subset: tuple[str, int],
              n_all: int, stage: tuple[str, float] | None = None, prior_images: int = 0,
              labels: dict | None = None, prior_model: str = "lattice") -> dict:
    """The record at ``f`` holding every quantisation in ``wanted`` on the test images
    ``subset`` (``(label, count)`` of ``n_all``, see :func:`subset_label`): read it and
    measure only the quantisations it lacks (``measure(missing)``), merging them in;
    measure all of them again when there is no record, when it was made on other images
    (another ``quant_images`` or ``quant_subset``), or when it was made of another network
    than ``stage`` (``(source folder, test top-1 of its record)``: another FR shape won the
    validation since, or the stage was trained again), or when its codecs held context
    priors fitted on another number of training images (``prior_images``, 0: none) or of
    another context model (``prior_model``; a record that names none had lattice priors).
    ``labels`` (method, seed, QAT grid) describe the network rather than measure it: a
    reused record that says otherwise is corrected from them."""
    if not f.exists():
        return write_record(f, measure(wanted))
    rec = json.loads(f.read_text())
    other_prior = rec.get("prior_images", 0) != prior_images or (
        prior_images > 0 and rec.get("prior_model", "lattice") != prior_model)
    if record_subset(rec, n_all) != subset or other_prior or (
            stage is not None and (rec.get("source"), rec.get("test_top1")) != stage):
        return write_record(f, measure(wanted))
    if labels and any(rec.get(k) != v for k, v in labels.items()):
        rec = write_record(f, {**rec, **labels})
    missing = [q for q in wanted if q not in rec["accuracy"]]
    if not missing:
        return rec
    new = measure(missing)
    return write_record(f, {**rec, "accuracy": {**rec["accuracy"], **new["accuracy"]},
                            "codec": {**rec["codec"], **new["codec"]}})


def record_subset(rec: dict, n_all: int) -> tuple[str, int]:
    """``(label, count)`` of the test images a measurement record was made on; records from
    before ``quant_subset`` existed were made with the ``prefix`` rule (or on all images)."""
    count = rec["n_quant_images"]
    label = rec.get("quant_subset") or ("all" if count >= n_all else "prefix")
    return label, count


def measure_all(cfg: ReproConfig, seed: int, runs: dict[str, Path], progress: bool
                ) -> list[dict]:
    """Measure every stage of one seed that is a cell of the scale (:class:`ScaleCells`);
    a measurement whose record exists is reused, and records already in the measure folder
    whose stages are not in ``runs`` (measured by an earlier run, e.g. another split point
    in another session) are kept too, when they are cells of the scale."""
    dataset = _test_split(runs["baseline"])
    train = _test_split(runs["baseline"], "train") if cfg.prior_images > 0 else None
    out = Path(cfg.measure_out) / f"seed{seed}"
    recs, seen = [], set()
    n = len(dataset)
    subset = (subset_label(n, cfg.quant_images, cfg.quant_subset),
              len(subset_indices(n, cfg.quant_images, cfg.quant_subset)))
    cells = ScaleCells.of(cfg)
    stages = []
    for method, point, ratio, folder in stage_folders(runs):
        quant, bits = None, None
        if method.endswith("_qat"):  # a QAT network is deployed on its fine-tuning grid
            stage = json.loads((folder / "result.json").read_text())
            quant, bits = stage.get("qat_quant", f"uint{stage['qat_bits']}"), stage["qat_bits"]
        if cells.holds(method, point, ratio, quant):
            stages.append((method, point, ratio, folder, quant, bits))
    for method, point, ratio, folder, quant, bits in tqdm(
            stages, desc=f"measure seed {seed}", disable=not progress):
        qat = quant is not None
        f = out / (f"{method}-{point}-{folder.name}.json" if qat
                   else f"{method}-{point}-x{ratio}.json")
        seen.add(f.name)
        wanted, extra = quant_names(cfg), {"method": method, "seed": seed}
        if qat:
            wanted = ["float32", quant]
            extra |= {"qat_bits": bits, "qat_quant": quant}

        def measure(quants, folder=folder, extra=extra):
            return {**measure_stage(folder, dataset, cfg, progress, quants=quants,
                                    train=train), **extra}

        made_of = (str(folder), json.loads((folder / "result.json").read_text())["test_top1"])
        recs.append(_measured(f, wanted, measure, subset, n, made_of, cfg.prior_images,
                              extra, cfg.prior_model))
    for f in sorted(out.glob("*.json")):
        if f.name not in seen and f.name != "baseline.json":
            rec = json.loads(f.read_text())
            if cells.holds_record(rec):
                recs.append(rec)
    point = next((r["point"] for r in recs), "stem")

    def measure_baseline(quants):  # the uncompressed model cut at the first point: the "1x"
        return {**measure_stage(runs["baseline"] / "best.pt", dataset, cfg, progress, point,
                                quants=quants, train=train), "method": "baseline",
                "seed": seed}

    recs.append(_measured(out / "baseline.json", quant_names(cfg), measure_baseline, subset,
                          n, prior_images=cfg.prior_images, prior_model=cfg.prior_model))
    return recs


def recorded_seed(cfg: ReproConfig, seed: int, base_run: Path | None
                  ) -> tuple[list[dict], dict]:
    """One seed whose networks are gone (``train=false`` and no baseline run in
    ``base_run``, or a seed of ``recorded_seeds``: ``base_run`` None), from its measurement
    records alone: every record in its measure folder that is a cell of the scale
    (:class:`ScaleCells`), and the baseline's test accuracy from the baseline's measurement
    record. Nothing is measured."""
    folder = Path(cfg.measure_out) / f"seed{seed}"
    if not (folder / "baseline.json").is_file():
        from aecnn.errors import CheckpointError

        if base_run is None:
            raise CheckpointError(f"seed {seed} is in recorded_seeds, but {folder} holds no "
                                  "measurement records (baseline.json)")
        raise CheckpointError(f"train=false, but seed {seed} has neither a baseline run in "
                              f"{base_run} nor measurement records in {folder}")
    cells, recs = ScaleCells.of(cfg), []
    for f in sorted(folder.glob("*.json")):
        try:
            rec = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise RecordError(f"cannot read {f}: {exc}") from None
        if not isinstance(rec, dict) or rec.get("kind") != "reproduce-measure":
            raise RecordError(f"{f} is not a reproduce-measure record")
        if cells.holds_record(rec):
            recs.append({**rec, "seed": seed})
    base = next(r for r in recs if r["method"] == "baseline")
    return recs, {"test_top1": base["test_top1"]}


def check_same_images(recs: list[dict]) -> None:
    """Every record of one table must have been measured on the same test images, or the
    accuracies of its cells would not compare; a one-line :class:`RecordError` says which
    differ. (A record without ``quant_subset`` was measured with the ``prefix`` rule or on
    all images; for one count the two cannot both occur.)"""
    kinds: dict[tuple[int, str], str] = {}
    for r in recs:
        rule = "spread" if r.get("quant_subset") == "spread" else "prefix"
        kinds.setdefault((r["n_quant_images"], rule),
                         f"{r['method']} {r['point']} x{r['ratio']} seed {r.get('seed', 0)}")
    if len(kinds) > 1:
        said = "; ".join(f"{n} test images, {rule} rule (e.g. {who})"
                         for (n, rule), who in kinds.items())
        raise RecordError(f"the records were measured on different test images: {said}; "
                          "measure them again with one quant_images and quant_subset")


def reproduce_table1(cfg: ReproConfig, progress: bool = True) -> dict:
    """Train or reuse, measure, and write ``table1.md``/``table1.json`` and the figure."""
    from experiments.table1_repro import summarize

    all_recs, baselines = [], []
    for seed in cfg.seeds:
        if seed in cfg.recorded_seeds:
            recs, base = recorded_seed(cfg, seed, None)
            all_recs += recs
            baselines.append(base)
            continue
        runs = train_all(cfg, seed, progress)
        if not cfg.train and not (runs["baseline"] / "result.json").exists():
            recs, base = recorded_seed(cfg, seed, runs["baseline"])
        else:
            recs = measure_all(cfg, seed, runs, progress)
            base = json.loads((runs["baseline"] / "result.json").read_text())
        all_recs += recs
        baselines.append(base)
    check_same_images(all_recs)
    summary = summarize(all_recs, baselines, cfg)
    results = Path(cfg.results)
    results.mkdir(parents=True, exist_ok=True)
    cells = ScaleCells.of(cfg)
    summary = write_record(results / "table1.json", {"kind": "reproduce-table1",
                                                     "config": dataclasses.asdict(cfg),
                                                     "distill": cells.distill,
                                                     "qat_rate": cells.rate, **summary})
    render_outputs(summary, results)
    return summary


def render_outputs(summary: dict, results: Path) -> None:
    """``table1.md``, ``rate_accuracy.png`` and (when the paper's table is at hand)
    ``side_by_side.md`` in ``results``, all drawn from ``summary`` alone."""
    from experiments.table1_repro import (
        plot_rate_accuracy,
        render_reproduction,
        render_side_by_side,
    )

    (results / "table1.md").write_text(render_reproduction(summary))
    plot_rate_accuracy(summary, results / "rate_accuracy.png")
    paper_table = Path(summary["config"]["paper_table"])
    if not paper_table.is_file():  # a record made before the quote moved to experiments/
        paper_table = Path(PAPER_TABLE)
    if paper_table.is_file():
        paper = json.loads(paper_table.read_text())
        (results / "side_by_side.md").write_text(
            f"# Table I: the paper next to this run ({summary['scale']})\n\n"
            f"{paper['source']}.\n\n" + render_side_by_side(summary, paper))


def render_only(results: Path) -> dict:
    """Redraw the table, the figure and the side-by-side from ``results/table1.json``
    without training or measuring (the networks need not exist any more); the JSON record,
    with the command and machine that made it, is left as it is."""
    f = results / "table1.json"
    try:
        summary = json.loads(f.read_text())
    except FileNotFoundError:
        raise RecordError(f"no {f}: run the table once before redrawing it") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise RecordError(f"cannot read {f}: {exc}") from None
    if not isinstance(summary, dict) or summary.get("kind") != "reproduce-table1":
        raise RecordError(f"{f} is not a reproduce-table1 record")
    render_outputs(summary, results)
    return summary


# ------------------------------------------------------------------ command line
CONFIGS = Path(__file__).resolve().parent / "configs"


def load_repro_config(configs: list[str | Path], overrides: list[str] | tuple[str, ...] = ()
                      ) -> ReproConfig:
    """A :class:`ReproConfig` from one or more YAML files, then ``key=value`` overrides.

    The files compose in order, a later file's keys replacing an earlier one's (a list such
    as ``aecnn_overrides`` is replaced whole, not appended to): a scale's base
    (``experiments/configs/cpu.yaml``) and then named overlays
    (``experiments/configs/overlays/*.yaml``)."""
    from aecnn.errors import ConfigError

    if not configs:
        raise ConfigError("no reproduction config given")
    merged: dict = {}
    for path in configs:
        merged.update(read_yaml_mapping(path))
    return load_config(ReproConfig, None, overrides, base=merged)


def build_parser():
    import argparse

    p = argparse.ArgumentParser(prog="python -m experiments.reproduce",
                                description="the paper's Table I or Fig. 4 in one command")
    p.add_argument("what", choices=("table1", "fig4"))
    p.add_argument("--scale", default="smoke",
                   help="experiments/configs/<scale>.yaml when no --config is given "
                        "(smoke, cpu, paper, gpu128)")
    p.add_argument("--config", dest="configs", action="append", default=[], metavar="YAML",
                   help="a scale's base, then overlays (repeatable; later files win)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value after the files (repeatable)")
    p.add_argument("--point", default="stem", help="fig4: split point")
    p.add_argument("--render-only", action="store_true",
                   help="table1: redraw the table and figures from the scale's table1.json "
                        "without training or measuring")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args) -> int:
    from aecnn.cli.main import main as aecnn_main
    from aecnn.errors import ConfigError

    configs = args.configs
    if not configs:
        base = CONFIGS / f"{args.scale}.yaml"
        if not base.is_file():
            scales = ", ".join(sorted(f.stem for f in CONFIGS.glob("*.yaml")))
            raise ConfigError(f"no reproduction config {base} (scales: {scales})")
        configs = [base]
    cfg = load_repro_config(configs, args.overrides)
    if args.what == "table1" and args.render_only:
        render_only(Path(cfg.results))
        print(f"redrew {cfg.results}/table1.md, rate_accuracy.png and side_by_side.md "
              f"from {cfg.results}/table1.json")
        return 0
    if args.what == "table1":
        from experiments.table1_repro import render_reproduction

        print(render_reproduction(reproduce_table1(cfg, not args.no_progress)))
        return 0
    seed = cfg.seeds[0]
    argv = ["fig4", "--config", cfg.aecnn_config, "--point", args.point,
            "--out", cfg.results, "--set", f"out={_fmt(cfg.aecnn_out, seed)}",
            "--set", f"baseline={_fmt(cfg.baseline_out, seed)}/best.pt",
            *[x for o in cfg.aecnn_overrides for x in ("--set", o)]]
    if args.no_progress:
        argv.append("--no-progress")
    return aecnn_main(argv)


def main(argv: list[str] | None = None) -> int:
    """``python -m experiments.reproduce``: errors a user can cause are one line, status 2."""
    import logging
    import sys

    from aecnn.errors import AecnnError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except AecnnError as exc:
        print(f"reproduce: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reproduce: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
