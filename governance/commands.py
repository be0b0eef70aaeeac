"""``scoregate lineage`` subcommands that ask the running store or record facts in it."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from governance.chain import Checkpoint, append_checkpoint
from governance.client import CliExit, call, fail
from governance.convert import timestamp_to_us
from governance.output import FORMATS, Row, as_csv, as_json, pairs, parse_when, table, when
from lineage.v1 import lineage_pb2, lineage_pb2_grpc


def _parser(prog: str, description: str, formats: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--lineage", required=True, metavar="HOST:PORT", help="lineage store")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for answers")
    if formats:
        parser.add_argument("--format", choices=FORMATS, default="table")
    return parser


def _time(prog: str, text: str | None) -> Timestamp | None:
    if text is None:
        return None
    try:
        return parse_when(text)
    except ValueError as e:
        raise fail(prog, str(e)) from None


def set_period(
    prog: str, request: Any, since: str | None, until: str | None, default_since_s: int = 0
) -> None:
    """Sets ``request.since`` and ``request.until`` from ISO 8601 texts; a missing ``since``
    becomes ``default_since_s`` seconds ago when given, a missing ``until`` stays unset (now)."""
    for name, text in (("since", since), ("until", until)):
        ts = _time(prog, text)
        if ts is not None:
            getattr(request, name).CopyFrom(ts)
    if since is None and default_since_s:
        request.since.FromSeconds(int(time.time()) - default_since_s)


def _run(main: Callable[[], int]) -> int:
    try:
        return main()
    except CliExit as e:
        return e.code


def summary_row(d: lineage_pb2.DecisionSummary) -> Row:
    return {
        "decided_at": when(d.decided_at),
        "decision_id": d.decision_id,
        "decision_point": d.decision_point,
        "entity_key": d.entity_key,
        "model": d.model_name,
        "version": d.model_version,
        "arm": d.arm,
        "score": f"{d.score:.6f}",
        "decision": d.decision,
    }


# The header of a listing with no rows too (CSV).
SUMMARY_COLUMNS = tuple(summary_row(lineage_pb2.DecisionSummary()))


def count_row(c: lineage_pb2.DecisionCount) -> Row:
    return {
        "model": c.model_name,
        "version": c.model_version,
        "arm": c.arm,
        "decision": c.decision,
        "count": str(c.count),
    }


def target_row(t: lineage_pb2.ArmTarget) -> Row:
    return {
        "decision_point": t.decision_point,
        "arm": t.arm,
        "model": t.model_name,
        "version": t.model_version,
        "weight": f"{t.weight:g}",
    }


def decisions_main(argv: list[str], prog: str = "scoregate lineage decisions") -> int:
    parser = _parser(
        prog,
        "Decisions about one entity, by one model (version) or with one reason code, in a "
        "time range.",
    )
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--entity", help="customer or account key")
    who.add_argument("--model", help="model name, e.g. card-fraud")
    parser.add_argument("--version", default="", help="model version (with --model)")
    parser.add_argument(
        "--reason", default="", metavar="CODE", help="only decisions whose principal reason is CODE"
    )
    parser.add_argument(
        "--any-rank", action="store_true", help="with --reason: CODE at any rank, not only first"
    )
    parser.add_argument("--point", default="", help="only this decision point")
    parser.add_argument("--decision", default="", help="only this decision, e.g. decline")
    parser.add_argument("--since", help="ISO 8601 start (inclusive); default: the beginning")
    parser.add_argument("--until", help="ISO 8601 end (exclusive); default: now")
    parser.add_argument("--limit", type=int, default=100, help="most decisions to list")
    parser.add_argument("--page-token", default="", help="continue after a previous listing")
    parser.add_argument(
        "--counts", action="store_true", help="print the counts instead of the decisions"
    )
    args = parser.parse_args(argv)
    if not (args.entity or args.model or args.reason):
        parser.error("one of the arguments --entity --model --reason is required")
    if args.any_rank and not args.reason:
        parser.error("--any-rank needs --reason")

    def main() -> int:
        request = lineage_pb2.ListDecisionsRequest(
            entity_key=args.entity or "",
            model_name=args.model or "",
            model_version=args.version,
            decision_point=args.point,
            decision=args.decision,
            reason_code=args.reason,
            reason_any_rank=args.any_rank,
            limit=args.limit,
            page_token=args.page_token,
        )
        set_period(prog, request, args.since, args.until)
        reply = call(prog, args.lineage, lambda s: s.ListDecisions(request, timeout=args.timeout))
        if args.format == "json":
            print(as_json(reply))
            return 0
        rows = (
            [count_row(c) for c in reply.counts]
            if args.counts
            else [summary_row(d) for d in reply.decisions]
        )
        if args.format == "csv":
            print(as_csv(rows))
            return 0
        print(table(rows))
        if not args.counts:
            total = sum(c.count for c in reply.counts)
            print(f"\n{len(rows)} of {total} decisions in the range")
            if reply.counts:
                print("\n" + table([count_row(c) for c in reply.counts]))
            if reply.next_page_token:
                print(f"\nmore: --page-token {reply.next_page_token}")
        return 0

    return _run(main)


def shadows_main(argv: list[str], prog: str = "scoregate lineage shadows") -> int:
    parser = _parser(prog, "The shadow decisions that mirrored one decision's request.")
    parser.add_argument("decision_id", help="the decision id the gateway returned to the caller")
    args = parser.parse_args(argv)

    def main() -> int:
        request = lineage_pb2.ListShadowsRequest(decision_id=args.decision_id)
        reply = call(prog, args.lineage, lambda s: s.ListShadows(request, timeout=args.timeout))
        if args.format == "json":
            print(as_json(reply))
            return 0
        rows = [summary_row(d) for d in reply.shadows]
        if args.format == "csv":
            print(as_csv(rows, SUMMARY_COLUMNS))
            return 0
        print(table(rows) if rows else f"no shadow decisions of {args.decision_id}")
        return 0

    return _run(main)


def serving_at_main(argv: list[str], prog: str = "scoregate lineage serving-at") -> int:
    parser = _parser(prog, "What served a decision point at a moment, and what it decided then.")
    parser.add_argument("--point", required=True, help="decision point, e.g. card-fraud")
    parser.add_argument("--at", required=True, help="ISO 8601 time, e.g. 2025-11-18T14:03:00Z")
    parser.add_argument("--window", type=int, default=60, help="seconds either side of --at")
    parser.add_argument("--limit", type=int, default=20, help="decisions nearest --at to list")
    args = parser.parse_args(argv)

    def main() -> int:
        request = lineage_pb2.GetServingAtRequest(
            decision_point=args.point,
            at=_time(prog, args.at),
            window_s=args.window,
            limit=args.limit,
        )
        reply = call(prog, args.lineage, lambda s: s.GetServingAt(request, timeout=args.timeout))
        if args.format == "json":
            print(as_json(reply))
            return 0
        targets = [target_row(t) for t in reply.targets]
        if args.format == "csv":
            print(as_csv(targets, ["decision_point", "arm", "model", "version", "weight"]))
            return 0
        if reply.HasField("in_force"):
            change = reply.in_force
            print(
                pairs(
                    [
                        ("routing config", change.config_version),
                        ("in force since", when(change.changed_at)),
                        ("applied by", change.source or "-"),
                    ]
                )
            )
        else:
            print("no route change recorded before that time")
        print("\n" + (table(targets) if targets else f"{args.point} was not configured then"))
        window = f"{when(reply.window_start)} .. {when(reply.window_end)}"
        print(f"\ndecisions {window}:")
        print(table([count_row(c) for c in reply.counts]))
        if reply.decisions:
            print("\nnearest:\n" + table([summary_row(d) for d in reply.decisions]))
        return 0

    return _run(main)


def model_history_main(argv: list[str], prog: str = "scoregate lineage model-history") -> int:
    parser = _parser(prog, "When each version of a model took traffic, per decision point and arm.")
    parser.add_argument("--model", required=True, help="model name, e.g. card-fraud")
    parser.add_argument("--point", default="", help="only this decision point")
    args = parser.parse_args(argv)

    def main() -> int:
        request = lineage_pb2.GetModelHistoryRequest(
            model_name=args.model, decision_point=args.point
        )
        reply = call(prog, args.lineage, lambda s: s.GetModelHistory(request, timeout=args.timeout))
        if args.format == "json":
            print(as_json(reply))
            return 0
        routed = [
            {
                "decision_point": p.decision_point,
                "version": p.model_version,
                "arm": p.arm,
                "started": when(p.started_at),
                "stopped": when(p.stopped_at) if p.HasField("stopped_at") else "(serving)",
                "weight": f"{p.weight:g}",
                "started_by": p.started_by,
            }
            for p in reply.routed
        ]
        observed = [
            {
                "decision_point": o.decision_point,
                "version": o.model_version,
                "arm": o.arm,
                "first_decision": when(o.first_decision_at),
                "last_decision": when(o.last_decision_at),
                "decisions": str(o.decisions),
            }
            for o in reply.observed
        ]
        if args.format == "csv":
            print(as_csv([{"source": "routes", **r} for r in routed]))
            print(as_csv([{"source": "decisions", **o} for o in observed]))
            return 0
        print("routed (from route changes):\n" + table(routed))
        print("\nobserved (from decisions):\n" + table(observed))
        return 0

    return _run(main)


def register_models_main(argv: list[str], prog: str = "scoregate lineage register-models") -> int:
    parser = _parser(prog, "Register every manifest under a model directory.", formats=False)
    parser.add_argument("--model-dir", required=True, type=Path, help="model repository root")
    args = parser.parse_args(argv)

    from runtimes.manifest import MANIFEST_FILE, find_model_folders

    def main() -> int:
        folders = find_model_folders(args.model_dir)
        if not folders:
            raise fail(prog, f"no {MANIFEST_FILE} under {args.model_dir}")
        for folder in folders:
            text = (folder / MANIFEST_FILE).read_text()
            request = lineage_pb2.RegisterManifestRequest(manifest_json=text)

            def register(
                stub: lineage_pb2_grpc.LineageServiceStub,
                r: lineage_pb2.RegisterManifestRequest = request,
            ) -> lineage_pb2.RegisterManifestResponse:
                reply: lineage_pb2.RegisterManifestResponse = stub.RegisterManifest(
                    r, timeout=args.timeout
                )
                return reply

            reply = call(prog, args.lineage, register)
            state = "already registered" if reply.duplicate else "registered"
            m = reply.model
            print(f"{m.name} v{m.version}  {m.artifact_sha256}  {state}")
        return 0

    return _run(main)


def override_main(argv: list[str], prog: str = "scoregate lineage override") -> int:
    parser = _parser(prog, "Record a reviewer's override of a decision.", formats=False)
    parser.add_argument("decision_id")
    parser.add_argument("--reviewer", required=True, help="who decided")
    parser.add_argument("--decision", required=True, help="the decision that now stands")
    parser.add_argument("--reason", required=True, help="why")
    parser.add_argument("--at", help="ISO 8601 time of the review; default now")
    parser.add_argument("--id", default="", help="idempotency key; default: from the content")
    args = parser.parse_args(argv)

    def main() -> int:
        override = lineage_pb2.Override(
            override_id=args.id,
            decision_id=args.decision_id,
            reviewer=args.reviewer,
            at=_time(prog, args.at),
            new_decision=args.decision,
            reason=args.reason,
        )
        request = lineage_pb2.RecordOverrideRequest(override=override)
        got = call(prog, args.lineage, lambda s: s.RecordOverride(request, timeout=args.timeout))
        print(f"recorded override {got.override_id} (seq {got.seq})")
        return 0

    return _run(main)


def outcome_main(argv: list[str], prog: str = "scoregate lineage outcome") -> int:
    parser = _parser(prog, "Record an observed outcome of a decision.", formats=False)
    parser.add_argument("decision_id")
    parser.add_argument("--label", required=True, help="e.g. confirmed_fraud, not_fraud, default")
    parser.add_argument("--source", required=True, help="where it comes from")
    parser.add_argument("--at", help="ISO 8601 time it was observed; default now")
    parser.add_argument("--id", default="", help="idempotency key; default: from the content")
    args = parser.parse_args(argv)

    def main() -> int:
        outcome = lineage_pb2.Outcome(
            outcome_id=args.id,
            decision_id=args.decision_id,
            label=args.label,
            at=_time(prog, args.at),
            source=args.source,
        )
        request = lineage_pb2.RecordOutcomeRequest(outcome=outcome)
        got = call(prog, args.lineage, lambda s: s.RecordOutcome(request, timeout=args.timeout))
        print(f"recorded outcome {got.outcome_id} (seq {got.seq})")
        return 0

    return _run(main)


def checkpoint_main(argv: list[str], prog: str = "scoregate lineage checkpoint") -> int:
    parser = _parser(prog, "Print the hash chain's head; optionally append it to a file.")
    parser.add_argument("--append", type=Path, help="JSON-lines checkpoint file to append to")
    args = parser.parse_args(argv)

    def main() -> int:
        request = lineage_pb2.GetCheckpointRequest()
        cp = call(prog, args.lineage, lambda s: s.GetCheckpoint(request, timeout=args.timeout))
        if args.append is not None:
            append_checkpoint(
                args.append, Checkpoint(cp.size, cp.head_sha256, timestamp_to_us(cp.at))
            )
        if args.format == "json":
            print(as_json(cp))
        elif args.format == "csv":
            row = {"size": str(cp.size), "head_sha256": cp.head_sha256, "at": when(cp.at)}
            print(as_csv([row]))
        else:
            print(pairs([("size", str(cp.size)), ("head", cp.head_sha256), ("at", when(cp.at))]))
        return 0

    return _run(main)
