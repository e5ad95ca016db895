"""Fig. 5 from its JSON record: completion time vs uplink rate, measured and predicted."""

from __future__ import annotations

import math
from pathlib import Path

SERIES_5A = ("aecnn-coded", "aecnn-raw", "full-offload", "local")


def _series(points: list[dict], fig: str, series: str, size: str) -> list[tuple]:
    rows = sorted((p for p in points if p["fig"] == fig and p["series"] == series
                   and p["size"] == size), key=lambda p: p["rate_mbps"])
    return [(p["rate_mbps"], p["measured_s"], p["predicted_s"]) for p in rows]


def crossover(points: list[dict], size: str, a: str = "aecnn-coded",
              b: str = "full-offload") -> float | None:
    """The rate (Mbps, log-interpolated) below which ``a`` is faster than ``b``, measured;
    ``None`` when one is faster at every rate (then see the table)."""
    sa = {r: m for r, m, _ in _series(points, "5a", a, size)}
    sb = {r: m for r, m, _ in _series(points, "5a", b, size)}
    rates = sorted(set(sa) & set(sb))
    diff = [(r, sa[r] - sb[r]) for r in rates]
    for (r0, d0), (r1, d1) in zip(diff, diff[1:], strict=False):
        if d0 < 0 <= d1:
            t = -d0 / (d1 - d0)
            return math.exp(math.log(r0) + t * (math.log(r1) - math.log(r0)))
    return None


def render_fig5(rec: dict, command: str = "") -> str:
    """Markdown: link checks, Fig. 5(a) and 5(b) tables (measured / predicted ms)."""
    pts, cfg = rec["points"], rec["config"]
    lines = ["# Fig. 5, measured over shaped links", ""]
    if command:
        lines += [f"Command: `{command}`  ", ""]
    lines += [f"Input {cfg['input_size']} px; device: {cfg['device_threads']} torch thread(s); "
              f"server: {cfg['server_threads']}; {cfg['requests']} timed requests per point "
              "(median).", "", "## Link checks (TCP goodput vs configured rate)", "",
              "| rate (Mbps) | expected goodput (Mbps) | measured (Mbps) | error | RTT (ms) |",
              "|---|---|---|---|---|"]
    for ln in rec["links"]:
        lines.append(f"| {ln['rate_mbps']:g} | {ln['expected_bps'] / 1e6:.2f} | "
                     f"{ln['measured_bps'] / 1e6:.2f} | {ln['error'] * 100:+.1f} % | "
                     f"{ln['rtt_s'] * 1e3:.2f} |")
    rates = sorted({p["rate_mbps"] for p in pts})
    local = {p["size"]: p for p in pts if p["series"] == "local"}
    for size in cfg["sizes"]:
        lines += ["", f"## Fig. 5(a), {size} photo: completion time, measured / predicted (ms)",
                  "", "| rate (Mbps) | " + " | ".join(SERIES_5A) + " |",
                  "|---|" + "---|" * len(SERIES_5A)]
        for r in rates:
            cells = []
            for s in SERIES_5A:
                p = local.get(size) if s == "local" else next(
                    (p for p in pts if p["rate_mbps"] == r and p["series"] == s
                     and p["size"] == size and p["fig"] == "5a"), None)
                cells.append(f"{p['measured_s'] * 1e3:.1f} / {p['predicted_s'] * 1e3:.1f}"
                             if p else "-")
            lines.append(f"| {r:g} | " + " | ".join(cells) + " |")
        x = crossover(pts, size)
        lines.append("")
        lines.append(f"AECNN (coded) beats full offloading below {x:.1f} Mbps (measured)."
                     if x else "No crossover between AECNN (coded) and full offloading "
                     "within the measured rates.")
    ratios = sorted({p["ratio"] for p in pts if p["fig"] == "5b"})
    lines += ["", f"## Fig. 5(b): AECNN at each V, 224x224, measured / predicted (ms); "
              f"deadline {cfg['deadline_s'] * 1e3:.0f} ms", "",
              "| rate (Mbps) | " + " | ".join(f"V={v}" for v in ratios) + " | planner |",
              "|---|" + "---|" * (len(ratios) + 1)]
    for r in rates:
        cells = []
        for v in ratios:
            p = next((p for p in pts if p["fig"] == "5b" and p["rate_mbps"] == r
                      and p["ratio"] == v), None)
            cells.append(f"{p['measured_s'] * 1e3:.1f} / {p['predicted_s'] * 1e3:.1f} "
                         f"({p['coder']})" if p else "-")
        lines.append(f"| {r:g} | " + " | ".join(cells) + f" | {rec['planner'].get(str(r))} |")
    errs = [abs(p["error"]) for p in pts]
    if errs:
        errs.sort()
        lines += ["", f"Prediction error |predicted - measured| / measured over {len(errs)} "
                  f"points: median {errs[len(errs) // 2] * 100:.1f} %, max "
                  f"{errs[-1] * 100:.1f} %."]
    return "\n".join(lines) + "\n"


