"""``scoregate lineage``: run the store, or show one decision from it.

Exit codes of ``show``: 0 printed, 1 no such decision (or a malformed id), 2 the lineage store
could not be reached (or answered with an error).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

import grpc
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from governance.convert import timestamp_to_us
from lineage.v1 import lineage_pb2, lineage_pb2_grpc

USAGE = """usage: scoregate lineage {serve,show} ...

  serve     run the lineage store (OTLP receiver + lineage.v1.LineageService)
  show      print one decision: which model made it, when, on what inputs
"""

EXIT_NOT_FOUND = 1
EXIT_UNREACHABLE = 2


def _when(ts: Timestamp) -> str:
    us = timestamp_to_us(ts)
    moment = datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _feature(value: lineage_pb2.FeatureSnapshotValue) -> str:
    kind = value.WhichOneof("kind")
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        # repr is the shortest exact form: an auditor sees the value that was scored.
        text = repr(value.number_value)
        return text.removesuffix(".0")
    return "(unset)"


def format_table(record: lineage_pb2.DecisionRecord) -> str:
    """A two-column view answering: which model, when, on what inputs, with what result."""
    m, route, out, inputs = record.model, record.route, record.outputs, record.inputs
    rows: list[tuple[str, str]] = [
        ("decision id", record.decision_id),
        ("request id", record.request_id),
        ("decision point", record.decision_point),
        ("entity", record.entity_key),
        ("received", _when(record.received_at)),
        ("decided", f"{_when(record.decided_at)}  ({record.latency_us / 1000:.3f} ms)"),
        ("stored", _when(record.stored_at)),
        ("model", f"{m.name} v{m.version}"),
        ("model sha256", m.artifact_sha256),
        ("runtime", m.runtime_instance),
        (
            "arm",
            route.arm + (f" (fallback: {route.fallback_reason})" if route.fallback_reason else ""),
        ),
        ("routing config", route.config_version),
        ("attempts", str(route.attempts)),
        ("score", f"{out.score:.6f}"),
        ("decision", out.decision),
        ("policy", out.policy_version),
    ]
    for reason in sorted(out.reasons, key=lambda r: r.rank):
        rows.append((f"reason {reason.rank}", f"{reason.code}  {reason.description}"))
    rows += [
        ("inputs sha256", inputs.features_sha256),
        ("feature schema", inputs.feature_schema_version),
    ]
    rows += [(f"  {name}", _feature(inputs.features[name])) for name in sorted(inputs.features)]
    rows += [
        ("trace id", record.trace_id),
        ("span id", record.span_id),
        ("gateway", record.gateway_instance),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def format_json(record: lineage_pb2.DecisionRecord) -> str:
    return json_format.MessageToJson(record, preserving_proto_field_name=True, indent=2)


def show_main(argv: list[str], prog: str = "scoregate lineage show") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Print one decision's lineage record.")
    parser.add_argument("decision_id", help="the decision id the gateway returned")
    parser.add_argument("--lineage", required=True, metavar="HOST:PORT", help="lineage store")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer")
    args = parser.parse_args(argv)
    request = lineage_pb2.GetDecisionRequest(decision_id=args.decision_id)
    try:
        with grpc.insecure_channel(args.lineage) as channel:
            stub = lineage_pb2_grpc.LineageServiceStub(channel)
            record = stub.GetDecision(request, timeout=args.timeout)
    except grpc.RpcError as e:
        code, details = e.code(), e.details()
        if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            print(f"{prog}: {details}", file=sys.stderr)
            return EXIT_NOT_FOUND
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            print(
                f"{prog}: lineage store at {args.lineage} unreachable: {details}", file=sys.stderr
            )
        else:
            print(f"{prog}: lineage store error {code.name}: {details}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(format_json(record) if args.format == "json" else format_table(record))
    return 0


def lineage_main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command, rest = (args[0], args[1:]) if args else ("", [])
    if command == "serve":
        from governance.server import main as serve_main

        return serve_main(rest, prog="scoregate lineage serve")
    if command == "show":
        return show_main(rest)
    if command in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    print(USAGE, end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(lineage_main())
