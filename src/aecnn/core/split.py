"""The split network: the one type that training, evaluation, export and the runtime share.

A :class:`SplitNetwork` is a CNN cut at a split point: ``head`` (device: backbone layers up to
the split, then channel pruning or the BottleNet++ encoder), ``bridge`` (server: zero fill,
feature recovery, the BottleNet++ decoder, or during training the CA module) and ``tail``
(server: the rest of the backbone). Its :class:`SplitMeta` says what it is: backbone, split
point, ratio, kept channels, input size, classes. A deployable one is one
(model, split point, ratio, bridge) choice, e.g. "ResNet-50 cut after the stem, 8x pruned, FR
on the server", and is saved to one *variant file* by :func:`save_network` and read back with
``weights_only=True`` by :func:`load_network`. The device runs ``head`` and the codec, the
edge server ``server`` (= bridge then tail).

Bridges: ``identity`` (no compression, V = 1), ``zerofill`` (CA_Pruned: pruned channels are
zeros), ``fr`` (AECNN: the FR module rebuilds them), ``bottlenet`` (BottleNet++ decoder; its
encoder is the last module of the head), ``entropic`` (a learned entropy bottleneck,
:mod:`aecnn.compression.learned`: encoder and factorized prior end the head, whose eval
output is the latent on its grid; the bridge is the decoder; the prior's coding tables are
buffers of the head, saved with the weights, and code the latent as wire coder 6).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aecnn.compression.bottlenet import (
    BottleNetDecoder,
    BottleNetEncoder,
    BottleNetHead,
    compressed_channels,
)
from aecnn.compression.codec import FeatureCodec, decode_packet
from aecnn.compression.factorized import FactorizedCodec, FactorizedTables, TablesError
from aecnn.compression.learned import (
    EntropicDecoder,
    EntropicEncoder,
    EntropicHead,
    EntropyBottleneck,
)
from aecnn.compression.priors import Prior, fit_prior, prior_from_dict
from aecnn.compression.pruning import pruned_head
from aecnn.compression.quantize import DType, QuantSpec
from aecnn.compression.recovery import FeatureRecovery, ZeroFill
from aecnn.compression.spatial import Upsampled, halved
from aecnn.compression.wire import Packet
from aecnn.errors import AecnnError
from aecnn.models import create_model, get_spec, split_model
from aecnn.safeio import safe_torch_load

FORMAT = "aecnn-variant/1"
BRIDGES = ("identity", "zerofill", "fr", "bottlenet", "entropic")
LATENT_BRIDGES = ("identity", "bottlenet", "entropic")
"""Bridges whose head sends every channel of its output (no kept-channel indices)."""


class VariantError(AecnnError):
    """A variant file or stage record is missing, corrupt or inconsistent."""


@dataclass(frozen=True)
class SplitMeta:
    """What a split network is; everything except the weights.

    ``model_name``: backbone (``aecnn models``); ``point``: split point; ``ratio``: the
    compression ratio V; ``bridge``: ``identity`` (V = 1), ``zerofill`` (CA_Pruned), ``fr``
    (AECNN), ``bottlenet`` or ``entropic`` (learned entropy bottleneck of ``C / ratio``
    latent channels); ``kept``: the kept channels' indices into the split tensor's
    ``channels`` (None for identity, bottlenet and entropic); ``input_size``: the side of the
    square input; ``mean``/``std``: its normalisation; ``spatial``: kept channels (or the
    BottleNet++ code, or the latent) at half height and width. ``test_top1``: the test
    accuracy its training record holds, measured through ``quant`` when that is set: the
    per-tensor integer grid (``uint2@p90``) a quantisation-aware stage fine-tuned it through,
    so the grid it is meant to be deployed on (None: a float network)."""

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
    quant: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> SplitMeta:
        try:
            kept = d["kept"]
            return SplitMeta(
                name=str(d["name"]), model_name=str(d["model_name"]),
                classes=tuple(d["classes"]), point=str(d["point"]), ratio=int(d["ratio"]),
                bridge=str(d["bridge"]), kept=None if kept is None else tuple(map(int, kept)),
                channels=int(d["channels"]), input_size=int(d["input_size"]),
                mean=tuple(map(float, d["mean"])), std=tuple(map(float, d["std"])),
                fr_shape=d.get("fr_shape"), spatial=bool(d.get("spatial", False)),
                test_top1=d.get("test_top1"), source=str(d.get("source", "")),
                quant=None if d.get("quant") is None else str(d["quant"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise VariantError(f"variant metadata is malformed: {exc!r}") from None


class SplitNetwork(nn.Module):
    """Device head -> bridge -> server tail: ``(B, 3, S, S) -> (B, classes)``.

    ``head: (B, 3, S, S) -> (B, K, H, W)`` runs on the device (K = kept channels, or the
    BottleNet++ code); ``server: (B, K, H, W) -> (B, classes)`` is bridge then tail, on the
    edge server. ``quant`` (quantisation-aware fine-tuning, a
    :class:`~aecnn.compression.qat.FakeQuant`) sits between head and bridge, where the codec
    quantises; it holds no state, so saved weights are the same with or without it. ``priors``
    maps an integer grid's name (``uint2@p90``) to the context prior both ends code it with.

    Build a deployable one from its metadata with :meth:`from_meta`; training builds one from
    the parts it fine-tunes (``meta`` may then be None).
    """

    def __init__(self, head: nn.Module, bridge: nn.Module, tail: nn.Module,
                 meta: SplitMeta | None = None, quant: nn.Module | None = None) -> None:
        super().__init__()
        self.head, self.bridge, self.tail = head, bridge, tail
        self.quant = quant
        self.meta = meta
        self.priors: dict[str, Prior] = {}

    @classmethod
    def from_meta(cls, meta: SplitMeta) -> SplitNetwork:
        """A freshly initialised network of the shape ``meta`` describes (load weights into
        it with ``load_state_dict``, or use :func:`load_network`).

        Raises:
            VariantError: an unknown bridge, or a pruning bridge without kept channels.
        """
        if meta.bridge not in BRIDGES:
            raise VariantError(f"unknown bridge {meta.bridge!r}; one of {', '.join(BRIDGES)}")
        spec = get_spec(meta.model_name)
        sp = spec.split_point(meta.point)
        model = create_model(meta.model_name, len(meta.classes))
        if meta.bridge in LATENT_BRIDGES:
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
        elif meta.bridge == "entropic":
            try:
                k = compressed_channels(sp.channels, meta.ratio)
            except ValueError as exc:
                raise VariantError(str(exc)) from None
            head = EntropicHead(head, EntropicEncoder(sp.channels, k, meta.spatial),
                                EntropyBottleneck(k))
            bridge = EntropicDecoder(sp.channels, k, meta.spatial, sp.spatial(meta.input_size))
        else:
            head = BottleNetHead(head, BottleNetEncoder(sp.channels, meta.ratio, meta.spatial))
            bridge = BottleNetDecoder(sp.channels, meta.ratio, meta.spatial,
                                      sp.spatial(meta.input_size), signed=sp.signed)
        if meta.spatial and meta.bridge in ("zerofill", "fr"):  # kept channels at half size
            head, bridge = halved(head), Upsampled(bridge, sp.spatial(meta.input_size))
        return cls(head, bridge, tail, meta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.head(x)
        if self.quant is not None:
            z = self.quant(z)
        return self.tail(self.bridge(z))

    def prior(self, quant: str | QuantSpec) -> Prior | None:
        """This network's context prior for the grid ``quant`` (None: it holds none)."""
        spec = quant if isinstance(quant, QuantSpec) else QuantSpec.parse(quant)
        return next((p for g, p in self.priors.items() if QuantSpec.parse(g) == spec), None)

    def codec(self, quant: str | QuantSpec = "float32", coder: str = "auto",
              rate_bps: float = 10e6) -> FeatureCodec | FactorizedCodec:
        """The device's codec for this network's head output: grid ``quant``, coder
        ``coder`` (``auto`` also weighs the ``prior`` coder when the network holds a prior
        for that grid), ``auto`` assuming an uplink of ``rate_bps``. A learned-bottleneck
        network (``entropic``) always codes with its own grid and tables (coder 6), whatever
        ``quant`` and ``coder`` say."""
        if self.meta is not None and self.meta.bridge == "entropic":
            return FactorizedCodec(self.factorized_tables())
        return FeatureCodec(quant, coder, rate_bps, prior=self.prior(quant))

    def factorized_tables(self) -> FactorizedTables:
        """The coding tables of a learned-bottleneck head (``update()``-d).

        Raises:
            VariantError: the head has no entropy bottleneck, or it has no tables."""
        bottleneck = getattr(self.head, "bottleneck", None)
        if not isinstance(bottleneck, EntropyBottleneck):
            raise VariantError("this network has no learned entropy bottleneck")
        try:
            return bottleneck.tables()
        except TablesError as exc:
            raise VariantError(str(exc)) from None

    def coding_tables(self) -> list[Prior | FactorizedTables]:
        """Every table this end holds for decoding packets: the context priors (coder 5)
        and, for a learned bottleneck, its factorized tables (coder 6)."""
        held: list[Prior | FactorizedTables] = list(self.priors.values())
        if self.meta is not None and self.meta.bridge == "entropic":
            held.append(self.factorized_tables())
        return held

    def server(self, z: torch.Tensor) -> torch.Tensor:
        """The edge server's half: ``(B, K, H, W) -> (B, classes)``."""
        return self.tail(self.bridge(z))

    @torch.inference_mode()
    def encode(self, x: torch.Tensor, quant: str | QuantSpec = "float32", coder: str = "auto",
               rate_bps: float = 10e6) -> Packet:
        """Device side for one image: head, then quantise and entropy code.
        ``x: (1, 3, S, S)`` (normalised) -> a :class:`~aecnn.compression.wire.Packet` whose
        header names this network (``meta.name``), its split point and kept channels;
        ``packet.to_bytes()`` is what crosses the link (docs/wire-format.md)."""
        m = self._deployable()
        packet, _ = self.codec(quant, coder, rate_bps).encode(
            self.head(x)[0], m.kept, m.channels if m.kept else None, m.name, m.point)
        return packet

    @torch.inference_mode()
    def decode(self, packet: Packet | bytes) -> torch.Tensor:
        """Server side: a packet (or its bytes) -> logits ``(1, classes)``, through the
        bridge (zero fill, FR or the BottleNet++ decoder) and the tail.

        Raises:
            PacketError, PayloadError: malformed bytes or a payload that does not decode.
            VariantError: the packet is for another network, split point or channels.
        """
        m = self._deployable()
        if isinstance(packet, (bytes, bytearray, memoryview)):
            packet = Packet.from_bytes(bytes(packet))
        h = packet.header
        if h.model != m.name or h.split != m.point:
            raise VariantError(f"packet is for {h.model!r} at {h.split!r}, this network is "
                               f"{m.name!r} at {m.point!r}")
        if m.kept is not None and tuple(h.indices) != m.kept:
            raise VariantError("packet's kept channels differ from this network's")
        z = decode_packet(packet, self.coding_tables())[None]
        return self.server(z.to(next(self.parameters()).device))

    def _deployable(self) -> SplitMeta:
        if self.meta is None:
            raise VariantError("this network has no metadata (SplitMeta): build it with "
                               "SplitNetwork.from_meta or load it with load_network")
        return self.meta


