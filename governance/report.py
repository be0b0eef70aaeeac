"""``scoregate lineage report``: one self-contained HTML file for a model-risk committee.

For a decision point and period it asks the store (GetDrift, daily; GetPerformance when adverse
labels are named) and writes a page that needs nothing but a browser: the plots are PNGs
inside it. Per model version and arm: the decisions and decision mix, PSI over time of the
score and of every feature, the score's and each drifted feature's distribution against
training over the whole period, and performance from outcomes. docs/monitoring.md says how to
read it.
"""

from __future__ import annotations

import base64
import html
import io
import math
import time
from collections.abc import Sequence
from pathlib import Path

from governance.client import call
from governance.commands import _parser, _run, set_period
from governance.output import when
from lineage.v1 import lineage_pb2

DAY_S = 86_400
PRIMARY = "primary"


def _png(figure: object) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")  # type: ignore[attr-defined]
    import matplotlib.pyplot as plt

    plt.close(figure)  # type: ignore[arg-type]
    return (
        '<img alt="" src="data:image/png;base64,'
        + base64.b64encode(buffer.getvalue()).decode()
        + '">'
    )


def _psi_over_time(windows: Sequence[lineage_pb2.DriftWindow], key: tuple[str, str, str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[float, float]]] = {}
    for w in windows:
        for a in w.arms:
            if (a.model_name, a.model_version, a.arm) != key or not a.baselines_known:
                continue
            for m in (a.score, *a.features):
                if not math.isnan(m.psi):
                    series.setdefault(m.measure, []).append((w.start.seconds / DAY_S, m.psi))
    figure, axes = plt.subplots(figsize=(8, 3.5))
    for measure, points in sorted(series.items()):
        xs, ys = zip(*points, strict=True)
        axes.plot(xs, ys, marker=".", label=measure, linewidth=2 if measure == "score" else 1)
    axes.axhline(0.1, color="orange", linestyle="--", linewidth=1)
    axes.axhline(0.25, color="red", linestyle="--", linewidth=1)
    axes.set_ylabel("PSI against training")
    axes.set_xlabel("day (days since 1970-01-01)")
    axes.legend(fontsize=7, ncol=3)
    return _png(figure)


def _distribution(m: lineage_pb2.MeasureDrift) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4.5, 2.6))
    xs = range(len(m.slots))
    axes.bar([x - 0.2 for x in xs], list(m.baseline_shares), width=0.4, label="training")
    axes.bar([x + 0.2 for x in xs], list(m.shares), width=0.4, label="period")
    axes.set_xticks(list(xs), list(m.slots), fontsize=7, rotation=45 if m.kind == "category" else 0)
    axes.set_title(f"{m.measure}: PSI {m.psi:.3f} ({m.band})", fontsize=9)
    axes.legend(fontsize=7)
    return _png(figure)


def _cell(value: float, percent: bool = False) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.1%}" if percent else f"{value:.3f}"


