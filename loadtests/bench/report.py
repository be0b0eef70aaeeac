"""The bench's table, target verdicts, JSON and plots, from the per-path results.

A result is the load generator's JSON (or the in-process floor's, in the same shape); a path that
could not be measured (ScoreBatch before it exists) is a row with ``available`` false and a note.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BenchPath:
    key: str
    title: str
    unit: str  # what one decision is, for the throughput column: "call" or "row"


PATHS = (
    BenchPath("onnx-row", "floor: onnxruntime in process, 1 row", "row"),
    BenchPath("onnx-batch", "floor: onnxruntime in process, batch of 1,000", "row"),
    BenchPath("echo", "floor: bare grpc.aio unary echo", "call"),
    BenchPath("direct", "anchor: runtime direct, OIP v2 gRPC", "call"),
    BenchPath("proxy", "anchor: naive grpc.aio proxy -> runtime", "call"),
    BenchPath("gateway-lineage-off", "scoregate: gateway -> runtime, lineage off", "call"),
    BenchPath("gateway-lineage-on", "scoregate: gateway -> runtime, lineage on", "call"),
    BenchPath("gateway-reasons-off", "scoregate: lineage on, reasons off", "call"),
    BenchPath("gateway-secured", "scoregate: lineage on, TLS + bearer token + policy", "call"),
    BenchPath("score-batch", "scoregate: ScoreBatch rows (columns), lineage on", "row"),
)


@dataclass
class Row:
    key: str
    title: str
    available: bool
    note: str = ""
    p50_us: float | None = None
    p99_us: float | None = None
    # Decisions (rows) per second at saturation, and the p99 of one call there.
    throughput: float | None = None
    saturation_p99_us: float | None = None
    concurrency: int | None = None
    cpu_us_per_decision: float | None = None
    errors: dict[str, int] = field(default_factory=dict)
    rows_per_call: int = 1
    # Lineage rows: seconds the store took, after the saturation window, to hold every record
    # (its CPU meanwhile is in the CPU column).
    drain_s: float | None = None
    # The saturation window's length, seconds.
    window_s: float | None = None
    # CPU µs per decision by server process (the gateway with its sync helper, the runtime, the
    # lineage store): in each round they sum to ``cpu_us_per_decision``; over rounds, medians.
    cpu_split: dict[str, float] = field(default_factory=dict)

    @property
    def stored_per_s(self) -> float | None:
        """Lineage rows: decisions per second counting the store's catch-up, i.e. what the store
        holds at the end over the time it took. Below ``throughput`` when the store lagged: the
        gateway's outbox absorbed the difference (durably), which it can do only for a while."""
        if self.drain_s is None or not self.window_s or self.throughput is None:
            return None
        return self.throughput * self.window_s / (self.window_s + self.drain_s)


def row_from_result(path: BenchPath, result: dict[str, Any] | None, note: str = "") -> Row:
    if result is None:
        return Row(path.key, path.title, False, note or "not available")
    seq, sat = result["sequential"], result["saturation"]
    errors = {**seq["errors"], **sat["errors"]}
    return Row(
        key=path.key,
        title=path.title,
        available=True,
        p50_us=seq["p50_us"],
        p99_us=seq["p99_us"],
        throughput=sat["rows_per_s"],
        saturation_p99_us=sat["p99_us"],
        concurrency=result["concurrency"],
        cpu_us_per_decision=sat["server_cpu_us_per_row"],
        errors=errors,
        rows_per_call=result["rows_per_call"],
        drain_s=sat.get("drain_s"),
        window_s=sat.get("seconds"),
        cpu_split=dict(sat.get("cpu_split", {})),
    )


def median_row(rounds: list[Row]) -> Row:
    """One row from the same path's rows in several rounds: each figure the median of its
    rounds (errors summed), so one slow or fast round moves no figure on its own."""
    first = rounds[0]
    if len(rounds) == 1 or not first.available:
        return first
    figures: dict[str, float | None] = {}
    for f in fields(Row):
        values = [getattr(r, f.name) for r in rounds]
        if f.name in _FIGURES and all(isinstance(v, int | float) for v in values):
            figures[f.name] = statistics.median(values)
    errors: dict[str, int] = {}
    for r in rounds:
        for code, count in r.errors.items():
            errors[code] = errors.get(code, 0) + count
    split = {
        name: statistics.median(r.cpu_split[name] for r in rounds)
        for name in first.cpu_split
        if all(name in r.cpu_split for r in rounds)
    }
    return replace(first, errors=errors, cpu_split=split, **figures)  # type: ignore[arg-type]


_FIGURES = (
    "p50_us",
    "p99_us",
    "throughput",
    "saturation_p99_us",
    "cpu_us_per_decision",
    "drain_s",
    "window_s",
)


def _num(value: float | None, scale: float = 1.0, digits: int = 0) -> str:
    return "-" if value is None else f"{value / scale:,.{digits}f}"