def save_network(net: SplitNetwork, path: str | Path, meta: SplitMeta | None = None,
                 priors: dict[str, Prior] | None = None) -> Path:
    """Write a variant file: ``meta`` (default ``net.meta``) plus the weights of ``net`` and
    the context priors of its integer grids (``priors``, default ``net.priors``: grid name ->
    prior). Read it back with :func:`load_network`.

    Raises:
        VariantError: neither ``meta`` nor ``net.meta`` says what the network is.
    """
    meta = meta or getattr(net, "meta", None)
    if meta is None:
        raise VariantError("the network has no metadata (SplitMeta) to save with it")
    if meta.bridge == "entropic":  # the coding tables travel as buffers: they must be there
        bottleneck = getattr(net.head, "bottleneck", None)
        if not isinstance(bottleneck, EntropyBottleneck) or not bottleneck.updated:
            raise VariantError("a learned-bottleneck network is saved after its entropy "
                               "bottleneck's update() (its coding tables)")
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


def load_network(path: str | Path, input_size: int | None = None) -> SplitNetwork:
    """Read a variant file (``weights_only=True``) and build its network in eval mode, with
    its context priors (``SplitNetwork.priors``; none in files exported without ``--prior``).

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
        meta = SplitMeta.from_dict(json.loads(blob["meta"]))
    except (KeyError, TypeError, json.JSONDecodeError):
        raise VariantError(f"{path}: variant metadata is unreadable") from None
    if input_size and input_size != meta.input_size:
        meta = dataclasses.replace(meta, input_size=input_size)
    var = SplitNetwork.from_meta(meta)
    try:
        var.load_state_dict(blob["state"])
    except (RuntimeError, KeyError) as exc:
        first = str(exc).splitlines()[0][:200]
        raise VariantError(f"{path}: weights do not fit the variant: {first}") from None
    var.priors = _priors(path, blob.get("priors"))
    var.eval()
    if meta.bridge == "entropic":  # the factorized tables are in the file and well formed
        try:
            var.factorized_tables()
        except VariantError as exc:
            raise VariantError(f"{path}: {exc}") from None
    return var


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




__all__ = ["BRIDGES", "FORMAT", "LATENT_BRIDGES", "SplitMeta", "SplitNetwork", "VariantError",
           "fit_head_priors", "head_symbols", "load_network", "save_network"]
