"""``aecnn export --onnx``: a deployable network's device side as one ONNX graph.

The graph is the device's whole job up to the entropy coder: ``image (1, 3, S, S)``
(normalised float32) -> ``head`` (backbone layers, the kept channels or the BottleNet++
encoder, the 2x2 pool of ``spatial`` variants) -> ``features (1, K, H, W)`` float32, and for
an integer grid also the quantiser of :func:`aecnn.compression.quantize.quantize`:
``symbols (1, K, H, W)`` uint8, ``lo`` and ``step`` float32 of shape ``(1,)`` (per tensor) or
``(K,)`` (per channel). The metadata (``metadata_props``) holds what the device needs besides:
the variant's :class:`~aecnn.core.split.SplitMeta` (JSON), the grid, and the variant's context
prior for that grid, so that :class:`aecnn.runtime.onnx_head.OnnxHead` runs from the file
alone, with neither PyTorch nor this module.

A clipped grid (``uint2@p90``) tops out at a quantile. numpy's (``method="linear"``) is
rebuilt exactly: the two order statistics around the virtual index ``q (n - 1)`` come from a
``TopK`` of the ``n - floor(q (n - 1))`` largest values, and they are interpolated in float64
with numpy's own formula; ``n`` is fixed by the input size, so the graph's shapes are static.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import torch
from torch import nn

from aecnn.compression.quantize import DType, QuantSpec
from aecnn.core.split import SplitNetwork
from aecnn.errors import AecnnError
from aecnn.runtime.onnx_head import FORMAT

OPSET = 18


def quantile_position(n: int, q: float) -> tuple[int, float]:
    """``(i, g)``: numpy's linear quantile ``q`` of ``n`` values is ``v[i] + g (v[i+1] - v[i])``
    over the sorted values ``v`` (numpy's own float64 arithmetic, so the same ``i`` and ``g``)."""
    virtual = (n - 1) * q
    if virtual >= n - 1:
        return n - 1, 0.0
    i = max(0, math.floor(virtual))
    return i, virtual - i


class Quantiser(nn.Module):
    """:func:`~aecnn.compression.quantize.quantize` for an integer grid, in torch operations
    that export to ONNX: ``(1, K, H, W)`` float32 -> ``(symbols uint8 (1, K, H, W), lo, step)``.
    Fixed to ``shape`` (``(K, H, W)``) because a clipped grid's quantile position depends on
    the number of values."""

    def __init__(self, spec: QuantSpec, shape: tuple[int, int, int]) -> None:
        super().__init__()
        if spec.dtype != DType.UINT:
            raise AecnnError(f"{spec} is not an integer grid")
        self.spec = spec
        k, h, w = shape
        self.n = h * w if spec.per_channel else k * h * w
        self.pos = quantile_position(self.n, spec.clip) if spec.clip < 1.0 else None

    def _top(self, flat: torch.Tensor) -> torch.Tensor:
        """The grid's top quantile of each row of ``flat (R, n)``, float64 ``(R,)``."""
        i, g = self.pos
        j = min(i + 1, self.n - 1)
        largest = torch.topk(flat, self.n - i, dim=1).values  # descending: v[n-1] ... v[i]
        a = largest[:, self.n - 1 - i].double()
        b = largest[:, self.n - 1 - j].double()
        diff = b - a
        return a + diff * g if g < 0.5 else b - diff * (1.0 - g)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = z[0]
        flat = x.reshape(x.shape[0], -1) if self.spec.per_channel else x.reshape(1, -1)
        lo = flat.amin(dim=1)
        hi = flat.amax(dim=1)
        if self.pos is not None:
            top = self._top(flat).float()
            hi = torch.where(top > lo, top, hi)
        step = (hi - lo) / float(self.spec.top)
        step = torch.where(step > 0, step, torch.ones_like(step))
        q = torch.round((x - lo.reshape(-1, 1, 1)) / step.reshape(-1, 1, 1))
        symbols = q.clamp(0, self.spec.top).to(torch.uint8)
        return symbols[None], lo, step


class DeviceGraph(nn.Module):
    """What the ONNX file computes: ``image -> features`` (and with a ``quantiser``,
    ``symbols, lo, step`` as well)."""

    def __init__(self, head: nn.Module, quantiser: Quantiser | None) -> None:
        super().__init__()
        self.head, self.quantiser = head, quantiser

    def forward(self, image: torch.Tensor):
        z = self.head(image)
        if self.quantiser is None:
            return z
        return (z, *self.quantiser(z))


def device_graph(net: SplitNetwork, quant: str | QuantSpec, input_size: int
                 ) -> tuple[DeviceGraph, list[str]]:
    """The module to export for ``net`` at ``input_size`` and its output names."""
    spec = quant if isinstance(quant, QuantSpec) else QuantSpec.parse(quant)
    with torch.inference_mode():
        shape = tuple(net.head(torch.zeros(1, 3, input_size, input_size)).shape[1:])
    if spec.dtype != DType.UINT:
        return DeviceGraph(net.head, None).eval(), ["features"]
    return (DeviceGraph(net.head, Quantiser(spec, shape)).eval(),
            ["features", "symbols", "lo", "step"])


def export_onnx(net: SplitNetwork, path: str | Path, quant: str | QuantSpec = "uint8",
                input_size: int | None = None) -> Path:
    """Write ``net``'s device side to ``path`` (ONNX, one file with its weights): the head
    at ``input_size`` (default the variant's) and the quantiser of grid ``quant`` (a float
    grid: the head's features only), with the variant's metadata and its context prior for
    ``quant`` in ``metadata_props``.

    Raises:
        AecnnError: ``net`` has no metadata, ``quant`` is not a grid, or ``onnx`` (the
            optional extra ``aecnn[onnx]``) is not installed.
    """
    try:
        import onnx
    except ImportError:
        raise AecnnError("exporting to ONNX needs the onnx extra: pip install 'aecnn[onnx]'"
                         ) from None
    if net.meta is None:
        raise AecnnError("the network has no metadata (SplitMeta): load it with load_network")
    spec = quant if isinstance(quant, QuantSpec) else QuantSpec.parse(quant)
    meta = net.meta
    if input_size and input_size != meta.input_size:
        meta = dataclasses.replace(meta, input_size=input_size)
    graph, outputs = device_graph(net.eval(), spec, meta.input_size)
    x = torch.zeros(1, 3, meta.input_size, meta.input_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(graph, (x,), dynamo=True, opset_version=OPSET,
                                    input_names=["image"], output_names=outputs,
                                    external_data=False, verbose=False)
    model = program.model_proto
    props = {"aecnn.format": FORMAT, "aecnn.meta": json.dumps(meta.to_dict()),
             "aecnn.quant": str(spec)}
    prior = net.prior(spec) if spec.dtype == DType.UINT else None
    if prior is not None:
        props["aecnn.prior"] = json.dumps(prior.to_dict())
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    model.doc_string = (f"aecnn device side of {meta.name}: {meta.model_name} head cut at "
                        f"{meta.point}, bridge {meta.bridge}, grid {spec}")
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return path
