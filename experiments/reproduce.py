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
CODEC_SUBSETS = ("first", "spread")
INPUT_CODECS = ("jpeg", "webp")  # as aecnn.evaluation.input_compression.CODECS
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
    entropic_config: str = ""        # the learned bottleneck (aecnn train-entropic): "" none
    entropic_overrides: tuple[str, ...] = ()
    entropic_out: str = "runs/entropic/rw{rate_weight:g}{suffix}"  # one run per rate weight
    entropic_rate_weights: tuple[float, ...] = ()  # write 1.0e-4, not 1e-4 (YAML reads a string)
    input_codecs: tuple[str, ...] = ()  # input-compression references: the photo as jpeg,
                                     # webp (the uncut baseline on the decoded photo)
    input_qualities: tuple[int, ...] = (10, 30, 50, 75, 90)
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
    codec_subset: str = "first"      # which: the first of the measured images (the records
                                     # made before 2027 did so) or ``spread`` over them
    measure_val: bool = False        # also accuracy and bytes on the validation split (all
                                     # of it; bytes on codec_images of it), which picks the
                                     # headline points
    headline_seeds: tuple[int, ...] = ()  # train and measure only the headline points (chosen
                                     # on validation) again with these seeds
    prior_images: int = 0            # training images each network's context prior is
                                     # fitted on, per integer grid (0: no prior coder)
    prior_model: str = "lattice"     # those priors' context model: lattice or raster
    measure_device: str = "cpu"      # where measurement runs the networks ("auto": a GPU if
                                     # there is one); coding is always timed on the CPU
    measure_shard: str = ""          # "K/N": measure only the K-th of N shares of the networks
                                     # (N processes, one per share, side by side; needs
                                     # train: false), then stop without tabulating
    measure_out: str = "runs/reproduce/cpu"
    results: str = "results/reproduction/cpu"
    scale: str = "cpu"
    train: bool = True               # False: only measure and tabulate the records that exist
    paper_table: str = PAPER_TABLE  # quoted, for the side by side ("": none)

    def __post_init__(self) -> None:
        from aecnn.errors import ConfigError

        if self.quant_subset not in SUBSET_RULES:
            raise ConfigError(f"quant_subset: {self.quant_subset!r} is not one of "
                              f"{', '.join(SUBSET_RULES)}")
        if self.codec_subset not in CODEC_SUBSETS:
            raise ConfigError(f"codec_subset: {self.codec_subset!r} is not one of "
                              f"{', '.join(CODEC_SUBSETS)}")
        if bool(self.entropic_config) != bool(self.entropic_rate_weights):
            raise ConfigError("entropic_config and entropic_rate_weights go together: a "
                              "learned-bottleneck run per rate weight")
        if any(not w >= 0 for w in self.entropic_rate_weights):
            raise ConfigError(f"entropic_rate_weights: {list(self.entropic_rate_weights)} "
                              "are not all >= 0")
        if stray := sorted(set(self.input_codecs) - set(INPUT_CODECS)):
            raise ConfigError(f"input_codecs: {stray} are not among {', '.join(INPUT_CODECS)}")
        if any(not 1 <= q <= 100 for q in self.input_qualities):
            raise ConfigError(f"input_qualities: {list(self.input_qualities)} are not all in "
                              "1..100")
        if self.input_codecs and self.quant_subset == "prefix" and self.quant_images:
            raise ConfigError("input_codecs: the references are measured on test images "
                              "spread over the split; use quant_subset: spread")
        if both := sorted(set(self.headline_seeds) & set(self.seeds)):
            raise ConfigError(f"headline_seeds: {both} are already in seeds")
        if self.headline_seeds and not self.measure_val:
            raise ConfigError("headline_seeds: the headline points are chosen on the "
                              "validation split; set measure_val: true")
        if self.prior_model not in PRIOR_MODELS:
            raise ConfigError(f"prior_model: {self.prior_model!r} is not one of "
                              f"{', '.join(PRIOR_MODELS)}")
        if stray := sorted(set(self.recorded_seeds) - set(self.seeds)):
            raise ConfigError(f"recorded_seeds: {stray} are not in seeds {list(self.seeds)}")
        if self.measure_shard:
            self.shard()  # checks it
            if self.train:
                raise ConfigError("measure_shard: shards only measure; set train: false (two "
                                  "processes must not train the same runs)")
        if self.measure_device != "auto":
            try:
                torch.device(self.measure_device)
            except RuntimeError:
                raise ConfigError(f"measure_device: {self.measure_device!r} is not a torch "
                                  "device (auto, cpu, cuda, cuda:1, ...)") from None

    def shard(self) -> tuple[int, int] | None:
        """``(K, N)`` of ``measure_shard`` (None: measure everything in this process)."""
        from aecnn.errors import ConfigError

        if not self.measure_shard:
            return None
        k, _, n = self.measure_shard.partition("/")
        try:
            kn = int(k), int(n)
        except ValueError:
            kn = (-1, 0)
        if not 0 <= kn[0] < kn[1]:
            raise ConfigError(f"measure_shard: {self.measure_shard!r} is not K/N with "
                              "0 <= K < N (e.g. 0/2 and 1/2 for two processes)")
        return kn


