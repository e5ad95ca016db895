"""Deadline-aware choice of candidate: the paper's use of Fig. 5(b), automated.

``plan`` predicts, for every candidate of a profile (each variant on each of its grids, the
device's crop sent as JPEG, local computing: :mod:`aecnn.runtime.candidates`), the completion
time at a given uplink rate (eq. 4, best coder per candidate) and picks the most accurate
candidate that meets the deadline (ties: the faster; a candidate of unknown accuracy counts as
the least accurate); :func:`choose` falls back to the fastest when none meets it.
:class:`AdaptivePolicy` does the same online, from an estimate of the uplink rate made of the
device's recent transfers.
"""

from __future__ import annotations

from dataclasses import dataclass

from aecnn.runtime.latency import LatencyProfile

_MODES = {"co": 0, "full": 1, "local": 2}


@dataclass(frozen=True)
class PlanRow:
    variant: str                 # the candidate's key in the profile
    ratio: int
    coder: str
    bytes: float
    predicted: float
    accuracy: float | None
    meets: bool
    mode: str = "co"
    quant: str = ""
    accuracy_source: str = ""


def plan(profile: LatencyProfile, rate_bps: float, deadline: float,
         names: list[str] | None = None) -> tuple[list[PlanRow], PlanRow | None]:
    """Every candidate's prediction at ``rate_bps`` and the choice (``None``: nothing meets
    the deadline)."""
    rows = []
    for name in names or list(profile.variants):
        v = profile.variant(name)
        p = profile.predict(name, rate_bps)
        rows.append(PlanRow(name, v.ratio, str(p["coder"]), float(p["bytes"]),
                            float(p["total"]), v.accuracy, float(p["total"]) <= deadline,
                            v.mode, profile.grid(name), v.accuracy_source))
    ok = [r for r in rows if r.meets]
    choice = max(ok, key=lambda r: (r.accuracy if r.accuracy is not None else -1.0,
                                    -r.predicted), default=None)
    return rows, choice


def fastest(rows: list[PlanRow]) -> PlanRow:
    """The row with the least predicted time."""
    return min(rows, key=lambda r: r.predicted)


def choose(profile: LatencyProfile, rate_bps: float, deadline: float,
           names: list[str] | None = None) -> PlanRow:
    """:func:`plan`'s choice, or, when no candidate meets the deadline, the fastest."""
    rows, choice = plan(profile, rate_bps, deadline, names)
    return choice if choice is not None else fastest(rows)


def render_plan(rows: list[PlanRow], choice: PlanRow | None, rate_bps: float,
                deadline: float) -> str:
    from aecnn.runtime.units import format_rate

    lines = [f"uplink {format_rate(rate_bps)}, deadline {deadline * 1e3:.0f} ms",
             "| candidate | mode | grid | V | coder | bytes | predicted (ms) | accuracy (%) "
             "| meets |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (_MODES.get(r.mode, 3), r.ratio, r.variant)):
        acc = f"{r.accuracy:.2f}" if r.accuracy is not None else "-"
        mark = "yes" if r.meets else "no"
        star = " **<- chosen**" if choice is not None and r.variant == choice.variant else ""
        lines.append(f"| {r.variant} | {r.mode} | {r.quant or '-'} | {r.ratio} | {r.coder} | "
                     f"{r.bytes:.0f} | {r.predicted * 1e3:.1f} | {acc} | {mark}{star} |")
    if choice is None:
        lines.append("no variant meets the deadline at this rate; the fastest is "
                     f"{fastest(rows).variant}" if rows else "no candidates")
    return "\n".join(lines)


class AdaptivePolicy:
    """Online variant choice from the measured uplink.

    After each request, ``observe(bytes_up, t_com)`` updates an exponentially weighted
    estimate of the rate (``bytes * 8 / t_com``, with the profile's round trip subtracted);
    ``choose()`` plans with it. Until the first observation, ``initial_rate`` is assumed.
    """

    def __init__(self, profile: LatencyProfile, deadline: float, initial_rate: float,
                 names: list[str] | None = None, alpha: float = 0.5) -> None:
        self.profile, self.deadline, self.names, self.alpha = profile, deadline, names, alpha
        self.rate = initial_rate

    def observe(self, bytes_up: int, t_com: float) -> float:
        if bytes_up > 0 and t_com > 0:
            t = max(t_com - self.profile.t_rtt, t_com * 0.1)
            sample = bytes_up * 8 / t
            self.rate = self.alpha * sample + (1 - self.alpha) * self.rate
        return self.rate

    def choose(self) -> str:
        """The candidate's key: the most accurate that meets the deadline, else the
        fastest."""
        return choose(self.profile, self.rate, self.deadline, self.names).variant
