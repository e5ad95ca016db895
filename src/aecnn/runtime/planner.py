"""Deadline-aware choice of variant: the paper's use of Fig. 5(b), automated.

``plan`` predicts, for every profiled variant, the completion time at a given uplink rate
(eq. 4, best coder per variant) and picks the most accurate variant that meets the deadline
(ties: the faster). :class:`AdaptivePolicy` does the same online, from an estimate of the
uplink rate made of the device's recent transfers.
"""

from __future__ import annotations

from dataclasses import dataclass

from aecnn.runtime.latency import LatencyProfile


@dataclass(frozen=True)
class PlanRow:
    variant: str
    ratio: int
    coder: str
    bytes: float
    predicted: float
    accuracy: float | None
    meets: bool


def plan(profile: LatencyProfile, rate_bps: float, deadline: float,
         names: list[str] | None = None) -> tuple[list[PlanRow], PlanRow | None]:
    """Every variant's prediction at ``rate_bps`` and the choice (``None``: nothing meets
    the deadline)."""
    rows = []
    for name in names or list(profile.variants):
        v = profile.variant(name)
        p = profile.co_inference(name, rate_bps)
        rows.append(PlanRow(name, v.ratio, str(p["coder"]), float(p["bytes"]),
                            float(p["total"]), v.accuracy, float(p["total"]) <= deadline))
    ok = [r for r in rows if r.meets]
    choice = max(ok, key=lambda r: (r.accuracy if r.accuracy is not None else -1.0,
                                    -r.predicted), default=None)
    return rows, choice


def render_plan(rows: list[PlanRow], choice: PlanRow | None, rate_bps: float,
                deadline: float) -> str:
    from aecnn.runtime.units import format_rate

    lines = [f"uplink {format_rate(rate_bps)}, deadline {deadline * 1e3:.0f} ms",
             "| variant | V | coder | bytes | predicted (ms) | accuracy (%) | meets |",
             "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r.ratio):
        acc = f"{r.accuracy:.2f}" if r.accuracy is not None else "-"
        mark = "yes" if r.meets else "no"
        star = " **<- chosen**" if choice is not None and r.variant == choice.variant else ""
        lines.append(f"| {r.variant} | {r.ratio} | {r.coder} | {r.bytes:.0f} | "
                     f"{r.predicted * 1e3:.1f} | {acc} | {mark}{star} |")
    if choice is None:
        lines.append("no variant meets the deadline at this rate")
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
        rows, choice = plan(self.profile, self.rate, self.deadline, self.names)
        if choice is None:  # nothing meets it: the fastest
            return min(rows, key=lambda r: r.predicted).variant
        return choice.variant