def _fmt(template: str, seed: int, rate_weight: float | None = None) -> str:
    """An ``out`` template for ``seed`` (and, for the learned bottleneck, its rate weight)."""
    extra = {} if rate_weight is None else {"rate_weight": rate_weight}
    return template.format(seed=seed, suffix="" if seed == 0 else f"-seed{seed}", **extra)


def yaml_float(x: float) -> str:
    """``x`` as a ``--set`` value YAML reads as a float (``1.0e-05``; YAML 1.1 takes ``1e-05``
    for a string)."""
    text = repr(float(x))
    mantissa, e, exp = text.partition("e")
    return f"{mantissa}.0e{exp}" if e and "." not in mantissa else text


# ------------------------------------------------------------------ training (or reuse)
def run_paths(cfg: ReproConfig, seed: int) -> dict:
    """The run folders of one seed: ``baseline``, ``aecnn``, ``bottlenet`` and ``entropic``
    (rate weight -> folder; empty without a learned bottleneck)."""
    return {"baseline": Path(_fmt(cfg.baseline_out, seed)),
            "aecnn": Path(_fmt(cfg.aecnn_out, seed)),
            "bottlenet": Path(_fmt(cfg.bottlenet_out, seed)),
            "entropic": {w: Path(_fmt(cfg.entropic_out, seed, w))
                         for w in cfg.entropic_rate_weights}}


def ensure_baseline(cfg: ReproConfig, seed: int, progress: bool) -> Path:
    """The baseline run of ``seed``, trained first when it has no record (and
    ``cfg.train``)."""
    from aecnn.training import TrainConfig, train_baseline

    base_out = Path(_fmt(cfg.baseline_out, seed))
    if cfg.train and not (base_out / "result.json").exists():
        bcfg = load_config(TrainConfig, cfg.baseline_config,
                           [*cfg.baseline_overrides, f"seed={seed}", f"out={base_out}"])
        train_baseline(bcfg, resume=(base_out / "last.pt").exists(), progress=progress)
    return base_out


def method_overrides(base_out: Path, seed: int, points: tuple[str, ...] = ()) -> list[str]:
    """The ``--set`` lines every method's run of one seed takes: its baseline, its seed and,
    when given, the split points to train."""
    common = [f"baseline={base_out / 'best.pt'}", f"seed={seed}"]
    if points:
        common.append(f"points=[{', '.join(points)}]")
    return common


def train_entropic_run(cfg: ReproConfig, weight: float, out: Path, extra: list[str],
                       progress: bool) -> None:
    """One learned-bottleneck run: the scale's config and overrides, then ``extra``, at rate
    weight ``weight``, into ``out``."""
    from aecnn.training.entropic import EntropicConfig, train_entropic

    train_entropic(load_config(EntropicConfig, cfg.entropic_config,
                               [*cfg.entropic_overrides, *extra,
                                f"rate_weight={yaml_float(weight)}", f"out={out}"]), progress)


