"""The latency model of the paper, eqs. (1)-(4), over profiled compute times.

For a variant cut at layer l with ratio V and a coder c::

    S_l        = 4 C_l H_l W_l                          raw float32 bytes          (1)
    t_com      = bytes_c / r  (bytes_c = S_l / V for c = none)                     (2)
    t_cmp      = t_pre + t_iot + t_enc,c + t_dec,c + t_fr + t_es                   (3)
    t          = t_com + t_cmp + t_rtt                                            (4)

``t_pre`` (decoding and resizing the photo on the device) and ``t_rtt`` (one propagation
round trip plus framing, measured on the link) are ours; the paper leaves them out and folds
FR into ``t_es``. Full offloading sends the photo (``t = bytes_img / r + t_dec_img + t_full
+ t_rtt``); local computing runs everything on the device (``t = t_pre + t_full_dev``).
Every time comes from a :class:`LatencyProfile` measured by ``aecnn profile``.

A profile's entries are *candidates*, every deployable way to answer one photo, each a
:class:`VariantCost` with its accuracy and measured bytes, all predicted by the same eq. (4):

- ``mode="co"``: co-inference with one variant file on one quantisation grid (``quant``), its
  coders the entropy coders profiled for it (with ``prior`` when the file holds a context
  prior for that grid; ``factorized`` alone for a learned bottleneck, whose grid is its own,
  ``learned``);
- ``mode="full"``: full offloading of the device's ``S x S`` crop as JPEG at one quality
  (``quant="jpeg@q90"``, coder ``jpeg``: ``t_enc`` the device's JPEG encoding, ``t_dec`` the
  server's decoding, ``t_es`` the uncut network on the server);
- ``mode="local"``: the uncut network on the device (coder ``none`` of 0 bytes).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aecnn.errors import AecnnError


class ProfileError(AecnnError):
    """A latency profile is missing, malformed or lacks a variant or coder."""


@dataclass(frozen=True)
class CoderCost:
    """Median packet bytes and coding times of one coder on one variant's tensors."""

    bytes: float
    t_enc: float
    t_dec: float


#: Where a candidate's accuracy comes from: the first word of ``accuracy_source``.
ACCURACY_SOURCES = ("given", "measured", "recorded", "none")


@dataclass(frozen=True)
class VariantCost:
    """Profiled times (seconds) of one candidate: a variant on one grid (``mode="co"``), the
    device's crop sent as JPEG (``"full"``) or the uncut network on the device (``"local"``).

    ``name`` is the candidate's key in the profile; ``variant`` the served variant's name
    (what a FEATURE packet or an IMAGE request names; empty in profiles written before
    candidates: then ``name``); ``quant`` the grid (empty in those profiles: the profile's
    ``machine["quant"]``); ``file`` the variant file profiled; ``accuracy_source`` says where
    ``accuracy`` (test top-1, %) comes from, starting with one of :data:`ACCURACY_SOURCES`.
    """

    name: str
    point: str
    ratio: int
    shape: tuple[int, int, int]      # (K, H, W) that travels
    raw_bytes: int                   # 4 K H W: eq. (1) divided by V
    t_pre: float
    t_iot: float
    t_fr: float
    t_es: float
    coders: dict[str, CoderCost]
    accuracy: float | None = None
    mode: str = "co"
    variant: str = ""
    quant: str = ""
    file: str = ""
    accuracy_source: str = ""

    @property
    def served(self) -> str:
        """The variant name the server answers for this candidate."""
        return self.variant or self.name

    def predict(self, rate_bps: float, coder: str, rtt: float = 0.0) -> dict[str, float]:
        """Eqs. (2)-(4) for this variant at uplink ``rate_bps`` with ``coder``."""
        if coder not in self.coders:
            raise ProfileError(f"variant {self.name} has no profile for coder {coder!r}")
        c = self.coders[coder]
        t_com = c.bytes * 8 / rate_bps
        t_cmp = self.t_pre + self.t_iot + c.t_enc + c.t_dec + self.t_fr + self.t_es
        return {"t_com": t_com, "t_cmp": t_cmp, "t_rtt": rtt, "total": t_com + t_cmp + rtt,
                "bytes": c.bytes}

    def best_coder(self, rate_bps: float, rtt: float = 0.0) -> str:
        """The paper's rule, generalised: the coder with the least predicted total."""
        return min(self.coders, key=lambda c: self.predict(rate_bps, c, rtt)["total"])


