"""Fig. 5 from its JSON record: completion time vs uplink rate, measured and predicted.

Records with the best codes (``aecnn fig5`` with ``jpeg_quality``, QAT, prior-coded or
learned-bottleneck variants) add a series per best code and the JPEG offloading of the
device's crop to Fig. 5(a), a table of the best codes next to local computing and JPEG
offloading to Fig. 5(b), and a crossover table: per rate, whether co-inference beats both.
Older records render as they always did.
"""

from __future__ import annotations

import math
from pathlib import Path

SERIES_5A = ("aecnn-coded", "aecnn-raw", "full-offload", "local")
SIZE_5B = "224x224"


def _extra_5a(points: list[dict], size: str) -> list[str]:
    """Series of Fig. 5(a) beyond :data:`SERIES_5A` (JPEG offloading, best codes), in the
    order they were measured."""
    out = [p["series"] for p in points if p["fig"] == "5a" and p["size"] == size
           and p["series"] not in SERIES_5A]
    return list(dict.fromkeys(out))


def _is_sweep(p: dict) -> bool:
    return p["fig"] == "5b" and p.get("group", "ratio") == "ratio"


def _acc(p: dict | None) -> str:
    a = p.get("accuracy") if p else None
    return f"{a:.2f} %" if a is not None else "accuracy -"


def _ms(p: dict) -> str:
    return f"{p['measured_s'] * 1e3:.1f}"


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
        cols = [*SERIES_5A, *_extra_5a(pts, size)]
        lines += ["", f"## Fig. 5(a), {size} photo: completion time, measured / predicted (ms)",
                  "", "| rate (Mbps) | " + " | ".join(cols) + " |",
                  "|---|" + "---|" * len(cols)]
        for r in rates:
            cells = []
            for s in cols:
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
    ratios = sorted({p["ratio"] for p in pts if _is_sweep(p)})
    lines += ["", f"## Fig. 5(b): AECNN at each V, 224x224, measured / predicted (ms); "
              f"deadline {cfg['deadline_s'] * 1e3:.0f} ms", "",
              "| rate (Mbps) | " + " | ".join(f"V={v}" for v in ratios) + " | planner |",
              "|---|" + "---|" * (len(ratios) + 1)]
    for r in rates:
        cells = []
        for v in ratios:
            p = next((p for p in pts if _is_sweep(p) and p["rate_mbps"] == r
                      and p["ratio"] == v), None)
            cells.append(f"{p['measured_s'] * 1e3:.1f} / {p['predicted_s'] * 1e3:.1f} "
                         f"({p['coder']})" if p else "-")
        lines.append(f"| {r:g} | " + " | ".join(cells) + f" | {_planner(rec, r)} |")
    lines += _render_best(rec, rates)
    errs = [abs(p["error"]) for p in pts]
    if errs:
        errs.sort()
        lines += ["", f"Prediction error |predicted - measured| / measured over {len(errs)} "
                  f"points: median {errs[len(errs) // 2] * 100:.1f} %, max "
                  f"{errs[-1] * 100:.1f} %."]
    return "\n".join(lines) + "\n"


def _planner(rec: dict, rate: float) -> str:
    choice = rec["planner"].get(str(rate))
    if rec.get("planner_meets", {}).get(str(rate), True):
        return str(choice)
    return f"{choice} (none meets the deadline: the fastest)"


def _baselines(pts: list[dict], rate: float) -> tuple[dict | None, dict | None]:
    """Local computing and the device's crop as JPEG, 224 x 224 photo, at ``rate``."""
    local = next((p for p in pts if p["series"] == "local" and p["size"] == SIZE_5B), None)
    jpeg = next((p for p in pts if p["mode"] == "jpeg" and p["size"] == SIZE_5B
                 and p["rate_mbps"] == rate), None)
    return local, jpeg