def train_all(cfg: ReproConfig, seed: int, progress: bool) -> dict:
    """Baseline, Algorithm 1, BottleNet++ and the learned bottleneck (one run per rate
    weight) for one seed; finished stages are skipped."""
    from aecnn.training.aecnn import AecnnConfig, train_aecnn
    from aecnn.training.bottlenet import BottleNetConfig as BNConfig
    from aecnn.training.bottlenet import train_bottlenet

    paths = run_paths(cfg, seed)
    if not cfg.train:
        return paths
    base_out = ensure_baseline(cfg, seed, progress)
    common = method_overrides(base_out, seed, cfg.points)
    train_aecnn(load_config(AecnnConfig, cfg.aecnn_config,
                            [*cfg.aecnn_overrides, *common, f"out={paths['aecnn']}"]), progress)
    train_bottlenet(load_config(BNConfig, cfg.bottlenet_config,
                                [*cfg.bottlenet_overrides, *common,
                                 f"out={paths['bottlenet']}"]), progress)
    for weight, out in paths["entropic"].items():
        train_entropic_run(cfg, weight, out, common, progress)
    return paths


def stage_folders(runs: dict) -> list[tuple[str, str, int, Path]]:
    """``(method, point, ratio, folder)`` of every deployable stage: CA_Pruned
    (``pruned-xV``), AECNN (the FR shape with the best validation accuracy), BottleNet++
    (joint ``bottlenet-xV`` when it exists, else the module stage), their
    quantisation-aware fine-tunings (``aecnn-qB-xV`` -> ``aecnn_qat``, ``bottlenet-qB-xV`` ->
    ``bottlenet++_qat``), and the learned bottleneck of each rate weight (``entropic-xV``
    when it exists, else ``entropic-module-xV``)."""
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
    for run in (runs.get("entropic") or {}).values():
        for rec_file in sorted(run.glob("*/entropic-module-x*/result.json")):
            rec = json.loads(rec_file.read_text())
            tail = rec_file.parent.parent / f"entropic-x{rec['ratio']}"
            folder = tail if (tail / "result.json").exists() else rec_file.parent
            out.append(("entropic", rec["point"], rec["ratio"], folder))
    return out


def distilled_stages(cfg) -> dict[str, dict[str, float]]:
    """The stage kinds of an Algorithm 1 or BottleNet++ config (``prune``, ``qat``, ...) whose
    budgets distil the baseline, in the order they run, each with its weight and temperature
    (QAT only when the config fine-tunes through a grid; a stage only when it trains)."""
    out = {}
    for kind in ("ca", "prune", "fr", "module", "joint", "tail", "qat"):
        budget = getattr(cfg, kind, None)
        if budget is None or not budget.distill or budget.epochs == 0 or (
                kind == "qat" and not cfg.qat_grids):
            continue
        out[kind] = {"weight": budget.distill, "temperature": budget.distill_temperature}
    return out