@dataclass(frozen=True)
class ImageCost:
    """One photo size: its JPEG bytes, device preprocessing and server decoding times."""

    label: str
    width: int
    height: int
    bytes: float
    t_pre: float        # device: decode + resize (local computing, co-inference)
    t_dec_server: float  # server: the same, for full offloading


@dataclass(frozen=True)
class LatencyProfile:
    """Everything eq. (4) needs, for one device/server pair; JSON on disk."""

    variants: dict[str, VariantCost]
    images: dict[str, ImageCost] = field(default_factory=dict)
    t_full_device: float = 0.0   # whole model on the device (local computing)
    t_full_server: float = 0.0   # whole model on the server (full offloading)
    t_rtt: float = 0.0
    machine: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ predictions
    def variant(self, name: str) -> VariantCost:
        if name not in self.variants:
            raise ProfileError(f"no profile for variant {name!r}; have "
                               f"{', '.join(self.variants) or 'none'}")
        return self.variants[name]

    def image(self, label: str) -> ImageCost:
        if label not in self.images:
            raise ProfileError(f"no profile for image size {label!r}")
        return self.images[label]

    def grid(self, name: str) -> str:
        """The grid of candidate ``name`` (``machine["quant"]`` in profiles written before
        candidates had their own)."""
        return self.variant(name).quant or str(self.machine.get("quant", "float32"))

    def candidates(self, mode: str | None = None) -> list[str]:
        """The keys of every candidate, or of those of one ``mode`` (co, full, local)."""
        return [k for k, v in self.variants.items() if mode is None or v.mode == mode]

    def predict(self, name: str, rate_bps: float, coder: str | None = None,
                image: str | None = None) -> dict[str, float]:
        """Eq. (4) for any candidate (co-inference, JPEG offloading, local computing):
        :meth:`co_inference`."""
        return self.co_inference(name, rate_bps, coder, image)

    def co_inference(self, name: str, rate_bps: float, coder: str | None = None,
                     image: str | None = None) -> dict[str, float]:
        """Predicted times of candidate ``name`` (co-inference, or any other mode: the same
        eq. (4)); ``coder=None`` picks the best; ``image`` replaces the profiled ``t_pre`` by
        that photo size's."""
        v = self.variant(name)
        coder = coder or v.best_coder(rate_bps, self.t_rtt)
        out = v.predict(rate_bps, coder, self.t_rtt)
        if image is not None:
            delta = self.image(image).t_pre - v.t_pre
            out = {**out, "t_cmp": out["t_cmp"] + delta, "total": out["total"] + delta}
        return {**out, "coder": coder}

    def full_offloading(self, image: str, rate_bps: float) -> dict[str, float]:
        img = self.image(image)
        t_com = img.bytes * 8 / rate_bps
        t_cmp = img.t_dec_server + self.t_full_server
        return {"t_com": t_com, "t_cmp": t_cmp, "t_rtt": self.t_rtt,
                "total": t_com + t_cmp + self.t_rtt, "bytes": img.bytes}

    def local(self, image: str | None = None) -> dict[str, float]:
        t_pre = self.image(image).t_pre if image else 0.0
        return {"t_com": 0.0, "t_cmp": t_pre + self.t_full_device, "t_rtt": 0.0,
                "total": t_pre + self.t_full_device, "bytes": 0}

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        return {"kind": "latency-profile", **asdict(self)}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @staticmethod
    def from_dict(d: dict) -> LatencyProfile:
        try:
            variants = {
                n: VariantCost(**{**v, "shape": tuple(v["shape"]),
                                  "coders": {c: CoderCost(**cc) for c, cc in v["coders"].items()}})
                for n, v in d["variants"].items()}
            images = {n: ImageCost(**i) for n, i in d.get("images", {}).items()}
            return LatencyProfile(variants, images, float(d.get("t_full_device", 0.0)),
                                  float(d.get("t_full_server", 0.0)),
                                  float(d.get("t_rtt", 0.0)), dict(d.get("machine", {})))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProfileError(f"latency profile is malformed: {exc!r}") from None

    @staticmethod
    def load(path: str | Path) -> LatencyProfile:
        path = Path(path)
        if not path.is_file():
            raise ProfileError(f"latency profile {path} does not exist (make one with "
                               "`aecnn profile`)")
        try:
            return LatencyProfile.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ProfileError(f"latency profile {path} is not valid JSON (make one with "
                               "`aecnn profile`)") from None
        except OSError as exc:
            raise ProfileError(f"latency profile {path} cannot be read: "
                               f"{exc.strerror or exc}") from None