def plot_fig5(rec: dict, out: Path) -> list[Path]:
    """``fig5a.png`` (one panel per photo size) and ``fig5b.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts, cfg = rec["points"], rec["config"]
    out.mkdir(parents=True, exist_ok=True)
    files = []
    sizes = cfg["sizes"]
    fig, axes = plt.subplots(1, len(sizes), figsize=(4 * len(sizes), 3.6), sharey=True)
    axes = [axes] if len(sizes) == 1 else list(axes)
    rates = sorted({p["rate_mbps"] for p in pts})
    for ax, size in zip(axes, sizes, strict=True):
        for s, color in zip(SERIES_5A, ("C0", "C1", "C2", "C3"), strict=True):
            if s == "local":
                loc = next((p for p in pts if p["series"] == "local" and p["size"] == size),
                           None)
                if loc:
                    ax.axhline(loc["measured_s"] * 1e3, color=color, label="local (measured)")
                continue
            data = _series(pts, "5a", s, size)
            if not data:
                continue
            r, m, p = zip(*data, strict=True)
            ax.plot(r, [v * 1e3 for v in m], "o-", color=color, label=f"{s} (measured)")
            ax.plot(r, [v * 1e3 for v in p], "--", color=color, alpha=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(size)
        ax.set_xlabel("uplink rate (Mbps)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("completion time (ms); dashed: eq. (4)")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    files.append(out / "fig5a.png")
    fig.savefig(files[-1], dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    ratios = sorted({p["ratio"] for p in pts if p["fig"] == "5b"})
    for i, v in enumerate(ratios):
        data = sorted((p["rate_mbps"], p["measured_s"], p["predicted_s"]) for p in pts
                      if p["fig"] == "5b" and p["ratio"] == v)
        r, m, p = zip(*data, strict=True)
        ax.plot(r, [x * 1e3 for x in m], "o-", color=f"C{i}", label=f"{v}x")
        ax.plot(r, [x * 1e3 for x in p], "--", color=f"C{i}", alpha=0.5)
    ax.axhline(cfg["deadline_s"] * 1e3, color="k", linestyle=":", label="deadline")
    chosen = [(p["rate_mbps"], p["measured_s"] * 1e3) for p in pts if p["fig"] == "5b"
              and rec["planner"].get(str(p["rate_mbps"])) == p["variant"]]
    if chosen:
        cx, cy = zip(*chosen, strict=True)
        ax.scatter(cx, cy, marker="*", s=220, facecolors="none", edgecolors="k", zorder=5,
                   label="planner's choice")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(rates)
    ax.set_xticklabels([f"{r:g}" for r in rates])
    ax.set_xlabel("uplink rate (Mbps)")
    ax.set_ylabel("completion time (ms); dashed: eq. (4)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    files.append(out / "fig5b.png")
    fig.savefig(files[-1], dpi=90)
    plt.close(fig)
    return files