@dataclass(frozen=True)
class ScaleCells:
    """What one scale tabulates, from its method configs (with their overrides): for each
    run (``"aecnn"``, ``"bottlenet"``, and ``"entropic"`` when the scale has a learned
    bottleneck) the split points, the ratios and the grids its QAT stages were fine-tuned
    through; the learned bottleneck's rate weights. Scales may share runs
    (``cpu-longft-frquiet-ratios`` adds V = 32 and 64 to ``cpu-longft-frquiet``'s seed 2),
    so a stage or record found in a run or measure folder belongs to a table only when it
    is one of its cells.
    ``ReproConfig.points`` is not used: a scale may be trained one point at a time."""

    points: dict[str, frozenset[str]]
    ratios: dict[str, frozenset[int]]
    grids: dict[str, frozenset[QuantSpec]]
    distill: dict[str, dict[str, dict[str, float]]]  # run -> distilled stage kind -> w, T
    spatial: dict[str, bool] = field(default_factory=dict)  # run -> sends half H and W
    rate: dict[str, float] = field(default_factory=dict)  # run -> QAT rate weight, if > 0
    rate_weights: frozenset[float] = frozenset()  # the learned bottleneck's

    @classmethod
    def of(cls, cfg: ReproConfig) -> ScaleCells:
        from aecnn.training.aecnn import AecnnConfig
        from aecnn.training.bottlenet import BottleNetConfig
        from aecnn.training.entropic import EntropicConfig

        runs = {"aecnn": load_config(AecnnConfig, cfg.aecnn_config, cfg.aecnn_overrides),
                "bottlenet": load_config(BottleNetConfig, cfg.bottlenet_config,
                                         cfg.bottlenet_overrides)}
        if cfg.entropic_config:
            runs["entropic"] = load_config(EntropicConfig, cfg.entropic_config,
                                           cfg.entropic_overrides)
        return cls({k: frozenset(c.points) for k, c in runs.items()},
                   {k: frozenset(c.ratios) for k, c in runs.items()},
                   {k: frozenset(c.qat_specs) for k, c in runs.items()},
                   {k: d for k, c in runs.items() if (d := distilled_stages(c))},
                   {k: c.spatial for k, c in runs.items()},
                   {k: c.qat.rate for k, c in runs.items() if c.qat.rate and c.qat_grids},
                   frozenset(cfg.entropic_rate_weights))

    def holds(self, method: str, point: str, ratio: int, grid: str | None = None,
              rate_weight: float | None = None) -> bool:
        """Whether ``method`` at ``point`` and ratio V (fine-tuned through ``grid``, for a
        QAT method; at ``rate_weight``, for the learned bottleneck) is a cell of this scale;
        the baseline always is."""
        if method == "baseline":
            return True
        run = RUN_OF.get(method)
        if (run not in self.points or point not in self.points[run]
                or ratio not in self.ratios[run]):
            return False
        if run == "entropic":
            return rate_weight in self.rate_weights
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
        return self.holds(rec["method"], rec["point"], rec["ratio"], grid,
                          rec.get("rate_weight"))


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


def codec_positions(n: int, cfg: ReproConfig) -> list[int]:
    """Which of ``n`` measured images (positions in their order) the codec measures: the
    first ``codec_images`` (``codec_subset: first``), or that many spread over them."""
    if cfg.codec_subset == "spread":
        return spread_indices(n, cfg.codec_images)
    return list(range(min(n, cfg.codec_images)))


def forward_pass(var, dataset, idx: list[int], specs: dict, keep: list[int], device,
                 progress: bool, desc: str) -> tuple[dict[str, int], list[torch.Tensor]]:
    """Run ``var`` over the images ``idx`` of ``dataset``: the number of correct top-1
    predictions when the head's output goes through each grid of ``specs`` (None: as it
    is) and the head outputs ``(K, H, W)`` of the images at positions ``keep``."""
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, idx), batch_size=64)
    keep_set = set(keep)
    correct = dict.fromkeys(specs, 0)
    feats: list[torch.Tensor] = []
    pos = 0
    for x, y in tqdm(loader, desc=desc, leave=False, disable=not progress):
        z = var.head(x.to(device))
        feats += [z[i].cpu().clone() for i in range(len(z)) if pos + i in keep_set]
        pos += len(z)
        for name, spec in specs.items():
            zq = z if spec is None else requantize(z, spec)
            correct[name] += int((var.server(zq).argmax(1).cpu() == y).sum())
    return correct, feats


def code_features(feats: list[torch.Tensor], codec, decode_with=None) -> dict:
    """Encode (and decode) each of ``feats`` with ``codec`` (a ``FeatureCodec`` or
    ``FactorizedCodec``): mean payload bits per element and bytes per image, the coder
    chosen, median encode and decode seconds."""
    bits, t_enc, t_dec, chosen = [], [], [], []
    for z in feats:
        t0 = time.perf_counter()
        packet, stats = codec.encode(z)
        wire = packet.to_bytes()
        t1 = time.perf_counter()
        decode_packet(Packet.from_bytes(wire), decode_with)
        t2 = time.perf_counter()
        bits.append(8 * stats.payload_bytes / z.numel())
        chosen.append(stats.coder)
        t_enc.append(t1 - t0)
        t_dec.append(t2 - t1)
    elements = int(feats[0].numel())
    return {"coders": dict(Counter(chosen)), "chosen": statistics.mode(chosen),
            "bits_per_element": statistics.mean(bits),
            "bytes_per_image": statistics.mean(bits) * elements / 8,
            "t_enc_s": statistics.median(t_enc), "t_dec_s": statistics.median(t_dec)}


