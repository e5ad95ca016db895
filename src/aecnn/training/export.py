"""``aecnn export``: a finished training record (an Algorithm 1 or BottleNet++ stage folder,
or a baseline checkpoint cut at a split point) to a deployable variant file
(:func:`aecnn.core.save_network`)."""

from __future__ import annotations

import json
from pathlib import Path

from aecnn.compression.prior import PriorError
from aecnn.compression.priors import check_model
from aecnn.compression.quantize import DType, QuantSpec
from aecnn.core.split import (
    SplitMeta,
    SplitNetwork,
    VariantError,
    fit_head_priors,
    save_network,
)
from aecnn.errors import AecnnError, CheckpointError
from aecnn.models import create_model, get_spec, split_model
from aecnn.training.baseline import baseline_split
from aecnn.training.checkpoint import load_checkpoint


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
                    ) -> tuple[SplitMeta, dict]:
    """Variant metadata and weights of a finished Algorithm 1, BottleNet++ or learned-
    bottleneck stage folder (``pruned-xV`` -> zerofill, ``aecnn-xV*`` -> fr, ``bottlenet*`` ->
    bottlenet, ``entropic*`` -> entropic).

    ``checkpoint`` names the weights: ``best`` (``best.pt``, the network validation picked and
    the one every command deploys) or ``last`` (``last.pt``, the last epoch's)."""
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
    elif stage.startswith("entropic"):
        bridge = "entropic"
    else:
        raise VariantError(f"{folder}: stage {stage!r} is not deployable (use a pruned-xV, "
                           "aecnn-xV, bottlenet or entropic stage, or a baseline)")
    spec = get_spec(ckpt["model_name"])
    sp = spec.split_point(rec["point"])
    kept = rec.get("kept") if bridge not in ("bottlenet", "entropic") else None
    meta = SplitMeta(
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
                       ) -> tuple[SplitMeta, dict]:
    """The uncompressed baseline cut at ``point`` (V = 1): local computing, full
    offloading, and the "1x" of Fig. 5(b)."""
    try:
        ckpt = load_checkpoint(checkpoint, ("model", "classes", "model_name", "config"))
    except CheckpointError as exc:
        raise VariantError(str(exc)) from None
    spec = get_spec(ckpt["model_name"])
    sp = spec.split_point(point)
    rec_file = Path(checkpoint).parent / "result.json"
    top1 = json.loads(rec_file.read_text()).get("test_top1") if rec_file.is_file() else None
    size = int(ckpt["config"].get("data", {}).get("input_size", 224))
    meta = SplitMeta(
        name=name or f"{ckpt['model_name']}-{sp.name}-x1", model_name=ckpt["model_name"],
        classes=tuple(ckpt["classes"]), point=sp.name, ratio=1, bridge="identity", kept=None,
        channels=sp.channels, input_size=size, mean=tuple(spec.mean), std=tuple(spec.std),
        test_top1=top1, source=str(checkpoint))
    # the baseline's state dict is the whole model's; map it onto head/tail names
    model = create_model(meta.model_name, len(meta.classes))
    model.load_state_dict(ckpt["model"])
    var = SplitNetwork.from_meta(meta)
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


def train_split_of(source: str | Path, baseline: str | Path | None = None,
                   split: str = "train"):
    """The training split (eval transforms; or another ``split``) a stage folder or baseline
    checkpoint was trained on: the data of the baseline checkpoint the stage's config names
    (or ``baseline``)."""
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
                progress: bool = False, prior_model: str = "lattice") -> SplitNetwork:
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
    var = SplitNetwork.from_meta(meta)
    try:
        var.load_state_dict(state)
    except RuntimeError as exc:
        raise VariantError(f"{source}: weights do not fit: {str(exc).splitlines()[0]}") from None
    var.eval()
    if meta.bridge == "entropic":  # freeze the learned prior's coding tables into the file
        var.head.bottleneck.update()
    if specs:
        train = train_split_of(source, baseline)
        try:
            var.priors = fit_head_priors(var.head, train, specs, prior_images, progress,
                                         model=prior_model)
        except PriorError as exc:
            raise VariantError(f"fitting the context priors: {exc}") from None
    save_network(var, out, meta)
    return var
