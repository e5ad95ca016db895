"""``aecnn train-aecnn``: Algorithm 1 of the paper as an ordered list of named stages.

For each split point: ``ca`` (insert the CA module after the split, train the network),
``importance`` (eq. 8 over the training split), then for each ratio V: ``pruned-xV`` (keep the
C/V most important channels, prune the device head physically where possible, fine-tune:
the paper's CA_Pruned) and ``aecnn-xV`` (insert the FR module on the server and fine-tune:
AECNN). With several ``fr_shapes``, the first trains in ``aecnn-xV`` and each other one in
``aecnn-xV-<shape>``, each starting from the same CA_Pruned weights with the same budget; the
table keeps the one with the best validation accuracy. With ``spatial`` (beyond the paper) the
device also halves the kept channels' height and width (:mod:`aecnn.compression.spatial`).
Every stage writes its checkpoint and a
JSON record into its own folder and is skipped when that record exists, so a killed run
resumes where it stopped (within a stage, from its last epoch).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import torch
from torch import nn
from tqdm import tqdm

from aecnn.compression.attention import ChannelAttention, channel_importance, keep_indices
from aecnn.compression.pruning import pruned_head
from aecnn.compression.qat import FakeQuant, soft_rate
from aecnn.compression.quantize import QuantSpec
from aecnn.compression.recovery import FeatureRecovery, ZeroFill
from aecnn.compression.spatial import Upsampled, halved
from aecnn.config import load_config, save_config, to_dict
from aecnn.core.split import SplitNetwork
from aecnn.errors import AecnnError, ConfigError
from aecnn.models import create_model, get_spec, split_model
from aecnn.models.spec import ModelSpec, SplitPoint
from aecnn.training import distributed
from aecnn.training.baseline import load_manifest, make_split, run_options
from aecnn.training.checkpoint import load_checkpoint
from aecnn.training.config import OptimConfig, TrainConfig
from aecnn.training.loop import Distillation, RunOptions, evaluate_model, fit, make_loader

Part = Literal["head", "bridge", "tail"]
EXTRA_DEFAULTS = {"spatial": False}
"""Stage settings that a record or a request may leave out, meaning this value."""


@dataclass(frozen=True)
class StageBudget:
    """Fine-tuning budget of one kind of stage. ``distill`` > 0 distils the uncut baseline
    into the stage's network: that weight of the loss is the KL divergence to the baseline's
    outputs at ``distill_temperature`` (:class:`~aecnn.training.loop.Distillation`).
    ``rate`` > 0 (quantisation-aware stages only) adds that weight times the estimated bits
    per element of the quantised split tensor (:func:`~aecnn.compression.qat.soft_rate`)
    to the loss: the larger, the fewer bytes and the lower the accuracy."""

    epochs: int = 2
    lr: float = 0.01
    name: Literal["sgd", "adamw"] = "sgd"
    weight_decay: float = 1e-4
    warmup_epochs: int = 0
    label_smoothing: float = 0.1
    trains: tuple[str, ...] = ("head", "bridge", "tail")
    distill: float = 0.0
    distill_temperature: float = 4.0
    rate: float = 0.0
    steps: int | None = None  # optimiser steps per epoch at most (None: the whole split)

    #: settings added after the first stage checkpoints were written, with the value those
    #: checkpoints were trained with: :meth:`resume_config` leaves each out while it has
    #: that value, so they still resume (``target`` is the learned bottleneck's)
    LATER: ClassVar[dict[str, object]] = {"distill": 0.0, "rate": 0.0, "steps": None,
                                          "target": "logits"}

    def __post_init__(self) -> None:
        if not self.rate >= 0.0:
            raise ConfigError(f"rate: {self.rate} is not >= 0")
        if not 0.0 <= self.distill <= 1.0:
            raise ConfigError(f"distill: {self.distill} is not in [0, 1]")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps: {self.steps} is not >= 1")
        if not self.distill_temperature > 0:
            raise ConfigError(f"distill_temperature: {self.distill_temperature} is not > 0")

    def resume_config(self) -> dict:
        """The budget as a stage's checkpoints record it for resuming: every setting, less
        those of :attr:`LATER` at their earlier values, and less the distillation
        temperature when nothing is distilled."""
        out = dataclasses.asdict(self)
        for k, before in self.LATER.items():
            if k in out and out[k] == before:
                del out[k]
        if not self.distill:
            del out["distill_temperature"]
        return out

    def optim(self) -> OptimConfig:
        return OptimConfig(self.name, self.lr, 0.9, self.weight_decay, self.epochs,
                           self.warmup_epochs, self.label_smoothing, self.steps)


@dataclass(frozen=True)
class StagesConfig:
    """What every staged run on a baseline shares (Algorithm 1, BottleNet++): which baseline,
    split points and ratios, quantisation-aware fine-tuning, and how to run. Data, model and
    split come from the baseline checkpoint; ``subset``, ``workers`` and ``batch_size`` may
    override its data settings."""

    baseline: str = "runs/baseline/resnet50_cpu64/best.pt"
    points: tuple[str, ...] = ("stem", "layer1.0")
    ratios: tuple[int, ...] = (2, 4, 8, 16, 32, 64)
    qat: StageBudget = field(default_factory=lambda: StageBudget(epochs=1, lr=0.001))
    qat_grids: tuple[str, ...] = ()   # per-tensor integer grids to fine-tune through
    subset: int | None = None
    workers: int = 0
    batch_size: int | None = None
    seed: int = 0
    out: str = "runs/aecnn"
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    threads: int | None = None

    def __post_init__(self) -> None:
        _ = self.qat_specs  # rejects a bad qat_grids with a ConfigError
        for f in dataclasses.fields(self):
            budget = getattr(self, f.name)
            if f.name != "qat" and isinstance(budget, StageBudget) and budget.rate:
                raise ConfigError(f"{f.name}.rate: only the qat budget can have a rate term "
                                  "(the rate is estimated on the quantised split tensor)")

    @property
    def qat_specs(self) -> tuple[QuantSpec, ...]:
        """``qat_grids`` parsed: per-tensor integer grids such as ``uint2`` or ``uint1@p90``
        (what :class:`FakeQuant` simulates), in order and without repeats."""
        specs: list[QuantSpec] = []
        for text in self.qat_grids:
            try:
                spec = QuantSpec.parse_tensor_grid(text)
            except AecnnError as exc:
                raise ConfigError(f"qat_grids: {exc}") from None
            if spec in specs:
                raise ConfigError(f"qat_grids: {text!r} is listed twice")
            specs.append(spec)
        return tuple(specs)


@dataclass(frozen=True)
class AecnnConfig(StagesConfig):
    """Algorithm 1: the stage budgets, FR shapes and how channels are ranked."""

    ca: StageBudget = field(default_factory=StageBudget)
    ca_affine: bool = False
    prune: StageBudget = field(default_factory=StageBudget)
    fr: StageBudget = field(default_factory=StageBudget)
    fr_shapes: tuple[Literal["1x1", "3x3"], ...] = ("3x3",)
    fr_init: Literal["default", "quiet"] = "default"
    importance: Literal["ca", "random", "l1", "activation"] = "ca"
    importance_images: int | None = None
    spatial: bool = False  # beyond the paper: send the kept channels at half height and width


def budget_differs(recorded: dict | None, budget: StageBudget) -> list[str]:
    """``budget.<key>=<recorded> (asked <value>)`` for each setting in which a stage record's
    budget differs from ``budget``. A setting the record lacks (it predates that setting)
    counts as the setting's default; a record without a budget differs in nothing."""
    if recorded is None:
        return []
    asked = json.loads(json.dumps(dataclasses.asdict(budget)))  # tuples as lists
    default = json.loads(json.dumps(dataclasses.asdict(type(budget)())))
    return [f"budget.{k}={recorded.get(k, default[k])!r} (asked {v!r})"
            for k, v in asked.items() if recorded.get(k, default[k]) != v]