@torch.inference_mode()
def measure_stage(folder: Path, dataset, cfg: ReproConfig, progress: bool,
                  point: str | None = None, quants: list[str] | None = None,
                  train=None, val=None) -> dict:
    """Accuracy and bits per element and coding times at each of ``quants`` (default:
    :func:`quant_names`), of a stage folder (or of a baseline checkpoint cut at ``point``).
    With ``cfg.prior_images`` and the ``train`` split, every integer grid's codec also holds
    the network's context prior for that grid (:func:`~aecnn.core.split.fit_head_priors`).
    With the ``val`` split, also the accuracy on all of it and the bytes per image on
    ``codec_images`` of it (``val_accuracy``, ``val_bytes``)."""
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
    names = quants if quants is not None else quant_names(cfg)
    specs = {q: None if q == "float32" else QuantSpec.parse(q) for q in names}
    correct, feats = forward_pass(var, dataset, idx, specs, codec_positions(len(idx), cfg),
                                  device, progress, folder.name)
    acc = {k: 100.0 * v / len(idx) for k, v in correct.items()}
    # the bridge rebuilds the whole split tensor: what float32 compression is measured
    # against (with ``spatial`` a network sends fewer positions, not only fewer channels)
    split_shape = list(var.bridge(feats[0][None].to(device)).shape[1:])
    priors = (fit_head_priors(var.head, train, specs, cfg.prior_images, progress,
                              model=cfg.prior_model)
              if train is not None else {})

    def codec_of(name: str) -> FeatureCodec:
        coder = cfg.float_coder if name == "float32" else cfg.coder
        return FeatureCodec(name, coder, rate_bps=cfg.link_bps, prior=priors.get(name))

    codec = {}
    for name in specs:
        coded = code_features(feats, codec_of(name), priors.get(name))
        coder = codec_of(name).coder
        codec[name] = {"coder": coder if coder != "auto" else coded["chosen"],
                       "coders": coded["coders"],
                       "bits_per_element": coded["bits_per_element"],
                       "value_entropy": statistics.mean(value_entropy(z) for z in feats),
                       "bytes_per_image": coded["bytes_per_image"],
                       "t_enc_s": coded["t_enc_s"], "t_dec_s": coded["t_dec_s"]}
        if name in priors:
            codec[name]["prior"] = priors[name].fingerprint_hex
    rec = {"kind": "reproduce-measure", "source": str(folder), "point": meta.point,
           "ratio": meta.ratio, "bridge": meta.bridge, "fr_shape": meta.fr_shape,
           "compressed_shape": list(feats[0].shape), "elements": int(feats[0].numel()),
           "split_shape": split_shape, "split_elements": math.prod(split_shape),
           "spatial": meta.spatial,
           "n_quant_images": len(idx),
           "quant_subset": subset_label(n, cfg.quant_images, cfg.quant_subset),
           "accuracy": acc, "codec": codec,
           "prior_images": cfg.prior_images if train is not None else 0,
           **({"prior_model": cfg.prior_model} if train is not None else {}),
           "test_top1": meta.test_top1, **codec_label(cfg, len(feats))}
    if val is not None:
        vidx = list(range(len(val)))
        vcorrect, vfeats = forward_pass(var, val, vidx, specs,
                                        codec_positions(len(vidx), cfg), device, progress,
                                        f"{folder.name} val")
        rec |= {"n_val_images": len(vidx),
                "val_accuracy": {k: 100.0 * v / len(vidx) for k, v in vcorrect.items()},
                "val_bytes": {name: code_features(vfeats, codec_of(name),
                                                  priors.get(name))["bytes_per_image"]
                              for name in specs}}
    return rec


def codec_label(cfg: ReproConfig, count: int) -> dict:
    """What a record says of its codec images: nothing for the first ``codec_images`` (as
    every record made before ``codec_subset``), else the rule and the count."""
    if cfg.codec_subset == "first":
        return {}
    return {"codec_subset": cfg.codec_subset, "n_codec_images": count}