def table(rows: list[Row]) -> str:
    head = (
        f"{'path':<48} {'p50 ms':>8} {'p99 ms':>8} {'decisions/s':>12} {'@conc':>6} "
        f"{'sat p99 ms':>10} {'CPU us/dec':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if not r.available:
            lines.append(f"{r.title:<48} {r.note}")
            continue
        lines.append(
            f"{r.title:<48} {_num(r.p50_us, 1e3, 3):>8} {_num(r.p99_us, 1e3, 3):>8} "
            f"{_num(r.throughput):>12} {r.concurrency or '-':>6} "
            f"{_num(r.saturation_p99_us, 1e3, 2):>10} {_num(r.cpu_us_per_decision, 1, 1):>10}"
        )
        if r.errors:
            lines.append(f"{'':<48} errors: {r.errors}")
        if len(r.cpu_split) > 1:
            split = ", ".join(f"{name} {us:,.1f}" for name, us in r.cpu_split.items())
            lines.append(f"{'':<48} CPU us/dec by process: {split}")
        if r.drain_s is not None:
            stored = r.stored_per_s
            lines.append(
                f"{'':<48} lineage store caught up {r.drain_s:.1f} s after the window "
                "(its CPU meanwhile counted)"
                + ("" if stored is None else f"; stored end to end: {stored:,.0f} decisions/s")
            )
    return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    name: str
    ok: bool | None  # None: cannot be measured yet
    detail: str
    # The figure compared with the target (ms added, a ratio, decisions/s), for combining rounds.
    value: float | None = None
    rounds: tuple[float, ...] = ()


def combine_rounds(per_round: list[list[Target]]) -> list[Target]:
    """Each target's verdict from the round whose figure is the median of the rounds' (an odd
    number of rounds): every ratio is taken within one round, so a machine that speeds up or
    slows down between rounds moves no ratio, and one odd round decides nothing."""
    if len(per_round) == 1:
        return per_round[0]
    combined = []
    for same in zip(*per_round, strict=True):
        measured = [t for t in same if t.value is not None]
        if not measured:
            combined.append(same[0])
            continue
        ordered = sorted(measured, key=lambda t: t.value or 0.0)
        middle = ordered[(len(ordered) - 1) // 2]
        values = tuple(t.value or 0.0 for t in measured)
        shown = ", ".join(f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}" for v in values)
        combined.append(
            replace(middle, detail=f"{middle.detail} [median of rounds: {shown}]", rounds=values)
        )
    return combined


def targets(rows: list[Row], overload: dict[str, Any] | None = None) -> list[Target]:
    """The issue's targets, each a ratio within this run; ``overload`` is the open-loop run at
    twice the lineage-off gateway's saturation rate against a gateway shedding beyond the
    saturation concurrency."""
    by = {r.key: r for r in rows if r.available}
    direct, off, on = by.get("direct"), by.get("gateway-lineage-off"), by.get("gateway-lineage-on")
    out: list[Target] = []

    # At one call in flight, judged on both gateways: lineage on is the product's default.
    for gateway, label in ((off, "gateway"), (on, "gateway, lineage on,")):
        if direct and gateway and direct.p50_us and gateway.p50_us:
            out.extend(_latency_targets(direct, gateway, label))
    if direct and off and direct.throughput and off.throughput:
        ratio = off.throughput / direct.throughput
        proxy = by.get("proxy")
        anchor = (
            f"; naive proxy {proxy.throughput / direct.throughput:.2f} x"
            if proxy and proxy.throughput
            else ""
        )
        out.append(
            Target(
                "gateway throughput >= 1.0 x direct",
                ratio >= 1.0,
                f"{ratio:.2f} x direct{anchor}",
                ratio,
            )
        )
    # A feature's cost at saturation: the throughput it keeps of the same path without it.
    for name, with_it, without, detail in (
        ("lineage on >= 0.90 x lineage off", on, off, "lineage off"),
        (
            "reasons on >= 0.90 x reasons off",
            on,
            by.get("gateway-reasons-off"),
            "reasons off (both lineage on)",
        ),
        (
            "secured >= 0.90 x open",
            by.get("gateway-secured"),
            on,
            "plaintext, open access (both lineage on)",
        ),
    ):
        if with_it and without and with_it.throughput and without.throughput:
            ratio = with_it.throughput / without.throughput
            out.append(Target(name, ratio >= 0.9, f"{ratio:.2f} x {detail}", ratio))
    batch = by.get("score-batch")
    if batch and batch.throughput:
        out.append(
            Target(
                "ScoreBatch >= 20,000 decisions/s",
                batch.throughput >= 20_000,
                f"{batch.throughput:,.0f} decisions/s"
                + (
                    ""
                    if batch.stored_per_s is None
                    else f" ({batch.stored_per_s:,.0f}/s stored end to end)"
                ),
                batch.throughput,
            )
        )
    else:
        out.append(
            Target("ScoreBatch >= 20,000 decisions/s", None, "not available: no ScoreBatch RPC")
        )
    out.append(shedding(off, overload))
    return out


def _latency_targets(direct: Row, gateway: Row, label: str) -> list[Target]:
    assert direct.p50_us and gateway.p50_us
    added = (gateway.p50_us - direct.p50_us) / 1e3
    found = [
        Target(
            f"{label} p50 <= direct p50 + 0.8 ms",
            added <= 0.8,
            f"adds {added:.3f} ms ({gateway.p50_us / 1e3:.3f} vs {direct.p50_us / 1e3:.3f} ms)",
            added,
        )
    ]
    if direct.p99_us and gateway.p99_us:
        ratio = gateway.p99_us / direct.p99_us
        found.append(
            Target(
                f"{label} p99 <= 2 x direct p99", ratio <= 2.0, f"{ratio:.2f} x direct p99", ratio
            )
        )
    return found


# Refusals: the in-flight gate's RESOURCE_EXHAUSTED, and gRPC core's CANCELLED for calls beyond
# its pending-request bound (refused before any Python runs for them).
_SHED_CODES = ("RESOURCE_EXHAUSTED", "CANCELLED")


SHEDDING = "shed at 2 x saturation: < 10 ms, admitted p99 <= 2 x"


def shedding(off: Row | None, overload: dict[str, Any] | None) -> Target:
    name = SHEDDING
    if overload is None or off is None or not off.saturation_p99_us:
        return Target(name, None, "not measured")
    o = overload["overload"]
    errors: dict[str, int] = o["errors"]
    shed = sum(errors.get(code, 0) for code in _SHED_CODES)
    other = {k: v for k, v in errors.items() if k not in _SHED_CODES}
    shed_p99, admitted_p99 = o["error_p99_us"] / 1e3, o["p99_us"] / 1e3
    bound = 2 * off.saturation_p99_us / 1e3
    ok = shed > 0 and not other and shed_p99 < 10.0 and admitted_p99 <= bound
    codes = ", ".join(f"{k} {errors[k]:,}" for k in _SHED_CODES if k in errors)
    detail = (
        f"offered {overload['rate']:,.0f}/s: {o['calls']:,} admitted (p99 {admitted_p99:.2f} ms, "
        f"bound {bound:.2f} ms), {shed:,} shed (p99 {shed_p99:.2f} ms; {codes or 'none'})"
    )
    lag = o.get("client_loop_lag_p99_us")
    if lag is not None:
        # Part of every latency above: answers wait for the load generator's loop too.
        detail += f"; load generator: {o.get('client_cores', 0.0):.2f} cores, loop lag p99 "
        detail += f"{lag / 1e3:.2f} ms"
    if other:
        detail += f"; other errors {other}"
    elif not shed:
        detail += "; nothing was shed (not overloaded?)"
    return Target(name, ok, detail)


def verdicts(found: list[Target]) -> str:
    word = {True: "PASS", False: "FAIL", None: "N/A "}
    return "\n".join(f"{word[t.ok]}  {t.name}: {t.detail}" for t in found)


def write_json(
    path: Path, rows: list[Row], found: list[Target], meta: dict[str, Any], raw: list[Any]
) -> None:
    document = {
        "meta": meta,
        "rows": [{**asdict(r), "stored_per_s": r.stored_per_s} for r in rows],
        "targets": [asdict(t) for t in found],
        "results": raw,
    }
    path.write_text(json.dumps(document, indent=1) + "\n")


def _quantiles(values: list[float], points: int = 400) -> tuple[list[float], list[float]]:
    ordered = sorted(values)
    if len(ordered) <= points:
        return ordered, [(i + 1) / len(ordered) for i in range(len(ordered))]
    picks = [round(i * (len(ordered) - 1) / (points - 1)) for i in range(points)]
    return [ordered[i] for i in picks], [(i + 1) / len(ordered) for i in picks]


def plot(out_dir: Path, rows: list[Row], latencies: dict[str, list[float]]) -> list[Path]:
    """Latency CDF (one call at a time) and throughput bars, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {r.key: r.title for r in rows}
    cdf = out_dir / "bench-latency-cdf.png"
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for key, values in latencies.items():
        if values:
            xs, ys = _quantiles([v / 1e3 for v in values])
            ax.plot(xs, ys, label=titles.get(key, key))
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (one call at a time; log scale)")
    ax.set_ylabel("share of calls")
    ax.set_title("scoregate bench: latency CDF")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(cdf, dpi=110)
    plt.close(fig)

    bars = out_dir / "bench-throughput.png"
    shown = [r for r in rows if r.available and r.throughput]
    fig, ax = plt.subplots(figsize=(9, 5.5))
    ax.barh([r.title for r in shown], [r.throughput or 0.0 for r in shown])
    for i, r in enumerate(shown):
        ax.text(r.throughput or 0.0, i, f" {r.throughput:,.0f}", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("decisions per second at saturation (log scale)")
    ax.set_title("scoregate bench: throughput")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(bars, dpi=110)
    plt.close(fig)
    return [cdf, bars]