def beats_both(rec: dict) -> list[dict]:
    """Per rate, from the measured 224 x 224 points: local computing, JPEG offloading, the
    fastest co-inference point, the fastest whose accuracy is within the config's
    ``accuracy_tolerance`` of local computing's, and every co-inference point faster than
    both (fastest first)."""
    pts, cfg = rec["points"], rec["config"]
    tol = float(cfg.get("accuracy_tolerance", 1.0))
    out = []
    for r in sorted({p["rate_mbps"] for p in pts}):
        local, jpeg = _baselines(pts, r)
        co = sorted((p for p in pts if p["fig"] == "5b" and p["rate_mbps"] == r
                     and p["mode"] == "co"), key=lambda p: p["measured_s"])
        bar = min((p["measured_s"] for p in (local, jpeg) if p), default=math.inf)
        floor = (local.get("accuracy") if local else None)
        kept = [p for p in co if floor is None or (p.get("accuracy") is not None
                                                   and p["accuracy"] >= floor - tol)]
        out.append({"rate_mbps": r, "local": local, "jpeg": jpeg,
                    "fastest": co[0] if co else None, "fastest_kept": kept[0] if kept else None,
                    "winners": [p for p in co if p["measured_s"] < bar]})
    return out


def _render_best(rec: dict, rates: list[float]) -> list[str]:
    """Fig. 5(b)'s best codes beside local computing and JPEG offloading, and the crossover
    table; nothing for records without best codes or JPEG offloading."""
    pts, cfg = rec["points"], rec["config"]
    best = list(dict.fromkeys(p["series"] for p in pts if p["fig"] == "5b"
                              and p.get("group") == "best"))
    has_jpeg = any(p["mode"] == "jpeg" for p in pts)
    if not best and not has_jpeg:
        return []
    first = {s: next(p for p in pts if p["fig"] == "5b" and p["series"] == s) for s in best}
    local0, _ = _baselines(pts, rates[0]) if rates else (None, None)
    jpeg0 = next((p for p in pts if p["mode"] == "jpeg" and p["size"] == SIZE_5B), None)
    heads = [f"{s} ({_acc(first[s])})" for s in best]
    heads += [f"local ({_acc(local0)})"] if local0 else []
    heads += [f"{jpeg0['series']} ({_acc(jpeg0)})"] if jpeg0 else []
    lines = ["", "## Fig. 5(b), the best codes, 224x224: measured / predicted (ms) (coder); "
             "column: candidate (test top-1)", "",
             "| rate (Mbps) | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for r in rates:
        cells = []
        for s in best:
            p = next((p for p in pts if p["fig"] == "5b" and p["rate_mbps"] == r
                      and p["series"] == s), None)
            cells.append(f"{_ms(p)} / {p['predicted_s'] * 1e3:.1f} ({p['coder']})"
                         if p else "-")
        local, jpeg = _baselines(pts, r)
        for p, shown in ((local, local0), (jpeg, jpeg0)):
            if shown:
                cells.append(f"{_ms(p)} / {p['predicted_s'] * 1e3:.1f}" if p else "-")
        lines.append(f"| {r:g} | " + " | ".join(cells) + " |")
    tol = float(cfg.get("accuracy_tolerance", 1.0))
    lines += ["", "## Where co-inference beats local computing and JPEG offloading "
              "(224x224 photo, measured ms)", "",
              f"'kept': the fastest co-inference point within {tol:g} points of local "
              "computing's test top-1. Accuracies are those of the profile (`accuracy_source` "
              "in profile.json says where each comes from).", "",
              "| rate (Mbps) | local | JPEG | fastest co-inference | fastest kept | beats both? "
              "| co-inference points faster than both |", "|---|---|---|---|---|---|---|"]

    def cell(p: dict | None) -> str:
        return f"{p['series']}: {_ms(p)} ({_acc(p)})" if p else "-"

    for row in beats_both(rec):
        win = row["winners"]
        kept = row["fastest_kept"]
        if row["local"] is None and row["jpeg"] is None:
            verdict = "-"
        elif kept is not None and kept in win:
            verdict = "**yes**, at kept accuracy"
        elif win:
            verdict = "yes, below kept accuracy"
        else:
            verdict = "no"
        lines.append(f"| {row['rate_mbps']:g} | {_ms(row['local']) if row['local'] else '-'} | "
                     f"{_ms(row['jpeg']) if row['jpeg'] else '-'} | {cell(row['fastest'])} | "
                     f"{cell(kept)} | {verdict} | "
                     + (", ".join(p["series"] for p in win) or "none") + " |")
    return lines


def _rate_axis(ax, rates: list[float]) -> None:
    """A log rate axis labelled at the measured rates only."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_xticks(rates)
    ax.set_xticklabels([f"{r:g}" for r in rates])
    ax.xaxis.set_minor_formatter(NullFormatter())


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
        cols = [*SERIES_5A, *_extra_5a(pts, size)]
        for s, color in zip(cols, [f"C{i}" for i in range(len(cols))], strict=True):
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
        _rate_axis(ax, rates)
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

    best = list(dict.fromkeys(p["series"] for p in pts if p["fig"] == "5b"
                              and p.get("group") == "best"))
    fig, ax = plt.subplots(figsize=(8, 5) if best else (6, 4))
    ratios = sorted({p["ratio"] for p in pts if _is_sweep(p)})
    for i, v in enumerate(ratios):
        data = sorted((p["rate_mbps"], p["measured_s"], p["predicted_s"]) for p in pts
                      if _is_sweep(p) and p["ratio"] == v)
        r, m, p = zip(*data, strict=True)
        ax.plot(r, [x * 1e3 for x in m], "o-", color=f"C{i}", label=f"{v}x")
        ax.plot(r, [x * 1e3 for x in p], "--", color=f"C{i}", alpha=0.5)
    if best:  # the best codes, local computing and JPEG offloading beside the V sweep
        cmap = plt.get_cmap("tab20")
        for j, name in enumerate(best):
            data = sorted((p["rate_mbps"], p["measured_s"]) for p in pts if p["fig"] == "5b"
                          and p["series"] == name)
            r, m = zip(*data, strict=True)
            ax.plot(r, [x * 1e3 for x in m], "s-.", color=cmap(j % 20), ms=4, lw=1,
                    label=name)
    loc = next((p for p in pts if p["series"] == "local" and p["size"] == SIZE_5B), None)
    jpeg = sorted((p["rate_mbps"], p["measured_s"]) for p in pts if p["mode"] == "jpeg"
                  and p["size"] == SIZE_5B)
    if best and loc:
        ax.axhline(loc["measured_s"] * 1e3, color="k", lw=2, alpha=0.6, label="local")
    if best and jpeg:
        r, m = zip(*jpeg, strict=True)
        ax.plot(r, [x * 1e3 for x in m], "v-", color="k", lw=2, alpha=0.6, label="JPEG crop")
    ax.axhline(cfg["deadline_s"] * 1e3, color="k", linestyle=":", label="deadline")
    chosen = [(p["rate_mbps"], p["measured_s"] * 1e3) for p in pts if p["fig"] == "5b"
              and rec["planner"].get(str(p["rate_mbps"])) == p["variant"]]
    chosen += [(r, m * 1e3) for r, m in jpeg
               if rec["planner"].get(str(r)) == next(p["variant"] for p in pts
                                                     if p["mode"] == "jpeg")]
    if loc:
        chosen += [(r, loc["measured_s"] * 1e3) for r in rates
                   if rec["planner"].get(str(r)) == "local"]
    if chosen:
        cx, cy = zip(*chosen, strict=True)
        ax.scatter(cx, cy, marker="*", s=220, facecolors="none", edgecolors="k", zorder=5,
                   label="planner's choice")
    _rate_axis(ax, rates)
    ax.set_yscale("log")
    ax.set_xlabel("uplink rate (Mbps)")
    ax.set_ylabel("completion time (ms); dashed: eq. (4)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    files.append(out / "fig5b.png")
    fig.savefig(files[-1], dpi=90)
    plt.close(fig)
    return files
