"""Small inline-SVG charts for the report: line charts with bands, and a CD diagram.

Why hand-written SVG rather than a plotting library: the report must be one self-contained file
that any browser shows, and the project should not pull a plotting stack into every install
for three kinds of chart. The charts are plain vector markup, so they stay sharp and small.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
    "#bcbd22",
)


@dataclass
class Series:
    name: str
    x: np.ndarray
    y: np.ndarray
    color: str
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    width: float = 2.0
    opacity: float = 1.0
    legend: bool = True
    step: bool = True
    extra: dict[str, str] = field(default_factory=dict)


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e4 or a < 1e-3:
        return f"{v:.2e}"
    return f"{v:.4g}"


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    width: int = 560,
    height: int = 320,
    x_scale: float = 1.0,
) -> str:
    """A chart of best-so-far curves; ``x_scale`` divides x for display (3600: hours)."""
    left, right, top, bottom = 64, 150, 28, 44
    pw, ph = width - left - right, height - top - bottom
    xs = [s.x / x_scale for s in series if len(s.x)]
    ys = []
    for s in series:
        for arr in (s.y, s.lo, s.hi):
            if arr is not None:
                ys.append(arr[np.isfinite(arr)])
    if not xs or not ys or not any(len(y) for y in ys):
        return f'<svg width="{width}" height="60"><text x="10" y="30">{html.escape(title)}: no data</text></svg>'
    x0 = min(float(x.min()) for x in xs)
    x1 = max(float(x.max()) for x in xs)
    yall = np.concatenate([y for y in ys if len(y)])
    y0, y1 = float(yall.min()), float(yall.max())
    if x1 <= x0:
        x1 = x0 + 1
    if y1 <= y0:
        y1 = y0 + (abs(y0) * 0.1 or 1)
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad

    def px(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * pw

    def py(v: float) -> float:
        return top + (1 - (v - y0) / (y1 - y0)) * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">'
    ]
    out.append(
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>'
    )
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    for t in _nice_ticks(x0, x1):
        X = px(t)
        out.append(
            f'<line x1="{X:.1f}" y1="{top + ph}" x2="{X:.1f}" y2="{top + ph + 4}" stroke="#666"/>'
        )
        out.append(f'<text x="{X:.1f}" y="{top + ph + 16}" text-anchor="middle">{_fmt(t)}</text>')
    for t in _nice_ticks(y0, y1):
        Y = py(t)
        out.append(f'<line x1="{left}" y1="{Y:.1f}" x2="{left + pw}" y2="{Y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 4}" y="{Y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    out.append(
        f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">{html.escape(xlabel)}</text>'
    )
    out.append(
        f'<text transform="translate(14 {top + ph / 2}) rotate(-90)" text-anchor="middle">{html.escape(ylabel)}</text>'
    )
    for s in series:
        x = s.x / x_scale
        if s.lo is not None and s.hi is not None:
            ok = np.isfinite(s.lo) & np.isfinite(s.hi)
            if ok.any():
                upper = [f"{px(a):.1f},{py(b):.1f}" for a, b in zip(x[ok], s.hi[ok], strict=True)]
                lower = [
                    f"{px(a):.1f},{py(b):.1f}"
                    for a, b in zip(x[ok][::-1], s.lo[ok][::-1], strict=True)
                ]
                out.append(
                    f'<polygon points="{" ".join(upper + lower)}" fill="{s.color}" opacity="0.15" stroke="none"/>'
                )
        ok = np.isfinite(s.y)
        if not ok.any():
            continue
        pts = []
        xv, yv = x[ok], s.y[ok]
        for i, (a, b) in enumerate(zip(xv, yv, strict=True)):
            if s.step and i > 0:
                pts.append(f"{px(a):.1f},{py(yv[i - 1]):.1f}")
            pts.append(f"{px(a):.1f},{py(b):.1f}")
        attrs = "".join(f' {k}="{html.escape(v)}"' for k, v in s.extra.items())
        out.append(
            f'<polyline points="{" ".join(pts)}" fill="none" stroke="{s.color}" '
            f'stroke-width="{s.width}" opacity="{s.opacity}"{attrs}/>'
        )
    ly = top + 4
    for s in series:
        if not s.legend:
            continue
        out.append(
            f'<line x1="{left + pw + 10}" y1="{ly + 6}" x2="{left + pw + 30}" y2="{ly + 6}" stroke="{s.color}" stroke-width="3"/>'
        )
        out.append(f'<text x="{left + pw + 34}" y="{ly + 10}">{html.escape(s.name)}</text>')
        ly += 16
    out.append("</svg>")
    return "".join(out)


def cd_diagram(
    avg_ranks: dict[str, float],
    cd: float,
    cliques: list[list[str]],
    *,
    title: str,
    width: int = 640,
) -> str:
    """A critical-difference diagram: methods on a rank axis (1 = best, left), the CD as a
    scale bar, and a thick bar joining methods that are not significantly different."""
    k = len(avg_ranks)
    items = sorted(avg_ranks.items(), key=lambda kv: kv[1])
    left, right = 150, 150
    aw = width - left - right
    lo, hi = 1.0, float(max(k, 2))

    def px(r: float) -> float:
        return left + (r - lo) / (hi - lo) * aw

    axis_y = 60
    n_left = (k + 1) // 2
    height = axis_y + 30 + 18 * max(n_left, k - n_left) + 14 * len(cliques) + 20
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">'
    ]
    out.append(f'<text x="10" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>')
    out.append(f'<line x1="{px(lo)}" y1="{axis_y}" x2="{px(hi)}" y2="{axis_y}" stroke="#000"/>')
    for r in range(1, int(hi) + 1):
        out.append(
            f'<line x1="{px(r):.1f}" y1="{axis_y - 5}" x2="{px(r):.1f}" y2="{axis_y}" stroke="#000"/>'
        )
        out.append(f'<text x="{px(r):.1f}" y="{axis_y - 8}" text-anchor="middle">{r}</text>')
    if math.isfinite(cd):
        out.append(
            f'<line x1="{px(lo)}" y1="30" x2="{px(min(lo + cd, hi + cd))}" y2="30" stroke="#c00" stroke-width="2"/>'
        )
        out.append(f'<text x="{px(lo)}" y="26" fill="#c00">CD = {cd:.2f}</text>')
    for i, (name, r) in enumerate(items):
        if i < n_left:
            y = axis_y + 30 + 18 * i
            x_text, anchor = left - 10, "end"
        else:
            y = axis_y + 30 + 18 * (k - 1 - i)
            x_text, anchor = left + aw + 10, "start"
        X = px(r)
        out.append(
            f'<polyline points="{X:.1f},{axis_y} {X:.1f},{y} {x_text:.1f},{y}" fill="none" stroke="#555"/>'
        )
        out.append(
            f'<text x="{x_text + (-4 if anchor == "end" else 4):.1f}" y="{y + 4}" text-anchor="{anchor}" '
            f'data-method="{html.escape(name)}">{html.escape(name)} ({r:.2f})</text>'
        )
    by = axis_y + 8
    for g in cliques:
        rs = [avg_ranks[m] for m in g]
        out.append(
            f'<line x1="{px(min(rs)) - 3:.1f}" y1="{by}" x2="{px(max(rs)) + 3:.1f}" y2="{by}" stroke="#000" stroke-width="4"/>'
        )
        by += 6
    out.append("</svg>")
    return "".join(out)