MERGED = ("accuracy", "codec", "val_accuracy", "val_bytes")  # per-grid parts of a record


def _measured(f: Path, wanted: list[str], measure, subset: tuple[str, int],
              n_all: int, stage: tuple[str, float] | None = None, prior_images: int = 0,
              labels: dict | None = None, prior_model: str = "lattice",
              val: int | None = None, codec: dict | None = None) -> dict:
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
    reused record that says otherwise is corrected from them.
    ``val``: the record must also hold each wanted quantisation on the ``val`` validation
    images (a quantisation without them is measured again). ``codec``: what the record
    must say of its codec images (:func:`codec_label`; None: not checked)."""
    if not f.exists():
        return write_record(f, measure(wanted))
    rec = json.loads(f.read_text())
    other_prior = rec.get("prior_images", 0) != prior_images or (
        prior_images > 0 and rec.get("prior_model", "lattice") != prior_model)
    other_codec = codec is not None and {k: rec.get(k) for k in ("codec_subset",
                                                                 "n_codec_images")} != {
        "codec_subset": codec.get("codec_subset"), "n_codec_images": codec.get("n_codec_images")}
    other_val = val is not None and rec.get("n_val_images", val) != val
    if record_subset(rec, n_all) != subset or other_prior or other_codec or other_val or (
            stage is not None and (rec.get("source"), rec.get("test_top1")) != stage):
        return write_record(f, measure(wanted))
    if labels and any(rec.get(k) != v for k, v in labels.items()):
        rec = write_record(f, {**rec, **labels})
    missing = [q for q in wanted if q not in rec["accuracy"]
               or (val is not None and q not in rec.get("val_accuracy", {}))]
    if not missing:
        return rec
    new = measure(missing)
    merged = {k: {**rec.get(k, {}), **new[k]} for k in MERGED if k in new}
    extra = {"n_val_images": new["n_val_images"]} if "n_val_images" in new else {}
    return write_record(f, {**rec, **merged, **extra})


def record_subset(rec: dict, n_all: int) -> tuple[str, int]:
    """``(label, count)`` of the test images a measurement record was made on; records from
    before ``quant_subset`` existed were made with the ``prefix`` rule (or on all images)."""
    count = rec["n_quant_images"]
    label = rec.get("quant_subset") or ("all" if count >= n_all else "prefix")
    return label, count


VAL_METHODS = ("baseline", "aecnn", "aecnn_qat", "bottlenet++", "bottlenet++_qat",
               "entropic")  # the methods whose headline points validation picks


@dataclass(frozen=True)
class Stage:
    """One deployable network of a seed's runs: a QAT network's ``quant`` and ``bits`` are
    its fine-tuning grid's, a learned bottleneck's ``rate_weight`` its run's."""

    method: str
    point: str
    ratio: int
    folder: Path
    quant: str | None = None
    bits: int | None = None
    rate_weight: float | None = None

    @property
    def record_name(self) -> str:
        """The file name of its measurement record."""
        if self.quant is not None:
            return f"{self.method}-{self.point}-{self.folder.name}.json"
        if self.rate_weight is not None:
            return f"{self.method}-{self.point}-x{self.ratio}-rw{self.rate_weight:g}.json"
        return f"{self.method}-{self.point}-x{self.ratio}.json"


def scale_stages(cfg: ReproConfig, runs: dict) -> list[Stage]:
    """Every stage of ``runs`` that is a cell of the scale (:class:`ScaleCells`)."""
    cells = ScaleCells.of(cfg)
    stages = []
    for method, point, ratio, folder in stage_folders(runs):
        stage = Stage(method, point, ratio, folder)
        if method.endswith("_qat"):  # a QAT network is deployed on its fine-tuning grid
            rec = json.loads((folder / "result.json").read_text())
            stage = Stage(method, point, ratio, folder,
                          rec.get("qat_quant", f"uint{rec['qat_bits']}"), rec["qat_bits"])
        elif method == "entropic":
            rec = json.loads((folder / "result.json").read_text())
            stage = Stage(method, point, ratio, folder, rate_weight=rec["rate_weight"])
        if cells.holds(method, point, ratio, stage.quant, stage.rate_weight):
            stages.append(stage)
    return stages


