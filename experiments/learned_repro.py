"""The learned entropy bottleneck (``aecnn train-entropic``, Entropic Student) as a method of
the reproduction: its measurement record, made like the other methods' on the same images.

A learned-bottleneck network sends its own grid's symbols (``GRID``), coded with the tables
``update()`` freezes from its prior (wire coder 6). Its accuracy is the server's on those
grid values (what the head gives in eval mode, bit for bit what the server decodes) on the
same test images as the other methods; its bytes are the real coder-6 payloads of the same
codec images as theirs (``codec_images``), not the sample ``rate.json`` coded in training.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from aecnn.compression.factorized import FactorizedCodec
from experiments.reproduce import (
    ReproConfig,
    code_features,
    codec_label,
    codec_positions,
    forward_pass,
    subset_indices,
    subset_label,
)

GRID = "learned"  # the quantisation a learned bottleneck's record is keyed by


@torch.inference_mode()
def measure_entropic(folder: Path, dataset, cfg: ReproConfig, progress: bool,
                     val=None) -> dict:
    """Accuracy, bits per element and coding times of a learned-bottleneck stage folder
    (``entropic-xV`` or ``entropic-module-xV``) on the scale's test images; with the
    ``val`` split, also its accuracy on all of it and its bytes on ``codec_images`` of it.
    The record has the fields of :func:`~experiments.reproduce.measure_stage`'s, one grid
    (``learned``), and ``rate_weight`` and the training's ``rate.json`` sample
    (``rate_sample``) beside."""
    from aecnn.core.split import SplitNetwork
    from aecnn.training.export import meta_from_stage
    from aecnn.training.loop import resolve_device

    meta, state = meta_from_stage(folder)
    device = resolve_device(cfg.measure_device)
    var = SplitNetwork.from_meta(meta)
    var.load_state_dict(state)
    var.eval()
    tables = var.head.bottleneck.update()  # the deployed grid and tables (aecnn export's)
    var.to(device)
    n = len(dataset)
    idx = subset_indices(n, cfg.quant_images, cfg.quant_subset)
    specs = {GRID: None}  # the head already sends grid values
    correct, feats = forward_pass(var, dataset, idx, specs, codec_positions(len(idx), cfg),
                                  device, progress, folder.name)
    coded = code_features(feats, FactorizedCodec(tables), [tables])
    split_shape = list(var.bridge(feats[0][None].to(device)).shape[1:])
    stage = json.loads((folder / "result.json").read_text())
    rate = folder / "rate.json"
    rec = {"kind": "reproduce-measure", "source": str(folder), "point": meta.point,
           "ratio": meta.ratio, "bridge": meta.bridge, "fr_shape": None,
           "rate_weight": stage["rate_weight"],
           "compressed_shape": list(feats[0].shape), "elements": int(feats[0].numel()),
           "split_shape": split_shape, "split_elements": math.prod(split_shape),
           "spatial": meta.spatial, "n_quant_images": len(idx),
           "quant_subset": subset_label(n, cfg.quant_images, cfg.quant_subset),
           "accuracy": {GRID: 100.0 * correct[GRID] / len(idx)},
           "codec": {GRID: {"coder": coded["chosen"], "coders": coded["coders"],
                            "bits_per_element": coded["bits_per_element"],
                            "bytes_per_image": coded["bytes_per_image"],
                            "t_enc_s": coded["t_enc_s"], "t_dec_s": coded["t_dec_s"],
                            "tables": tables.fingerprint_hex}},
           "prior_images": 0, "test_top1": meta.test_top1, **codec_label(cfg, len(feats))}
    if rate.is_file():
        sample = json.loads(rate.read_text())
        rec["rate_sample"] = {k: sample.get(k) for k in ("images", "payload_bytes",
                                                         "estimate_bytes")}
    if val is not None:
        vidx = list(range(len(val)))
        vcorrect, vfeats = forward_pass(var, val, vidx, specs, codec_positions(len(vidx), cfg),
                                        device, progress, f"{folder.name} val")
        rec |= {"n_val_images": len(vidx),
                "val_accuracy": {GRID: 100.0 * vcorrect[GRID] / len(vidx)},
                "val_bytes": {GRID: code_features(vfeats, FactorizedCodec(tables),
                                                  [tables])["bytes_per_image"]}}
    return rec
