"""Deployable variants: one file that holds a split network and what both ends must know.

A *variant* is one (model, split point, ratio, bridge) choice, e.g. "ResNet-50 cut after the
stem, 8x pruned, FR on the server". The device loads its head, the edge server its bridge and
tail. A variant file is written by :func:`export_variant` from a training record (a baseline
checkpoint, or an Algorithm 1 / BottleNet++ stage folder) and read with ``weights_only=True``.

Bridges: ``identity`` (no compression, V = 1), ``zerofill`` (CA_Pruned: pruned channels are
zeros), ``fr`` (AECNN: the FR module rebuilds them), ``bottlenet`` (BottleNet++ decoder; its
encoder is the last module of the head).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aecnn.compression.codec import FeatureCodec
from aecnn.compression.prior import PriorError
from aecnn.compression.priors import Prior, check_model, fit_prior, prior_from_dict
from aecnn.compression.pruning import pruned_head
from aecnn.compression.quantize import DType, QuantSpec
from aecnn.compression.recovery import FeatureRecovery, ZeroFill
from aecnn.compression.spatial import Upsampled, halved
from aecnn.errors import AecnnError, CheckpointError
from aecnn.models import create_model, get_spec, split_model
from aecnn.safeio import safe_torch_load

FORMAT = "aecnn-variant/1"
BRIDGES = ("identity", "zerofill", "fr", "bottlenet")


class VariantError(AecnnError):
    """A variant file or stage record is missing, corrupt or inconsistent."""


@dataclass(frozen=True)
class VariantMeta:
    """What a variant is; everything except the weights."""

    name: str
    model_name: str
    classes: tuple[str, ...]
    point: str
    ratio: int
    bridge: str
    kept: tuple[int, ...] | None
    channels: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fr_shape: str | None = None
    spatial: bool = False
    test_top1: float | None = None
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> VariantMeta:
        try:
            kept = d["kept"]
            return VariantMeta(
                name=str(d["name"]), model_name=str(d["model_name"]),
                classes=tuple(d["classes"]), point=str(d["point"]), ratio=int(d["ratio"]),
                bridge=str(d["bridge"]), kept=None if kept is None else tuple(map(int, kept)),
                channels=int(d["channels"]), input_size=int(d["input_size"]),
                mean=tuple(map(float, d["mean"])), std=tuple(map(float, d["std"])),
                fr_shape=d.get("fr_shape"), spatial=bool(d.get("spatial", False)),
                test_top1=d.get("test_top1"), source=str(d.get("source", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise VariantError(f"variant metadata is malformed: {exc!r}") from None


class Variant(nn.Module):
    """A split network built from :class:`VariantMeta`.

    ``head: (B, 3, S, S) -> (B, K, H, W)`` runs on the device (K = kept channels, or the
    BottleNet++ code); ``server: (B, K, H, W) -> (B, classes)`` = bridge then tail.
    """

    def __init__(self, meta: VariantMeta) -> None:
        super().__init__()
        if meta.bridge not in BRIDGES:
            raise VariantError(f"unknown bridge {meta.bridge!r}; one of {', '.join(BRIDGES)}")
        self.meta = meta
        spec = get_spec(meta.model_name)
        sp = spec.split_point(meta.point)
        model = create_model(meta.model_name, len(meta.classes))
        if meta.bridge in ("identity", "bottlenet"):
            head, tail = split_model(model, spec, sp)
        else:
            if not meta.kept:
                raise VariantError(f"bridge {meta.bridge} needs the kept channels")
            head, _ = pruned_head(model, spec, sp, list(meta.kept))
            _, tail = split_model(model, spec, sp)
        bridge: nn.Module
        if meta.bridge == "identity":
            bridge = nn.Identity()
        elif meta.bridge == "zerofill":
            bridge = ZeroFill(list(meta.kept), sp.channels)
        elif meta.bridge == "fr":
            bridge = FeatureRecovery(list(meta.kept), sp.channels, meta.fr_shape or "3x3")
        else:
            from aecnn.baselines.bottlenet import (
                BottleNetDecoder,
                BottleNetEncoder,
                BottleNetHead,
            )

            head = BottleNetHead(head, BottleNetEncoder(sp.channels, meta.ratio, meta.spatial))
            bridge = BottleNetDecoder(sp.channels, meta.ratio, meta.spatial,
                                      sp.spatial(meta.input_size))
        if meta.spatial and meta.bridge in ("zerofill", "fr"):  # kept channels at half size
            head, bridge = halved(head), Upsampled(bridge, sp.spatial(meta.input_size))
        self.head, self.bridge, self.tail = head, bridge, tail
        # grid name (``uint2@p90``) -> the context prior both ends code that grid with
        self.priors: dict[str, Prior] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.bridge(self.head(x)))

    def prior(self, quant: str | QuantSpec) -> Prior | None:
        """This variant's context prior for the grid ``quant`` (None: it holds none)."""
        spec = quant if isinstance(quant, QuantSpec) else QuantSpec.parse(quant)
        return next((p for g, p in self.priors.items() if QuantSpec.parse(g) == spec), None)

    def codec(self, quant: str | QuantSpec = "float32", coder: str = "auto",
              rate_bps: float = 10e6) -> FeatureCodec:
        """The device's codec for this variant's head output: grid ``quant``, coder
        ``coder`` (``auto`` also weighs the ``prior`` coder when the variant holds a prior
        for that grid), ``auto`` assuming an uplink of ``rate_bps``."""
        return FeatureCodec(quant, coder, rate_bps, prior=self.prior(quant))

    def server(self, z: torch.Tensor) -> torch.Tensor:
        return self.tail(self.bridge(z))


