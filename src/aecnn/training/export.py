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
    qat = _qat_spec(rec) if rec.get("qat_bits") else None
    meta = SplitMeta(
        name=name or (f"{ckpt['model_name']}-{sp.name}-{bridge}"
                      + (f"-q{qat.tag}" if qat else "") + f"-x{rec['ratio']}"),
        model_name=ckpt["model_name"], classes=tuple(ckpt["classes"]), point=sp.name,
        ratio=int(rec["ratio"]), bridge=bridge, kept=tuple(kept) if kept else None,
        channels=sp.channels, input_size=int(rec["input_size"]), mean=tuple(spec.mean),
        std=tuple(spec.std), fr_shape=rec.get("fr_shape"),
        spatial=bool(rec.get("spatial", False)), test_top1=rec.get("test_top1"),
        source=str(folder), quant=str(qat) if qat else None)
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


#: What ``export_run`` exports by default: AECNN (the FR shape validation chose), the
#: quantisation-aware stages (``qat``: AECNN's and BottleNet++'s), BottleNet++ and the
#: learned bottleneck (the fine-tuned stage when there is one), and the uncut baseline
#: (V = 1). ``pruned`` (CA_Pruned) on request.
RUN_KINDS = ("aecnn", "qat", "bottlenet", "entropic", "uncut")
ALL_RUN_KINDS = (*RUN_KINDS, "pruned")


def _run_stages(point: Path, kinds: tuple[str, ...]) -> list[tuple[str, Path]]:
    """(kind, stage folder) of every finished deployable stage of one split point's folder,
    one per (method, ratio, grid): ``aecnn-xV`` stands for its FR shapes (the best is picked
    at export), ``bottlenet-xV`` / ``entropic-xV`` for their module stage when finished."""
    done = {p.name: p for p in sorted(point.iterdir()) if (p / "result.json").is_file()}
    out = []
    for name, folder in done.items():
        rec = _record(folder)
        stage = str(rec.get("stage", name))
        if stage.startswith("pruned-"):
            kind = "pruned"
        elif rec.get("qat_bits") and stage.startswith(("aecnn-", "bottlenet-")):
            kind = "qat"  # a quantisation-aware stage, AECNN's or BottleNet++'s
        elif stage.startswith("aecnn-"):
            if name != f"aecnn-x{rec.get('ratio')}":  # another FR shape of aecnn-xV,
                continue                               # weighed when that is exported
            kind = "aecnn"
        elif stage.startswith(("bottlenet-module-", "entropic-module-")):
            method = stage.split("-module-")[0]
            if f"{method}-x{rec.get('ratio')}" in done:  # the fine-tuned stage stands for it
                continue
            kind = method
        elif stage.startswith(("bottlenet-", "entropic-")):
            kind = stage.split("-")[0]
        else:
            continue
        if kind in kinds:
            out.append((kind, folder))
    return out


def export_run(run: str | Path, out_dir: str | Path, kinds: tuple[str, ...] = RUN_KINDS,
               priors: tuple[str, ...] = (), prior_images: int = 1000,
               baseline: str | Path | None = None, progress: bool = False,
               prior_model: str = "lattice") -> list[tuple[Path, SplitNetwork]]:
    """``aecnn export RUN --out-dir DIR``: every finished deployable stage of a run folder
    (the ``out`` of ``train-aecnn``, ``train-bottlenet`` or ``train-entropic``: one folder per
    split point) as a variant file ``DIR/<variant name>.pt`` (the default names of
    :func:`meta_from_stage`), plus, for ``uncut``, the baseline the run was trained from cut
    at each of those split points (``<model>-<point>-x1.pt``). ``kinds``: of
    :data:`ALL_RUN_KINDS`. ``priors``: integer grids whose context prior is fitted for each
    quantisation-aware variant of that grid (the grid it is deployed on).
    Returns (file, network) of each file written.

    Raises:
        VariantError: not a run folder, no deployable stage in it, or an unknown kind.
    """
    run, out_dir = Path(run), Path(out_dir)
    bad = [k for k in kinds if k not in ALL_RUN_KINDS]
    if bad:
        raise VariantError(f"unknown kind {bad[0]!r}; choose from {', '.join(ALL_RUN_KINDS)}")
    if not run.is_dir():
        raise VariantError(f"{run} is not a run folder")
    if (run / "result.json").is_file():
        raise VariantError(f"{run} is one stage; export it with --out FILE (--out-dir takes "
                           "the run folder above its split points)")
    specs = {str(QuantSpec.parse_tensor_grid(g)): g for g in priors}
    points = sorted(p for p in run.iterdir() if p.is_dir() and _run_stages(p, ALL_RUN_KINDS))
    if not points:
        raise VariantError(f"{run} holds no finished deployable stage (a run folder has one "
                           "folder per split point, e.g. stem/aecnn-x8/result.json)")
    written = []
    cut_at: dict[str, Path] = {}
    for point in points:
        for kind, folder in _run_stages(point, kinds):
            meta, _ = meta_from_stage(folder)
            grids = tuple(g for s, g in specs.items() if meta.quant == s)
            out = out_dir / f"{meta.name}.pt"
            var = export_from(folder, out, best=kind == "aecnn", priors=grids,
                              prior_images=prior_images, baseline=baseline, progress=progress,
                              prior_model=prior_model)
            written.append((out, var))
            cut_at.setdefault(var.meta.point, folder)
    if "uncut" in kinds:
        for point, folder in cut_at.items():
            base = baseline
            if base is None:
                cfg = load_checkpoint(folder / "best.pt", ("config",))["config"]
                base = cfg.get("baseline") if isinstance(cfg, dict) else None
            if not base:
                raise VariantError(f"{folder}: its checkpoint does not name its baseline; "
                                   "give --baseline")
            meta, _ = meta_from_baseline(base, point)
            out = out_dir / f"{meta.name}.pt"
            written.append((out, export_from(base, out, point=point)))
    return written
