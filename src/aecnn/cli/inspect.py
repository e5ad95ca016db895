"""``aecnn models``, ``split``, ``data``: what the backbones, split points and data are."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_models(args: argparse.Namespace) -> int:
    from aecnn.models import get_spec, list_models

    names = [args.name] if args.name else list_models()
    for name in names:
        spec = get_spec(name)
        print(f"{name}: {len(spec.split_points)} split points")
        if args.name or args.verbose:
            for p in spec.split_points:
                c, h, w = p.shape(args.input_size)
                print(f"  l={p.index:<3d} {p.name:<12s} {c:5d} x {h:3d} x {w:3d}  "
                      f"(stride {p.reduction}, emitted by {p.module})")
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    import torch

    from aecnn.models import create_model, get_spec, split_model

    spec = get_spec(args.model)
    point = spec.split_point(args.point)
    model = create_model(spec.name, args.num_classes).eval()
    head, tail = split_model(model, spec, point)
    with torch.no_grad():
        z = head(torch.zeros(1, 3, args.input_size, args.input_size))
    c, h, w = z.shape[1:]
    print(f"{spec.name} split at {point.name} (paper's l={point.index}), "
          f"{args.input_size}px input:")
    print(f"  split tensor      {c} x {h} x {w} = {c * h * w} values, "
          f"{4 * c * h * w} bytes as float32 (eq. 1)")
    print(f"  emitted by        {point.module}")
    for name, part in (("device head", head), ("server tail", tail)):
        print(f"  {name:<17s} {sum(p.numel() for p in part.parameters()):,} parameters")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from aecnn.data import load_or_make, resolve_root
    from aecnn.data.caltech101 import download
    from aecnn.data.splits import default_manifest

    if args.action == "download":
        print(f"Caltech-101 ready at {download(args.to)}")
        return 0
    if args.action == "pack":
        from aecnn.data.pack import pack

        n, size = pack(resolve_root(args.data), Path(args.to), args.shorter_side, args.format,
                       args.quality, args.tar, progress=not args.no_progress)
        print(f"{n} images, {size / 2**20:.1f} MiB ({args.format} q{args.quality}, shorter "
              f"side {args.shorter_side} px) -> {args.to}")
        return 0
    root = resolve_root(args.data)
    m = load_or_make(args.manifest, root, args.seed)
    print(f"Caltech-101 at {root}: {len(m.classes)} classes; train {len(m.train)}, "
          f"val {len(m.val)}, test {len(m.test)} images (seed {m.seed}, digest {m.digest()}); "
          f"manifest {args.manifest or default_manifest(args.seed)}")
    return 0



def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list backbones and their split points")
    p.add_argument("name", nargs="?", help="one backbone to describe (default: list all)")
    p.add_argument("--input-size", type=int, default=224,
                   help="input side in px for the split tensor shapes shown")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also list every backbone's split points")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("split", help="cut a backbone at a split point and describe the halves")
    p.add_argument("model", help="backbone name (see aecnn models)")
    p.add_argument("point", help="split point name (e.g. stem, layer1.0) or paper index (l1)")
    p.add_argument("--input-size", type=int, default=224, help="square input side in px")
    p.add_argument("--num-classes", type=int, default=101, help="classes of the classifier head")
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("data", help="dataset: show the split, download, or pack a compact "
                                    "copy for a remote machine")
    p.add_argument("action", choices=("info", "download", "pack"),
                   help="info: show the split; download: fetch Caltech-101; pack: write a compact"
                        " copy")
    p.add_argument("--data", help="Caltech-101 root (default: $AECNN_DATA or the shared copy)")
    p.add_argument("--to", default="data", help="download / pack target folder (a tar file "
                                                "with --tar)")
    p.add_argument("--shorter-side", type=int, default=146,
                   help="pack: shorter side in px (146: what 128 px inputs are cropped from)")
    p.add_argument("--format", choices=("webp", "jpeg"), default="webp", help="pack: codec")
    p.add_argument("--quality", type=int, default=85, help="pack: codec quality 1-100")
    p.add_argument("--tar", action="store_true", help="pack: one uncompressed tar file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--manifest", help="split manifest file (default: the packaged split for "
                   "--seed 0; for another seed, one made in the cache)")
    p.add_argument("--seed", type=int, default=0, help="split seed (info)")
    p.set_defaults(func=cmd_data)