def count_flops(module: nn.Module, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    """FLOPs of ``module(x)`` (torch's counter: 2 per multiply-add) and its output."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        y = module(x)
    return int(counter.get_total_flops()), y


def cost_profile(net: SplitNetwork, input_size: int) -> dict:
    """Parameters and FLOPs of head, bridge and tail for one image, and the split shape."""
    net = net.eval()
    x = torch.zeros(1, 3, input_size, input_size, device=next(net.parameters()).device)
    out: dict = {}
    for name in ("head", "bridge", "tail"):
        part = getattr(net, name)
        flops, x_next = count_flops(part, x)
        if name == "head":
            out["compressed_shape"] = list(x_next.shape[1:])
        out[f"params_{name}"] = sum(p.numel() for p in part.parameters())
        out[f"flops_{name}"] = flops
        x = x_next
    return out


class Pipeline:
    """Runs the stages of Algorithm 1; ``run()`` returns every stage's record."""

    def __init__(self, cfg: AecnnConfig, progress: bool = True) -> None:
        self.cfg, self.progress = cfg, progress
        self.opts: RunOptions
        base = load_checkpoint(cfg.baseline, ("model", "config", "classes", "model_name"))
        self.base_state = base["model"]
        bcfg = load_config(TrainConfig, base=base["config"])
        self.data = dataclasses.replace(
            bcfg.data, subset=cfg.subset if cfg.subset is not None else bcfg.data.subset,
            workers=cfg.workers, batch_size=cfg.batch_size or bcfg.data.batch_size)
        self.opts = run_options(dataclasses.replace(
            bcfg, device=cfg.device, amp=cfg.amp, channels_last=cfg.channels_last,
            threads=cfg.threads), progress)
        self.progress = self.opts.progress  # rank 0's alone under torchrun
        self.spec: ModelSpec = get_spec(base["model_name"])
        self.classes = base["classes"]
        with distributed.main_first():  # rank 0 makes the manifest and image cache, if missing
            self.root, self.manifest = load_manifest(self.data)
            mk = self._split
            self.train_ds, self.val_ds, self.test_ds = (mk("train", True), mk("val"),
                                                        mk("test"))
        self.out = Path(cfg.out)

    def _split(self, name: str, train: bool = False):
        return make_split(self.data, self.root, self.manifest, name, self.spec.mean,
                          self.spec.std, train, self.progress)

    def ratios_at(self, sp: SplitPoint) -> list[int]:
        """The ratios of ``cfg.ratios`` that divide the channel count at ``sp``, in order:
        a code of C/V channels (kept channels, BottleNet++'s or the learned bottleneck's
        latent) needs a whole number. One list can so serve split points with different
        channel counts (32 at EfficientNet-Lite0's stem, 40 at blocks.3); the others are
        skipped at that point.

        Raises:
            ConfigError: a ratio below 1, or none of the ratios divides ``sp``'s channels.
        """
        if any(v < 1 for v in self.cfg.ratios):
            raise ConfigError(f"ratios: {min(self.cfg.ratios)} is below 1")
        fit = [v for v in self.cfg.ratios if sp.channels % v == 0]
        if not fit:
            raise ConfigError(f"no ratio in {list(self.cfg.ratios)} divides the {sp.channels} "
                              f"channels of {self.spec.name} at {sp.name}")
        return fit

    def check_ratios(self) -> None:
        """:meth:`ratios_at` for every split point: a config error before any training."""
        for point in self.cfg.points:
            self.ratios_at(self.spec.split_point(point))

    def fresh_model(self) -> nn.Module:
        model = create_model(self.spec.name, len(self.classes))
        model.load_state_dict(self.base_state)
        return model

    def distillation(self, budget: StageBudget) -> Distillation | None:
        """The baseline as the teacher of a stage whose budget distils, else None."""
        if budget.distill == 0:
            return None
        return Distillation(self.fresh_model(), budget.distill, budget.distill_temperature)

    @staticmethod
    @contextmanager
    def rate_penalty(net: SplitNetwork, budget: StageBudget
                     ) -> Iterator[Callable[[], torch.Tensor] | None]:
        """While open: ``budget.rate`` times the :func:`soft_rate` of the split tensor that
        ``net``'s head made in its last forward pass (caught by a forward hook on the head,
        before the fake quantiser; removed on exit), or None when the budget has no rate
        term.

        Raises:
            ConfigError: a rate term for a network without a fake quantiser (not a QAT
                stage): there is no grid to estimate the rate on.
        """
        if budget.rate == 0:
            yield None
            return
        quant = net.quant
        if not isinstance(quant, FakeQuant):
            raise ConfigError(f"rate: {budget.rate} is set for a stage that does not fine-tune "
                              "through a quantiser; only the qat budget can have a rate term")
        seen: list[torch.Tensor] = []

        def keep(_module: nn.Module, _inputs: tuple, z: torch.Tensor) -> None:
            seen[:] = [z]

        handle = net.head.register_forward_hook(keep)
        try:
            yield lambda: budget.rate * soft_rate(seen[0], quant.bits, quant.clip,
                                                         quant.grid_levels)
        finally:
            handle.remove()

    def loss_fn(self, net: SplitNetwork, budget: StageBudget
                ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
        """The training loss of a stage when it is not the labels' cross-entropy (None
        here; the learned bottleneck's feature-distillation stage has its own)."""
        return None

    def build_ca(self, sp: SplitPoint) -> SplitNetwork:
        """The baseline with the CA module inserted right after split point ``sp``."""
        head, tail = split_model(self.fresh_model(), self.spec, sp)
        return SplitNetwork(head, ChannelAttention(sp.channels, affine=self.cfg.ca_affine), tail)

    def trained_ca(self, point: str) -> SplitNetwork:
        """The CA network of a finished ``ca`` stage."""
        sp = self.spec.split_point(point)
        net = self.build_ca(sp)
        net.load_state_dict(load_checkpoint(self.out / sp.name / "ca" / "best.pt")["model"])
        return net.to(self.opts.device).eval()

    # ------------------------------------------------------------------- stages
    def stage(self, name: str, folder: Path, build: Callable[[], SplitNetwork],
              budget: StageBudget, extra: dict) -> tuple[SplitNetwork, dict]:
        """Train (or, when its record exists, load) one stage's network. A record that
        says it was made otherwise than ``extra`` asks (another FR shape, FR start, grid or
        kept channels in the same folder) or with another ``budget`` (epochs, learning
        rate, distillation, ...) is a one-line :class:`ConfigError`, not reused."""
        net = build()
        result = folder / "result.json"
        done = result.exists()
        distributed.barrier()  # every rank has looked before rank 0 writes the record
        if done:
            rec = json.loads(result.read_text())
            asked = json.loads(json.dumps(extra))  # tuples as lists, as in the record
            differ = [f"{k}={rec[k]!r} (asked {v!r})" for k, v in asked.items()
                      if k in rec and rec[k] != v]
            for k, d in EXTRA_DEFAULTS.items():  # left out on one side: the default
                if (k not in rec or k not in asked) and rec.get(k, d) != asked.get(k, d):
                    differ.append(f"{k}={rec.get(k, d)!r} (asked {asked.get(k, d)!r})")
            differ += budget_differs(rec.get("budget"), budget)
            if differ:
                raise ConfigError(f"{folder} was trained with {', '.join(differ)}; give this "
                                  "run another out folder, or delete that stage to train it "
                                  "again")
            net.load_state_dict(load_checkpoint(folder / "best.pt")["model"])
            return net.to(self.opts.device), rec
        t0 = time.perf_counter()
        for part in ("head", "bridge", "tail"):
            getattr(net, part).requires_grad_(part in budget.trains)
        spent = budget.resume_config()
        stream = f"{extra['point']}/{name}"  # this stage's own batches and crops
        config = {"stage": name, "budget": spent, "stream": stream,
                  "baseline": self.cfg.baseline, "data": dataclasses.asdict(self.data),
                  "seed": self.cfg.seed, **{k: v for k, v in extra.items() if k != "kept"}}
        with self.rate_penalty(net, budget) as penalty:
            fit(net, self.train_ds, self.val_ds, budget.optim(), folder, self.opts,
                seed=self.cfg.seed, batch_size=self.data.batch_size,
                eval_batch_size=self.data.eval_batch_size, workers=self.data.workers,
                config=config, meta={"classes": self.classes, "model_name": self.spec.name},
                resume=True, desc=f"{extra['point']} {name}",
                distill=self.distillation(budget), penalty=penalty, stream=stream,
                loss_fn=self.loss_fn(net, budget))
        best = load_checkpoint(folder / "best.pt")
        net.load_state_dict(best["model"])
        test = evaluate_model(net, make_loader(self.test_ds, self.data.eval_batch_size,
                                               self.data.workers, device=self.opts.device,
                                               shard=True),
                              self.opts, desc="test")
        record = {"kind": "aecnn-stage", "stage": name, "model": self.spec.name,
                  "input_size": self.data.input_size, **extra,
                  "trains": list(budget.trains),
                  "freezes": [p for p in ("head", "bridge", "tail") if p not in budget.trains],
                  "stream": stream, "val_top1": best["val"]["top1"], "test_top1": test["top1"],
                  "test_top5": test["top5"], "n_test": test["n"],
                  **cost_profile(net, self.data.input_size),
                  "manifest_digest": self.manifest.digest(), "budget": dataclasses.asdict(budget),
                  "seconds": time.perf_counter() - t0}
        net.to(self.opts.device)
        return net, distributed.write_record(result, record)

    def importance(self, sp: SplitPoint, net: SplitNetwork | None, folder: Path) -> torch.Tensor:
        """Channel importance by ``cfg.importance``: the CA average of eq. (8) (``net`` is
        the trained CA network), or, for the ablation, random scores, the L1 norm of the
        emitting filters, or the mean activation of the baseline head."""
        path = folder / "importance.json"
        done = path.exists()
        distributed.barrier()  # every rank has looked before rank 0 writes the file
        if done:
            return torch.tensor(json.loads(path.read_text())["importance"])
        method = self.cfg.importance
        ds = self._split("train")
        if self.cfg.importance_images:
            ds = torch.utils.data.Subset(ds, range(min(len(ds), self.cfg.importance_images)))
        loader = make_loader(ds, self.data.eval_batch_size, self.data.workers,
                             device=self.opts.device)
        bar = tqdm(loader, desc=f"{sp.name} importance", leave=False, disable=not self.progress)
        if method == "ca":
            imp = channel_importance(net.head, net.bridge, bar)
        elif method == "random":
            imp = torch.rand(sp.channels, generator=torch.Generator().manual_seed(self.cfg.seed))
        elif method == "l1":
            model = self.fresh_model()
            conv = sp.emitters[0][0] if sp.emitters else sp.module
            imp = model.get_submodule(conv).weight.detach().abs().sum(dim=(1, 2, 3))
        else:
            head, _ = split_model(self.fresh_model().to(self.opts.device).eval(), self.spec, sp)
            with torch.no_grad():
                sums = [head(x.to(self.opts.device)).mean(dim=(2, 3)).sum(0) for x, _ in bar]
            imp = (torch.stack(sums).sum(0) / len(ds)).cpu()
        distributed.write_record(path, {
            "kind": "channel-importance", "point": sp.name, "method": method,
            "images": len(ds), "importance": imp.tolist(),
            "ranking": sorted(range(len(imp)), key=lambda i: -float(imp[i]))})
        return imp

    def qat_stages(self, folder: Path, method: str, start: SplitNetwork, extra: dict
                   ) -> list[dict]:
        """Quantisation-aware fine-tuning of a finished network, one stage per grid in
        ``cfg.qat_grids``: ``<method>-q<tag>-x<V>`` (``aecnn-q2-x8`` for ``uint2``,
        ``aecnn-q1p90-x8`` for ``uint1@p90``) starts from ``start``'s weights, puts a
        :class:`FakeQuant` between head and bridge (the codec's per-tensor grid) and fine-tunes
        with the ``qat`` budget. Its records add ``qat_bits``, ``qat_clip`` and ``qat_quant``
        (the codec's quantisation string)."""
        records = []
        for spec in self.cfg.qat_specs:

            def build(spec: QuantSpec = spec) -> SplitNetwork:
                net = copy.deepcopy(start)
                net.quant = FakeQuant(spec.bits, spec.clip, spec.grid_levels)
                return net

            name = f"{method}-q{spec.tag}-x{extra['ratio']}"
            _, rec = self.stage(name, folder / name, build, self.cfg.qat,
                                {**extra, "qat_bits": spec.bits, "qat_clip": spec.clip,
                                 "qat_quant": str(spec)})
            records.append(rec)
        return records

    def upsampled(self, sp: SplitPoint, bridge: nn.Module) -> nn.Module:
        """``bridge`` as it is, or with ``spatial`` fed its half-size input upsampled back to
        the split point's size (:mod:`aecnn.compression.spatial`)."""
        if not self.cfg.spatial:
            return bridge
        return Upsampled(bridge, sp.spatial(self.data.input_size))

    @property
    def n_qat(self) -> int:
        """Quantisation-aware stages per finished network."""
        return len(self.cfg.qat_grids)

    def run(self) -> list[dict]:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        if distributed.is_main():
            save_config(cfg, self.out / "config.yaml")
        records = []
        self.check_ratios()
        sps = [self.spec.split_point(p) for p in cfg.points]
        total = sum(1 + (2 + self.n_qat) * len(self.ratios_at(sp)) for sp in sps)
        bar = tqdm(total=total, desc="Algorithm 1", unit="stage", disable=not self.progress)
        for point in cfg.points:
            sp = self.spec.split_point(point)
            folder = self.out / sp.name

            ca_net = None
            if cfg.importance == "ca":
                ca_net, rec = self.stage(
                    "ca", folder / "ca", lambda sp=sp: self.build_ca(sp), cfg.ca,
                    {"point": sp.name, "ratio": 1, "affine": cfg.ca_affine})
                records.append(rec)
            bar.update()
            imp = self.importance(sp, ca_net, folder)
            for ratio in self.ratios_at(sp):
                keep = keep_indices(imp, ratio)

                def build_pruned(sp: SplitPoint = sp, keep: list[int] = keep) -> SplitNetwork:
                    model = self.fresh_model()
                    head, _ = pruned_head(model, self.spec, sp, keep)
                    _, tail = split_model(model, self.spec, sp)
                    if cfg.spatial:  # the kept channels at half height and width
                        head = halved(head)
                    return SplitNetwork(head, self.upsampled(sp, ZeroFill(keep, sp.channels)), tail)

                physical = bool(sp.emitters)
                extra = {"point": sp.name, "ratio": ratio, "kept": keep, "physical": physical,
                         "importance": cfg.importance}
                if cfg.spatial:  # only then, so that earlier records and configs still match
                    extra["spatial"] = True
                pruned, rec = self.stage(f"pruned-x{ratio}", folder / f"pruned-x{ratio}",
                                         build_pruned, cfg.prune, extra)
                records.append(rec)
                bar.update()
                if cfg.fr.epochs == 0:  # CA_Pruned only (the ablation)
                    bar.update()
                    continue

                best: tuple[float, SplitNetwork, str] | None = None  # val top-1, net, FR shape
                for i, shape in enumerate(cfg.fr_shapes):
                    def build_fr(sp: SplitPoint = sp, keep: list[int] = keep,
                                 pruned: SplitNetwork = pruned, shape: str = shape) -> SplitNetwork:
                        # copies: each FR shape starts from the same CA_Pruned weights
                        fr = self.upsampled(sp, FeatureRecovery(keep, sp.channels, shape,
                                                                init=cfg.fr_init))
                        return SplitNetwork(copy.deepcopy(pruned.head), fr.to(self.opts.device),
                                        copy.deepcopy(pruned.tail))

                    name = f"aecnn-x{ratio}" + (f"-{shape}" if i else "")
                    net, rec = self.stage(name, folder / name, build_fr, cfg.fr,
                                          {**extra, "fr_shape": shape,
                                           "fr_init": cfg.fr_init})
                    records.append(rec)
                    if best is None or rec["val_top1"] > best[0]:
                        best = (rec["val_top1"], net, shape)
                bar.update()
                if best is not None and cfg.qat_grids:  # QAT of the FR shape chosen by val
                    records += self.qat_stages(folder, "aecnn", best[1],
                                               {**extra, "fr_shape": best[2]})
                    bar.update(self.n_qat)
        bar.close()
        distributed.barrier()  # every record is on disk when run() returns on any rank
        return records


def train_aecnn(cfg: AecnnConfig, progress: bool = True) -> list[dict]:
    """Run (or resume) Algorithm 1; returns the records of all stages."""
    return Pipeline(cfg, progress).run()


__all__ = ["AecnnConfig", "Pipeline", "StageBudget", "StagesConfig", "to_dict",
           "train_aecnn"]