def render(
    point: str,
    whole: lineage_pb2.GetDriftResponse,
    daily: lineage_pb2.GetDriftResponse,
    performance: lineage_pb2.GetPerformanceResponse | None,
    since: str,
    until: str,
) -> str:
    """The report's HTML."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Model monitoring: {e(point)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:"
        "collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}"
        ".significant{background:#fdd}.moderate{background:#ffe9c7}</style></head><body>",
        f"<h1>Model monitoring report: {e(point)}</h1>",
        f"<p>Decisions from {e(since)} to {e(until)} (UTC, whole hours), from the lineage "
        f"store's counters. Generated {e(time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))}. "
        "PSI below 0.1 is stable, 0.1 to 0.25 a moderate shift, above 0.25 significant.</p>",
    ]
    arms = [a for w in whole.windows for a in w.arms]
    if not arms:
        parts.append("<p>No decision of this decision point was counted in the period.</p>")
    for a in arms:
        key = (a.model_name, a.model_version, a.arm)
        parts.append(f"<h2>{e(a.model_name)} version {e(a.model_version)}, arm {e(a.arm)}</h2>")
        mix = ", ".join(f"{e(d)} {s:.1%}" for d, s in sorted(a.decision_mix.items()))
        versus = (
            ""
            if a.arm == PRIMARY
            else f"; score PSI against the primary arm {_cell(a.score_psi_vs_primary)}"
        )
        parts.append(f"<p>{a.decisions:,} decisions: {mix or '-'}{versus}.</p>")
        for pair in a.shadow_pairs:
            parts.append(
                f"<p>Against the decisions it shadowed ({e(pair.parent_model)} version "
                f"{e(pair.parent_version)}): {pair.pairs:,} pairs, {pair.disagreements:,} decided "
                f"otherwise ({_cell(pair.disagreement_rate, True)}).</p>"
            )
        if not a.baselines_known:
            parts.append("<p>The version's manifest is not registered: no baselines.</p>")
            continue
        parts.append(
            "<table><tr><th>measure</th><th>PSI</th><th>band</th><th>missing</th>"
            "<th>missing in training</th><th>out of range</th><th>unknown</th>"
            "<th>chi-square p</th><th>JS distance</th></tr>"
        )
        for m in (a.score, *a.features):
            parts.append(
                f"<tr class='{e(m.band)}'><td>{e(m.measure)}</td><td>{_cell(m.psi)}</td>"
                f"<td>{e(m.band)}</td><td>{_cell(m.missing_share, True)}</td>"
                f"<td>{_cell(m.baseline_missing_share, True)}</td>"
                f"<td>{_cell(m.out_of_range_share, True)}</td>"
                f"<td>{_cell(m.unknown_share, True)}</td><td>{_cell(m.chi_square_p)}</td>"
                f"<td>{_cell(m.jensen_shannon)}</td></tr>"
            )
        parts.append("</table><h3>PSI over time (daily)</h3>")
        parts.append(_psi_over_time(daily.windows, key))
        parts.append("<h3>Distributions against training</h3>")
        shown = [a.score, *(m for m in a.features if m.band in ("significant", "moderate"))]
        parts.extend(_distribution(m) for m in shown if m.slots)
    if performance is not None:
        parts.append("<h2>Performance from recorded outcomes</h2>")
        if not performance.versions:
            parts.append("<p>No decision of the period has a recorded outcome.</p>")
        for v in performance.versions:
            flag = "" if v.enough_labels else " <b>Too few labels: these figures say little.</b>"
            parts.append(
                f"<p>{e(v.model_name)} {e(v.model_version)} ({e(v.arm)}): {v.labelled:,} "
                f"labelled, {v.bad:,} adverse; AUC {_cell(v.auc)}, KS {_cell(v.ks)}.{flag}</p>"
                "<table><tr><th>score band</th><th>labelled</th><th>bad rate</th></tr>"
                + "".join(
                    f"<tr><td>{b.low:.1f}-{b.high:.1f}</td><td>{b.labelled}</td>"
                    f"<td>{_cell(b.bad_rate, True)}</td></tr>"
                    for b in v.bands
                )
                + "</table>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)


def report_main(argv: list[str], prog: str = "scoregate lineage report") -> int:
    parser = _parser(
        prog,
        "Write a self-contained HTML model-monitoring report for a decision point.",
        formats=False,
    )
    parser.add_argument("--point", required=True, help="decision point, e.g. credit-risk")
    parser.add_argument("--since", help="ISO 8601 start (inclusive); default: 30 days ago")
    parser.add_argument("--until", help="ISO 8601 end (exclusive); default: now")
    parser.add_argument("--bad", default="", help="labels of the adverse outcome (performance)")
    parser.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    args = parser.parse_args(argv)

    def main() -> int:
        requests = []
        for step in (0, 24):
            request = lineage_pb2.GetDriftRequest(decision_point=args.point, step_hours=step)
            set_period(prog, request, args.since, args.until, 30 * DAY_S)
            requests.append(request)
        whole = call(prog, args.lineage, lambda s: s.GetDrift(requests[0], timeout=args.timeout))
        daily = call(prog, args.lineage, lambda s: s.GetDrift(requests[1], timeout=args.timeout))
        performance = None
        if args.bad:
            asked = lineage_pb2.GetPerformanceRequest(
                decision_point=args.point, bad_labels=[b for b in args.bad.split(",") if b]
            )
            asked.since.CopyFrom(requests[0].since)
            if requests[0].HasField("until"):
                asked.until.CopyFrom(requests[0].until)
            performance = call(
                prog, args.lineage, lambda s: s.GetPerformance(asked, timeout=args.timeout)
            )
        first, last = whole.windows[0].start, whole.windows[-1].end
        page = render(args.point, whole, daily, performance, when(first), when(last))
        args.out.write_text(page)
        print(f"wrote {args.out} ({len(page):,} bytes)")
        return 0

    return _run(main)