@dataclass(frozen=True)
class MeasureData:
    """The images one seed's networks are measured on: the test split, the training split
    (context priors) and the validation split, or None where not wanted."""

    test: object
    train: object = None
    val: object = None

    @classmethod
    def of(cls, cfg: ReproConfig, baseline: Path) -> MeasureData:
        return cls(_test_split(baseline),
                   _test_split(baseline, "train") if cfg.prior_images > 0 else None,
                   _test_split(baseline, "val") if cfg.measure_val else None)

    def subset(self, cfg: ReproConfig) -> tuple[str, int]:
        n = len(self.test)
        return (subset_label(n, cfg.quant_images, cfg.quant_subset),
                len(subset_indices(n, cfg.quant_images, cfg.quant_subset)))


def measure_network(cfg: ReproConfig, seed: int, stage: Stage, data: MeasureData,
                    progress: bool, wanted: list[str] | None = None) -> dict:
    """The measurement record of one network of ``seed`` (measured, or read where it
    exists: :func:`_measured`) at the quantisations ``wanted`` (default: the scale's, a QAT
    network float32 and its own grid, the learned bottleneck its own grid); the validation
    split too for the methods whose headline points it picks (``measure_val``)."""
    from experiments.learned_repro import GRID, measure_entropic

    f = Path(cfg.measure_out) / f"seed{seed}" / stage.record_name
    extra: dict = {"method": stage.method, "seed": seed}
    val = data.val if stage.method in VAL_METHODS else None
    if stage.quant is not None:
        wanted = wanted or ["float32", stage.quant]
        extra |= {"qat_bits": stage.bits, "qat_quant": stage.quant}
    elif stage.method == "entropic":
        wanted = [GRID]
    wanted = wanted or quant_names(cfg)

    def measure(quants):
        if stage.method == "entropic":
            return {**measure_entropic(stage.folder, data.test, cfg, progress, val=val),
                    **extra}
        return {**measure_stage(stage.folder, data.test, cfg, progress, quants=quants,
                                train=data.train, val=val), **extra}

    made_of = (str(stage.folder),
               json.loads((stage.folder / "result.json").read_text())["test_top1"])
    prior_images = 0 if stage.method == "entropic" else cfg.prior_images
    return _measured(f, wanted, measure, data.subset(cfg), len(data.test), made_of,
                     prior_images, extra, cfg.prior_model,
                     len(val) if val is not None else None,
                     codec_label(cfg, len(codec_positions(data.subset(cfg)[1], cfg))))


def measure_all(cfg: ReproConfig, seed: int, runs: dict, progress: bool) -> list[dict]:
    """Measure every stage of one seed that is a cell of the scale (:class:`ScaleCells`);
    a measurement whose record exists is reused, and records already in the measure folder
    whose stages are not in ``runs`` (measured by an earlier run, e.g. another split point
    in another session) are kept too, when they are cells of the scale."""
    data = MeasureData.of(cfg, runs["baseline"])
    out = Path(cfg.measure_out) / f"seed{seed}"
    stages = scale_stages(cfg, runs)
    first = stages[0].point if stages else None  # where the baseline is cut
    shard = cfg.shard()
    if shard is not None:  # this process's share, by position among all the stages
        stages = [s for i, s in enumerate(stages) if i % shard[1] == shard[0]]
    recs = [measure_network(cfg, seed, stage, data, progress)
            for stage in tqdm(stages, desc=f"measure seed {seed}", disable=not progress)]
    if shard is not None:  # shard 0 measures the baseline; the unsharded run tabulates
        return recs + ([measure_baseline_record(cfg, seed, runs, data, first, progress)]
                       if shard[0] == 0 else [])
    seen = {stage.record_name for stage in stages}
    cells = ScaleCells.of(cfg)
    for f in sorted(out.glob("*.json")):
        if f.name not in seen and f.name != "baseline.json":
            rec = json.loads(f.read_text())
            if cells.holds_record(rec):
                recs.append(rec)
    point = next((r["point"] for r in recs), None)
    recs.append(measure_baseline_record(cfg, seed, runs, data, point, progress))
    return recs