def export_variant(net: nn.Module, meta: VariantMeta, path: str | Path,
                   priors: dict[str, Prior] | None = None) -> Path:
    """Write a variant file: ``meta`` plus the state of ``net`` (a ``SplitNet`` or
    :class:`Variant` with ``head``, ``bridge`` and ``tail``) and the context priors of its
    integer grids (``priors``, default ``net.priors``: grid name -> prior)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    priors = getattr(net, "priors", {}) if priors is None else priors
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    blob = {"format": FORMAT, "meta": json.dumps(meta.to_dict()), "state": state}
    if priors:
        blob["priors"] = json.dumps({k: p.to_dict() for k, p in priors.items()})
    torch.save(blob, path)
    return path


def _priors(path: str | Path, text: Any) -> dict[str, Prior]:
    """The ``priors`` entry of a variant file: grid name -> prior, each checked."""
    if text is None:
        return {}
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise TypeError
    except (TypeError, json.JSONDecodeError):
        raise VariantError(f"{path}: the variant's context priors are unreadable") from None
    out = {}
    for name, d in raw.items():
        try:
            spec = QuantSpec.parse(str(name))
            prior = prior_from_dict(d)
        except AecnnError as exc:
            raise VariantError(f"{path}: context prior {name!r}: {exc}") from None
        if spec.dtype != DType.UINT or spec.levels != prior.levels:
            raise VariantError(f"{path}: context prior {name!r} has {prior.levels} levels, "
                               f"which is not that grid's")
        out[str(name)] = prior
    return out


def load_variant(path: str | Path, input_size: int | None = None) -> Variant:
    """Read a variant file (``weights_only=True``) and build its network in eval mode, with
    its context priors (``Variant.priors``; none in files exported without ``--prior``).

    ``input_size`` runs the network at another input size than it was trained at (the
    networks are fully convolutional up to global pooling), e.g. the paper's 224 px for
    timing a model trained at 64 px; ``meta.test_top1`` stays the trained size's accuracy.

    Raises:
        VariantError: missing, corrupt or foreign file, or weights that do not fit.
    """
    blob = safe_torch_load(path, VariantError, "variant")
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise VariantError(f"{path} is not an aecnn variant file (make one with aecnn export)")
    try:
        meta = VariantMeta.from_dict(json.loads(blob["meta"]))
    except (KeyError, TypeError, json.JSONDecodeError):
        raise VariantError(f"{path}: variant metadata is unreadable") from None
    if input_size and input_size != meta.input_size:
        meta = dataclasses.replace(meta, input_size=input_size)
    var = Variant(meta)
    try:
        var.load_state_dict(blob["state"])
    except (RuntimeError, KeyError) as exc:
        first = str(exc).splitlines()[0][:200]
        raise VariantError(f"{path}: weights do not fit the variant: {first}") from None
    var.priors = _priors(path, blob.get("priors"))
    return var.eval()


def _record(folder: Path) -> dict:
    f = folder / "result.json"
    if not f.is_file():
        raise VariantError(f"{folder} has no result.json (not a finished stage or run)")
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError:
        raise VariantError(f"{f} is not valid JSON") from None


def _qat_spec(rec: dict) -> QuantSpec:
    """The grid a quantisation-aware stage was fine-tuned through (records before
    ``qat_quant`` existed give ``qat_bits`` and ``qat_clip``)."""
    if "qat_quant" in rec:
        return QuantSpec.parse(rec["qat_quant"])
    return QuantSpec(DType.UINT, int(rec["qat_bits"]), clip=float(rec.get("qat_clip", 1.0)))


def meta_from_stage(folder: str | Path, name: str | None = None, checkpoint: str = "best"
                    ) -> tuple[VariantMeta, dict]:
    """Variant metadata and weights of a finished Algorithm 1 or BottleNet++ stage folder
    (``pruned-xV`` -> zerofill, ``aecnn-xV*`` -> fr, ``bottlenet*`` -> bottlenet).

    ``checkpoint`` names the weights: ``best`` (``best.pt``, the network validation picked and
    the one every command deploys) or ``last`` (``last.pt``, the last epoch's)."""
    from aecnn.training.checkpoint import load_checkpoint

    if checkpoint not in ("best", "last"):
        raise VariantError(f"checkpoint must be 'best' or 'last', not {checkpoint!r}")
    folder = Path(folder)
    rec = _record(folder)
    try:
        ckpt = load_checkpoint(folder / f"{checkpoint}.pt", ("model", "classes", "model_name"))
    except CheckpointError as exc:
        raise VariantError(str(exc)) from None
    stage = str(rec.get("stage", ""))
    if stage.startswith("pruned"):
        bridge = "zerofill"
    elif stage.startswith("aecnn"):
        bridge = "fr"
    elif stage.startswith("bottlenet"):
        bridge = "bottlenet"
    else:
        raise VariantError(f"{folder}: stage {stage!r} is not deployable "
                           "(use a pruned-xV, aecnn-xV or bottlenet stage, or a baseline)")
    spec = get_spec(ckpt["model_name"])
    sp = spec.split_point(rec["point"])
    kept = rec.get("kept") if bridge != "bottlenet" else None
    meta = VariantMeta(
        name=name or (f"{ckpt['model_name']}-{sp.name}-{bridge}"
                      + (f"-q{_qat_spec(rec).tag}" if rec.get("qat_bits") else "")
                      + f"-x{rec['ratio']}"),
        model_name=ckpt["model_name"], classes=tuple(ckpt["classes"]), point=sp.name,
        ratio=int(rec["ratio"]), bridge=bridge, kept=tuple(kept) if kept else None,
        channels=sp.channels, input_size=int(rec["input_size"]), mean=tuple(spec.mean),
        std=tuple(spec.std), fr_shape=rec.get("fr_shape"),
        spatial=bool(rec.get("spatial", False)), test_top1=rec.get("test_top1"),
        source=str(folder))
    return meta, ckpt["model"]


def meta_from_baseline(checkpoint: str | Path, point: str, name: str | None = None
                       ) -> tuple[VariantMeta, dict]:
    """The uncompressed baseline cut at ``point`` (V = 1): local computing, full
    offloading, and the "1x" of Fig. 5(b)."""
    from aecnn.training.checkpoint import load_checkpoint

    try:
        ckpt = load_checkpoint(checkpoint, ("model", "classes", "model_name", "config"))
    except CheckpointError as exc:
        raise VariantError(str(exc)) from None
    spec = get_spec(ckpt["model_name"])
    sp = spec.split_point(point)
    rec_file = Path(checkpoint).parent / "result.json"
    top1 = json.loads(rec_file.read_text()).get("test_top1") if rec_file.is_file() else None
    size = int(ckpt["config"].get("data", {}).get("input_size", 224))
    meta = VariantMeta(
        name=name or f"{ckpt['model_name']}-{sp.name}-x1", model_name=ckpt["model_name"],
        classes=tuple(ckpt["classes"]), point=sp.name, ratio=1, bridge="identity", kept=None,
        channels=sp.channels, input_size=size, mean=tuple(spec.mean), std=tuple(spec.std),
        test_top1=top1, source=str(checkpoint))
    # the baseline's state dict is the whole model's; map it onto head/tail names
    model = create_model(meta.model_name, len(meta.classes))
    model.load_state_dict(ckpt["model"])
    var = Variant(meta)
    head, tail = split_model(model, spec, sp)
    var.head.load_state_dict(head.state_dict())
    var.tail.load_state_dict(tail.state_dict())
    return meta, var.state_dict()


def best_sibling(folder: Path) -> Path:
    """Of ``aecnn-xV`` and its other FR shapes ``aecnn-xV-<shape>``, the finished stage with
    the best validation accuracy (the choice Table I reports)."""
    cands = [p for p in [folder, *folder.parent.glob(f"{folder.name}-*")]
             if (p / "result.json").is_file()]
    if not cands:
        raise VariantError(f"no finished stage {folder} (or {folder.name}-<shape>)")
    return max(cands, key=lambda p: (_record(p)["val_top1"], p == folder))


def head_symbols(head, dataset, specs: dict, images: int, progress: bool = False,
                 batch_size: int = 64) -> dict[str, list]:
    """The integer symbols of ``head``'s output through each integer grid of ``specs``
    (name -> :class:`~aecnn.compression.quantize.QuantSpec`; others are skipped) on
    ``images`` samples of ``dataset`` (``(image (3, S, S), label)`` pairs) spread evenly
    over it, so that every class of a class-sorted split has its share: name -> one
    ``(K, H, W)`` array per image (empty when there is nothing to fit on).

    ``head: (B, 3, S, S) -> (B, K, H, W)`` runs once per image, in inference mode, on the
    CPU tensors the dataset yields."""
    from tqdm import tqdm

    from aecnn.compression.quantize import quantize
    from aecnn.data.splits import spread_indices

    specs = {k: v for k, v in specs.items() if v is not None and v.dtype == DType.UINT}
    if not specs or images <= 0 or len(dataset) == 0:
        return {}
    idx = spread_indices(len(dataset), images)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, idx),
                                         batch_size=batch_size)
    symbols: dict[str, list] = {k: [] for k in specs}
    with torch.inference_mode():
        for x, _ in tqdm(loader, desc="fit priors", leave=False, disable=not progress):
            device = next(head.parameters(), torch.empty(0)).device
            for z in head(x.to(device)).float().cpu().numpy():
                for name, spec in specs.items():
                    symbols[name].append(quantize(z, spec)[0])
    return symbols


