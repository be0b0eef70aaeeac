"""The pages' charts as inline SVG, drawn on the server: no script, no image request, a few
kilobytes each, so a drift view with a chart per feature still loads at once. The committee
report (``governance.report``) keeps its matplotlib PNGs, which a file sent by mail needs.

Each function returns markup (``markupsafe.Markup``) ready for a template; every text in it is
escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from markupsafe import Markup, escape

TRAINING = "#8da0cb"
PERIOD = "#fc8d62"
PALETTE = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666")
MODERATE, SIGNIFICANT = 0.1, 0.25


def _day(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%m-%d %H:%M")


def distribution(
    title: str, slots: Sequence[str], baseline: Sequence[float], shares: Sequence[float]
) -> Markup:
    """Training shares beside the period's, bin by bin."""
    width, height, left, bottom = 420, 180, 36, 40
    n = max(len(slots), 1)
    top = max([*baseline, *shares, 0.01])
    band = (width - left - 8) / n
    bar = band * 0.4
    parts = [_frame(width, height, title)]
    for i, (slot, expected, actual) in enumerate(zip(slots, baseline, shares, strict=False)):
        x = left + i * band + band * 0.1
        for offset, value, colour in ((0.0, expected, TRAINING), (bar, actual, PERIOD)):
            h = (height - bottom - 20) * value / top
            parts.append(
                f'<rect x="{x + offset:.1f}" y="{height - bottom - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(slot)}: '
                f"{value:.1%}</title></rect>"
            )
        parts.append(
            f'<text x="{x + bar:.1f}" y="{height - bottom + 12}" font-size="8" '
            f'text-anchor="end" transform="rotate(-35 {x + bar:.1f} {height - bottom + 12})">'
            f"{escape(slot[:14])}</text>"
        )
    parts.append(_axis_label(left, height - bottom, top, height - bottom - 20))
    parts.append(_legend(width - 150, 14, (("training", TRAINING), ("period", PERIOD))))
    parts.append("</svg>")
    return Markup("".join(parts))


def psi_over_time(series: dict[str, list[tuple[int, float]]], start_us: int, end_us: int) -> Markup:
    """PSI per window for each measure, with the 0.1 and 0.25 lines."""
    width, height, left, bottom = 760, 240, 40, 28
    plot_w, plot_h = width - left - 150, height - bottom - 24
    values = [y for points in series.values() for _, y in points if math.isfinite(y)]
    top = max([*values, SIGNIFICANT * 1.2])
    span = max(end_us - start_us, 1)

    def xy(at: int, y: float) -> tuple[float, float]:
        return left + plot_w * (at - start_us) / span, 24 + plot_h * (1 - min(y, top) / top)

    parts = [_frame(width, height, "PSI against training, per window")]
    for limit, colour in ((MODERATE, "orange"), (SIGNIFICANT, "red")):
        _, y = xy(start_us, limit)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{colour}" stroke-dasharray="4 3"/>'
        )
    legend = []
    for n, (measure, points) in enumerate(sorted(series.items())):
        colour = "#000" if measure == "score" else PALETTE[n % len(PALETTE)]
        path = " ".join(
            f"{x:.1f},{y:.1f}" for x, y in (xy(at, v) for at, v in points if math.isfinite(v))
        )
        if path:
            stroke = 2.5 if measure == "score" else 1.2
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" '
                f'stroke-width="{stroke}"><title>{escape(measure)}</title></polyline>'
            )
        # Markers too: a window's lone point draws no line.
        parts.extend(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{colour}"/>'
            for x, y in (xy(at, v) for at, v in points if math.isfinite(v))
        )
        legend.append((measure, colour))
    parts.append(_axis_label(left, 24 + plot_h, top, plot_h))
    for at in (start_us, end_us):
        x, _ = xy(at, 0)
        parts.append(
            f'<text x="{x:.1f}" y="{height - 8}" font-size="9" text-anchor="middle">'
            f"{escape(_day(at))}</text>"
        )
    parts.append(_legend(left + plot_w + 12, 24, legend[:16]))
    parts.append("</svg>")
    return Markup("".join(parts))


def serving_bars(
    rows: Sequence[tuple[str, int, int | None, float]], start_us: int, end_us: int
) -> Markup:
    """One bar per (label, from, to, share): which version served, when, with which weight."""
    width, row_h, left = 760, 22, 200
    height = 30 + row_h * max(len(rows), 1)
    span = max(end_us - start_us, 1)
    plot_w = width - left - 10
    parts = [_frame(width, height, "")]
    for i, (label, started, stopped, share) in enumerate(rows):
        a = max(started, start_us)
        b = min(stopped if stopped is not None else end_us, end_us)
        x = left + plot_w * (a - start_us) / span
        w = max(plot_w * (b - a) / span, 1.5)
        y = 8 + i * row_h
        opacity = 0.35 + 0.65 * max(0.0, min(share, 1.0))
        parts.append(
            f'<text x="{left - 6}" y="{y + 13}" font-size="11" text-anchor="end">'
            f"{escape(label)}</text>"
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 6}" fill="{PALETTE[0]}" '
            f'fill-opacity="{opacity:.2f}"><title>{escape(label)}: {share:.0%} from '
            f"{escape(_day(started))} to "
            f"{escape(_day(stopped) if stopped is not None else 'now')}</title></rect>"
            f'<text x="{x + 4:.1f}" y="{y + 12}" font-size="10">{share:.0%}</text>'
        )
    for at, anchor in ((start_us, "start"), (end_us, "end")):
        x = left + plot_w * (at - start_us) / span
        parts.append(
            f'<text x="{x:.1f}" y="{height - 4}" font-size="9" text-anchor="{anchor}">'
            f"{escape(_day(at))}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _frame(width: int, height: int, title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif">'
        f'<text x="4" y="12" font-size="11" font-weight="bold">{escape(title)}</text>'
    )


def _axis_label(x: float, y0: float, top: float, plot_h: float) -> str:
    return (
        f'<line x1="{x}" x2="{x}" y1="{y0 - plot_h:.1f}" y2="{y0:.1f}" stroke="#999"/>'
        f'<text x="{x - 3}" y="{y0:.1f}" font-size="9" text-anchor="end">0</text>'
        f'<text x="{x - 3}" y="{y0 - plot_h + 8:.1f}" font-size="9" text-anchor="end">'
        f"{top:.2g}</text>"
    )


def _legend(x: float, y: float, entries: Sequence[tuple[str, str]]) -> str:
    return "".join(
        f'<rect x="{x}" y="{y + 13 * i}" width="9" height="9" fill="{colour}"/>'
        f'<text x="{x + 13}" y="{y + 13 * i + 8}" font-size="9">{escape(name[:22])}</text>'
        for i, (name, colour) in enumerate(entries)
    )
