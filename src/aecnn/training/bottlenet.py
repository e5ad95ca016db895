"""``aecnn train-bottlenet``: the BottleNet++ baseline, trained stage by stage like AECNN.

For each split point and ratio V: ``bottlenet-module-xV`` inserts the encoder after the split
(in the device head) and the decoder before the tail, and trains only those two with the
backbone held fixed (the paper's second phase); then, when ``joint.epochs > 0``,
``bottlenet-xV`` fine-tunes everything from there (the third phase). Stages run through
:meth:`Pipeline.stage`, so their folders, checkpoints, records and resume rules are
AECNN's; records add ``method: "bottlenet++"``, ``spatial`` and ``split_shape``. With
``qat_grids``, ``bottlenet-q<tag>-xV`` then fine-tunes the final network through each of those
codec grids (:meth:`Pipeline.qat_stages`), as Algorithm 1 does for AECNN.

Freezing: :meth:`Pipeline.stage` sets ``requires_grad`` per part (head, bridge, tail), but
the head here is backbone + encoder. In the module stage the backbone head is a
:class:`Fixed` sequence: ``requires_grad_`` cannot turn its gradients on and ``train()``
leaves it in eval mode, so its weights and BN statistics stay exactly the baseline's (the
device keeps the baseline's head) while the encoder, in the same head, trains. The tail gets
no gradients (``module.trains`` leaves it out) but, as in the authors' code (whole ResNet in
train mode, ``requires_grad=False``), its BN statistics follow the decoder's output: holding
them fixed too cost the stem most of its accuracy in a one-epoch module stage (ResNet-50,
64 px, V=8, 95 AdamW steps at 1e-3: 2.6 % against 27 % validation top-1).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from tqdm import tqdm

from aecnn.compression.bottlenet import (
    BottleNetDecoder,
    BottleNetEncoder,
    BottleNetHead,
    match_norm,
)
from aecnn.config import save_config
from aecnn.core.split import SplitNetwork
from aecnn.models import split_model
from aecnn.models.spec import SplitPoint
from aecnn.training import distributed
from aecnn.training.aecnn import AecnnConfig, Pipeline, StageBudget, StagesConfig

METHOD = "bottlenet++"


@dataclass(frozen=True)
class ModuleBudget(StageBudget):
    """Budget of the module stage: encoder (in the head) and decoder (the bridge) only; the
    backbone head is held fixed whatever ``trains`` says. Adam(W) at 1e-4 as in the
    BottleNet++ paper."""

    lr: float = 1e-4
    name: Literal["sgd", "adamw"] = "adamw"
    trains: tuple[str, ...] = ("head", "bridge")


@dataclass(frozen=True)
class BottleNetConfig(StagesConfig):
    """The BottleNet++ baseline: the module and joint budgets. ``ratios`` divide the channel
    count; with ``spatial`` the encoder also halves height and width."""

    module: ModuleBudget = field(default_factory=ModuleBudget)
    joint: StageBudget = field(default_factory=StageBudget)
    spatial: bool = False
    out: str = "runs/bottlenet"


class Fixed(nn.Sequential):
    """An ``nn.Sequential`` (same children, same state-dict keys) that can be held fixed:
    while ``frozen``, ``requires_grad_`` leaves its parameters without gradients and
    ``train()`` keeps it in eval mode, so batch-norm statistics do not move either."""

    def __init__(self, seq: nn.Sequential, frozen: bool) -> None:
        super().__init__(OrderedDict(seq.named_children()))
        self.frozen = frozen
        if frozen:
            super().requires_grad_(False)

    def requires_grad_(self, requires_grad: bool = True) -> Fixed:
        return super().requires_grad_(requires_grad and not self.frozen)

    def train(self, mode: bool = True) -> Fixed:
        return super().train(mode and not self.frozen)


def pipeline_config(cfg: BottleNetConfig) -> AecnnConfig:
    """The AECNN config :class:`Pipeline` needs: the fields both configs share."""
    return AecnnConfig(**{f.name: getattr(cfg, f.name)
                          for f in dataclasses.fields(StagesConfig)})


class BottleNetPipeline(Pipeline):
    """Runs the BottleNet++ stages; ``run()`` returns every stage's record."""

    def __init__(self, cfg: BottleNetConfig, progress: bool = True) -> None:
        super().__init__(pipeline_config(cfg), progress)
        self.bcfg = cfg
        self.check_ratios()

    def build(self, sp: SplitPoint, ratio: int, frozen: bool) -> SplitNetwork:
        """Baseline head + encoder | decoder | baseline tail, from the baseline weights.

        With ``frozen`` the backbone head is :class:`Fixed`. The encoder and decoder are
        initialised from a seed of their own, so a stage's start does not depend on which
        stages ran before it.
        """
        model = self.fresh_model()
        head, tail = split_model(model, self.spec, sp)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.bcfg.seed * 1_000_003 + sp.index * 1000 + ratio)
            enc = BottleNetEncoder(sp.channels, ratio, self.bcfg.spatial)
            dec = BottleNetDecoder(sp.channels, ratio, self.bcfg.spatial,
                                   sp.spatial(self.data.input_size), signed=sp.signed)
        norm = sp.norm(model)
        if sp.signed and norm is not None:  # the signed decoder starts at the split's norm
            match_norm(dec.bn, norm)
        return SplitNetwork(BottleNetHead(Fixed(head, frozen), enc), dec, tail)

    def run(self) -> list[dict]:
        cfg = self.bcfg
        self.out.mkdir(parents=True, exist_ok=True)
        if distributed.is_main():
            save_config(cfg, self.out / "config.yaml")
        records = []
        per_ratio = 1 + (cfg.joint.epochs > 0) + self.n_qat
        stages = sum(len(self.ratios_at(self.spec.split_point(p))) for p in cfg.points)
        bar = tqdm(total=stages * per_ratio, desc="BottleNet++",
                   unit="stage", disable=not self.progress)
        for point in cfg.points:
            sp = self.spec.split_point(point)
            folder: Path = self.out / sp.name
            for ratio in self.ratios_at(sp):
                extra = {"point": sp.name, "ratio": ratio, "method": METHOD,
                         "spatial": cfg.spatial,
                         "split_shape": list(sp.shape(self.data.input_size))}
                name = f"bottlenet-module-x{ratio}"
                module_net, rec = self.stage(
                    name, folder / name, lambda sp=sp, ratio=ratio: self.build(sp, ratio, True),
                    cfg.module, {**extra, "backbone_frozen": True})
                records.append(rec)
                bar.update()
                if cfg.joint.epochs == 0:
                    records += self.qat_stages(folder, "bottlenet", module_net, extra)
                    bar.update(self.n_qat)
                    continue

                def build_joint(sp: SplitPoint = sp, ratio: int = ratio,
                                start: SplitNetwork = module_net) -> SplitNetwork:
                    net = self.build(sp, ratio, False)
                    net.load_state_dict(start.state_dict())
                    return net

                name = f"bottlenet-x{ratio}"
                joint_net, rec = self.stage(name, folder / name, build_joint, cfg.joint,
                                            {**extra, "backbone_frozen": False})
                records.append(rec)
                bar.update()
                records += self.qat_stages(folder, "bottlenet", joint_net,
                                           {**extra, "backbone_frozen": False})
                bar.update(self.n_qat)
        bar.close()
        distributed.barrier()  # every record is on disk when run() returns on any rank
        return records


def train_bottlenet(cfg: BottleNetConfig, progress: bool = True) -> list[dict]:
    """Run (or resume) the BottleNet++ stages; returns the records of all stages."""
    return BottleNetPipeline(cfg, progress).run()


__all__ = ["BottleNetConfig", "BottleNetPipeline", "Fixed", "ModuleBudget", "train_bottlenet"]