def fit_head_priors(head, dataset, specs: dict, images: int, progress: bool = False,
                    batch_size: int = 64, model: str = "lattice") -> dict[str, Prior]:
    """The context prior of ``head``'s output through each integer grid of ``specs``,
    fitted on the symbols :func:`head_symbols` gives for ``images`` samples of ``dataset``
    (grids that are not integer are skipped). ``model``: the prior's context model
    (``lattice`` or ``raster``, :mod:`aecnn.compression.priors`)."""
    symbols = head_symbols(head, dataset, specs, images, progress, batch_size)
    return {name: fit_prior(syms, specs[name].levels, model)
            for name, syms in symbols.items()}


def train_split_of(source: str | Path, baseline: str | Path | None = None,
                   split: str = "train"):
    """The training split (eval transforms; or another ``split``) a stage folder or baseline
    checkpoint was trained on: the data of the baseline checkpoint the stage's config names
    (or ``baseline``)."""
    from aecnn.training.baseline import baseline_split
    from aecnn.training.checkpoint import load_checkpoint

    source = Path(source)
    try:
        if baseline is None:
            if source.is_dir():
                cfg = load_checkpoint(source / "best.pt", ("config",))["config"]
                if not isinstance(cfg, dict) or "baseline" not in cfg:
                    raise VariantError(f"{source}: its checkpoint does not name its baseline; "
                                       "give --baseline")
                baseline = cfg["baseline"]
            else:
                baseline = source
        return baseline_split(baseline, split)
    except CheckpointError as exc:
        raise VariantError(f"{exc} (the baseline whose {split} split is needed)") from None