def measure_baseline_record(cfg: ReproConfig, seed: int, runs: dict, data: MeasureData,
                            point: str | None, progress: bool) -> dict:
    """The uncompressed model cut at ``point`` (the first measured network's; None: the
    stem), the "1x" of one seed: its record ``baseline.json``, measured or reused."""
    def measure_baseline(quants):
        return {**measure_stage(runs["baseline"] / "best.pt", data.test, cfg, progress,
                                point or "stem", quants=quants, train=data.train,
                                val=data.val),
                "method": "baseline", "seed": seed}

    n = len(data.test)
    return _measured(Path(cfg.measure_out) / f"seed{seed}" / "baseline.json",
                     quant_names(cfg), measure_baseline, data.subset(cfg), n,
                     prior_images=cfg.prior_images, prior_model=cfg.prior_model,
                     val=len(data.val) if data.val is not None else None,
                     codec=codec_label(cfg, len(codec_positions(n, cfg))))


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


def measure_shard(cfg: ReproConfig, progress: bool = True) -> dict:
    """``measure_shard: K/N``: measure this process's share of every seed's networks (the
    K-th of each N in the order of :func:`scale_stages`; shard 0 also the baseline and the
    input-compression references) into the measure folder, and nothing else: the same
    command without ``measure_shard`` reuses the records and tabulates them. Returns
    ``{"kind": "reproduce-shard", ...}``."""
    k, n = cfg.shard()
    done, recs = [], []
    for seed in cfg.seeds:
        if seed in cfg.recorded_seeds:
            continue
        runs = train_all(cfg, seed, progress)
        if (runs["baseline"] / "result.json").exists():
            recs += measure_all(cfg, seed, runs, progress)
    done = [f"seed{r['seed']}/{r['method']}-{r['point']}-x{r['ratio']}" for r in recs]
    if k == 0 and cfg.input_codecs and any(r["method"] == "baseline" for r in recs):
        scale_input_references(cfg, recs, progress)
        done.append("input")
    return {"kind": "reproduce-shard", "shard": f"{k}/{n}", "measured": done,
            "measure_out": cfg.measure_out}


def scale_input_references(cfg: ReproConfig, recs: list[dict], progress: bool) -> dict:
    """The scale's one input-compression record (:func:`experiments.input_refs.
    input_references`): the first seed's baseline, on as many test images as ``recs``'s
    baseline record."""
    from experiments.input_refs import input_references

    images = next(r["n_quant_images"] for r in recs if r["method"] == "baseline")
    return input_references(cfg, Path(_fmt(cfg.baseline_out, cfg.seeds[0])), images, progress)


def reproduce_table1(cfg: ReproConfig, progress: bool = True) -> dict:
    """Train or reuse, measure, and write ``table1.md``/``table1.json`` and the figure; with
    ``input_codecs`` also the input-compression references, and with ``measure_val`` the
    headline points chosen on validation (trained again for ``headline_seeds``)."""
    from experiments.headline_seeds import run_headline
    from experiments.input_refs import summarize_inputs
    from experiments.table1_repro import summarize

    all_recs, baselines = [], []
    if cfg.shard() is not None:
        return measure_shard(cfg, progress)
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
    refs = None
    if cfg.input_codecs:  # one record per scale: the first seed's baseline, the same images
        refs = summarize_inputs(scale_input_references(cfg, all_recs, progress))
    summary = summarize(all_recs, baselines, cfg, refs)
    if cfg.measure_val and (chosen := run_headline(cfg, all_recs, progress)):
        summary["headline_seeds"] = chosen
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
    if summary["config"]["paper_table"] == "":  # a scale with nothing of the paper's to quote
        return
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
                        "(smoke, cpu, effnet, paper, gpu128)")
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

        summary = reproduce_table1(cfg, not args.no_progress)
        if summary["kind"] == "reproduce-shard":
            print(f"shard {summary['shard']}: {len(summary['measured'])} records in "
                  f"{summary['measure_out']}; run without measure_shard to tabulate them")
            return 0
        print(render_reproduction(summary))
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
