"""``scoregate lineage drift``: how a decision point's inputs, scores and decisions moved against
each model version's training baselines, per window, version and arm (docs/monitoring.md)."""

from __future__ import annotations

import math

from governance.client import call
from governance.commands import _parser, _run, set_period
from governance.output import Row, as_csv, as_json, table, when
from lineage.v1 import lineage_pb2

COLUMNS = (
    "window_start", "model", "version", "arm", "decisions", "measure", "kind", "psi", "band",
    "missing", "training_missing", "out_of_range", "unknown", "chi2_p", "js",
)  # fmt: skip
PAIR_COLUMNS = (
    "window_start", "model", "version", "arm", "parent_model", "parent_version", "pairs",
    "disagreements", "disagreement_rate",
)  # fmt: skip
DAY_S = 86_400


def _number(value: float, digits: int = 4) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _share(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1%}"


def rows(reply: lineage_pb2.GetDriftResponse, significant_only: bool = False) -> list[Row]:
    """One row per window, version, arm and measure (the score first)."""
    out: list[Row] = []
    for window in reply.windows:
        for arm in window.arms:
            base = {
                "window_start": when(window.start),
                "model": arm.model_name,
                "version": arm.model_version,
                "arm": arm.arm,
                "decisions": str(arm.decisions),
            }
            if not arm.baselines_known:
                out.append({**base, "measure": "(manifest not registered)"})
                continue
            for m in (arm.score, *arm.features):
                if significant_only and m.band != "significant":
                    continue
                out.append(
                    {
                        **base,
                        "measure": m.measure,
                        "kind": m.kind,
                        "psi": _number(m.psi),
                        "band": m.band,
                        "missing": _share(m.missing_share),
                        "training_missing": _share(m.baseline_missing_share),
                        "out_of_range": _share(m.out_of_range_share),
                        "unknown": _share(m.unknown_share),
                        "chi2_p": _number(m.chi_square_p, 6),
                        "js": _number(m.jensen_shannon),
                    }
                )
    return out


def mix_rows(reply: lineage_pb2.GetDriftResponse) -> list[Row]:
    """The decision mix and the score against the primary arm, per window, version and arm."""
    out: list[Row] = []
    for window in reply.windows:
        for arm in window.arms:
            mix = ", ".join(f"{d} {share:.1%}" for d, share in sorted(arm.decision_mix.items()))
            out.append(
                {
                    "window_start": when(window.start),
                    "model": arm.model_name,
                    "version": arm.model_version,
                    "arm": arm.arm,
                    "decisions": str(arm.decisions),
                    "decision_mix": mix or "-",
                    "score_psi_vs_primary": _number(arm.score_psi_vs_primary),
                }
            )
    return out


def pair_rows(reply: lineage_pb2.GetDriftResponse) -> list[Row]:
    """A shadow arm's pairs with the decisions it shadowed, per window and parent version."""
    return [
        {
            "window_start": when(window.start),
            "model": arm.model_name,
            "version": arm.model_version,
            "arm": arm.arm,
            "parent_model": p.parent_model,
            "parent_version": p.parent_version,
            "pairs": str(p.pairs),
            "disagreements": str(p.disagreements),
            "disagreement_rate": _share(p.disagreement_rate),
        }
        for window in reply.windows
        for arm in window.arms
        for p in arm.shadow_pairs
    ]


def drift_main(argv: list[str], prog: str = "scoregate lineage drift") -> int:
    parser = _parser(
        prog,
        "Drift of a decision point against each model version's training baselines: PSI per "
        "feature and score (0.1 moderate, 0.25 significant), missing and out-of-range shares, "
        "the decision mix, each arm's score against the primary's and how often a shadow "
        "decided otherwise than the decision it shadowed.",
    )
    parser.add_argument("--point", required=True, help="decision point, e.g. credit-risk")
    parser.add_argument("--since", help="ISO 8601 start (inclusive); default: a day ago")
    parser.add_argument("--until", help="ISO 8601 end (exclusive); default: now")
    parser.add_argument(
        "--step-hours", type=int, default=0, help="window length in hours (0: one window)"
    )
    parser.add_argument(
        "--significant", action="store_true", help="only measures past PSI 0.25 (table, csv)"
    )
    parser.add_argument(
        "--pairs",
        action="store_true",
        help="csv: the shadow pairs' disagreement instead of the measures",
    )
    args = parser.parse_args(argv)
    if args.step_hours < 0:
        parser.error("--step-hours must be 0 or more")

    def main() -> int:
        request = lineage_pb2.GetDriftRequest(decision_point=args.point, step_hours=args.step_hours)
        set_period(prog, request, args.since, args.until, DAY_S)
        reply = call(prog, args.lineage, lambda s: s.GetDrift(request, timeout=args.timeout))
        if args.format == "json":
            print(as_json(reply))
            return 0
        found = rows(reply, args.significant)
        if args.format == "csv":
            print(as_csv(pair_rows(reply), PAIR_COLUMNS) if args.pairs else as_csv(found, COLUMNS))
            return 0
        if not any(w.arms for w in reply.windows):
            print(f"no decisions of {args.point} counted in the period")
            return 0
        print(table(mix_rows(reply)))
        print()
        pairs = pair_rows(reply)
        if pairs:
            print(table(pairs, PAIR_COLUMNS))
            print()
        print(table(found, COLUMNS) if found else "no measure past PSI 0.25")
        return 0

    return _run(main)


def performance_main(argv: list[str], prog: str = "scoregate lineage performance") -> int:
    parser = _parser(
        prog,
        "How well each model version's scores ranked the outcomes recorded for a period's "
        "decisions: AUC, KS and bad rate by score band, with the labelled count.",
    )
    parser.add_argument("--point", required=True, help="decision point, e.g. card-fraud")
    parser.add_argument(
        "--bad", required=True, help="labels of the adverse outcome, comma-separated"
    )
    parser.add_argument("--since", help="ISO 8601 start of the decisions (default: 90 days ago)")
    parser.add_argument("--until", help="ISO 8601 end (exclusive); default: now")
    args = parser.parse_args(argv)

    def main() -> int:
        request = lineage_pb2.GetPerformanceRequest(
            decision_point=args.point, bad_labels=[b for b in args.bad.split(",") if b]
        )
        set_period(prog, request, args.since, args.until, 90 * DAY_S)
        reply = call(prog, args.lineage, lambda s: s.GetPerformance(request, timeout=args.timeout))
        if args.format == "json":
            print(as_json(reply))
            return 0
        found: list[Row] = [
            {
                "model": v.model_name,
                "version": v.model_version,
                "arm": v.arm,
                "labelled": str(v.labelled),
                "bad": str(v.bad),
                "auc": _number(v.auc),
                "ks": _number(v.ks),
                "labels": "enough" if v.enough_labels else "TOO FEW",
                "bad_rate_by_band": " ".join(
                    "-" if b.labelled == 0 else f"{b.bad_rate:.0%}" for b in v.bands
                ),
            }
            for v in reply.versions
        ]
        if args.format == "csv":
            print(as_csv(found))
            return 0
        print(table(found) if found else f"no labelled decisions of {args.point} in the period")
        return 0

    return _run(main)
