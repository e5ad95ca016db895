"""``aecnn train-entropic``: a learned entropy bottleneck at the split, trained as Matsubara
et al.'s Entropic Student (WACV 2022), stage by stage like BottleNet++.

For each split point and ratio V (the latent has ``C / V`` channels):

1. ``entropic-module-xV`` inserts encoder + factorized prior after the split (in the device
   head) and the decoder before the tail, and trains those with the backbone head held
   fixed, plus ``rate_weight`` times the bits per image that the prior's likelihoods
   estimate (``−Σ log2 p`` over the noisy latent). With the module budget's ``target:
   logits`` the loss is the labels' cross-entropy mixed with distillation from the uncut
   baseline (the budget's ``distill``); with ``target: features`` (the Entropic Student's
   first stage, head-network distillation) it is the mean squared error between the
   decoder's output and the backbone head's split tensor, and the tail does not run in
   training (validation still runs the whole network), so a step costs a fraction.
2. ``entropic-xV`` (when ``tail.epochs > 0``): the head, prior included, is frozen as deployed
   (eval mode: grid values, the tables frozen by ``update()``), and decoder and tail are
   fine-tuned on what the server will receive, with the ``tail`` budget. No rate term: the
   rate no longer moves.

Each stage also writes ``rate.json``: on test images, the real bytes of the coder-6 payloads
next to the prior's estimate. ``aecnn export`` turns a stage folder into a variant file
(``bridge: entropic``), freezing the tables into it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from tqdm import tqdm

from aecnn.compression.learned import (
    EntropicDecoder,
    EntropicEncoder,
    EntropicHead,
    EntropyBottleneck,
    bits_per_image,
)
from aecnn.config import save_config
from aecnn.core.split import SplitNetwork
from aecnn.data.splits import spread_indices
from aecnn.errors import ConfigError
from aecnn.models import split_model
from aecnn.models.spec import SplitPoint
from aecnn.training import distributed
from aecnn.training.aecnn import Pipeline, StageBudget, StagesConfig
from aecnn.training.bottlenet import Fixed, pipeline_config

METHOD = "entropic-student"


@dataclass(frozen=True)
class EntropicBudget(StageBudget):
    """The module stage: encoder, prior (in the head) and decoder (the bridge); the backbone
    head is held fixed whatever ``trains`` says. AdamW at 1e-3, half the loss distilled.
    ``target``: what the decoder learns, the network's outputs (``logits``) or the split
    tensor itself (``features``, which takes no ``distill``)."""

    lr: float = 1e-3
    name: Literal["sgd", "adamw"] = "adamw"
    trains: tuple[str, ...] = ("head", "bridge")
    distill: float = 0.5
    target: Literal["logits", "features"] = "logits"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target == "features" and self.distill:
            raise ConfigError(f"module.distill: {self.distill} with target features (the "
                              "decoder learns the split tensor, not the outputs); set it to 0")


class Mimic(SplitNetwork):
    """A learned-bottleneck network whose training forward stops at the decoder:
    ``(B, 3, S, S) -> (B, C, H, W)``, the recovered split tensor (the head keeps the
    backbone's own in ``head.split``); in eval mode it is the whole network. Same children,
    so the same state dict, as :class:`SplitNetwork`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        return self.bridge(self.head(x))


@dataclass(frozen=True)
class TailBudget(StageBudget):
    """The second stage: decoder and tail on the frozen head's grid values."""

    lr: float = 1e-3
    trains: tuple[str, ...] = ("bridge", "tail")


@dataclass(frozen=True)
class EntropicConfig(StagesConfig):
    """The learned bottleneck: budgets, the rate weight λ (per bit per image), whether the
    encoder halves height and width, and how many test images ``rate.json`` codes."""

    module: EntropicBudget = field(default_factory=EntropicBudget)
    tail: TailBudget = field(default_factory=TailBudget)
    rate_weight: float = 1e-3
    spatial: bool = False
    rate_images: int = 32
    out: str = "runs/entropic"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.rate_weight >= 0:
            raise ConfigError(f"rate_weight: {self.rate_weight} is not >= 0")
        if self.rate_images < 0:
            raise ConfigError(f"rate_images: {self.rate_images} is not >= 0")
        if self.qat_grids:
            raise ConfigError("qat_grids: a learned bottleneck quantises on its own grid")


def measure_rate(net: SplitNetwork, dataset, images: int) -> dict:
    """Code ``images`` samples of ``dataset`` (spread over it) with a copy of ``net``'s
    frozen tables: mean real payload bytes (coder 6) and the prior's estimate ``−Σ log2 p``
    at deployment rounding, in bytes, and the latent's shape."""
    net = copy.deepcopy(net).cpu().eval()
    head: EntropicHead = net.head
    tables = head.bottleneck.update()
    real, est = [], []
    shape: list[int] = []
    with torch.inference_mode():
        for i in spread_indices(len(dataset), images) if images and len(dataset) else []:
            y = head.latent(dataset[i][0][None].float())
            shape = list(y.shape[1:])
            real.append(len(tables.encode(tables.symbols(y[0].numpy()))))
            est.append(head.bottleneck.rate_bits(y) / 8)
    n = len(real)
    return {"images": n, "latent_shape": shape,
            "payload_bytes": sum(real) / n if n else None,
            "estimate_bytes": sum(est) / n if n else None, "tables": tables.fingerprint_hex}


class EntropicPipeline(Pipeline):
    """Runs the learned-bottleneck stages; ``run()`` returns every stage's record."""

    def __init__(self, cfg: EntropicConfig, progress: bool = True) -> None:
        super().__init__(pipeline_config(cfg), progress)
        self.ecfg = cfg
        self.check_ratios()

    def loss_fn(self, net: SplitNetwork, budget: StageBudget
                ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
        """Feature distillation for a module stage with ``target: features``: the mean
        squared error between the decoder's output and the backbone head's split tensor."""
        if getattr(budget, "target", "logits") != "features":
            return None
        head = net.head
        return lambda out, _labels: torch.nn.functional.mse_loss(out.float(),
                                                                 head.split.float())

    def build(self, sp: SplitPoint, ratio: int, frozen_head: bool = False) -> SplitNetwork:
        """Baseline head (held fixed) + encoder + prior | decoder | baseline tail. Encoder,
        prior and decoder start from a seed of their own. ``frozen_head``: the whole head
        held as deployed (the second stage)."""
        model = self.fresh_model()
        norm = sp.norm(model)
        head, tail = split_model(model, self.spec, sp)
        k = sp.channels // ratio
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.ecfg.seed * 1_000_003 + sp.index * 1000 + ratio)
            enc = EntropicEncoder(sp.channels, k, self.ecfg.spatial)
            prior = EntropyBottleneck(k)
            dec = EntropicDecoder(sp.channels, k, self.ecfg.spatial,
                                  sp.spatial(self.data.input_size))
            if norm is not None:
                dec.match(norm)
        cls = Mimic if self.ecfg.module.target == "features" and not frozen_head else SplitNetwork
        return cls(EntropicHead(Fixed(head, True), enc, prior, frozen_head), dec, tail)

    @contextmanager
    def rate_penalty(self, net: SplitNetwork, budget: StageBudget
                     ) -> Iterator[Callable[[], torch.Tensor] | None]:
        """``rate_weight`` times the bits per image of the head's last training forward
        (None for a frozen head or a zero weight)."""
        head = net.head
        if (not isinstance(head, EntropicHead) or head.frozen or self.ecfg.rate_weight == 0
                or "head" not in budget.trains):
            yield None
            return
        weight = self.ecfg.rate_weight
        yield lambda: weight * bits_per_image(head.likelihoods)

    def _rate(self, net: SplitNetwork, folder: Path) -> dict:
        path = folder / "rate.json"
        if path.exists():
            return json.loads(path.read_text())
        rate = measure_rate(net, self.test_ds, self.ecfg.rate_images)
        return distributed.write_record(path, {"kind": "entropic-rate", **rate})

    def run(self) -> list[dict]:
        cfg = self.ecfg
        self.out.mkdir(parents=True, exist_ok=True)
        if distributed.is_main():
            save_config(cfg, self.out / "config.yaml")
        records = []
        per_ratio = 1 + (cfg.tail.epochs > 0)
        stages = sum(len(self.ratios_at(self.spec.split_point(p))) for p in cfg.points)
        bar = tqdm(total=stages * per_ratio, desc="Entropic",
                   unit="stage", disable=not self.progress)
        for point in cfg.points:
            sp = self.spec.split_point(point)
            folder: Path = self.out / sp.name
            for ratio in self.ratios_at(sp):
                extra = {"point": sp.name, "ratio": ratio, "method": METHOD,
                         "spatial": cfg.spatial, "rate_weight": cfg.rate_weight,
                         "split_shape": list(sp.shape(self.data.input_size))}
                name = f"entropic-module-x{ratio}"
                module_net, rec = self.stage(
                    name, folder / name, lambda sp=sp, ratio=ratio: self.build(sp, ratio),
                    cfg.module, {**extra, "backbone_frozen": True})
                records.append({**rec, "rate": self._rate(module_net, folder / name)})
                bar.update()
                if cfg.tail.epochs == 0:
                    continue

                def build_tail(sp: SplitPoint = sp, ratio: int = ratio,
                               start: nn.Module = module_net) -> SplitNetwork:
                    net = self.build(sp, ratio, frozen_head=True)
                    net.load_state_dict(start.state_dict())
                    net.head.bottleneck.update()  # the deployed grid and tables
                    return net

                name = f"entropic-x{ratio}"
                tail_net, rec = self.stage(name, folder / name, build_tail, cfg.tail,
                                           {**extra, "backbone_frozen": True})
                records.append({**rec, "rate": self._rate(tail_net, folder / name)})
                bar.update()
        bar.close()
        distributed.barrier()
        return records


def train_entropic(cfg: EntropicConfig, progress: bool = True) -> list[dict]:
    """Run (or resume) the learned-bottleneck stages; returns the records of all stages
    (each with its ``rate``: real and estimated bytes per image on test images)."""
    return EntropicPipeline(cfg, progress).run()


__all__ = ["EntropicBudget", "EntropicConfig", "EntropicPipeline", "TailBudget",
           "measure_rate", "train_entropic"]