def export_from(source: str | Path, out: str | Path, point: str | None = None,
                name: str | None = None, best: bool = False, priors: tuple[str, ...] = (),
                prior_images: int = 1000, baseline: str | Path | None = None,
                progress: bool = False, prior_model: str = "lattice") -> Variant:
    """``aecnn export``: a stage folder, or a baseline checkpoint with ``point``, to a file.
    ``best``: among the FR shapes trained for that stage, the best by validation accuracy.
    ``priors``: integer grids (``uint2@p90``) whose context prior (wire coder 5) is fitted on
    ``prior_images`` training images and stored in the file, for both ends; the training
    split is the baseline's (``baseline``, default: the one the stage was trained from);
    ``prior_model`` is their context model (``lattice`` or ``raster``).
    Returns the exported network (its ``meta`` and ``priors``)."""
    source = best_sibling(Path(source)) if best else Path(source)
    if not source.exists():
        raise VariantError(f"{source} does not exist")
    specs = {}
    for grid in priors:
        try:
            specs[str(grid)] = QuantSpec.parse_tensor_grid(grid)
        except AecnnError as exc:
            raise VariantError(f"--prior {grid}: {exc}; context priors are for per-tensor "
                               "integer grids") from None
    if specs and prior_images < 1:
        raise VariantError("--prior-images must be at least 1")
    try:
        check_model(prior_model)
    except PriorError as exc:
        raise VariantError(f"--prior-model: {exc}") from None
    if source.is_dir():
        meta, state = meta_from_stage(source, name)
    else:
        if not point:
            raise VariantError("a baseline checkpoint needs --point (where to cut it)")
        meta, state = meta_from_baseline(source, point, name)
    var = Variant(meta)
    try:
        var.load_state_dict(state)
    except RuntimeError as exc:
        raise VariantError(f"{source}: weights do not fit: {str(exc).splitlines()[0]}") from None
    var.eval()
    if specs:
        train = train_split_of(source, baseline)
        try:
            var.priors = fit_head_priors(var.head, train, specs, prior_images, progress,
                                         model=prior_model)
        except PriorError as exc:
            raise VariantError(f"fitting the context priors: {exc}") from None
    export_variant(var, meta, out)
    return var
